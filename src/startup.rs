//! Building the application and running it until a shutdown signal.
//!
//! Build is split from run so tests can bind port 0, read the real address, and then serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::{Settings, MAX_HEADERS};
use crate::http::{router, AppState};
use crate::ttl::{SharedClock, SystemClock};

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listener could not be bound.
    #[error("cannot bind the listener: {0}")]
    Bind(#[source] std::io::Error),
    /// The token store could not be opened.
    #[error("cannot open the token store: {0}")]
    Store(#[source] crate::store::StoreError),
}

/// A bound, not yet serving, application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    shutdown_grace: Duration,
}

impl Application {
    /// Binds the listener, opens the store and builds the router on the system clock.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Binds the listener and builds the router on the given clock (tests pass a manual one).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let listener = TcpListener::bind((settings.server.host, settings.server.port))
            .await
            .map_err(StartupError::Bind)?;
        let state = AppState::new(settings, clock)
            .await
            .map_err(StartupError::Store)?;
        Ok(Self {
            listener,
            router: router(state),
            shutdown_grace: settings.server.shutdown_grace,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish for at most
    /// the configured grace period.
    ///
    /// hyper's HTTP/1 connections are served here rather than through `axum::serve` for one setting it does
    /// not expose: hyper answers a request with more headers than its parser takes with a bare 431 of its own,
    /// before any route sees it. The parser takes [`MAX_HEADERS`]; the router then applies the configured
    /// `server.max_headers` in each route's own error shape (NetEase's envelope on `/nimserver`).
    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut http = hyper::server::conn::http1::Builder::new();
        // No header read timeout: hyper arms a timer per request for it, which measured about 10 % of the
        // throughput of GET /healthz; `axum::serve` had none either.
        http.max_headers(MAX_HEADERS);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors and the like: wait a moment rather than spin.
                            tracing::warn!(error = %e, "cannot accept a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let service = TowerToHyperService::new(self.router.clone());
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutdown signal received, draining in-flight requests");
        drop(self.listener);
        let grace = self.shutdown_grace;
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period ran out with requests in flight");
            }
        }
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
