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

    /// Starts a server on `port` (used to bring one back after a stop).
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port).unwrap_or_else(|| panic!("redis-server did not start on {port}"))
    }

    fn try_start_on(port: u16) -> Option<Self> {
        let tag = format!(
            "tm-{}-{port}-{:x}.rdb",
            std::process::id(),
            rand::random::<u64>()
        );
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let mut server = Self { port, child, tag };
        let started = Instant::now();
        while !server.answers() {
            if matches!(server.child.try_wait(), Ok(Some(_)))
                || started.elapsed() > Duration::from_secs(10)
            {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 256];
        if stream.write_all(b"CONFIG GET dbfilename\r\n").is_err() {
            return false;
        }
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).contains(&self.tag)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server now.
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
