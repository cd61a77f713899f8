//! Xiaomi MiPush end to end, through pushd's HTTP API against the loopback mock: the app-secret
//! header and the private channel on the wire, pruning on `No valid targets!` and `bad_regids`,
//! the 10027 rate limit, a refused secret, the 200001 daily quota parking the credential until
//! 00:00 China time, and group fan-out in batched requests.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline.

mod support;

use std::time::Duration;

use pushd::mock_vendor::xiaomi::{MockXiaomi, MockXiaomiConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::{json, Value};
use support::{
    after_china_midnight, attempts, masked, seed_hash, time_retry_gap, wait_tokens_total, TestDaemon, TestEnv,
};

const SECRET: &str = "dGVzdC1zZWNyZXQtMDE=";
const PACKAGE: &str = "com.example.im";
const CHANNEL: &str = "im_private_01";

/// A daemon with a `test-xiaomi` credential pointing at a fresh mock. `extra` is TOML placed
/// before the credential (e.g. a `[delivery]` table).
async fn start(extra: &str) -> (TestDaemon, MockXiaomi) {
    let mock = |env: &TestEnv| {
        let mut cfg = MockXiaomiConfig::new(SECRET, PACKAGE, CHANNEL);
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        MockXiaomi::start(cfg)
    };
    TestDaemon::start_with_mock(extra, "xiaomi", mock, |mock| {
        format!(
            r#"
            endpoint = "{url}"
            app_secret = "{SECRET}"
            package_name = "{PACKAGE}"
            channel_id = "{CHANNEL}"
            "#,
            url = mock.url(),
        )
    })
    .await
}

/// A regId shaped like Xiaomi's (44 chars of Base64 with `=` padding), stable per seed; the
/// `+` and `/` make a missing form encoding visible at the mock.
fn regid(seed: &str) -> String {
    let h = seed_hash(seed);
    format!("Qm9n+/{h:016x}{:020x}=", h.rotate_left(17) & 0xffff_ffff_ffff)
}

/// Registers `user`'s `device` on the Xiaomi credential, offline; returns its regId.
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    d.register_offline(user, device, "test-xiaomi", &regid(&format!("{user}/{device}"))).await
}

/// Waits until the mock has seen `n` regIds in total (over all requests).
async fn regids_received(mock: &MockXiaomi, n: usize) -> Vec<Received> {
    wait_tokens_total(mock, n, |r| r.token.split(',').count()).await
}

#[actix_rt::test]
async fn an_offline_xiaomi_device_gets_a_push_on_the_private_channel_with_the_app_secret() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mi").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = regids_received(&mock, 1).await;
    let r = &got[0];
    assert_eq!((r.status, r.answer["code"].as_i64()), (200, Some(0)), "{:?}", r.answer);
    assert_eq!(r.token, token, "the regId survives the form encoding");
    assert_eq!(r.headers[":path"], "/v3/message/regid");
    assert_eq!(r.headers["authorization"], "key=dGVzdC1z", "first 12 chars of `key=<AppSecret>`");
    assert!(r.headers["content-type"].starts_with("application/x-www-form-urlencoded"));
    assert_eq!(r.body["restricted_package_name"], PACKAGE);
    assert_eq!(r.body["extra.channel_id"], CHANNEL, "IM goes on the private-message channel");
    assert_eq!(r.body["pass_through"], "0");
    assert_eq!(r.body["title"], "pushd");
    assert_eq!(r.body["description"], "You have a new message");
    assert!(r.body["notify_id"].as_str().is_some_and(|n| n.parse::<u32>().is_ok()));
    let payload: Value = serde_json::from_str(r.body["payload"].as_str().expect("payload")).expect("payload JSON");
    assert_eq!(payload, json!({"msg": "m1", "conv": "c-alice", "sender": "alice"}));
    assert_eq!(mock.sends_without_channel(), 0);

    let device = d.wait_push_outcome("bob", "m1", "mi", "delivered").await;
    assert_eq!(device["push"]["vendor"], "xiaomi");
    assert_eq!(device["push"]["credential"], "test-xiaomi");
    assert_eq!(attempts(&device), vec![(Some(200), "delivered".to_owned())]);
}

#[actix_rt::test]
async fn no_valid_targets_prunes_the_token() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mi").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("bad_regid")).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mi", "invalid_token").await;
    assert_eq!(mock.received()[0].answer["reason"], "No valid targets!");
    assert_eq!(attempts(&device), vec![(Some(200), "invalid_token".to_owned())]);
    assert!(d.listed_device("bob", "mi").await["token"].is_null());
}

#[actix_rt::test]
async fn the_10027_rate_limit_is_retried_after_a_second_then_delivered() {
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mi").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("10027")).times(1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let gap = time_retry_gap(&mock, |_| true);
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: Xiaomi asks for at least a second.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_push_outcome("bob", "m1", "mi", "delivered").await;
    assert_eq!(attempts(&device), vec![(Some(200), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    let codes: Vec<Option<i64>> = mock.received().iter().map(|r| r.answer["code"].as_i64()).collect();
    assert_eq!(codes, [Some(10027), Some(0)]);
}

#[actix_rt::test]
async fn a_refused_app_secret_is_fatal_at_once_since_there_is_no_token_to_refresh() {
    // Xiaomi auth is a static secret (AuthPlan::None): `expire_auth` answers 21301, which a
    // refresh cannot fix, so there is no refresh-and-retry; the token is kept.
    let (d, mock) = start("").await;
    let token = register(&d, "bob", "mi").await;
    mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_push_outcome("bob", "m1", "mi", "fatal").await;
    assert_eq!(attempts(&device), vec![(Some(200), "fatal".to_owned())]);
    assert_eq!(mock.requests_total(), 1);
    assert_eq!(mock.received()[0].answer["code"], 21301);
    assert_eq!(d.listed_device("bob", "mi").await["token"], masked(&token), "the token is kept");
}

#[actix_rt::test]
async fn the_200001_daily_quota_parks_the_credential_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20").await;
    register(&d, "bob", "mi").await;
    mock.script(MockRule::any(MockAnswer::with_reason("200001")).times(1));
    d.send_text("m1", "alice", &["bob"], "first").await;
    d.wait_push_outcome("bob", "m1", "mi", "quota_exhausted").await;

    // While parked, a second push waits without spending a request.
    d.send_text("m2", "alice", &["bob"], "second").await;
    d.wait_push_outcome("bob", "m2", "mi", "quota_exhausted").await;
    assert_eq!(mock.requests_total(), 1, "{:?}", mock.received());

    d.clock.set(after_china_midnight(d.clock_now()));

    d.wait_push_outcome("bob", "m1", "mi", "delivered").await;
    d.wait_push_outcome("bob", "m2", "mi", "delivered").await;
    let codes: Vec<Option<i64>> = mock.received().iter().map(|r| r.answer["code"].as_i64()).collect();
    assert_eq!(codes, [Some(200_001), Some(0), Some(0)]);
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batched_requests() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mi", "test-xiaomi", regid).await;
    d.send_group("g1", 30).await;

    let got = regids_received(&mock, 30).await;
    let mut seen: Vec<String> = got.iter().flat_map(|r| r.token.split(',').map(str::to_owned)).collect();
    seen.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(seen, expected, "every regId exactly once");
    assert!(got.len() < 30, "{} requests for 30 devices", got.len());
    assert!(got.iter().all(|r| r.answer["code"] == 0));
    for i in 0..30 {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mi", "delivered").await;
    }
}

// Needs the shared layer's batching by `batch_key`.
#[actix_rt::test]
async fn a_bad_regid_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50").await;
    let tokens = d.register_offline_many(30, "mi", "test-xiaomi", regid).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("bad_regid")).times(1));
    d.send_group("g1", 30).await;

    let got = regids_received(&mock, 30).await;
    let carrying = got.iter().find(|r| r.token.split(',').any(|t| t == tokens[7])).expect("u7's request");
    assert!(carrying.token.split(',').count() > 1, "u7 went out in a batch: {}", carrying.token);
    assert_eq!(carrying.answer["data"]["bad_regids"], tokens[7].as_str());

    d.wait_push_outcome("u7", "g1", "mi", "invalid_token").await;
    assert!(d.listed_device("u7", "mi").await["token"].is_null());
    for i in (0..30).filter(|i| *i != 7) {
        d.wait_push_outcome(&format!("u{i}"), "g1", "mi", "delivered").await;
        assert_eq!(d.listed_device(&format!("u{i}"), "mi").await["token"], masked(&tokens[i]));
    }
}
