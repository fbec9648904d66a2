//! Building the application and running it until a shutdown signal.
//!
//! Build is split from run so tests can bind port 0, read the real address, and then serve.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Settings;
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
    state: AppState,
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
            router: router(state.clone()),
            state,
            shutdown_grace: settings.server.shutdown_grace,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state, for tests that inspect it.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish for at most
    /// the configured grace period.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown signal received, draining in-flight requests");
            let _ = signalled_tx.send(());
        };
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(signal)
            .into_future();
        let grace = self.shutdown_grace;
        tokio::select! {
            result = serve => result,
            () = async move {
                if signalled_rx.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period ran out with requests in flight");
                Ok(())
            }
        }
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
