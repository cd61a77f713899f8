//! Presence: ingest at the maximum rate, then a storm of online/offline/kicked churn while
//! messages flow.
//!
//! 1. Ingest: 4 posters send `POST /v1/presence` batches of 5000 events (distinct users in a
//!    batch, states cycling online → offline → kicked) until `presence_events` are sent.
//! 2. Storm: 2 posters keep the churn going for one phase while 1:1 messages arrive at a fixed
//!    rate; pushes go out for whoever is offline at that moment (kicked devices get none).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{post_rate, Ctx, MakeMessage, Measured, Row};
use crate::measure;
use crate::rig::{on, register, DaemonOptions, Gateway, Population};

const BATCH: usize = 5000;

/// Batch `k` of the churn: users `k*BATCH..` (wrapping), state by round.
fn presence_batch(k: usize, users: usize, ns: &str) -> Vec<u8> {
    const STATES: [&str; 3] = ["online", "offline", "kicked"];
    let mut out = String::with_capacity(BATCH * 64);
    out.push_str("{\"events\":[");
    for i in 0..BATCH {
        let n = k * BATCH + i;
        let u = n % users;
        let state = STATES[(n / users + u) % 3];
        let device = if u % 3 == 0 { "android" } else { "ios" };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(r#"{{"user":"{ns}u{u}","device":"{device}","state":"{state}"}}"#));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Closed-loop churn: `posters` tasks post prepared batches until `total` events or `limit`.
async fn churn(
    gw: Gateway,
    bodies: Arc<Vec<Vec<u8>>>,
    posters: usize,
    total: usize,
    limit: Duration,
) -> anyhow::Result<(usize, Duration, Histogram<u64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..posters {
        let (gw, bodies, next) = (gw.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = measure::latency_histogram();
            let mut sent = 0;
            while start.elapsed() < limit {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k * BATCH >= total {
                    break;
                }
                let t = Instant::now();
                gw.post_retrying("/v1/presence", bodies[k % bodies.len()].clone()).await?;
                let _ = h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX).max(1));
                sent += BATCH;
            }
            anyhow::Ok((sent, h))
        }));
    }
    let mut sent = 0;
    let mut h = measure::latency_histogram();
    for t in tasks {
        let (n, th) = t.await??;
        sent += n;
        let _ = h.add(th);
    }
    Ok((sent, start.elapsed(), h))
}

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let users = s.users;
    let daemon = ctx.daemon(&format!("presence-{store}"), &DaemonOptions { store, ..DaemonOptions::default() }).await?;
    let gw = Gateway::of(&daemon);
    {
        let gw = gw.clone();
        on(&ctx.load, async move { register(&gw, Population::Mixed, 0, users, 64).await }).await?;
    }
    // Enough distinct batches that consecutive ones touch other users.
    let rounds = (3 * users).div_ceil(BATCH).max(3);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..rounds).map(|k| presence_batch(k, users, &gw.ns)).collect());

    // 1. Ingest at the maximum rate.
    ctx.mocks.reset().await?;
    ctx.reset_peak_rss();
    let (cpu0, t0) = (ctx.cpu_now().await, Instant::now());
    let (events, took, h) = {
        let (gw, bodies) = (gw.clone(), bodies.clone());
        on(&ctx.load, churn(gw, bodies, 4, s.presence_events, s.phase * 4)).await?
    };
    let cpu = ctx.cpu_now().await.cores_since(cpu0, t0.elapsed());
    let rate = events as f64 / took.as_secs_f64().max(1e-9);
    println!("  presence ingest: {rate:.0} events/s");
    rows.push(Row {
        scenario: "presence ingest, 5000-event batches".into(),
        store,
        pushes: 0,
        per_sec: rate,
        p50: measure::ms(&h, 0.5),
        p99: measure::ms(&h, 0.99),
        p999: measure::ms(&h, 0.999),
        cpu,
        peak_rss: ctx.peak_rss(),
        note: format!("events/s (not pushes); {events} events; latency = one batch; target >= 300k/s"),
    });

    // 2. Storm while messages flow.
    let rate = 2000.0;
    let capacity = (rate * s.phase.as_secs_f64() * 1.2) as usize + 10;
    let (ns, prefix) = (gw.ns.clone(), format!("{}ps", gw.ns));
    let m = Measured::begin(ctx, &prefix, capacity).await?;
    let make: MakeMessage = Arc::new(move |n| {
        let u = (n * 7919) % users;
        format!(
            r#"{{"id":"{prefix}-{n}","from":{{"id":"s1","name":"Sender"}},"conversation":{{"id":"c-{u}","type":"single"}},"to":["{ns}u{u}"],"kind":"text","text":"ping {n}"}}"#
        )
    });
    let storm = {
        let (gw, bodies) = (gw.clone(), bodies.clone());
        ctx.load.spawn(churn(gw, bodies, 2, usize::MAX / 2, s.phase))
    };
    let sent = {
        let (gw, times) = (gw.clone(), m.times.clone());
        on(&ctx.load, async move { post_rate(&gw, &times, 0..capacity, rate, s.phase, make).await }).await?.sent
    };
    let (events, took, _) = storm.await??;
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, &format!("presence storm + {rate:.0} msg/s"), store).await?;
    row.note = format!(
        "{:.0} presence events/s meanwhile; {sent} messages; {}{}",
        events as f64 / took.as_secs_f64().max(1e-9),
        row.note,
        if drained { "" } else { "; NOT DRAINED" }
    );
    println!("  storm: {:.0} pushes/s, p99 {:.2} ms", row.per_sec, row.p99);
    rows.push(row);
    daemon.stop().await;
    Ok(())
}
