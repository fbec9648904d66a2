//! One HTTP/1 connection: served by hyper, closed when it breaks the connection limits.
//!
//! Two timeouts, as Go's `ReadHeaderTimeout` and `IdleTimeout` (and Envoy's) keep them apart:
//! - header read: a new connection must complete its first request head within `server.header_read_timeout_secs`,
//!   and a later request's head must be complete that long after its first byte arrived;
//! - idle: a keep-alive connection with no request for `server.idle_timeout_secs` is closed.
//!
//! hyper has one `header_read_timeout`, which on keep-alive connections is also the idle timeout, and it arms a
//! timer per request, which measured about 10 % of `GET /healthz` throughput. Here one timer per connection is
//! re-armed only when it fires: reads stamp the time of the first byte of a request head, the service stamps
//! when a request starts and when its answer is ready, and the timer compares. A connection is only ever
//! dropped here between requests; a request being served is bounded by `server.request_timeout_secs`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::ServerSettings;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Longest wait for a new request on a keep-alive connection.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(server: &ServerSettings) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

/// Milliseconds since the first call, a cheap shared timeline for the stamps below (0 means "none").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What the connection is doing, stamped by its reads and its service.
#[derive(Debug)]
struct Activity {
    accepted_ms: u64,
    /// Requests being served.
    busy: AtomicU32,
    /// Whether any request has started.
    served: AtomicBool,
    /// When the last answer was ready (or the connection opened).
    idle_since_ms: AtomicU64,
    /// First byte read since then; 0 when none.
    first_byte_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        let now = now_ms();
        Self {
            accepted_ms: now,
            busy: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(now),
            first_byte_ms: AtomicU64::new(0),
        }
    }

    fn read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.first_byte_ms.load(Ordering::Relaxed) == 0
        {
            self.first_byte_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn begin(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        if self.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.first_byte_ms.store(0, Ordering::Relaxed);
            self.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// When the connection must be closed if nothing changes, in [`now_ms`] time; `None` while serving.
    fn deadline_ms(&self, limits: &ConnectionLimits) -> Option<u64> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let header = ms(limits.header_read_timeout);
        if !self.served.load(Ordering::Relaxed) {
            return Some(self.accepted_ms.saturating_add(header));
        }
        match self.first_byte_ms.load(Ordering::Relaxed) {
            0 => Some(
                self.idle_since_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(ms(limits.idle_timeout)),
            ),
            first => Some(first.saturating_add(header)),
        }
    }
}

/// The socket, stamping [`Activity`] on every read that brings bytes.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The application's service, stamping [`Activity`] when a request starts and when its answer is ready.
#[derive(Clone)]
struct Stamped<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Service<hyper::Request<Incoming>> for Stamped<S>
where
    S: Service<hyper::Request<Incoming>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.begin();
        let activity = self.activity.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered = answer.await;
            activity.end();
            answered
        })
    }
}

/// Serves `stream` until the client closes it, it breaks a timeout, or `stop` turns true (then the request
/// in progress finishes and the connection closes).
pub async fn serve_connection<S, B>(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Stamped {
        inner: service,
        activity: activity.clone(),
    };
    let connection = http.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    let epoch = Instant::now() - Duration::from_millis(now_ms());
    loop {
        // While a request is served, look again after the header timeout (the shorter one).
        let wake_ms = activity.deadline_ms(&limits).unwrap_or_else(|| {
            now_ms().saturating_add(limits.header_read_timeout.as_millis() as u64)
        });
        let wake = epoch + Duration::from_millis(wake_ms);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if activity.deadline_ms(&limits).is_some_and(|deadline| now_ms() >= deadline) {
                    // Between requests by construction (a deadline exists only then): dropping closes it.
                    tracing::debug!("closing a connection: no complete request in time");
                    return;
                }
            }
            _ = stop.wait_for(|stopped| *stopped), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// Throttles the warning about refused connections to one per 10 seconds (the metric counts each).
#[derive(Debug, Default)]
pub struct Refusals {
    last_warning: Option<Instant>,
}

impl Refusals {
    /// Notes one refused connection.
    pub fn note(&mut self, max_connections: usize) {
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                max_connections,
                "refusing connections: server.max_connections connections are open"
            );
        }
    }
}
