//! Meizu Flyme Push end to end, through pushd's HTTP API against the loopback mock: the MD5
//! `sign` and the private message class on the wire, pruning on per-pushId 110002, keeping a
//! switched-off pushId, the top-level 110010 rate limit, a refused signature, the 110019 daily
//! quota parking the credential until 00:00 China time, and group fan-out in batched requests.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline.

mod support;

use std::time::Duration;

use pushd::mock_vendor::meizu::{MockMeizu, MockMeizuConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::json;
use support::{
    after_china_midnight, attempts, masked, seed_hash, time_retry_gap, wait_tokens_total, TestDaemon, TestEnv,
};

const APP_ID: &str = "100999";
const SECRET: &str = "mzSecret0123456789abcdef";

/// A daemon with a `test-meizu` credential pointing at a fresh mock. `extra` is TOML placed
/// before the credential (e.g. a `[delivery]` table).
async fn start(extra: &str) -> (TestDaemon, MockMeizu) {
    let mock = |env: &TestEnv| {
        let mut cfg = MockMeizuConfig::new(APP_ID, SECRET);
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        MockMeizu::start(cfg)
    };
    TestDaemon::start_with_mock(extra, "meizu", mock, |mock| {
        format!(
            r#"
            endpoint = "{url}"
            app_id = {APP_ID}
            app_secret = "{SECRET}"
            "#,
            url = mock.url(),
        )
    })
    .await
}

/// A pushId shaped like Meizu's samples (a letter prefix and hex, 45 chars), stable per seed.
fn push_id(seed: &str) -> String {
    let h = seed_hash(seed);
    format!("ULY{h:016x}{:016x}{:010x}", h.rotate_left(21), h & 0xff_ffff_ffff)
}

/// Registers `user`'s `device` on the Meizu credential, offline; returns its pushId.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    d.register_offline(user, device, "test-meizu", &push_id(&format!("{user}/{device}"))).await
}

/// Waits until the mock has seen `n` pushIds in total (over all requests).
async fn push_ids_received(mock: &MockMeizu, n: usize) -> Vec<Received> {
    wait_tokens_total(mock, n, |r| r.token.split(',').count()).await
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

    let device = d.wait_push_outcome("bob", "m1", "mz", "delivered").await;
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

    let device = d.wait_push_outcome("bob", "m1", "mz", "invalid_token").await;
    assert_eq!(mock.received()[0].answer["value"], json!({"110002": [token]}));
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())]);
    assert!(d.listed_device("bob", "mz").await["token"].is_null());
}

#[actix_rt::test]
async fn a_pushid_with_notifications_switched_off_is_not_retried_and_keeps_its_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mz").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("value:110010")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mz", "fatal").await;
    assert_eq!(attempts(&device), vec![(Some(200), "fatal".to_owned())]);
    assert_eq!(mock.requests_total(), 1);
    assert_eq!(d.listed_device("bob", "mz").await["token"], masked(&token), "the token is kept");
}

#[actix_rt::test]
async fn the_110010_rate_limit_is_retried_after_a_second_then_delivered() {
    let (d, mock) = start("").await;
    register(&d, "bob", "mz").await;
    mock.script(MockRule::any(MockAnswer::with_reason("110010")).times(1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let gap = time_retry_gap(&mock, |_| true);
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: Meizu asks for at least a second.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_push_outcome("bob", "m1", "mz", "delivered").await;
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

    let device = d.wait_push_outcome("bob", "m1", "mz", "fatal").await;
    assert_eq!(attempts(&device), vec![(Some(200), "fatal".to_owned())]);
    assert_eq!(codes(&mock), ["1006"]);
    assert_eq!(d.listed_device("bob", "mz").await["token"], masked(&token), "the token is kept");
}

#[actix_rt::test]
async fn the_110019_daily_quota_parks_the_credential_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    register(&d, "bob", "mz").await;
    mock.script(MockRule::any(MockAnswer::with_reason("110019")).times(1));
    d.send_text("m1", "alice", &["bob"], "first").await;
    d.wait_push_outcome("bob", "m1", "mz", "quota_exhausted").await;

    // While parked, a second push waits without spending a request.
    d.send_text("m2", "alice", &["bob"], "second").await;
    d.wait_push_outcome("bob", "m2", "mz", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    d.clock.set(after_china_midnight(d.clock_now()));

    d.wait_push_outcome("bob", "m1", "mz", "delivered").await;
    d.wait_push_outcome("bob", "m2", "mz", "delivered").await;
    assert_eq!(codes(&mock), ["110019", "200", "200"]);
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mz", "test-meizu", push_id).await;
    d.send_group("g1", 30).await;

    let got = push_ids_received(&mock, 30).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| r.token.split(',').map(str::to_owned)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every pushId exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == "200"));
    for i in 0..30 {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mz", "delivered").await;
    }
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn an_unregistered_pushid_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mz", "test-meizu", push_id).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("110002")).times(1));
    d.send_group("g1", 30).await;

    let got = push_ids_received(&mock, 30).await;
    let carrying = got.iter().find(|r| r.token.split(',').any(|t| t == tokens[7])).expect("u7's request");
    assert!(carrying.token.split(',').count() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["value"], json!({"110002": [tokens[7]]}));

    d.wait_push_outcome("u7", "g1", "mz", "invalid_token").await;
    assert!(d.listed_device("u7", "mz").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mz", "delivered").await;
        assert_eq!(d.listed_device(&format!("u{i}"), "mz").await["token"], masked(&tokens[i]));
    }
}
