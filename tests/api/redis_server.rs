//! A real `redis-server` per test, on a free loopback port (never the shared 6379), stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A free port a Redis Cluster node can use: its cluster bus listens on port + 10000, so at most 55535 (the
/// ephemeral range goes up to 60999), and that bus port must be free as well.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Whether the server on `port` answers `CONFIG GET <parameter>` with `expected` in its reply: a value only the
/// server we started has, so another test's server that took the same port first cannot pass for it.
fn answers_with(port: u16, parameter: &str, expected: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 512];
    if stream
        .write_all(format!("CONFIG GET {parameter}\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).contains(expected)
}

/// Waits (up to 10 s) until the server `child` started on `port` answers as itself ([`answers_with`]); false when
/// it exited first (its port was taken) or never answered.
fn started_as(child: &mut Child, port: u16, parameter: &str, expected: &str) -> bool {
    let started = Instant::now();
    while !matches!(child.try_wait(), Ok(Some(_))) && started.elapsed() < Duration::from_secs(10) {
        if answers_with(port, parameter, expected) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub struct RedisServer {
    pub port: u16,
    child: Child,
    /// A name only this server has, so the readiness probe cannot be answered by another test's server that
    /// took the same port first.
    tag: String,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING. A port can be taken between choosing it
    /// and binding it (other tests pick ports too), so a server that exits at once is retried on another port.
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn try_start_on(port: u16) -> Option<Self> {
        let tag = format!(
            "tm-{}-{port}-{:x}.rdb",
            std::process::id(),
            rand::random::<u64>()
        );
        Self::try_start_with(port, tag)
    }

    fn try_start_with(port: u16, tag: String) -> Option<Self> {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                &tag,
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let mut server = Self { port, child, tag };
        started_as(&mut server.child, port, "dbfilename", &server.tag).then_some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Saves the data set and stops the server, as a Redis with persistence goes down; [`Stopped::start`]
    /// brings it back on the same port with the same data.
    pub fn stop(mut self) -> Stopped {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 64];
            if stream.write_all(b"SAVE\r\n").is_ok() {
                let _ = stream.read(&mut buf);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Stopped {
            port: self.port,
            tag: std::mem::take(&mut self.tag),
        }
    }
}

/// A server stopped with its data saved.
pub struct Stopped {
    port: u16,
    tag: String,
}

impl Stopped {
    /// Starts the server again on its port, with the data it had.
    pub fn start(self) -> RedisServer {
        let port = self.port;
        RedisServer::try_start_with(port, self.tag)
            .unwrap_or_else(|| panic!("redis-server did not start again on {port}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.tag.is_empty() {
            let _ = std::fs::remove_file(
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&self.tag),
            );
        }
    }
}

/// A real 3-master Redis Cluster on free loopback ports (`redis-server --cluster-enabled yes` and
/// `redis-cli --cluster create`), stopped on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
}

/// Starts one cluster node in `node_dir` on a free port and waits until it answers. A port (or its bus port) can
/// be taken between choosing and binding it, since other tests pick ports too: a node that exits, or does not
/// answer as itself (its own directory), is retried on other ports.
fn start_node(node_dir: &std::path::Path) -> (Child, u16) {
    let own_dir = std::fs::canonicalize(node_dir).expect("node dir");
    for _ in 0..5 {
        let port = free_cluster_port();
        let mut child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&own_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        if started_as(&mut child, port, "dir", &own_dir.to_string_lossy()) {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("a redis cluster node did not start on any of 5 free ports");
}

impl RedisCluster {
    /// Starts three masters, creates the cluster and waits until every slot is served.
    pub fn start() -> Self {
        Self::start_with_replicas(0)
    }

    /// Starts three masters with `replicas` replicas each.
    pub fn start_with_replicas(replicas: usize) -> Self {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "tokenmint-cluster-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 * (1 + replicas) {
            let node_dir = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let (child, port) = start_node(&node_dir);
            nodes.push(child);
            ports.push(port);
        }
        let cluster = Self { nodes, ports, dir };
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (it comes with redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        for port in &cluster.ports {
            cluster.wait_for(*port, "CLUSTER INFO", "cluster_state:ok");
        }
        if replicas > 0 {
            for port in cluster.master_ports() {
                cluster.wait_for(
                    port,
                    "INFO replication",
                    &format!("connected_slaves:{replicas}"),
                );
            }
            for port in cluster.ports.clone() {
                if !cluster.master_ports().contains(&port) {
                    cluster.wait_for(port, "INFO replication", "master_link_status:up");
                }
            }
        }
        cluster
    }

    fn wait_for(&self, port: u16, command: &str, expected: &str) {
        let started = Instant::now();
        loop {
            let output = Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(command.split(' '))
                .output();
            if output.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(expected)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis node {port} did not answer {expected} to {command}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ports of the nodes that are masters now.
    pub fn master_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|port| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "ROLE"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("master"))
            })
            .collect()
    }

    /// Kills the node on `port` (SIGKILL, no goodbye to the cluster).
    pub fn kill(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|p| *p == port) {
            let _ = self.nodes[i].kill();
            let _ = self.nodes[i].wait();
        }
    }

    /// Runs redis-cli against the node on `port`; returns its standard output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The node owning `slot` now: (port, node id).
    pub fn owner_of(&self, slot: u16) -> (u16, String) {
        for port in self.master_ports() {
            let id = self.cli(port, &["CLUSTER", "MYID"]);
            let nodes = self.cli(port, &["CLUSTER", "NODES"]);
            let mine = nodes
                .lines()
                .find(|l| l.starts_with(&id))
                .expect("own line");
            let owns = mine.split_whitespace().skip(8).any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                return (port, id);
            }
        }
        panic!("no master owns slot {slot}");
    }

    /// Moves `slot` from its owner to another master the way `redis-cli --cluster reshard` does: IMPORTING and
    /// MIGRATING, MIGRATE of its keys a few at a time (with `pause` between batches), then SETSLOT NODE.
    pub fn migrate_slot(&self, slot: u16, pause: Duration) {
        let (source, source_id) = self.owner_of(slot);
        let target = *self
            .master_ports()
            .iter()
            .find(|p| **p != source)
            .expect("another master");
        let target_id = self.cli(target, &["CLUSTER", "MYID"]);
        let slot_text = slot.to_string();
        self.cli(
            target,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id],
        );
        self.cli(
            source,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id],
        );
        loop {
            let keys = self.cli(source, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "2"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let target_port = target.to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                "5000",
                "KEYS",
            ];
            args.extend(keys);
            self.cli(source, &args);
            std::thread::sleep(pause);
        }
        for port in self.master_ports() {
            self.cli(
                port,
                &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id],
            );
        }
    }

    /// The seed-node list for `store.redis.url` with `cluster = true`.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
