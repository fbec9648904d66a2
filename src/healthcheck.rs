//! `tokenmint healthcheck`: probes `GET /healthz` of a running instance with hyper's HTTP/1.1 client, so a slim
//! container image needs no curl for its HEALTHCHECK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// No answer in time.
    #[error("no answer from {0} within the timeout")]
    Timeout(SocketAddr),
    /// Connection or I/O failure.
    #[error("cannot reach {addr}: {source}")]
    Io {
        /// The probed address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("no HTTP answer from {addr}: {source}")]
    Http {
        /// The probed address.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
    /// Answered, but not 200.
    #[error("{addr} answered: {status_line}")]
    Unhealthy {
        /// The probed address.
        addr: SocketAddr,
        /// The response's status line.
        status_line: String,
    },
}

/// The address to probe for a server bound to `host:port`: a wildcard bind is probed on loopback.
pub fn probe_addr(host: IpAddr, port: u16) -> SocketAddr {
    let host = match host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    SocketAddr::new(host, port)
}

/// Sends `GET /healthz` and expects `200`.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), HealthcheckError> {
    let http = |source| HealthcheckError::Http { addr, source };
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| HealthcheckError::Io { addr, source })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(connection);
        let request = Request::get("/healthz")
            .header(header::HOST, addr.to_string())
            .body(Body::empty())
            .map_err(|e| HealthcheckError::Io {
                addr,
                source: std::io::Error::other(e),
            })?;
        let response = sender.send_request(request).await.map_err(http)?;
        Ok::<_, HealthcheckError>(response.status())
    };
    let status = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| HealthcheckError::Timeout(addr))??;
    if status == axum::http::StatusCode::OK {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy {
            addr,
            status_line: format!("HTTP {status}"),
        })
    }
}
