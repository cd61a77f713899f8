//! Vendor trouble: the mock APNs and FCM answer a share of tokens badly for a while.
//!
//! Per token, scripted before the run: 10 % get one `429` with `Retry-After: 1`, 5 % get two
//! `503`s, 5 % get one answer delayed by 300 ms. Messages arrive at a fixed rate for one phase;
//! every push must still be delivered (retries with backoff, Retry-After honoured), and the
//! latency shows what the trouble costs.

use std::sync::Arc;
use std::time::Duration;

use pushd::mock_vendor::{MockAnswer, MockRule};

use super::{post_rate, Ctx, MakeMessage, Measured, Rng, Row};
use crate::rig::{on, register, DaemonOptions, Gateway, Population, Vendor};

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let users = (s.users / 4).max(100);
    let daemon = ctx.daemon("trouble", &DaemonOptions { store, ..DaemonOptions::default() }).await?;
    let gw = Gateway::of(&daemon);
    {
        let gw = gw.clone();
        on(&ctx.load, async move { register(&gw, Population::Mixed, 0, users, 64).await }).await?;
    }
    let rate = 2000.0;
    let capacity = (rate * s.phase.as_secs_f64() * 1.2) as usize + 10;
    let prefix = format!("{}vt", gw.ns);
    let m = Measured::begin(ctx, &prefix, capacity).await?;
    // Scripted after `begin` (which clears the mocks' rules).
    let mut rng = Rng::new(0x7a0b1e);
    let (mut n429, mut n5xx, mut slow) = (0, 0, 0);
    for u in 0..users {
        for (d, (_, vendor)) in Population::Mixed.devices(u).into_iter().enumerate() {
            if vendor == Vendor::Huawei {
                continue;
            }
            let token = vendor.token(u, d);
            let roll = rng.below(100);
            let rule = match roll {
                0..=9 => {
                    n429 += 1;
                    MockRule::for_token(token, MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(429) })
                        .times(1)
                }
                10..=14 => {
                    n5xx += 1;
                    MockRule::for_token(token, MockAnswer::with_status(503)).times(2)
                }
                15..=19 => {
                    slow += 1;
                    MockRule::for_token(token, MockAnswer { delay_ms: Some(300), ..MockAnswer::default() }).times(1)
                }
                _ => continue,
            };
            ctx.mocks.script(vendor, rule).await?;
        }
    }
    let ns = gw.ns.clone();
    let make: MakeMessage = Arc::new(move |n| {
        let u = n % users;
        format!(
            r#"{{"id":"{prefix}-{n}","from":{{"id":"s1","name":"Sender"}},"conversation":{{"id":"c-{u}","type":"single"}},"to":["{ns}u{u}"],"kind":"text","text":"trouble {n}"}}"#
        )
    });
    let sent = {
        let (gw, times) = (gw.clone(), m.times.clone());
        on(&ctx.load, async move { post_rate(&gw, &times, 0..capacity, rate, s.phase, make).await }).await?.sent
    };
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, &format!("vendor trouble, {rate:.0} msg/s"), store).await?;
    row.note = format!(
        "{sent} messages; tokens scripted: {n429} x 429+Retry-After 1 s, {n5xx} x 2 x 503, {slow} x 300 ms slow; {}{}",
        row.note,
        if drained { "" } else { "; NOT DRAINED" }
    );
    println!("  trouble: {:.0} pushes/s, p99 {:.2} ms", row.per_sec, row.p99);
    rows.push(row);
    daemon.stop().await;
    Ok(())
}
