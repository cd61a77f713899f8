//! pushd-load: the bounded load harness (issue 6). Starts mock vendors and pushd in-process on
//! loopback, runs the scenarios, prints progress and one summary table with pushd's throughput
//! as a ratio of a raw HTTP/2 client against the same mock APNs. Everything stops by itself:
//! every loop is bounded in count and time, and a watchdog ends the process after 20 minutes
//! (5 with `--smoke`).
//!
//! ```text
//! pushd-load all            # the whole suite, < 10 min on 2 cores (load-tests/README.md)
//! pushd-load --smoke all    # a few seconds, tiny numbers (CI: tests/load_smoke.rs)
//! pushd-load fanout|group|presence|trouble|memory|ceiling
//! pushd-load --target ready.json fanout   # a running `pushd demo --ready-file ready.json`
//! ```
//!
//! Files: `rig.rs` (mocks, daemon, population, gateway client), `measure.rs` (CPU by thread,
//! RSS, HDR latency from the mocks' records), `ceiling.rs` (raw hyper and reqwest clients),
//! `remote.rs` (target mode: a running pushd and mocks), `scenarios/` (one file per traffic
//! shape).

mod ceiling;
mod measure;
mod remote;
mod rig;
mod scenarios;

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use scenarios::{Ctx, Row, Scale, Targeted};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Ceiling,
    Fanout,
    Group,
    Presence,
    Trouble,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stores {
    Memory,
    Embedded,
    Both,
}

/// Load harness for pushd: scenarios against loopback mock vendors, with the raw HTTP/2
/// ceiling of the same machine measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "pushd-load")]
struct Cli {
    /// Which scenario(s) to run, in the suite's order.
    #[arg(value_enum, default_value = "all")]
    scenario: Vec<Scenario>,
    /// Tiny numbers, a few seconds: checks the harness works (CI).
    #[arg(long)]
    smoke: bool,
    /// Store variants for the message scenarios.
    #[arg(long, value_enum, default_value = "both")]
    store: Stores,
    /// Users registered for the message scenarios.
    #[arg(long)]
    users: Option<usize>,
    /// Seconds of each timed phase.
    #[arg(long)]
    seconds: Option<f64>,
    /// Devices registered by the memory scenario (e.g. 1000000 for the 1 M figure).
    #[arg(long)]
    memory_devices: Option<usize>,
    /// Streams in flight to the mock APNs (pushd's max_in_flight and the raw clients').
    #[arg(long)]
    concurrency: Option<usize>,
    /// Drive a running pushd instead of starting one: the ready file it wrote
    /// (`pushd demo|serve --ready-file FILE`: gateway, operator, pid, and for the demo the mocks'
    /// control endpoint). Its own config applies; the memory scenario needs pushd in-process.
    #[arg(long, value_name = "FILE")]
    target: Option<std::path::PathBuf>,
    /// With --target: the mocks' control endpoint (`pushd mocks` prints it; default: the
    /// ready file's `mock_control`).
    #[arg(long, value_name = "ADDR")]
    mock_control: Option<String>,
    /// With --target: the gateway API key.
    #[arg(long, default_value = "demo-key")]
    api_key: String,
    /// With --target: credentials are named this plus apns, fcm and huawei.
    #[arg(long, default_value = "demo-")]
    credential_prefix: String,
    /// With --target: allow targets that are not on loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Append every measured push to FILE: scenario, store, sent (µs since the Unix epoch) and
    /// latency (µs), tab-separated. Shows when the tail happens (a stall lasts a few windows).
    #[arg(long, value_name = "FILE")]
    latency_log: Option<std::path::PathBuf>,
}

/// The running pushd and mocks of `--target`, connected.
async fn targeted(cli: &Cli, load: &tokio::runtime::Handle) -> anyhow::Result<(rig::Mocks, Targeted)> {
    let Some(path) = &cli.target else { anyhow::bail!("no --target") };
    let ready = remote::ReadyFile::read(path)?;
    let need = |what: &str, v: &Option<String>| {
        v.clone().ok_or_else(|| anyhow::anyhow!("ready file {}: no {what}", path.display()))
    };
    let gateway = remote::address("gateway", &need("gateway", &ready.gateway)?, cli.allow_remote)?;
    let operator = remote::address("operator", &need("operator", &ready.operator)?, cli.allow_remote)?;
    let control = match &cli.mock_control {
        Some(c) => c.clone(),
        None => ready.mock_control.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "ready file {}: no mock_control; pass --mock-control (pushd mocks prints it)",
                path.display()
            )
        })?,
    };
    let mock_control = remote::address("--mock-control", &control, cli.allow_remote)?;
    let mocks = remote::RemoteMocks::connect(mock_control, cli.allow_remote).await?;
    let one_process = matches!((mocks.process().await, ready.pid), (Some(p), Some(pid)) if p.pid == pid);
    let probe = remote::Probe::start(load, operator).await?;
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let target =
        remote::Target { gateway, api_key: cli.api_key.clone(), credential_prefix: cli.credential_prefix.clone() };
    let run = format!("L{millis:x}-");
    println!(
        "target: pushd at {gateway} (operator {operator}), mocks at {mock_control}{}; ids of this run start with {run}",
        if one_process { ", one process" } else { "" }
    );
    let attached = Default::default();
    Ok((rig::Mocks::Remote(mocks), Targeted { target, probe, run, attached, one_process }))
}

/// The whole run may not take longer than this, whatever happens.
const WATCHDOG: Duration = Duration::from_secs(20 * 60);
/// The same for `--smoke`.
const SMOKE_WATCHDOG: Duration = Duration::from_secs(5 * 60);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut scale = if cli.smoke { Scale::smoke() } else { Scale::full() };
    if let Some(u) = cli.users {
        scale.users = u.max(10);
    }
    if let Some(s) = cli.seconds {
        scale.phase = Duration::from_secs_f64(s.max(0.1));
    }
    if let Some(d) = cli.memory_devices {
        scale.memory_devices = d.max(10);
    }
    if let Some(c) = cli.concurrency {
        scale.concurrency = c.max(1);
    }
    let watchdog = if cli.smoke { SMOKE_WATCHDOG } else { WATCHDOG };
    std::thread::Builder::new().name("load-watchdog".into()).spawn(move || {
        std::thread::sleep(watchdog);
        eprintln!("pushd-load: watchdog: still running after {watchdog:?}, exiting");
        std::process::exit(2);
    })?;
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into())).init();

    // Threads are named by part, so CPU can be split: `load-*` (the harness) and `mock-*`.
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-worker")
        .enable_all()
        .build()?;
    let mock = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mock-worker")
        .enable_all()
        .build()?;
    let work = std::env::temp_dir().join(format!("pushd-load-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let latency_log = match &cli.latency_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("--latency-log {}: {e}", path.display()))?;
            Some(std::sync::Mutex::new(std::io::BufWriter::new(file)))
        }
        None => None,
    };

    let started = Instant::now();
    let result = actix_rt::System::new().block_on(async {
        let (mocks, target) = if cli.target.is_some() {
            let (mocks, t) = targeted(&cli, load.handle()).await?;
            (mocks, Some(t))
        } else {
            (rig::Mocks::Local(rig::LocalMocks::start(mock.handle(), scale.concurrency.max(100) as u32).await?), None)
        };
        let ctx = Ctx {
            load: load.handle().clone(),
            mocks,
            scale,
            work: work.clone(),
            ceiling: Default::default(),
            target,
            latency_log,
        };
        let mut rows = Vec::new();
        let r = run(&ctx, &cli, &mut rows).await;
        ctx.mocks.shutdown();
        if let Some(t) = &ctx.target {
            t.probe.stop();
        }
        r.map(|()| (rows, ctx.ceiling(), ctx.target.as_ref().is_some_and(|t| t.one_process)))
    });
    let _ = std::fs::remove_dir_all(&work);
    let (rows, ceiling, one_process) = result?;
    print_table(&rows, ceiling, started.elapsed(), &cli, one_process);
    load.shutdown_timeout(Duration::from_secs(1));
    mock.shutdown_timeout(Duration::from_secs(1));
    if rows.iter().any(|r| r.note.contains("NOT DRAINED")) {
        anyhow::bail!("some scenario did not drain within its bound");
    }
    if cli.smoke && rows.iter().any(|r| r.per_sec.is_finite() && r.per_sec <= 0.0) {
        anyhow::bail!("smoke: a scenario moved nothing");
    }
    Ok(())
}

async fn run(ctx: &Ctx, cli: &Cli, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stores: &[&'static str] = match (cli.target.is_some(), cli.store) {
        // A target runs the store its config says; its rows are labelled `target`.
        (true, _) => &["target"],
        (false, Stores::Memory) => &["memory"],
        (false, Stores::Embedded) => &["embedded"],
        (false, Stores::Both) => &["memory", "embedded"],
    };
    let want = |s: Scenario| cli.scenario.iter().any(|c| *c == Scenario::All || *c == s);
    if want(Scenario::Memory) && ctx.target.is_some() {
        if cli.scenario.contains(&Scenario::Memory) {
            anyhow::bail!("the memory scenario measures pushd's heap in-process; it does not run with --target");
        }
        println!("== memory: skipped (it measures pushd's heap in-process, not with --target)");
    } else if want(Scenario::Memory) {
        // First, on a fresh heap: RSS growth is only meaningful before other scenarios leave
        // freed memory the allocator would hand out again. Operators run the embedded store;
        // the in-memory one is for comparison.
        for store in ["embedded", "memory"] {
            if cli.store == Stores::Both || stores.contains(&store) {
                println!("== memory ({store} store)");
                scenarios::memory::run(ctx, rows, store).await?;
            }
        }
    }
    if want(Scenario::Ceiling) || want(Scenario::Fanout) {
        println!("== ceiling (before)");
        scenarios::fanout::ceiling(ctx, rows, "before").await?;
    }
    if want(Scenario::Fanout) {
        for store in stores {
            println!("== offline fan-out ({store} store)");
            scenarios::fanout::run(ctx, rows, store, "commit").await?;
        }
        if stores.contains(&"embedded") && ctx.target.is_none() {
            // The operator's knob for latency: acknowledge once the OS has the write.
            println!("== offline fan-out (embedded store, sync = interval)");
            scenarios::fanout::run(ctx, rows, "embedded", "interval").await?;
        }
        println!("== offline fan-out, three vendors");
        scenarios::fanout::mixed(ctx, rows, if ctx.target.is_some() { "target" } else { "memory" }).await?;
        println!("== ceiling (after)");
        scenarios::fanout::ceiling(ctx, rows, "after").await?;
    }
    if want(Scenario::Group) {
        for store in stores {
            println!("== group fan-out ({store} store)");
            scenarios::group::run(ctx, rows, store).await?;
        }
    }
    if want(Scenario::Presence) {
        for store in stores {
            println!("== presence ({store} store)");
            scenarios::presence::run(ctx, rows, store).await?;
        }
    }
    if want(Scenario::Trouble) {
        println!("== vendor trouble");
        scenarios::trouble::run(ctx, rows, if ctx.target.is_some() { "target" } else { "memory" }).await?;
    }
    Ok(())
}

fn fmt_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

fn print_table(rows: &[Row], ceiling: Option<f64>, took: Duration, cli: &Cli, one_process: bool) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "pushd-load {}{} — {} cores, {:.0} s{}",
        cli.scenario.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>().join(" "),
        if cli.smoke { " --smoke" } else { "" },
        cores,
        took.as_secs_f64(),
        if cli.smoke { " (smoke: numbers mean nothing)" } else { "" }
    );
    if let Some(t) = &cli.target {
        println!(
            "target: the pushd of {} (store `target`: whatever its config says); CPU from its /metrics{}",
            t.display(),
            if one_process { "; pushd and the mocks are one process, so pushd's CPU includes the mocks'" } else { "" }
        );
    }
    println!();
    println!("| scenario | store | pushes | per s | p50 ms | p99 ms | p99.9 ms | CPU pushd / mock / load (cores) | peak RSS MiB | notes |");
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {:.0} | {} |",
            r.scenario,
            r.store,
            r.pushes,
            r.per_sec,
            fmt_ms(r.p50),
            fmt_ms(r.p99),
            fmt_ms(r.p999),
            r.cpu.pushd,
            r.cpu.mock,
            r.cpu.load,
            r.peak_rss as f64 / (1024.0 * 1024.0),
            r.note
        );
    }
    println!();
    if let Some(c) = ceiling {
        let best = rows
            .iter()
            .filter(|r| r.scenario == "offline fan-out, max rate (APNs)")
            .map(|r| (r.store, r.per_sec))
            .collect::<Vec<_>>();
        for (store, v) in best {
            println!(
                "RATIO ({store} store): pushd offline fan-out {v:.0} pushes/s / raw hyper h2 {c:.0} requests/s = {:.2}",
                v / c
            );
        }
    }
}
