//! Offline fan-out, and the ceiling it is compared with.
//!
//! 1. Ceiling: raw hyper h2 and reqwest h2 at the mock APNs, `concurrency` streams, one phase
//!    each (measured before and after pushd's runs; the ratio uses the mean of the hyper runs).
//! 2. For each store variant: N users with one iPhone each (every push goes to the mock APNs),
//!    all offline; 1:1 text messages posted in batches of 100 by 4 posters as fast as pushd
//!    accepts them (max rate), then at half that rate for one phase (latency).
//! 3. The same max-rate fan-out to users with an iPhone and an Android phone (APNs + FCM or
//!    Huawei): pushes to three vendors at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{post_max, post_rate, Ctx, MakeMessage, Measured, Row};
use crate::ceiling::{self, Pace};
use crate::measure;
use crate::rig::{on, register, DaemonOptions, Gateway, Population};

/// 1:1 messages `<prefix>-<n>` to the gateway's users `0..users` (ids in its namespace), and
/// the prefix to time them by.
fn one_to_one(gw: &Gateway, prefix: &str, users: usize) -> (String, MakeMessage) {
    let (prefix, ns) = (format!("{}{prefix}", gw.ns), gw.ns.clone());
    let make: MakeMessage = {
        let prefix = prefix.clone();
        Arc::new(move |n| {
            let u = n % users;
            let s = (n / users) % 97;
            format!(
                r#"{{"id":"{prefix}-{n}","from":{{"id":"s{s}","name":"Sender {s}"}},"conversation":{{"id":"c-{u}","type":"single"}},"to":["{ns}u{u}"],"kind":"text","text":"Are we still on for lunch at noon? ({n})"}}"#
            )
        })
    };
    (prefix, make)
}

/// Measures the raw clients and adds their rows; remembers the hyper figure for the ratio.
pub async fn ceiling(ctx: &Ctx, rows: &mut Vec<Row>, when: &str) -> anyhow::Result<()> {
    let conc = ctx.scale.concurrency;
    for client in [Client::Hyper, Client::Reqwest] {
        ctx.mocks.reset().await?;
        ctx.reset_peak_rss();
        let (cpu0, t0) = (ctx.cpu_now().await, Instant::now());
        let run = client.run(ctx, Pace::Closed(conc)).await?;
        let cpu = ctx.cpu_now().await.cores_since(cpu0, t0.elapsed());
        if client == Client::Hyper {
            ctx.ceiling.lock().unwrap_or_else(|p| p.into_inner()).push(run.per_sec());
        }
        println!("  {} ({when}): {:.0} requests/s, {} failed", client.name(), run.per_sec(), run.failed);
        rows.push(Row {
            scenario: format!("ceiling: {} ({when})", client.name()),
            store: "-",
            pushes: run.requests,
            per_sec: run.per_sec(),
            p50: measure::ms(&run.latency, 0.5),
            p99: measure::ms(&run.latency, 0.99),
            p999: measure::ms(&run.latency, 0.999),
            cpu,
            peak_rss: ctx.peak_rss(),
            note: format!("{conc} streams on one connection; latency = request round trip"),
        });
        ctx.mocks.reset().await?;
    }
    Ok(())
}

/// The raw clients at the rate of pushd's half-rate phase, measured like pushd (send → the
/// mock's record of the request): what the machine and the mock give at that rate without pushd.
async fn raw_at_rate(ctx: &Ctx, rows: &mut Vec<Row>, rate: f64) -> anyhow::Result<()> {
    for client in [Client::Hyper, Client::Reqwest] {
        let m = Measured::begin(ctx, "raw", (rate * ctx.scale.phase.as_secs_f64() * 1.2) as usize + 10).await?;
        let run = client.run(ctx, Pace::Rate(rate, m.times.clone())).await?;
        let mut row = m.finish(ctx, &format!("ceiling: {} at {rate:.0} requests/s", client.name()), "-").await?;
        row.note = format!(
            "open loop, released every 2 ms like pushd's half-rate phase; latency = send → the mock's record \
             (round trip p50 {:.2} / p99 {:.2} ms); {} failed",
            measure::ms(&run.latency, 0.5),
            measure::ms(&run.latency, 0.99),
            run.failed
        );
        println!("  {} at {rate:.0} requests/s: p50 {:.2} ms, p99 {:.2} ms", client.name(), row.p50, row.p99);
        rows.push(row);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Hyper,
    Reqwest,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Hyper => "raw hyper h2",
            Client::Reqwest => "raw reqwest h2",
        }
    }

    /// One phase of this client at the mock APNs, on the load runtime.
    async fn run(self, ctx: &Ctx, pace: Pace) -> anyhow::Result<ceiling::Run> {
        let (apns, phase, users) = (ctx.mocks.apns()?, ctx.scale.phase, ctx.scale.users);
        on(&ctx.load, async move {
            match self {
                Client::Hyper => ceiling::hyper_h2(&apns, pace, phase, users).await,
                Client::Reqwest => ceiling::reqwest_h2(&apns, pace, phase, users).await,
            }
        })
        .await
    }
}

/// Offline fan-out on one store variant (`sync`: the embedded store's `store.sync`): max
/// rate, then half of it.
pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str, sync: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let opts = DaemonOptions { store, sync, ..DaemonOptions::default() };
    let daemon = ctx.daemon(&format!("fanout-{store}-{sync}"), &opts).await?;
    let label: &'static str = match (store, sync) {
        ("embedded", "interval") => "embedded, sync=interval",
        _ => store,
    };
    let gw = Gateway::of(&daemon);
    let t = Instant::now();
    {
        let gw = gw.clone();
        on(&ctx.load, async move { register(&gw, Population::ApnsOnly, 0, s.users, 64).await }).await?;
    }
    println!("  registered {} iPhones in {:.1} s", s.users, t.elapsed().as_secs_f64());

    // Max rate: closed loop, bounded by count and by one phase.
    let (prefix, make) = one_to_one(&gw, "fo", s.users);
    let m = Measured::begin(ctx, &prefix, s.max_messages).await?;
    let sent = {
        let (gw, times) = (gw.clone(), m.times.clone());
        let backlog = (daemon.backlog(), 4 * s.concurrency);
        on(&ctx.load, async move { post_max(&gw, &times, 0..s.max_messages, 100, 4, s.phase, backlog, make).await })
            .await?
    };
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, "offline fan-out, max rate (APNs)", label).await?;
    let max_rate = row.per_sec;
    if let Some(c) = ctx.ceiling() {
        row.note = format!("ratio {:.2} of raw hyper ({:.0}/s); {sent} messages; {}", max_rate / c, c, row.note);
    } else {
        row.note = format!("{sent} messages; {}", row.note);
    }
    if !drained {
        row.note.push_str("; NOT DRAINED in 60 s");
    }
    println!("  max rate: {:.0} pushes/s, p99 {:.2} ms", row.per_sec, row.p99);
    rows.push(row);

    // Half of the max rate, open loop: the latency figure.
    let rate = (max_rate / 2.0).max(10.0);
    let capacity = (rate * s.phase.as_secs_f64() * 1.2) as usize + 10;
    let (prefix, make) = one_to_one(&gw, "fr", s.users);
    let m = Measured::begin(ctx, &prefix, capacity).await?;
    let times = m.times.clone();
    let posted = {
        let (gw, times) = (gw.clone(), m.times.clone());
        on(&ctx.load, async move { post_rate(&gw, &times, 0..capacity, rate, s.phase, make).await }).await?
    };
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, &format!("offline fan-out, 50 % of max ({rate:.0} msg/s)"), label).await?;
    let split = split_note(&gw, &prefix, &times, posted.sent, s.users).await;
    row.note = format!(
        "{} messages; target p99 <= 5 ms; {}; {split}; {}{}",
        posted.sent,
        posted.intake_note(),
        row.note,
        if drained { "" } else { "; NOT DRAINED" }
    );
    println!(
        "  half rate: {:.0} pushes/s, p50 {:.2} ms, p99 {:.2} ms; {}; {split}",
        row.per_sec,
        row.p50,
        row.p99,
        posted.intake_note()
    );
    rows.push(row);
    daemon.stop().await;
    raw_at_rate(ctx, rows, rate).await?;
    Ok(())
}

/// Max-rate fan-out to users with two phones on three vendors.
pub async fn mixed(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let users = s.users / 2;
    let daemon = ctx.daemon("fanout-mixed", &DaemonOptions { store, ..DaemonOptions::default() }).await?;
    let gw = Gateway::of(&daemon);
    {
        let gw = gw.clone();
        on(&ctx.load, async move { register(&gw, Population::Mixed, 0, users, 64).await }).await?;
    }
    let count = s.max_messages / 2;
    let (prefix, make) = one_to_one(&gw, "fm", users);
    let m = Measured::begin(ctx, &prefix, count).await?;
    let sent = {
        let (gw, times) = (gw.clone(), m.times.clone());
        let backlog = (daemon.backlog(), 4 * s.concurrency);
        on(&ctx.load, async move { post_max(&gw, &times, 0..count, 100, 4, s.phase, backlog, make).await }).await?
    };
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, "offline fan-out, max rate (APNs + FCM + Huawei)", store).await?;
    row.note = format!("{sent} messages, 2 devices each; {}{}", row.note, if drained { "" } else { "; NOT DRAINED" });
    println!("  mixed: {:.0} pushes/s", row.per_sec);
    rows.push(row);
    daemon.stop().await;
    Ok(())
}

/// Where the half-rate latency goes, from the traces of about 1000 of its messages:
/// send → decided (intake, hand-off to the session, decision) and decided → the vendor's answer
/// recorded (provider, HTTP/2, mock, answer back). Wall clocks of one host.
async fn split_note(gw: &Gateway, prefix: &str, times: &measure::SendTimes, sent: usize, users: usize) -> String {
    let step = (sent / 1000).max(1);
    let (mut to_decided, mut to_answer) = (measure::latency_histogram(), measure::latency_histogram());
    for n in (0..sent).step_by(step) {
        let (Some(sent_at), u) = (times.wall(n), n % users) else { continue };
        let Ok((200, body)) =
            gw.send(reqwest::Method::GET, &format!("/v1/users/{}/pushes?limit=1000", gw.user(u)), None).await
        else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
        let id = format!("{prefix}-{n}");
        let Some(t) = v["pushes"].as_array().and_then(|a| a.iter().find(|e| e["message_id"] == id.as_str())) else {
            continue;
        };
        let wall = |s: &serde_json::Value| {
            s.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(std::time::SystemTime::from)
        };
        let decided = wall(&t["decided_at"]);
        let answered =
            t["devices"][0]["push"]["attempts"].as_array().and_then(|a| a.last()).and_then(|a| wall(&a["at"]));
        if let (Some(d), Some(a)) = (decided, answered) {
            let us = |from: std::time::SystemTime, to: std::time::SystemTime| {
                to.duration_since(from).map_or(0, |d| d.as_micros() as u64)
            };
            to_decided.saturating_record(us(sent_at, d));
            to_answer.saturating_record(us(d, a));
        }
    }
    format!(
        "{} traces: send -> decided p50 {:.2} / p99 {:.2} ms, decided -> answer p50 {:.2} / p99 {:.2} ms",
        to_decided.len(),
        measure::ms(&to_decided, 0.5),
        measure::ms(&to_decided, 0.99),
        measure::ms(&to_answer, 0.5),
        measure::ms(&to_answer, 0.99)
    )
}
