//! Meizu Flyme Push end to end, through pushd's HTTP API against the loopback mock: the MD5
//! `sign` and the private message class on the wire, pruning on per-pushId 110002, keeping a
//! switched-off pushId, the top-level 110010 rate limit, a refused signature, the 110019 daily
//! quota parking the credential until 00:00 China time, and group fan-out in batched requests.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline.

mod support;

use std::time::{Duration, Instant};

use chrono::TimeZone;
use pushd::mock_vendor::meizu::{MockMeizu, MockMeizuConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::{json, Value};
use support::{TestDaemon, TestEnv, WAIT};

const APP_ID: &str = "100999";
const SECRET: &str = "mzSecret0123456789abcdef";

/// A daemon with a `test-meizu` credential pointing at a fresh mock. `extra` is TOML placed
/// before the credential (e.g. a `[delivery]` table).
async fn start(extra: &str) -> (TestDaemon, MockMeizu) {
    let env = TestEnv::new();
    let mut cfg = MockMeizuConfig::new(APP_ID, SECRET);
    cfg.tls = Some(env.tls.clone());
    cfg.clock = env.shared_clock();
    let mock = MockMeizu::start(cfg).await.expect("mock meizu starts");
    let toml = format!(
        r#"
        {extra}
        [credentials.test-meizu]
        vendor = "meizu"
        endpoint = "{url}"
        extra_roots = ["{ca}"]
        app_id = {APP_ID}
        app_secret = "{SECRET}"
        "#,
        url = mock.url(),
        ca = env.ca_path.display(),
    );
    let d = TestDaemon::start_in(env, &toml, |_| {}).await;
    (d, mock)
}

/// A pushId shaped like Meizu's samples (a letter prefix and hex, 45 chars), stable per seed.
fn push_id(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("ULY{h:016x}{:016x}{:010x}", h.rotate_left(21), h & 0xff_ffff_ffff)
}

/// Registers `user`'s `device` on the Meizu credential, offline; returns its pushId.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    let token = push_id(&format!("{user}/{device}"));
    let (status, body) =
        d.put(&format!("/v1/users/{user}/devices/{device}"), json!({"credential": "test-meizu", "token": token})).await;
    assert_eq!(status, 200, "register: {body}");
    d.presence(user, device, "offline").await;
    token
}

/// The listed device `device` of `user`.
async fn listed_device(d: &TestDaemon, user: &str, device: &str) -> Value {
    let (status, body) = d.get(&format!("/v1/users/{user}/devices")).await;
    assert_eq!(status, 200, "{body}");
    body["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|x| x["device"] == device))
        .cloned()
        .unwrap_or_else(|| panic!("{user}/{device} not listed: {body}"))
}

/// Waits until the trace of `message` shows `outcome` for `user`'s `device`; returns the device.
async fn outcome(d: &TestDaemon, user: &str, message: &str, device: &str, outcome: &str) -> Value {
    let entry = d
        .wait_trace(user, message, |e| {
            e["devices"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|x| x["device"] == device && x["push"]["outcome"] == outcome))
        })
        .await;
    entry["devices"].as_array().and_then(|ds| ds.iter().find(|x| x["device"] == device)).cloned().unwrap_or_default()
}

/// A token as the device listing shows it: first 6 and last 4 chars.
fn masked(token: &str) -> String {
    format!("{}…{}", &token[..6], &token[token.len() - 4..])
}

/// The attempts of a device trace as `(status, outcome)` pairs.
fn attempts(device: &Value) -> Vec<(Option<u64>, String)> {
    device["push"]["attempts"]
        .as_array()
        .map(|a| {
            a.iter().map(|x| (x["status"].as_u64(), x["outcome"].as_str().unwrap_or_default().to_owned())).collect()
        })
        .unwrap_or_default()
}

/// Waits until the mock has seen `n` pushIds in total (over all requests).
async fn push_ids_received(mock: &MockMeizu, n: usize) -> Vec<Received> {
    mock.wait_for(move |r| r.iter().map(|x| x.token.split(',').count()).sum::<usize>() >= n, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The top-level `code` strings the mock answered, in order.
fn codes(mock: &MockMeizu) -> Vec<String> {
    mock.received().iter().map(|r| r.answer["code"].as_str().unwrap_or("-").to_owned()).collect()
}

#[actix_rt::test]
async fn an_offline_meizu_device_gets_a_signed_push_as_a_private_message() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mz").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = push_ids_received(&mock, 1).await;
    let r = &got[0];
    // The mock recomputes the MD5 signature: "200" means pushd signed it exactly.
    assert_eq!((r.status, r.answer["code"].as_str()), (200, Some("200")), "{:?}", r.answer);
    assert_eq!(r.token, token);
    assert_eq!(r.headers[":path"], "/garcia/api/server/push/varnished/pushByPushId");
    assert_eq!(r.body["appId"], APP_ID);
    assert!(r.body["sign"].as_str().is_some_and(|s| s.len() == 32));
    let m = &r.body["messageJson"];
    assert_eq!(m["noticeBarInfo"]["noticeMsgType"], 1, "IM is sent as a private (私信) message");
    assert_eq!(m["noticeBarInfo"]["title"], "pushd");
    assert_eq!(m["noticeBarInfo"]["content"], "You have a new message");
    assert_eq!(m["pushTimeInfo"], json!({"offLine": 1, "validTime": 24}));
    assert_eq!(m["advanceInfo"]["notifyKey"], "c-alice");
    assert_eq!(m["clickTypeInfo"]["clickType"], 0);
    assert_eq!(m["clickTypeInfo"]["parameters"], json!({"msg": "m1", "conv": "c-alice", "sender": "alice"}));

    let device = outcome(&d, "bob", "m1", "mz", "delivered").await;
    assert_eq!(device["push"]["vendor"], "meizu");
    assert_eq!(device["push"]["credential"], "test-meizu");
    assert_eq!(attempts(&device), vec![(Some(200), "delivered".to_owned())]);
}

#[actix_rt::test]
async fn a_pushid_listed_under_110002_is_pruned() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mz").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("110002")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = outcome(&d, "bob", "m1", "mz", "invalid_token").await;
    assert_eq!(mock.received()[0].answer["value"], json!({"110002": [token]}));
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())]);
    assert!(listed_device(&d, "bob", "mz").await["token"].is_null());
}

#[actix_rt::test]
async fn a_pushid_with_notifications_switched_off_is_not_retried_and_keeps_its_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mz").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("value:110010")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = outcome(&d, "bob", "m1", "mz", "fatal").await;
    assert_eq!(attempts(&device), vec![(Some(200), "fatal".to_owned())]);
    assert_eq!(mock.requests_total(), 1);
    assert_eq!(listed_device(&d, "bob", "mz").await["token"], masked(&token), "the token is kept");
}

#[actix_rt::test]
async fn the_110010_rate_limit_is_retried_after_a_second_then_delivered() {
    let (d, mock) = start("").await;
    register(&d, "bob", "mz").await;
    mock.script(MockRule::any(MockAnswer::with_reason("110010")).times(1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let watcher = mock.clone();
    let gap = actix_rt::spawn(async move {
        watcher.wait_for(|r| !r.is_empty(), WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        let first = Instant::now();
        watcher.wait_for(|r| r.len() >= 2, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        first.elapsed()
    });
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: Meizu asks for at least a second.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = outcome(&d, "bob", "m1", "mz", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(200), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(codes(&mock), ["110010", "200"]);
}

#[actix_rt::test]
async fn a_refused_signature_is_fatal_at_once_since_there_is_no_token_to_refresh() {
    // Meizu signs every request (AuthPlan::None): `expire_auth` answers 1006, which a refresh
    // cannot fix, so there is no refresh-and-retry; the token is kept.
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mz").await;
    mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = outcome(&d, "bob", "m1", "mz", "fatal").await;
    assert_eq!(attempts(&device), vec![(Some(200), "fatal".to_owned())]);
    assert_eq!(codes(&mock), ["1006"]);
    assert_eq!(listed_device(&d, "bob", "mz").await["token"], masked(&token), "the token is kept");
}

#[actix_rt::test]
async fn the_110019_daily_quota_parks_the_credential_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    register(&d, "bob", "mz").await;
    mock.script(MockRule::any(MockAnswer::with_reason("110019")).times(1));
    d.send_text("m1", "alice", &["bob"], "first").await;
    outcome(&d, "bob", "m1", "mz", "quota_exhausted").await;

    // While parked, a second push waits without spending a request.
    d.send_text("m2", "alice", &["bob"], "second").await;
    outcome(&d, "bob", "m2", "mz", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    let shanghai = chrono_tz::Asia::Shanghai;
    let local = d.clock_now().with_timezone(&shanghai);
    let midnight = shanghai
        .from_local_datetime(&(local.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 1).expect("valid time"))
        .single()
        .expect("China has no DST");
    d.clock.set(midnight.with_timezone(&chrono::Utc));

    outcome(&d, "bob", "m1", "mz", "delivered").await;
    outcome(&d, "bob", "m2", "mz", "delivered").await;
    assert_eq!(codes(&mock), ["110019", "200", "200"]);
}

/// Registers `n` users `u0…` with one Meizu device each; returns their pushIds.
async fn register_many(d: &TestDaemon, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(register(d, &format!("u{i}"), "mz").await);
    }
    tokens
}

async fn send_group(d: &TestDaemon, id: &str, n: usize) {
    let to: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    d.send(json!({
        "id": id, "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "team", "type": "group", "name": "Team"},
        "to": to, "kind": "text", "text": "standup in 5"
    }))
    .await;
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = register_many(&d, 30).await;
    send_group(&d, "g1", 30).await;

    let got = push_ids_received(&mock, 30).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| r.token.split(',').map(str::to_owned)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every pushId exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == "200"));
    for i in 0..30 {
        outcome(&d, &format!("u{i}"), "g1", "mz", "delivered").await;
    }
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn an_unregistered_pushid_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = register_many(&d, 30).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("110002")).times(1));
    send_group(&d, "g1", 30).await;

    let got = push_ids_received(&mock, 30).await;
    let carrying = got.iter().find(|r| r.token.split(',').any(|t| t == tokens[7])).expect("u7's request");
    assert!(carrying.token.split(',').count() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["value"], json!({"110002": [tokens[7]]}));

    outcome(&d, "u7", "g1", "mz", "invalid_token").await;
    assert!(listed_device(&d, "u7", "mz").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        outcome(&d, &format!("u{i}"), "g1", "mz", "delivered").await;
        assert_eq!(listed_device(&d, &format!("u{i}"), "mz").await["token"], masked(&tokens[i]));
    }
}
