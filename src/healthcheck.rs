//! `tokenmint healthcheck`: probes `GET /healthz` of a running instance over plain HTTP/1.1, so a slim container
//! image needs no curl for its HEALTHCHECK.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(512);
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let response = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| HealthcheckError::Timeout(addr))?
        .map_err(|source| HealthcheckError::Io { addr, source })?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy { addr, status_line })
    }
}
