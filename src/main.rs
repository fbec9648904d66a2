//! The `tokenmint` binary: parse the command line, load settings, init telemetry, build, run until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokenmint::config::{RunEnvironment, Settings};
use tokenmint::startup::{listen_for_hangups, reload_on_sighup, shutdown_signal, Application};
use tokenmint::{healthcheck, telemetry};

/// mimalloc: glibc malloc's arena locks showed up in profiles of the mint route under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Mints and checks Twilio-, NetEase- and MeCloud-style access tokens.
#[derive(Debug, Parser)]
#[command(name = "tokenmint", version, about)]
struct Cli {
    /// Configuration file layered over the embedded defaults (also TOKENMINT_CONFIG).
    #[arg(long, global = true, env = "TOKENMINT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Load and validate the configuration, then print it with every secret redacted.
    CheckConfig,
    /// After the Redis store came back empty (see store.redis.on_reset): accept the loss of its state and let
    /// every instance serve again.
    StoreAcknowledgeReset,
    /// Mint or verify a token with the configured credentials (prints only the token; --json for all).
    #[command(subcommand)]
    Token(tokenmint::cli::TokenCommand),
    /// Print a strong random secret (base64), e.g. for mecloud.signing_keys or a Twilio API key secret.
    GenSecret {
        /// Random bytes before encoding (at least 32).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(32..=1024))]
        bytes: u16,
    },
    /// Print the default configuration (every key, commented) to start a file from.
    PrintConfig,
    /// Print a shell completion script: `tokenmint completions bash > /etc/bash_completion.d/tokenmint`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Probe GET /healthz of a running instance; exit 0 when healthy.
    Healthcheck {
        /// Address to probe; defaults to the configured listener (a wildcard bind is probed on loopback).
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Seconds to wait for an answer.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that need no configuration run before it is loaded (a broken file must not stop them).
    match &cli.command {
        Some(Command::GenSecret { bytes }) => {
            use base64::Engine;
            let mut secret = vec![0u8; usize::from(*bytes)];
            rand::fill(secret.as_mut_slice());
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(secret)
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::PrintConfig) => {
            print!("{}", tokenmint::config::DEFAULT_TOML);
            return ExitCode::SUCCESS;
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "tokenmint",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tokenmint: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings, cli.config).await,
        Command::CheckConfig => {
            for warning in settings.warnings() {
                eprintln!("tokenmint: warning: {warning}");
            }
            println!("{}", settings.redacted_json());
            ExitCode::SUCCESS
        }
        Command::StoreAcknowledgeReset => {
            match tokenmint::store::Store::acknowledge_reset(&settings.store).await {
                Ok(()) => {
                    println!(
                        "store reset acknowledged: instances serve again at their next epoch check"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tokenmint: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(command) => match tokenmint::cli::run(command, &settings).await {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(tokenmint::cli::CliError::Invalid(report)) => {
                println!("{report}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("tokenmint: {e}");
                ExitCode::from(2)
            }
        },
        Command::GenSecret { .. } | Command::PrintConfig | Command::Completions { .. } => {
            ExitCode::SUCCESS
        }
        Command::Healthcheck { addr, timeout_secs } => {
            let addr = addr.unwrap_or_else(|| {
                healthcheck::probe_addr(settings.server.host, settings.server.port)
            });
            match healthcheck::probe(addr, Duration::from_secs(timeout_secs)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tokenmint: unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(settings: Settings, config_file: Option<PathBuf>) -> ExitCode {
    // Kept to the end of main: dropping it flushes the log queue.
    let _log_writer = telemetry::init(&settings.log);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let hangups = listen_for_hangups();
    let app = match Application::build(&settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, host = %settings.server.host, port = settings.server.port, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    banner(&settings, &app);
    tokio::spawn(reload_on_sighup(app.reloader(), config_file, hangups));
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("tokenmint stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The start-up line: what runs, where, on what, for whom; and what an operator must not miss.
fn banner(settings: &Settings, app: &Application) {
    let listener = app
        .local_addr()
        .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
    let metrics = match (settings.metrics.enabled, app.metrics_addr()) {
        (false, _) => "disabled".to_owned(),
        (true, Some(addr)) => format!("http://{addr}/metrics"),
        (true, None) => "/metrics on the main listener".to_owned(),
    };
    let tenants = settings.tenants();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = tokenmint::metrics::GIT_COMMIT,
        env = settings.env.as_str(),
        listener,
        metrics,
        store = settings.store.backend.as_str(),
        store_location = settings.store.location(),
        twilio_accounts = tenants.twilio_accounts,
        twilio_api_keys = tenants.twilio_api_keys,
        netease_apps = tenants.netease_apps,
        mecloud_channels = tenants.mecloud_channels,
        "tokenmint started"
    );
    match settings.env {
        RunEnvironment::Development => tracing::warn!(
            "development profile: the sample tenants of config/development.toml are loaded and their \
             credentials are public; set env = \"production\" (TOKENMINT_ENV=production) for real use"
        ),
        RunEnvironment::Production if tenants.total() == 0 => tracing::error!(
            "NO TENANT CONFIGURED: every token request will be refused and /readyz reports not ready until \
             a Twilio account, NetEase app or MeCloud channel is configured (edit the file, then SIGHUP)"
        ),
        RunEnvironment::Production => {}
    }
}
