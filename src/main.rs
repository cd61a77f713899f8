//! The `pushd` binary: parse the command line, load and validate the config, start tracing and
//! metrics, run the daemon (or, for `pushd mocks`, only the mock vendors) until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// with port 0); `pushd demo` adds "mock_control".
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// Where the demo mock vendors listen (`pushd demo`, `pushd mocks`).
#[derive(clap::Args, Clone)]
struct MockAddresses {
    /// Mock APNs address.
    #[arg(long, env = "PUSHD_MOCK_APNS", default_value = "127.0.0.1:8443")]
    mock_apns: String,
    /// Mock FCM address.
    #[arg(long, env = "PUSHD_MOCK_FCM", default_value = "127.0.0.1:8444")]
    mock_fcm: String,
    /// Mock vendors' inspection endpoint (`GET /mock/apns/received`).
    #[arg(long, env = "PUSHD_MOCK_CONTROL", default_value = "127.0.0.1:9099")]
    mock_control: String,
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
        #[command(flatten)]
        mocks: MockAddresses,
    },
    /// Run only the demo's mock vendors and their control endpoint, and write the config with
    /// which `pushd serve --config FILE` in another process uses them.
    Mocks {
        #[command(flatten)]
        mocks: MockAddresses,
        /// Data folder for the mocks' CA and the demo keys (overrides data_dir; default as for
        /// `pushd demo`). The written config keeps pushd's store here too, in `store/`.
        #[arg(long, env = "PUSHD_DATA_DIR")]
        data_dir: Option<String>,
        /// Where to write the config for `pushd serve --config FILE`.
        #[arg(long)]
        config_out: PathBuf,
        /// Once listening, write {"mock_control","config","pid"} as JSON here.
        #[arg(long)]
        ready_file: Option<PathBuf>,
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

/// Writes `text` to `path` whole, then renames it into place, so a reader polling for the file
/// never sees half of it.
fn write_whole(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).with_context(|| format!("{}", path.display()))
}

/// Runs the daemon until SIGINT/SIGTERM. The ready file gets `extra` fields besides
/// gateway, operator and pid.
async fn serve(settings: Settings, ready_file: Option<PathBuf>, extra: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| format!("data_dir {}", settings.data_dir.display()))?;
    let listeners = pushd::Listeners::bind(&settings).context("binding listeners")?;
    let store = pushd::store::open(&settings).context("opening the store")?;
    let running = pushd::run(settings, listeners, store, Arc::new(SystemClock)).await?;
    if let Some(path) = ready_file {
        let mut ready = serde_json::json!({
            "gateway": running.gateway_addr.to_string(),
            "operator": running.operator_addr.to_string(),
            "pid": std::process::id(),
        });
        for (key, value) in extra {
            ready[*key] = serde_json::Value::String(value.clone());
        }
        write_whole(&path, &ready.to_string()).context("ready file")?;
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

/// `pushd mocks`: the demo's mock vendors and their control endpoint until SIGINT/SIGTERM, and
/// the config for a `pushd serve` in another process written to `config_out`.
fn mocks(
    at: &MockAddresses,
    data_dir: Option<String>,
    config_out: &Path,
    ready_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let demo = Loader::new().layer_str("config/demo.toml", pushd::config::DEMO_TOML)?;
    // data_dir as `pushd demo` resolves it (flag, then environment, then demo.toml), made
    // absolute so the written config works from any folder. Nothing else of the environment
    // goes into the file: `pushd serve` applies its own.
    let env: HashMap<String, String> = std::env::vars().collect();
    let dir = match data_dir {
        Some(dir) => dir,
        None => demo.clone().layer_env(&env).raw()?.data_dir,
    };
    let dir = std::path::absolute(&dir).with_context(|| format!("data_dir {dir}"))?;
    let dir = dir.to_str().with_context(|| format!("data_dir {}: not UTF-8", dir.display()))?.to_owned();
    let loader = demo.set(&["data_dir"], toml::Value::String(dir));
    let raw = loader.raw()?;
    init_tracing(&raw.log);
    // A multi-threaded runtime of its own, its threads named like the load harness's
    // in-process mocks, so a profile splits CPU by thread name the same way.
    let runtime = tokio::runtime::Builder::new_multi_thread().thread_name("mock-worker").enable_all().build()?;
    runtime.block_on(async move {
        let mocks = pushd::demo::start_mocks(&raw, &at.mock_apns, &at.mock_fcm, &at.mock_control).await?;
        write_whole(config_out, &mocks.serve_config(loader)?).context("config file")?;
        let config = std::path::absolute(config_out)?;
        mocks.print_mocks_banner(&config);
        if let Some(path) = ready_file {
            let ready = serde_json::json!({
                "mock_control": mocks.control.to_string(),
                "config": config.display().to_string(),
                "pid": std::process::id(),
            });
            write_whole(&path, &ready.to_string()).context("ready file")?;
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        drop(mocks);
        Ok(())
    })
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
            actix_rt::System::new().block_on(serve(settings, addresses.ready_file, &[]))
        }
        Command::Demo { addresses, mocks: at } => {
            let loader = apply(Loader::new().layer_str("config/demo.toml", pushd::config::DEMO_TOML)?, &addresses);
            let raw = loader.raw()?;
            init_tracing(&raw.log);
            actix_rt::System::new().block_on(async move {
                let mocks = pushd::demo::start_mocks(&raw, &at.mock_apns, &at.mock_fcm, &at.mock_control).await?;
                let settings = mocks.apply(loader).settings()?;
                mocks.print_banner(&settings);
                serve(settings, addresses.ready_file, &[("mock_control", mocks.control.to_string())]).await
            })
        }
        Command::Mocks { mocks: at, data_dir, config_out, ready_file } => mocks(&at, data_dir, &config_out, ready_file),
    }
}
