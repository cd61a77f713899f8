//! Honor Push end to end, through pushd's HTTP API against the loopback mock: the OAuth token
//! call (client id distinct from the App ID), the `timestamp` header and `importance: NORMAL`
//! on the wire, pruning on `expireTokens`, a 429 retried after its Retry-After, an expired access
//! token refreshed once, the (unverified) daily-quota code parking the credential until 00:00
//! China time, and group fan-out in batched requests with one token in `failTokens`.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The mock refuses a
//! send without a numeric `timestamp` header and any Huawei-shaped (snake_case) field.

mod support;

use std::time::Duration;

use pushd::mock_vendor::honor::{tokens_of, MockHonor, MockHonorConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use pushd::provider::honor::DAILY_QUOTA_CODE;
use serde_json::{json, Value};
use support::{
    after_china_midnight, attempts, masked, seed_hash, time_retry_gap, wait_requests_for, wait_tokens_total,
    TestDaemon, TestEnv,
};

const APP_ID: &str = "104400001";
const CLIENT_ID: &str = "5F2A0C7E9B";
const SECRET: &str = "honor-test-client-secret";
const BADGE_CLASS: &str = "com.example.im.MainActivity";

/// A daemon with a `test-honor` credential pointing at a fresh mock; `extra` is TOML placed
/// before the credential, `tweak` adjusts the mock.
async fn start_with(extra: &str, tweak: impl FnOnce(&mut MockHonorConfig)) -> (TestDaemon, MockHonor) {
    let mock = |env: &TestEnv| {
        let mut cfg = MockHonorConfig::new(APP_ID, CLIENT_ID, SECRET);
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        tweak(&mut cfg);
        MockHonor::start(cfg)
    };
    TestDaemon::start_with_mock(extra, "honor", mock, |mock| {
        format!(
            r#"
            app_id = "{APP_ID}"
            client_id = "{CLIENT_ID}"
            client_secret = "{SECRET}"
            token_url = "{token_url}"
            send_url = "{url}"
            badge_class = "{BADGE_CLASS}"
            "#,
            token_url = mock.token_url(),
            url = mock.url(),
        )
    })
    .await
}

async fn start(extra: &str) -> (TestDaemon, MockHonor) {
    start_with(extra, |_| {}).await
}

/// A push token shaped like Honor's, stable per seed.
fn honor_token(seed: &str) -> String {
    let h = seed_hash(seed);
    format!("IQAAAACy0{}{:016x}_{h:016x}", "Hn".repeat(24), h.rotate_left(13))
}

/// Registers `user`'s `device` on the Honor credential, offline; returns its token.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    d.register_offline(user, device, "test-honor", &honor_token(&format!("{user}/{device}"))).await
}

/// Whether a recorded send names `token`.
fn names(r: &Received, token: &str) -> bool {
    tokens_of(&r.body).iter().any(|t| t == token)
}

#[actix_rt::test]
async fn an_offline_honor_device_gets_a_normal_importance_push_with_bearer_and_timestamp() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = wait_requests_for(&mock, &token, 1, names).await;
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

    let device = d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    assert_eq!(device["push"]["vendor"], "honor");
    assert_eq!(mock.token_requests(), 1);
    d.send_text("m2", "alice", &["bob"], "again").await;
    d.wait_push_outcome("bob", "m2", "magic", "delivered").await;
    assert_eq!(mock.token_requests(), 1, "the token is cached");
}

#[actix_rt::test]
async fn a_string_success_code_is_understood_too() {
    let (d, mock) = start_with("", |c| c.success_code = json!("80000000")).await;
    let token = register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "hi").await;

    d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    assert_eq!(wait_requests_for(&mock, &token, 1, names).await[0].answer["code"], "80000000");
}

#[actix_rt::test]
async fn an_expired_token_answer_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("expire_token")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "magic", "invalid_token").await;
    assert_eq!(device["push"]["reason"], "expire_token");
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())]);
    assert!(d.listed_device("bob", "magic").await["token"].is_null());
    assert_eq!(mock.sends_to(&token)[0].answer["data"]["expireTokens"], json!([token]));
}

#[actix_rt::test]
async fn a_429_is_retried_after_its_retry_after_then_delivered() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    let answer = MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(429) };
    mock.script(MockRule::for_token(&token, answer).times(1));

    let t = token.clone();
    let gap = time_retry_gap(&mock, move |r| names(r, &t));
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(429), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "rate_limited");
}

#[actix_rt::test]
async fn an_expired_access_token_is_refreshed_once_and_the_push_then_succeeds() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "magic").await;
    mock.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(401), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "80200003");
    assert_eq!(mock.token_requests(), 2, "one fetch, one refresh");
}

#[actix_rt::test]
async fn an_access_token_past_its_life_is_renewed_before_the_send() {
    let (d, mock) = start_with("", |c| c.token_ttl_secs = 600).await;
    register(&d, "bob", "magic").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    // Ten minutes on, the mock would answer 80200003; pushd renewed at five.
    d.clock.advance(chrono::Duration::minutes(10));
    d.send_text("m2", "alice", &["bob"], "two").await;

    let second = d.wait_push_outcome("bob", "m2", "magic", "delivered").await;
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
    d.wait_push_outcome("bob", "m1", "magic", "quota_exhausted").await;

    d.send_text("m2", "alice", &["bob"], "second").await;
    d.wait_push_outcome("bob", "m2", "magic", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    d.clock.set(after_china_midnight(d.clock_now()));

    d.wait_push_outcome("bob", "m1", "magic", "delivered").await;
    d.wait_push_outcome("bob", "m2", "magic", "delivered").await;
    let codes: Vec<Value> = mock.received().iter().map(|r| r.answer["code"].clone()).collect();
    assert_eq!(codes, [json!(80_300_029), json!(200), json!(200)]);
}

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "magic", "test-honor", honor_token).await;
    d.send_group("g1", 30).await;

    let got = wait_tokens_total(&mock, 30, |r| tokens_of(&r.body).len()).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| tokens_of(&r.body)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every token exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == 200), "{got:?}");
    for i in 0..30 {
        d.wait_push_outcome(&format!("u{i}"), "g1", "magic", "delivered").await;
    }
}

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn a_failed_token_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "magic", "test-honor", honor_token).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("fail_token")).times(1));
    d.send_group("g1", 30).await;

    let got = wait_tokens_total(&mock, 30, |r| tokens_of(&r.body).len()).await;
    let carrying = got.iter().find(|r| tokens_of(&r.body).contains(&tokens[7])).expect("u7's request");
    assert!(tokens_of(&carrying.body).len() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["data"]["failTokens"], json!([tokens[7]]));

    let bad = d.wait_push_outcome("u7", "g1", "magic", "invalid_token").await;
    assert_eq!(bad["push"]["reason"], "fail_token");
    assert!(d.listed_device("u7", "magic").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        d.wait_push_outcome(&format!("u{i}"), "g1", "magic", "delivered").await;
        assert_eq!(d.listed_device(&format!("u{i}"), "magic").await["token"], masked(&tokens[i]));
    }
}
