//! The `pushd` binary: parse the command line, load and validate the config, start tracing and
//! metrics, run the daemon until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use pushd::clock::SystemClock;
use pushd::config::{Loader, Settings};

#[derive(Parser)]
#[command(name = "pushd", version, about = "Offline push notification dispatcher for IM services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Addresses {
    /// Gateway API address (overrides listen.gateway).
    #[arg(long, env = "PUSHD_GATEWAY")]
    gateway: Option<String>,
    /// Operator listener address (overrides listen.operator).
    #[arg(long, env = "PUSHD_OPERATOR")]
    operator: Option<String>,
    /// Data folder (overrides data_dir).
    #[arg(long, env = "PUSHD_DATA_DIR")]
    data_dir: Option<String>,
    /// Once listening, write {"gateway","operator","pid"} as JSON here (scripts, tests; handy
    /// with port 0).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon with a config file (layered over the embedded defaults).
    Serve {
        /// TOML config file.
        #[arg(long, env = "PUSHD_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        addresses: Addresses,
    },
    /// Run the daemon with config/demo.toml and loopback mock vendors.
    Demo {
        #[command(flatten)]
        addresses: Addresses,
        /// Mock APNs address.
        #[arg(long, env = "PUSHD_MOCK_APNS", default_value = "127.0.0.1:8443")]
        mock_apns: String,
        /// Mock FCM address.
        #[arg(long, env = "PUSHD_MOCK_FCM", default_value = "127.0.0.1:8444")]
        mock_fcm: String,
        /// Mock vendors' inspection endpoint (`GET /mock/apns/received`).
        #[arg(long, env = "PUSHD_MOCK_CONTROL", default_value = "127.0.0.1:9099")]
        mock_control: String,
    },
    /// Validate a config file and print every problem.
    CheckConfig {
        #[arg(long, env = "PUSHD_CONFIG")]
        config: PathBuf,
    },
}

fn apply(mut loader: Loader, a: &Addresses) -> Loader {
    let env: HashMap<String, String> = std::env::vars().collect();
    loader = loader.layer_env(&env);
    for (path, v) in
        [(&["listen", "gateway"][..], &a.gateway), (&["listen", "operator"], &a.operator), (&["data_dir"], &a.data_dir)]
    {
        if let Some(v) = v {
            loader = loader.set(path, toml::Value::String(v.clone()));
        }
    }
    loader
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn serve(settings: Settings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("data_dir {}", settings.data_dir.display()))?;
    let listeners = pushd::Listeners::bind(&settings).context("binding listeners")?;
    let store = pushd::store::open(&settings).context("opening the store")?;
    let running = pushd::run(settings, listeners, store, Arc::new(SystemClock)).await?;
    if let Some(path) = ready_file {
        let ready = serde_json::json!({
            "gateway": running.gateway_addr.to_string(),
            "operator": running.operator_addr.to_string(),
            "pid": std::process::id(),
        });
        // Written whole then renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("ready file {}", path.display()))?;
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let settings = Loader::new().layer_file(&config)?.settings()?;
            println!("config OK: {} credential(s)", settings.credentials.len());
            Ok(())
        }
        Command::Serve { config, addresses } => {
            let settings = apply(Loader::new().layer_file(&config)?, &addresses).settings()?;
            init_tracing(&settings.log);
            actix_rt::System::new().block_on(serve(settings, addresses.ready_file))
        }
        Command::Demo { addresses, mock_apns, mock_fcm, mock_control } => {
            let loader = apply(Loader::new().layer_str("config/demo.toml", pushd::config::DEMO_TOML)?, &addresses);
            let raw = loader.raw()?;
            init_tracing(&raw.log);
            actix_rt::System::new().block_on(async move {
                let mocks = pushd::demo::start_mocks(&raw, &mock_apns, &mock_fcm, &mock_control).await?;
                let settings = mocks.apply(loader).settings()?;
                mocks.print_banner(&settings);
                serve(settings, addresses.ready_file).await
            })
        }
    }
}
