//! Group fan-out: messages to 500-member groups whose members differ the way real ones do.
//!
//! Setup (through the gateway API): a pool of users with an iPhone and an Android phone
//! (APNs + FCM or Huawei); 30 % have the iPhone online, 5 % the Android phone kicked; 10 % push
//! only mentions, 5 % push nothing, 10 % are in do-not-disturb for the next hour, 5 % muted the
//! group. Then messages go to the groups at the maximum rate (4 posters, 2 messages per
//! request); 10 % mention everyone, 20 % mention three members.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use super::{post_max, Ctx, MakeMessage, Measured, Rng, Row};
use crate::rig::{on, register, user_id, DaemonOptions, Gateway, Population};

const GROUP: usize = 500;

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>, store: &'static str) -> anyhow::Result<()> {
    let s = ctx.scale;
    let pool = (s.groups * GROUP).max(GROUP);
    let daemon = ctx.daemon(&format!("group-{store}"), &DaemonOptions { store, ..DaemonOptions::default() }).await?;
    let gw = Gateway::of(&daemon);
    let ns = gw.ns.clone();
    let user = |u: usize| user_id(&ns, u);
    let mut rng = Rng::new(0x5eed);
    let groups: Vec<Vec<usize>> = (0..s.groups.max(1))
        .map(|_| {
            let mut members: Vec<usize> = (0..GROUP).map(|_| rng.below(pool)).collect();
            members.sort_unstable();
            members.dedup();
            members
        })
        .collect();

    // Who is online, kicked, muted, in DND.
    let mut presence = Vec::new();
    let mut settings = Vec::new();
    for u in 0..pool {
        if rng.chance(0.30) {
            presence.push(json!({"user": user(u), "device": "ios", "state": "online"}));
        }
        if rng.chance(0.05) {
            presence.push(json!({"user": user(u), "device": "android", "state": "kicked"}));
        }
        let roll = rng.below(100);
        let body = match roll {
            0..=9 => Some(json!({"push_mode": "mentions"})),
            10..=14 => Some(json!({"push_mode": "none"})),
            15..=24 => Some(json!({"dnd_minutes": 60})),
            _ => None,
        };
        if let Some(b) = body {
            settings.push((format!("/v1/users/{}/settings", user(u)), b));
        }
        if rng.chance(0.05) {
            let g = groups.iter().position(|m| m.binary_search(&u).is_ok()).unwrap_or(0);
            settings.push((format!("/v1/users/{}/conversations/g{g}/settings", user(u)), json!({"push_mode": "none"})));
        }
    }
    {
        let gw = gw.clone();
        on(&ctx.load, async move {
            register(&gw, Population::Mixed, 0, pool, 64).await?;
            for chunk in presence.chunks(5000) {
                gw.post_retrying("/v1/presence", serde_json::to_vec(&json!({"events": chunk}))?).await?;
            }
            stream::iter(settings)
                .map(|(path, body)| {
                    let gw = gw.clone();
                    async move { gw.put_json(&path, &body).await }
                })
                .buffer_unordered(64)
                .try_collect::<()>()
                .await
        })
        .await?;
    }

    let groups = Arc::new(groups);
    let prefix = format!("{ns}gr");
    let make: MakeMessage = {
        let (groups, prefix, ns) = (groups.clone(), prefix.clone(), ns.clone());
        Arc::new(move |n| {
            let g = n % groups.len();
            let members = &groups[g];
            let mut r = Rng::new(n as u64 + 17);
            let from = members[r.below(members.len())];
            let to: Vec<String> = members.iter().filter(|m| **m != from).map(|m| user_id(&ns, *m)).collect();
            let roll = r.below(100);
            let mentions: Vec<String> = if (10..30).contains(&roll) {
                (0..3).map(|_| user_id(&ns, members[r.below(members.len())])).collect()
            } else {
                vec![]
            };
            json!({
                "id": format!("{prefix}-{n}"),
                "from": {"id": user_id(&ns, from), "name": format!("Member {from}")},
                "conversation": {"id": format!("g{g}"), "type": "group", "name": format!("Group {g}")},
                "to": to, "kind": "text", "text": "Standup moved to 10:30, same room.",
                "mentions": mentions, "mention_all": roll < 10,
            })
            .to_string()
        })
    };
    let count = s.groups.max(1) * s.group_messages;
    let m = Measured::begin(ctx, &prefix, count).await?;
    let sent = {
        let (gw, times) = (gw.clone(), m.times.clone());
        let backlog = (daemon.backlog(), 8 * s.concurrency);
        on(&ctx.load, async move { post_max(&gw, &times, 0..count, 2, 4, s.phase * 3, backlog, make).await }).await?
    };
    let drained = daemon.drained(Duration::from_secs(60)).await;
    let mut row = m.finish(ctx, "group fan-out, 500 members, max rate", store).await?;
    row.note = format!(
        "{sent} messages x ~{} recipients; {}{}",
        groups[0].len(),
        row.note,
        if drained { "" } else { "; NOT DRAINED" }
    );
    println!("  group: {:.0} pushes/s, p99 {:.2} ms", row.per_sec, row.p99);
    rows.push(row);
    daemon.stop().await;
    Ok(())
}
