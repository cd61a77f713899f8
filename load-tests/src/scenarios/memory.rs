//! Memory: bytes per registered idle device, bytes per active session.
//!
//! Idle devices: pushd with a 1 s passivation registers devices through the API (users with an
//! iPhone and an Android phone) in three steps (25 %, 50 %, all); after each step it waits until
//! every session has passivated, returns freed heap to the OS (`mi_collect`) and reads RSS.
//! Bytes per device = RSS growth / devices; the growth between the steps gives the marginal
//! cost, from which the figure at 1 M devices is extrapolated (printed as such).
//!
//! Active sessions: pushd restarted on the same data with passivation off; `ListDevices` (a
//! read, no writes) wakes one session per user in-process; RSS growth / sessions.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use pushd::model::UserId;
use pushd::session::messages::ListDevices;

use super::{Ctx, Row};
use crate::measure::{self, Cpu};
use crate::rig::{on, register, user_id, Daemon, DaemonOptions, Gateway, Population};

async fn settled_rss() -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    measure::trim_heap();
    measure::rss()
}

async fn all_passivated(d: &Daemon, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let Ok(running) = d.running() else { return false };
    while running.registry.active() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let per_user = Population::Mixed.per_user();
    // The in-memory store is a comparison only: at most 250k devices of it.
    let devices = if store == "memory" { s.memory_devices.min(250_000) } else { s.memory_devices };
    let users_total = devices / per_user;
    let dir = ctx.data_dir(&format!("memory-{store}"))?;
    let idle = DaemonOptions { store, idle_passivate_ms: 1000, ..DaemonOptions::default() };
    ctx.mocks.reset().await?;
    measure::reset_peak_rss();
    let (cpu0, t0) = (Cpu::now(), Instant::now());
    let daemon = Daemon::start(ctx.mocks.local()?, &dir, &idle).await?;
    let gw = Gateway::of(&daemon);
    let r0 = settled_rss().await;
    let mut steps = Vec::new();
    let mut registered_for = Duration::ZERO;
    let steps_at = [users_total / 4, users_total / 2, users_total];
    let mut from = 0;
    for to in steps_at {
        let t = Instant::now();
        let g = gw.clone();
        on(&ctx.load, async move { register(&g, Population::Mixed, from, to, 128).await }).await?;
        registered_for += t.elapsed();
        let passivated = all_passivated(&daemon, Duration::from_secs(120)).await;
        let r = settled_rss().await;
        println!(
            "  {} devices: RSS {:.1} MiB (+{:.1} MiB), registered at {:.0}/s{}",
            to * per_user,
            r as f64 / MIB,
            (r.saturating_sub(r0)) as f64 / MIB,
            ((to - from) * per_user) as f64 / t.elapsed().as_secs_f64(),
            if passivated { "" } else { " (sessions still active!)" }
        );
        steps.push((to * per_user, r));
        from = to;
    }
    // CPU before the stop: the daemon's threads take their counters with them.
    let cpu = Cpu::now().cores_since(cpu0, t0.elapsed());
    daemon.stop().await;
    let (d1, r1) = steps[1];
    let (d2, r2) = steps[2];
    let per_device = r2.saturating_sub(r0) as f64 / d2 as f64;
    let marginal = r2.saturating_sub(r1) as f64 / (d2 - d1).max(1) as f64;
    let at_1m = (r2.saturating_sub(r0) as f64 + marginal * (1_000_000f64 - d2 as f64).max(0.0)) / 1_000_000.0;
    let trail: Vec<String> =
        steps.iter().map(|(d, r)| format!("{:.0} B at {d}", r.saturating_sub(r0) as f64 / *d as f64)).collect();
    rows.push(Row {
        scenario: format!("memory: {d2} idle devices"),
        store,
        pushes: 0,
        per_sec: d2 as f64 / registered_for.as_secs_f64().max(1e-9),
        p50: f64::NAN,
        p99: f64::NAN,
        p999: f64::NAN,
        cpu,
        peak_rss: measure::peak_rss(),
        note: format!(
            "registrations/s; {per_device:.0} B/device at {d2} ({}), marginal {marginal:.0} B/device from {d1}, \
             {} {at_1m:.0} B/device at 1 M; target <= 300",
            trail.join(", "),
            if d2 >= 1_000_000 { "measured" } else { "extrapolated" },
        ),
    });

    // Active sessions: the same data, passivation off.
    let active = DaemonOptions { store, idle_passivate_ms: 3_600_000, ..DaemonOptions::default() };
    let daemon = Daemon::start(ctx.mocks.local()?, &dir, &active).await?;
    let s0 = settled_rss().await;
    let sessions = s.memory_sessions.min(users_total);
    let half = sessions / 2;
    let t = Instant::now();
    wake(ctx, &daemon, 0..half).await?;
    let mut woke = t.elapsed();
    let s_half = settled_rss().await;
    let t = Instant::now();
    wake(ctx, &daemon, half..sessions).await?;
    woke += t.elapsed();
    let s1 = settled_rss().await;
    let per_session = s1.saturating_sub(s0) as f64 / sessions.max(1) as f64;
    // The memory store starts empty: its sessions wake with nothing to load.
    let loaded = if store == "memory" {
        "no devices (the memory store starts empty)".to_owned()
    } else {
        format!("{per_user} devices each, loaded")
    };
    let marginal = s1.saturating_sub(s_half) as f64 / (sessions - half).max(1) as f64;
    println!(
        "  {sessions} active sessions: +{:.1} MiB, {per_session:.0} B/session, {marginal:.0} B/session for the second half",
        s1.saturating_sub(s0) as f64 / MIB
    );
    rows.push(Row {
        scenario: format!("memory: {sessions} active sessions"),
        store,
        pushes: 0,
        per_sec: sessions as f64 / woke.as_secs_f64().max(1e-9),
        p50: f64::NAN,
        p99: f64::NAN,
        p999: f64::NAN,
        cpu: Cpu::default(),
        peak_rss: measure::peak_rss(),
        note: format!(
            "sessions woken/s; {per_session:.0} B/session overall, {marginal:.0} B/session for the second half \
             (store caches warm); {loaded}; target <= 2048"
        ),
    });
    daemon.stop().await;
    Ok(())
}

/// Wakes the sessions of users `range` in-process (`ListDevices`: a read, no writes).
async fn wake(ctx: &Ctx, daemon: &Daemon, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    let (registry, ns) = (daemon.running()?.registry.clone(), daemon.ns.clone());
    on(&ctx.load, async move {
        stream::iter(range)
            .map(|u| {
                let (registry, ns) = (registry.clone(), ns.clone());
                async move {
                    let user = UserId::parse(&user_id(&ns, u))?;
                    registry.call(&user, ListDevices).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(256)
            .for_each(|r| {
                if let Err(e) = r {
                    eprintln!("  session wake failed: {e}");
                }
                std::future::ready(())
            })
            .await;
        anyhow::Ok(())
    })
    .await
}
