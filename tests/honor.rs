//! Honor Push end to end, through pushd's HTTP API against the loopback mock: the OAuth token
//! call (client id distinct from the App ID), the `timestamp` header and `importance: NORMAL`
//! on the wire, pruning on `expireTokens`, a 429 retried after its Retry-After, an expired access
//! token refreshed once, the (unverified) daily-quota code parking the credential until 00:00
//! China time, and group fan-out in batched requests with one token in `failTokens`.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The mock refuses a
//! send without a numeric `timestamp` header and any Huawei-shaped (snake_case) field.

mod support;

use std::time::{Duration, Instant};

use chrono::TimeZone;
use pushd::mock_vendor::honor::{tokens_of, MockHonor, MockHonorConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use pushd::provider::honor::DAILY_QUOTA_CODE;
use serde_json::{json, Value};
use support::{TestDaemon, TestEnv, WAIT};

const APP_ID: &str = "104400001";
const CLIENT_ID: &str = "5F2A0C7E9B";
const SECRET: &str = "honor-test-client-secret";
const BADGE_CLASS: &str = "com.example.im.MainActivity";

/// A daemon with a `test-honor` credential pointing at a fresh mock; `extra` is TOML placed
/// before the credential, `tweak` adjusts the mock.
async fn start_with(extra: &str, tweak: impl FnOnce(&mut MockHonorConfig)) -> (TestDaemon, MockHonor) {
    let env = TestEnv::new();
    let mut cfg = MockHonorConfig::new(APP_ID, CLIENT_ID, SECRET);
    cfg.tls = Some(env.tls.clone());
    cfg.clock = env.shared_clock();
    tweak(&mut cfg);
    let mock = MockHonor::start(cfg).await.expect("mock honor starts");
    let toml = format!(
        r#"
        {extra}
        [credentials.test-honor]
        vendor = "honor"
        extra_roots = ["{ca}"]
        app_id = "{APP_ID}"
        client_id = "{CLIENT_ID}"
        client_secret = "{SECRET}"
        token_url = "{token_url}"
        send_url = "{url}"
        badge_class = "{BADGE_CLASS}"
        "#,
        token_url = mock.token_url(),
        url = mock.url(),
        ca = env.ca_path.display(),
    );
    let d = TestDaemon::start_in(env, &toml, |_| {}).await;
    (d, mock)
}

async fn start(extra: &str) -> (TestDaemon, MockHonor) {
    start_with(extra, |_| {}).await
}

/// A push token shaped like Honor's, stable per seed.
fn honor_token(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("IQAAAACy0{}{:016x}_{h:016x}", "Hn".repeat(24), h.rotate_left(13))
}

/// What the device listing shows of a token: first 6 and last 4 characters.
fn masked(token: &str) -> String {
    format!("{}…{}", &token[..6], &token[token.len() - 4..])
}

/// Registers `user`'s `device` on the Honor credential, offline; returns its token.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    let token = honor_token(&format!("{user}/{device}"));
    let (status, body) =
        d.put(&format!("/v1/users/{user}/devices/{device}"), json!({"credential": "test-honor", "token": token})).await;
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

/// The attempts of a device trace as `(status, outcome)` pairs.
fn attempts(device: &Value) -> Vec<(Option<u64>, String)> {
    device["push"]["attempts"]
        .as_array()
        .map(|a| {
            a.iter().map(|x| (x["status"].as_u64(), x["outcome"].as_str().unwrap_or_default().to_owned())).collect()
        })
        .unwrap_or_default()
}

/// Waits until the mock has seen `n` sends naming `token`.
async fn sends_to(mock: &MockHonor, token: &str, n: usize) -> Vec<Received> {
    let t = token.to_owned();
    mock.wait_for(move |r| r.iter().filter(|x| tokens_of(&x.body).contains(&t)).count() >= n, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    mock.sends_to(token)
}

/// Waits until the mock has seen `n` tokens in total (over all requests).
async fn tokens_received(mock: &MockHonor, n: usize) -> Vec<Received> {
    mock.wait_for(move |r| r.iter().map(|x| tokens_of(&x.body).len()).sum::<usize>() >= n, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[actix_rt::test]
async fn an_offline_honor_device_gets_a_normal_importance_push_with_bearer_and_timestamp() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = sends_to(&mock, &token, 1).await;
    let r = &got[0];
    assert_eq!((r.status, &r.answer["code"]), (200, &json!(200)), "{}", r.answer);
    assert_eq!(r.headers[":path"], format!("/api/v1/{APP_ID}/sendMessage"));
    assert_eq!(r.headers["authorization"], "Bearer eyJhb");
    assert_eq!(r.headers["timestamp"], d.clock_now().timestamp_millis().to_string(), "the daemon's clock, in ms");
    assert_eq!(r.body["token"], json!([token]));
    assert!(r.body.get("message").is_none(), "no Huawei wrapper: {}", r.body);
    let n = &r.body["android"]["notification"];
    assert_eq!(n["importance"], "NORMAL", "service & communication, not marketing");
    assert_eq!(n["clickAction"], json!({ "type": 3 }));
    assert_eq!(n["title"], "pushd");
    assert_eq!(n["body"], "You have a new message");
    assert_eq!(n["badge"], json!({ "badgeClass": BADGE_CLASS, "setNum": 1 }));
    let data: Value = serde_json::from_str(r.body["data"].as_str().expect("data is a string")).expect("JSON text");
    assert_eq!(
        (data["msg"].as_str(), data["conv"].as_str(), data["sender"].as_str()),
        (Some("m1"), Some("c-alice"), Some("alice"))
    );

    let device = outcome(&d, "bob", "m1", "magic", "delivered").await;
    assert_eq!(device["push"]["vendor"], "honor");
    assert_eq!(mock.token_requests(), 1);
    d.send_text("m2", "alice", &["bob"], "again").await;
    outcome(&d, "bob", "m2", "magic", "delivered").await;
    assert_eq!(mock.token_requests(), 1, "the token is cached");
}

#[actix_rt::test]
async fn a_string_success_code_is_understood_too() {
    let (d, mock) = start_with("", |c| c.success_code = json!("80000000")).await;
    let token = register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "hi").await;

    outcome(&d, "bob", "m1", "magic", "delivered").await;
    assert_eq!(sends_to(&mock, &token, 1).await[0].answer["code"], "80000000");
}

#[actix_rt::test]
async fn an_expired_token_answer_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("expire_token")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = outcome(&d, "bob", "m1", "magic", "invalid_token").await;
    assert_eq!(device["push"]["reason"], "expire_token");
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())]);
    assert!(listed_device(&d, "bob", "magic").await["token"].is_null());
    assert_eq!(mock.sends_to(&token)[0].answer["data"]["expireTokens"], json!([token]));
}

#[actix_rt::test]
async fn a_429_is_retried_after_its_retry_after_then_delivered() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    let answer = MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(429) };
    mock.script(MockRule::for_token(&token, answer).times(1));

    let (m, t) = (mock.clone(), token.clone());
    let gap = actix_rt::spawn(async move {
        let count = move |n: usize| {
            let t = t.clone();
            move |r: &[Received]| r.iter().filter(|x| tokens_of(&x.body).contains(&t)).count() >= n
        };
        m.wait_for(count(1), WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        let first = Instant::now();
        m.wait_for(count(2), WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        first.elapsed()
    });
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = outcome(&d, "bob", "m1", "magic", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(429), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "rate_limited");
}

#[actix_rt::test]
async fn an_expired_access_token_is_refreshed_once_and_the_push_then_succeeds() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    mock.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = outcome(&d, "bob", "m1", "magic", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(401), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "80200003");
    assert_eq!(mock.token_requests(), 2, "one fetch, one refresh");
}

#[actix_rt::test]
async fn an_access_token_past_its_life_is_renewed_before_the_send() {
    let (d, mock) = start_with("", |c| c.token_ttl_secs = 600).await;
    register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    outcome(&d, "bob", "m1", "magic", "delivered").await;
    // Ten minutes on, the mock would answer 80200003; pushd renewed at five.
    d.clock.advance(chrono::Duration::minutes(10));
    d.send_text("m2", "alice", &["bob"], "two").await;

    let second = outcome(&d, "bob", "m2", "magic", "delivered").await;
    assert_eq!(attempts(&second), vec![(Some(200), "delivered".to_owned())], "{second:#}");
    assert_eq!(mock.token_requests(), 2);
}

// Relies on the shared layer's QuotaExhausted parking, rechecked every `delivery.quota_recheck_ms`.
#[actix_rt::test]
async fn the_daily_quota_code_parks_the_credential_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    register(&d, "bob", "magic").await;
    mock.script(MockRule::any(MockAnswer::with_reason(DAILY_QUOTA_CODE)).times(1));
    d.send_text("m1", "alice", &["bob"], "first").await;
    outcome(&d, "bob", "m1", "magic", "quota_exhausted").await;

    d.send_text("m2", "alice", &["bob"], "second").await;
    outcome(&d, "bob", "m2", "magic", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    let shanghai = chrono_tz::Asia::Shanghai;
    let local = d.clock_now().with_timezone(&shanghai);
    let midnight = shanghai
        .from_local_datetime(&(local.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 1).expect("valid time"))
        .single()
        .expect("China has no DST");
    d.clock.set(midnight.with_timezone(&chrono::Utc));

    outcome(&d, "bob", "m1", "magic", "delivered").await;
    outcome(&d, "bob", "m2", "magic", "delivered").await;
    let codes: Vec<Value> = mock.received().iter().map(|r| r.answer["code"].clone()).collect();
    assert_eq!(codes, [json!(80_300_029), json!(200), json!(200)]);
}

/// Registers `n` users `u0…` with one Honor device each; returns their tokens.
async fn register_many(d: &TestDaemon, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(register(d, &format!("u{i}"), "magic").await);
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

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = register_many(&d, 30).await;
    send_group(&d, "g1", 30).await;

    let got = tokens_received(&mock, 30).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| tokens_of(&r.body)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every token exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == 200), "{got:?}");
    for i in 0..30 {
        outcome(&d, &format!("u{i}"), "g1", "magic", "delivered").await;
    }
}

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn a_failed_token_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = register_many(&d, 30).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("fail_token")).times(1));
    send_group(&d, "g1", 30).await;

    let got = tokens_received(&mock, 30).await;
    let carrying = got.iter().find(|r| tokens_of(&r.body).contains(&tokens[7])).expect("u7's request");
    assert!(tokens_of(&carrying.body).len() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["data"]["failTokens"], json!([tokens[7]]));

    let bad = outcome(&d, "u7", "g1", "magic", "invalid_token").await;
    assert_eq!(bad["push"]["reason"], "fail_token");
    assert!(listed_device(&d, "u7", "magic").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        outcome(&d, &format!("u{i}"), "g1", "magic", "delivered").await;
        assert_eq!(listed_device(&d, &format!("u{i}"), "magic").await["token"], masked(&tokens[i]));
    }
}
