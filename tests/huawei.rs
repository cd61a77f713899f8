//! Huawei Push Kit end to end, through pushd's HTTP API against the loopback mock: the OAuth
//! token call and the IM class fields on the wire, the token cached and renewed before it
//! expires, pruning on `80300007`, the 503 flow control retried after its delay, an expired
//! access token refreshed once, a refused secret, the (unverified) daily-quota code parking the
//! credential until 00:00 China time, and group fan-out in batched requests with `80100000`
//! naming the one bad token.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The mock refuses
//! notification messages without `category: "IM"` (`require_im_category`), so every delivered
//! alert below also proves the IM class was on the wire.

mod support;

use std::time::Duration;

use pushd::mock_vendor::huawei::{tokens_of, MockHuawei, MockHuaweiConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use pushd::provider::huawei::DAILY_QUOTA_CODE;
use serde_json::{json, Value};
use support::{
    after_china_midnight, attempts, masked, seed_hash, time_retry_gap, wait_requests_for, wait_tokens_total,
    TestDaemon, TestEnv,
};

const APP_ID: &str = "104123456";
const SECRET: &str = "huawei-test-app-secret";
const BADGE_CLASS: &str = "com.example.im.MainActivity";

/// A daemon with a `test-huawei` credential pointing at a fresh mock. `extra` is TOML placed
/// before the credential (e.g. a `[delivery]` table); `secret` is what the credential says.
async fn start_with(extra: &str, secret: &str) -> (TestDaemon, MockHuawei) {
    let mock = |env: &TestEnv| {
        let mut cfg = MockHuaweiConfig::new(APP_ID, SECRET);
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        cfg.require_im_category = true;
        MockHuawei::start(cfg)
    };
    TestDaemon::start_with_mock(extra, "huawei", mock, |mock| {
        format!(
            r#"
            app_id = "{APP_ID}"
            client_secret = "{secret}"
            token_url = "{token_url}"
            send_url = "{url}"
            channel_id = "chat"
            badge_class = "{BADGE_CLASS}"
            "#,
            token_url = mock.token_url(),
            url = mock.url(),
        )
    })
    .await
}

async fn start(extra: &str) -> (TestDaemon, MockHuawei) {
    start_with(extra, SECRET).await
}

/// A push token shaped like Huawei's (`A–Z a–z 0–9 - _`, ~100 chars), stable per seed.
fn hms_token(seed: &str) -> String {
    let h = seed_hash(seed);
    format!("IQAAAACy0tEXAAD-{}{:016x}_{h:016x}", "x".repeat(64), h.rotate_left(29))
}

/// Registers `user`'s `device` on the Huawei credential, offline; returns its token.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    d.register_offline(user, device, "test-huawei", &hms_token(&format!("{user}/{device}"))).await
}

/// Whether a recorded send names `token`.
fn names(r: &Received, token: &str) -> bool {
    tokens_of(&r.body).iter().any(|t| t == token)
}

#[actix_rt::test]
async fn an_offline_huawei_device_gets_an_im_push_with_a_bearer_token_from_the_oauth_call() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = wait_requests_for(&mock, &token, 1, names).await;
    let r = &got[0];
    assert_eq!((r.status, r.answer["code"].as_str()), (200, Some("80000000")), "{}", r.answer);
    assert_eq!(r.headers[":path"], format!("/v1/{APP_ID}/messages:send"));
    assert_eq!(r.headers["authorization"], "Bearer DQEBA", "the mock-issued token, `\\/` unescaped");
    assert!(r.headers["content-type"].starts_with("application/json"));
    let message = &r.body["message"];
    assert_eq!(message["token"], json!([token]));
    let android = &message["android"];
    assert_eq!(android["category"], "IM");
    let n = &android["notification"];
    assert_eq!(n["importance"], "NORMAL");
    assert_eq!(n["click_action"], json!({ "type": 3 }));
    assert_eq!(n["channel_id"], "chat");
    assert_eq!(n["title"], "pushd");
    assert_eq!(n["body"], "You have a new message");
    assert_eq!(n["group"], "c-alice");
    assert_eq!(n["badge"], json!({ "class": BADGE_CLASS, "set_num": 1 }));
    let data: Value = serde_json::from_str(message["data"].as_str().expect("data is a string")).expect("JSON text");
    assert_eq!(
        (data["msg"].as_str(), data["conv"].as_str(), data["sender"].as_str()),
        (Some("m1"), Some("c-alice"), Some("alice"))
    );

    let device = d.wait_push_outcome("bob", "m1", "mate", "delivered").await;
    assert_eq!(device["push"]["vendor"], "huawei");
    assert_eq!(device["push"]["credential"], "test-huawei");
    assert_eq!(mock.token_requests(), 1);
}

#[actix_rt::test]
async fn the_access_token_is_reused_then_renewed_before_huawei_would_expire_it() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    d.wait_push_outcome("bob", "m1", "mate", "delivered").await;
    d.clock.advance(chrono::Duration::minutes(30));
    d.send_text("m2", "alice", &["bob"], "two").await;
    d.wait_push_outcome("bob", "m2", "mate", "delivered").await;
    assert_eq!(mock.token_requests(), 1, "one token serves the hour");

    // 56 minutes after the fetch, within pushd's 5-minute margin: renewed before any 80200003.
    d.clock.advance(chrono::Duration::minutes(26));
    d.send_text("m3", "alice", &["bob"], "three").await;
    let third = d.wait_push_outcome("bob", "m3", "mate", "delivered").await;
    assert_eq!(attempts(&third), vec![(Some(200), "delivered".to_owned())], "{third:#}");
    assert_eq!(mock.token_requests(), 2);
    assert!(wait_requests_for(&mock, &token, 3, names).await.iter().all(|r| r.status == 200));
}

#[actix_rt::test]
async fn all_tokens_invalid_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("80300007")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mate", "invalid_token").await;
    assert_eq!(device["push"]["reason"], "80300007");
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())], "business code in a 200");
    assert!(d.listed_device("bob", "mate").await["token"].is_null());
    assert_eq!(mock.sends_to(&token).len(), 1, "an invalid token is not retried");
}

#[actix_rt::test]
async fn flow_control_503_is_retried_after_the_delay_then_delivered() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    let answer = MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(503) };
    mock.script(MockRule::for_token(&token, answer).times(1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let t = token.clone();
    let gap = time_retry_gap(&mock, move |r| names(r, &t));
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: pushd never comes back earlier than the vendor asked.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_push_outcome("bob", "m1", "mate", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(503), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "flow_control");
}

#[actix_rt::test]
async fn an_expired_access_token_is_refreshed_once_and_the_push_then_succeeds() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    d.wait_push_outcome("bob", "m1", "mate", "delivered").await;
    // Huawei revoked the cached token early (pushd believes it good for another 55 minutes).
    mock.expire_all_tokens();
    d.send_text("m2", "alice", &["bob"], "two").await;

    let device = d.wait_push_outcome("bob", "m2", "mate", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(401), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(device["push"]["attempts"][0]["reason"], "80200003");
    assert_eq!(mock.token_requests(), 2, "one fetch, one refresh");
    let codes: Vec<Option<String>> = wait_requests_for(&mock, &token, 3, names)
        .await
        .iter()
        .map(|r| r.answer["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(codes, [Some("80000000".into()), Some("80200003".into()), Some("80000000".into())]);
}

#[actix_rt::test]
async fn an_auth_error_after_the_refresh_is_fatal_not_a_loop() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mate").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("80200001")));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mate", "fatal").await;
    assert_eq!(device["push"]["reason"], "80200001");
    let statuses: Vec<Option<u64>> = attempts(&device).into_iter().map(|(status, _)| status).collect();
    assert_eq!(statuses, [Some(401), Some(401)], "{device:#}");
    assert_eq!(mock.token_requests(), 2, "one fetch for the first attempt, one refresh");
    assert_eq!(d.listed_device("bob", "mate").await["token"], masked(&token), "an auth error never prunes");
}

#[actix_rt::test]
async fn a_refused_client_secret_is_fatal_and_nothing_is_sent() {
    let (d, mock) = start_with("", "not-the-secret").await;
    register(&d, "bob", "mate").await;
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mate", "fatal").await;
    assert_eq!(device["push"]["reason"], "auth_rejected");
    assert!(mock.token_requests() >= 1);
    assert_eq!(mock.requests_total(), 0, "{:?}", mock.received());
}

// Relies on the shared layer's QuotaExhausted parking, rechecked every `delivery.quota_recheck_ms`.
#[actix_rt::test]
async fn the_daily_quota_code_parks_the_credential_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    register(&d, "bob", "mate").await;
    mock.script(MockRule::any(MockAnswer::with_reason(DAILY_QUOTA_CODE)).times(1));
    d.send_text("m1", "alice", &["bob"], "first").await;
    d.wait_push_outcome("bob", "m1", "mate", "quota_exhausted").await;

    // While parked, a second push waits without spending a request.
    d.send_text("m2", "alice", &["bob"], "second").await;
    d.wait_push_outcome("bob", "m2", "mate", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    d.clock.set(after_china_midnight(d.clock_now()));

    d.wait_push_outcome("bob", "m1", "mate", "delivered").await;
    d.wait_push_outcome("bob", "m2", "mate", "delivered").await;
    let codes: Vec<Option<String>> =
        mock.received().iter().map(|r| r.answer["code"].as_str().map(str::to_owned)).collect();
    assert_eq!(codes, [Some(DAILY_QUOTA_CODE.to_owned()), Some("80000000".into()), Some("80000000".into())]);
}

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mate", "test-huawei", hms_token).await;
    d.send_group("g1", 30).await;

    let got = wait_tokens_total(&mock, 30, |r| tokens_of(&r.body).len()).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| tokens_of(&r.body)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every token exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == "80000000"), "{got:?}");
    for i in 0..30 {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mate", "delivered").await;
    }
}

// Relies on the shared layer's batching by `batch_key` within `delivery.batch_linger_ms`.
#[actix_rt::test]
async fn an_illegal_token_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mate", "test-huawei", hms_token).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("80300007")).times(1));
    d.send_group("g1", 30).await;

    let got = wait_tokens_total(&mock, 30, |r| tokens_of(&r.body).len()).await;
    let carrying = got.iter().find(|r| tokens_of(&r.body).contains(&tokens[7])).expect("u7's request");
    assert!(tokens_of(&carrying.body).len() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["code"], "80100000");
    let detail: Value = serde_json::from_str(carrying.answer["msg"].as_str().unwrap_or_default()).expect("msg JSON");
    assert_eq!(detail["illegal_tokens"], json!([tokens[7]]));

    let bad = d.wait_push_outcome("u7", "g1", "mate", "invalid_token").await;
    assert_eq!(bad["push"]["reason"], "illegal_token");
    assert!(d.listed_device("u7", "mate").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mate", "delivered").await;
        assert_eq!(d.listed_device(&format!("u{i}"), "mate").await["token"], masked(&tokens[i]));
    }
}
