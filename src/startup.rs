//! Building the application, serving it until a shutdown signal, and reloading its configuration live.
//!
//! Build is split from run so tests can bind port 0, read the real address, and then serve. The router is held
//! in an [`ArcSwap`]: every request takes the router current when it arrives, so a reload ([`Reloader`]) swaps
//! in new providers atomically while requests already running finish on the old ones.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::{Settings, MAX_HEADERS};
use crate::connection::{serve_connection, ConnectionLimits};
use crate::http::{metrics_router, router, AppState};
use crate::metrics::Metrics;
use crate::ttl::{SharedClock, SystemClock};

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listener could not be bound.
    #[error("cannot bind the listener: {0}")]
    Bind(#[source] std::io::Error),
    /// The metrics listener could not be bound.
    #[error("cannot bind the metrics listener: {0}")]
    BindMetrics(#[source] std::io::Error),
    /// The token store could not be opened.
    #[error("cannot open the token store: {0}")]
    Store(#[source] crate::store::StoreError),
}

/// A bound, not yet serving, application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    reloader: Arc<Reloader>,
    limits: ConnectionLimits,
    shutdown_grace: Duration,
}

impl Application {
    /// Binds the listener(s), opens the store and builds the router on the system clock.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Binds the listener(s) and builds the router on the given clock (tests pass a manual one).
    pub async fn build_with_clock(
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let listener = TcpListener::bind((settings.server.host, settings.server.port))
            .await
            .map_err(StartupError::Bind)?;
        let metrics_listener = match settings.metrics.port {
            Some(port) if settings.metrics.enabled => Some(
                TcpListener::bind((settings.metrics.host, port))
                    .await
                    .map_err(StartupError::BindMetrics)?,
            ),
            _ => None,
        };
        let state = AppState::new(settings, clock)
            .await
            .map_err(StartupError::Store)?;
        let live = Arc::new(ArcSwap::from_pointee(router(state.clone())));
        Ok(Self {
            listener,
            metrics_listener,
            reloader: Arc::new(Reloader {
                current: std::sync::Mutex::new((settings.clone(), state)),
                live,
            }),
            limits: ConnectionLimits::from(&settings.server),
            shutdown_grace: settings.server.shutdown_grace,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the metrics listener, when `metrics.port` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// What applies reloaded configuration to this application.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish for at most
    /// the configured grace period.
    ///
    /// hyper's HTTP/1 connections are served here rather than through `axum::serve` for what it does not
    /// expose: the parser's header count ([`MAX_HEADERS`]; past the configured `server.max_headers` the router
    /// answers in the route's own error shape), the connection cap, and the header-read and idle timeouts
    /// ([`crate::connection`]).
    pub async fn run_until_stopped<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_headers(MAX_HEADERS);
        let metrics = self.reloader.metrics();
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some(listener) = self.metrics_listener {
            let mut stop = stop_rx.clone();
            let app = metrics_router(metrics.clone());
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let max = self.limits.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let live = self.reloader.live.clone();
        let service = hyper::service::service_fn(move |request| {
            // The router current when the request arrives: a reload never changes a request midway.
            TowerToHyperService::new(Router::clone(&live.load())).call(request)
        });
        let mut refusals = crate::connection::Refusals::default();
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
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        metrics.connections_refused.inc();
                        refusals.note(max);
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = serve_connection(
                        http.clone(),
                        stream,
                        service.clone(),
                        self.limits,
                        stop_rx.clone(),
                    );
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        metrics.connections.inc();
                        connection.await;
                        metrics.connections.dec();
                        drop(slot);
                    });
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutdown signal received, draining in-flight requests");
        drop(self.listener);
        let _ = stop_tx.send(true);
        let grace = self.shutdown_grace;
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        tokio::select! {
            _ = slots.acquire_many(all) => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period ran out with requests in flight");
            }
        }
        Ok(())
    }
}

/// Applies reloaded configuration: new providers built from the new settings and swapped in atomically; the
/// store, the metrics, the listeners and the connection limits stay (changes to those are reported as needing a
/// restart).
pub struct Reloader {
    current: std::sync::Mutex<(Settings, AppState)>,
    live: Arc<ArcSwap<Router>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration does not load or breaks a rule.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The profile cannot change under a running process.
    #[error("configuration: env: cannot change from {from} to {to} without a restart")]
    Profile {
        /// The running profile.
        from: &'static str,
        /// The requested one.
        to: &'static str,
    },
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Tenants now served.
    pub tenants: crate::config::Tenants,
    /// Changed settings that were not applied: they take effect at the next restart.
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    fn metrics(&self) -> Arc<Metrics> {
        self.lock().1.metrics.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Settings, AppState)> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `loaded` (already validated by loading), or refuses it and keeps serving the current one.
    pub fn apply(
        &self,
        loaded: Result<Settings, crate::config::ConfigError>,
    ) -> Result<Reloaded, ReloadError> {
        let mut current = self.lock();
        let outcome = loaded.map_err(ReloadError::from).and_then(|next| {
            if next.env != current.0.env {
                return Err(ReloadError::Profile {
                    from: current.0.env.as_str(),
                    to: next.env.as_str(),
                });
            }
            Ok(next)
        });
        let mut next = match outcome {
            Ok(next) => next,
            Err(e) => {
                current.1.metrics.record_reload(false);
                return Err(e);
            }
        };
        let needs_restart = current.0.restart_only_changes(&next);
        // What needs a restart keeps its running value, so the settings kept describe what is served.
        next.server.host = current.0.server.host;
        next.server.port = current.0.server.port;
        next.server.shutdown_grace = current.0.server.shutdown_grace;
        next.server.header_read_timeout = current.0.server.header_read_timeout;
        next.server.idle_timeout = current.0.server.idle_timeout;
        next.server.max_connections = current.0.server.max_connections;
        next.log = current.0.log.clone();
        next.metrics = current.0.metrics.clone();
        next.store = current.0.store.clone();
        let state = current.1.reloaded(&next);
        self.live.store(Arc::new(router(state.clone())));
        state.metrics.record_reload(true);
        let tenants = next.tenants();
        *current = (next, state);
        Ok(Reloaded {
            tenants,
            needs_restart,
        })
    }
}

/// SIGHUPs, listened for from now on. Call it before the listener is bound: once anyone can see the service
/// up, a SIGHUP must reload it, never terminate it (the default action).
#[cfg(unix)]
pub fn listen_for_hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: configuration reload is unavailable");
            None
        }
    }
}

/// Reloads the configuration (`file` plus the process environment, as at start-up) on every SIGHUP, logging
/// what was applied, what needs a restart, or why the new configuration was refused.
#[cfg(unix)]
pub async fn reload_on_sighup(
    reloader: Arc<Reloader>,
    file: Option<PathBuf>,
    hangups: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received, reloading the configuration");
        match reloader.apply(Settings::load(file.as_deref())) {
            Ok(reloaded) => {
                let t = reloaded.tenants;
                tracing::info!(
                    twilio_accounts = t.twilio_accounts,
                    twilio_api_keys = t.twilio_api_keys,
                    netease_apps = t.netease_apps,
                    mecloud_channels = t.mecloud_channels,
                    "configuration reloaded"
                );
                for key in reloaded.needs_restart {
                    tracing::warn!(key, "setting changed but needs a restart to take effect; the running value stays");
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "configuration reload refused; the previous configuration keeps serving"
            ),
        }
    }
}

/// Nothing to listen for where there is no SIGHUP.
#[cfg(not(unix))]
pub fn listen_for_hangups() -> Option<()> {
    None
}

/// Does nothing where there is no SIGHUP.
#[cfg(not(unix))]
pub async fn reload_on_sighup(
    _reloader: Arc<Reloader>,
    _file: Option<PathBuf>,
    _hangups: Option<()>,
) {
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
