//! One connection type over a single Redis (a connection manager that reconnects by itself) or a Redis Cluster
//! (the redis crate's async cluster client: it follows `MOVED`/`ASK` and refreshes the slot map after a
//! failover), so every operation is written once.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

/// How to connect: parsed once from the settings.
#[derive(Clone)]
pub(super) enum Connector {
    /// One node.
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    /// A cluster, from its seed nodes.
    Cluster(ClusterClient),
}

impl Connector {
    /// From `store.redis.url`: one URL, or with `cluster` a comma-separated list of seed nodes. `rediss://` URLs
    /// use TLS (rustls), trusting `ca` (PEM) when given, the system's roots otherwise; `user:password@` in a URL
    /// authenticates as that ACL user.
    pub(super) fn new(
        url: &str,
        cluster: bool,
        timeout: Duration,
        ca: Option<Vec<u8>>,
    ) -> redis::RedisResult<Self> {
        // rustls needs one process-wide crypto provider; a second install is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certificates = ca.map(|root| TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        });
        if cluster {
            let seeds: Vec<&str> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let mut builder = ClusterClient::builder(seeds)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            Ok(Self::Cluster(builder.build()?))
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(url, certificates)?,
                None => redis::Client::open(url)?,
            };
            Ok(Self::Single { client, config })
        }
    }

    /// Connects.
    pub(super) async fn connect(&self) -> redis::RedisResult<Connection> {
        match self {
            Self::Single { client, config } => {
                ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map(Connection::Single)
            }
            Self::Cluster(client) => client.get_async_connection().await.map(Connection::Cluster),
        }
    }

    /// Whether this is a cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A connection to either; cheap to clone (both are handles to shared connections).
#[derive(Clone)]
pub(super) enum Connection {
    /// One node.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Waits (Redis `WAIT`) until `replicas` replicas have the writes this connection sent to the node that serves
    /// `key`, for at most `timeout`; returns how many do.
    pub(super) async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> redis::RedisResult<i64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        match self {
            Self::Single(c) => wait.query_async(c).await,
            Self::Cluster(c) => {
                let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                let value = c.route_command(wait, node).await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }

    /// A round trip to every node that serves slots (a cluster's masters; the one node otherwise).
    pub(super) async fn ping_every_node(&mut self) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => redis::cmd("PING").query_async::<()>(c).await,
            Self::Cluster(c) => {
                let every_master = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                c.route_command(redis::cmd("PING"), every_master)
                    .await
                    .map(|_| ())
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
