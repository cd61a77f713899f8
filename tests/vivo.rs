//! vivo Push end to end: pushd's HTTP API → the shared provider layer → `provider::vivo` →
//! the loopback mock (`mock_vendor::vivo`), which checks the signed auth, the `authToken`
//! header, the fields and the IM class, and answers in vivo's own `result` codes.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The daily-quota
//! test needs the shared layer's parking (`quota_recheck_ms`).

mod support;

use std::time::{Duration, Instant};

use pushd::mock_vendor::vivo::{MockVivo, MockVivoConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::{json, Value};
use support::{apns_token, TestDaemon, TestEnv, WAIT};

const APP_ID: u64 = 10004;
const APP_KEY: &str = "25509283-3767-4b9e-83fe-b6e55ac6b123";
const APP_SECRET: &str = "scrt-7f3a-4c21-9e0d-demo";

/// A daemon with a `test-vivo` credential pointing at a fresh mock; `more` is TOML appended
/// after the credential table.
async fn start(more: &str) -> (TestDaemon, MockVivo) {
    let env = TestEnv::new();
    let mut cfg = MockVivoConfig::new(APP_ID, APP_KEY, APP_SECRET);
    cfg.tls = Some(env.tls.clone());
    cfg.clock = env.shared_clock();
    let mock = MockVivo::start(cfg).await.expect("mock vivo starts");
    let extra = format!(
        r#"
        [credentials.test-vivo]
        vendor = "vivo"
        extra_roots = ["{ca}"]
        endpoint = "{url}"
        app_id = {APP_ID}
        app_key = "{APP_KEY}"
        app_secret = "{APP_SECRET}"
        {more}
        "#,
        ca = env.ca_path.display(),
        url = mock.url(),
    );
    let d = TestDaemon::start_in(env, &extra, |_| {}).await;
    (d, mock)
}

/// A 23-digit regId, stable per seed.
fn reg_id(seed: &str) -> String {
    let n = u128::from_str_radix(&apns_token(seed)[..32], 16).expect("hex");
    format!("{:023}", n % 10u128.pow(23))
}

/// Registers a vivo device (offline until a presence event says otherwise).
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    let token = reg_id(&format!("{user}/{device}"));
    let (s, b) =
        d.put(&format!("/v1/users/{user}/devices/{device}"), json!({"credential": "test-vivo", "token": token})).await;
    assert_eq!(s, 200, "register: {b}");
    token
}

/// Waits until the mock has answered `n` sends to `token`.
async fn received_for(mock: &MockVivo, token: &str, n: usize) -> Vec<Received> {
    let t = token.to_owned();
    mock.wait_for(move |rs| rs.iter().filter(|r| r.token == t).count() >= n, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|r| r.token == token)
        .collect()
}

async fn listed_token(d: &TestDaemon, user: &str, device: &str) -> Value {
    let (status, body) = d.get(&format!("/v1/users/{user}/devices")).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["devices"].as_array().and_then(|ds| ds.iter().find(|x| x["device"] == device)).cloned();
    listed.unwrap_or_else(|| panic!("{user}/{device} not listed: {body}"))["token"].clone()
}

/// The attempts of a device trace as `(status, outcome)` pairs.
fn attempts(device: &Value) -> Vec<(Option<u64>, String)> {
    device["push"]["attempts"]
        .as_array()
        .expect("attempts listed")
        .iter()
        .map(|a| (a["status"].as_u64(), a["outcome"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The trace of `message` for `user` once its push shows `outcome` for `device`.
async fn wait_push_outcome(d: &TestDaemon, user: &str, message: &str, device: &str, outcome: &str) -> Value {
    let entry = d
        .wait_trace(user, message, |e| {
            e["devices"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|x| x["device"] == device && x["push"]["outcome"] == outcome))
        })
        .await;
    entry["devices"].as_array().and_then(|ds| ds.iter().find(|x| x["device"] == device)).cloned().unwrap_or_default()
}

#[actix_rt::test]
async fn an_offline_device_gets_a_signed_system_im_push_that_the_mock_accepts() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "See you at 6?").await;

    let got = received_for(&mock, &token, 1).await;
    let r = &got[0];
    assert_eq!((r.status, r.answer["result"].as_i64()), (200, Some(0)), "{:?}", r.answer);
    assert_eq!(r.headers[":path"], "/message/send");
    assert!(r.headers.get("authtoken").is_some_and(|t| !t.is_empty()), "authToken header");
    assert!(r.headers["content-type"].starts_with("application/json"));
    let b = &r.body;
    assert_eq!(b["regId"], token.as_str());
    assert_eq!((b["classification"].as_i64(), b["category"].as_str()), (Some(1), Some("IM")), "IM class: {b}");
    assert_eq!(b["pushMode"], 0);
    assert_eq!(b["notifyType"], 4);
    assert_eq!(b["title"], "pushd");
    assert_eq!(b["content"], "You have a new message");
    assert_eq!(b["skipType"], 1);
    assert_eq!(b["clientCustomMap"], json!({"msg": "m1", "conv": "c-alice", "sender": "alice"}));
    assert_eq!(b["requestId"].as_str().map(str::len), Some(36));
    assert_eq!(mock.auth_requests(), 1, "one signed auth call");
    assert_eq!(mock.delivered_to(&token).len(), 1);

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(device["push"]["vendor"], "vivo");
    assert_eq!(device["push"]["credential"], "test-vivo");
}

#[actix_rt::test]
async fn an_invalid_user_answer_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("uninstalled")));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "invalid_token", "{device:#}");
    assert_eq!(device["push"]["reason"], "unsubscribed");
    let answer = &received_for(&mock, &token, 1).await[0].answer;
    assert_eq!(answer["invalidUser"], json!({"status": 2, "userid": token}));
    assert!(listed_token(&d, "bob", "phone").await.is_null(), "token pruned");
}

#[actix_rt::test]
async fn an_invalid_reg_id_result_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("10302")));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "invalid_token", "{device:#}");
    assert_eq!(device["push"]["reason"], "invalid_reg_id");
    assert!(listed_token(&d, "bob", "phone").await.is_null(), "token pruned");
}

#[actix_rt::test]
async fn a_rate_limit_answer_is_retried_after_a_second_with_the_same_request_id() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("10071")).times(1));

    let (m, t) = (mock.clone(), token.clone());
    let gap = actix_rt::spawn(async move {
        received_for(&m, &t, 1).await;
        let first = Instant::now();
        received_for(&m, &t, 2).await;
        first.elapsed()
    });
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device), vec![(Some(200), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    let got = received_for(&mock, &token, 2).await;
    assert_eq!(got[0].answer["result"], 10071);
    assert_eq!(got[0].body["requestId"], got[1].body["requestId"], "a retry reuses the requestId");
}

#[actix_rt::test]
async fn a_rejected_auth_token_is_refreshed_once_and_the_push_delivered() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "warm up").await;
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");
    assert_eq!(mock.auth_requests(), 1);

    // The mock revokes the token it answers 10000 for: only a fresh one can succeed.
    mock.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m2", "alice", &["bob"], "hi").await;

    let device = d.wait_outcome("bob", "m2", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device), vec![(Some(200), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(mock.auth_requests(), 2, "exactly one refresh");
    let got = received_for(&mock, &token, 3).await;
    assert_eq!(got[1].answer["result"], 10000);
    assert_ne!(got[1].headers["authtoken"], got[2].headers["authtoken"]);
}

#[actix_rt::test]
async fn the_auth_token_is_renewed_hourly_as_vivo_asks() {
    let (d, mock) = start("").await;
    register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");
    d.clock.advance(chrono::Duration::minutes(30));
    d.send_text("m2", "alice", &["bob"], "two").await;
    assert_eq!(d.wait_outcome("bob", "m2", "phone").await["push"]["outcome"], "delivered");
    assert_eq!(mock.auth_requests(), 1, "reused within the hour");

    d.clock.advance(chrono::Duration::minutes(31));
    d.send_text("m3", "alice", &["bob"], "three").await;
    let device = d.wait_outcome("bob", "m3", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device).len(), 1);
    assert_eq!(mock.auth_requests(), 2);
}

/// Next 00:00 in Beijing after `now`, plus a second.
fn after_china_midnight(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let tz = chrono_tz::Asia::Shanghai;
    let tomorrow = now.with_timezone(&tz).date_naive() + chrono::Days::new(1);
    let midnight = tomorrow.and_hms_opt(0, 0, 1).expect("valid time");
    tz.from_local_datetime(&midnight).single().expect("China has no DST").with_timezone(&chrono::Utc)
}

#[actix_rt::test]
async fn the_daily_quota_parks_pushes_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("10070")).times(1));

    d.send_text("m1", "alice", &["bob"], "one").await;
    let first = wait_push_outcome(&d, "bob", "m1", "phone", "quota_exhausted").await;
    assert_eq!(first["push"]["reason"], "daily_quota", "{first:#}");
    d.send_text("m2", "alice", &["bob"], "two").await;
    wait_push_outcome(&d, "bob", "m2", "phone", "quota_exhausted").await;
    assert_eq!(mock.received().len(), 1, "nothing more reaches vivo the same day");

    d.clock.set(after_china_midnight(d.clock_now()));
    for m in ["m1", "m2"] {
        let device = wait_push_outcome(&d, "bob", m, "phone", "delivered").await;
        assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    }
    assert_eq!(mock.delivered_to(&token).len(), 2);
    assert_eq!(mock.answered(10070), 1);
}

#[actix_rt::test]
async fn a_group_message_goes_out_as_one_send_per_device_with_its_own_request_id() {
    let (d, mock) = start("").await;
    let users: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(register(&d, u, "phone").await);
    }
    d.send(json!({
        "id": "g1", "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "team", "type": "group", "name": "Team"},
        "to": users, "kind": "text", "text": "standup in 5"
    }))
    .await;

    for u in &users {
        assert_eq!(d.wait_outcome(u, "g1", "phone").await["push"]["outcome"], "delivered", "{u}");
    }
    let sends = mock.wait_for(|rs| rs.len() >= 5, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sends.len(), 5);
    assert!(sends.iter().all(|r| r.headers[":path"] == "/message/send"));
    let request_ids: std::collections::BTreeSet<&str> =
        sends.iter().filter_map(|r| r.body["requestId"].as_str()).collect();
    assert_eq!(request_ids.len(), 5, "one requestId per device");
    assert_eq!(mock.duplicates(), 0);
}
