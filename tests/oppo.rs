//! OPPO Push end to end: pushd's HTTP API → the shared provider layer → `provider::oppo` →
//! the loopback mock (`mock_vendor::oppo`), which checks the signed auth, the form, the IM class
//! fields and the registration ids, and answers in OPPO's own codes.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The daily-quota
//! and batching tests need the shared layer's parking and batching (`quota_recheck_ms`,
//! `batch_linger_ms`).

mod support;

use std::time::Duration;

use pushd::mock_vendor::oppo::{MockOppo, MockOppoConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::{json, Value};
use support::{
    after_china_midnight, apns_token, attempts, group_message, time_retry_gap, users, wait_requests_for,
    wait_tokens_total, TestDaemon, TestEnv,
};

const APP_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const MASTER_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const UNICAST: &str = "/server/v1/message/notification/unicast";
const UNICAST_BATCH: &str = "/server/v1/message/notification/unicast_batch";

/// A daemon with a `test-oppo` credential pointing at a fresh mock; `more` is TOML placed
/// before the credential table.
async fn start(more: &str, tweak: impl FnOnce(&mut MockOppoConfig)) -> (TestDaemon, MockOppo) {
    let mock = |env: &TestEnv| {
        let mut cfg = MockOppoConfig::new(APP_KEY, MASTER_SECRET);
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        tweak(&mut cfg);
        MockOppo::start(cfg)
    };
    TestDaemon::start_with_mock(more, "oppo", mock, |mock| {
        format!(
            r#"
            endpoint = "{url}"
            app_key = "{APP_KEY}"
            master_secret = "{MASTER_SECRET}"
            "#,
            url = mock.url(),
        )
    })
    .await
}

/// A China registration id, stable per seed.
fn reg_id(seed: &str) -> String {
    format!("CN_{}", &apns_token(seed)[..32])
}

/// Registers an OPPO device (offline until a presence event says otherwise).
async fn register(d: &TestDaemon, user: &str, device: &str) -> String {
    d.register(user, device, "test-oppo", &reg_id(&format!("{user}/{device}"))).await
}

/// Waits until the mock has answered `n` requests carrying `token`.
async fn received_for(mock: &MockOppo, token: &str, n: usize) -> Vec<Received> {
    wait_requests_for(mock, token, n, |r, t| r.token.split(',').any(|x| x == t)).await
}

#[actix_rt::test]
async fn an_offline_device_gets_a_signed_im_class_push_that_the_mock_accepts() {
    let (d, mock) = start("", |_| {}).await;
    let token = register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "See you at 6?").await;

    let got = received_for(&mock, &token, 1).await;
    let r = &got[0];
    assert_eq!((r.status, r.answer["code"].as_i64()), (200, Some(0)), "{:?}", r.answer);
    assert_eq!(r.headers[":path"], UNICAST);
    assert!(r.headers["content-type"].starts_with("application/x-www-form-urlencoded"));
    assert!(r.body["auth_token"].as_str().is_some_and(|t| !t.is_empty()), "auth_token form field");
    let message = &r.body["message"];
    assert_eq!(message["target_type"], 2);
    assert_eq!(message["target_value"], token.as_str());
    let n = &message["notification"];
    assert_eq!(n["category"], "IM", "IM class on the wire: {n}");
    assert_eq!(n["notify_level"], 2);
    assert_eq!(n["title"], "pushd");
    assert_eq!(n["content"], "You have a new message");
    assert_eq!(n["click_action_type"], 0);
    assert!(n.get("badge").is_none());
    let params: Value =
        serde_json::from_str(n["action_parameters"].as_str().expect("action_parameters")).expect("JSON");
    assert_eq!(
        (params["msg"].as_str(), params["conv"].as_str(), params["sender"].as_str()),
        (Some("m1"), Some("c-alice"), Some("alice"))
    );
    assert_eq!(mock.auth_requests(), 1, "one signed auth call");
    assert_eq!(mock.tokens_issued(), 1);
    assert_eq!(mock.delivered_to(&token).len(), 1);

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(device["push"]["vendor"], "oppo");
    assert_eq!(device["push"]["credential"], "test-oppo");
}

#[actix_rt::test]
async fn an_invalid_registration_id_answer_prunes_the_token() {
    let (d, mock) = start("", |_| {}).await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("10000")));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "invalid_token", "{device:#}");
    assert_eq!(device["push"]["reason"], "invalid_registration_id");
    assert_eq!(received_for(&mock, &token, 1).await[0].answer["code"], 10000);
    assert!(d.listed_device("bob", "phone").await["token"].is_null(), "token pruned");
}

#[actix_rt::test]
async fn server_flow_control_is_retried_after_a_second_then_delivered() {
    let (d, mock) = start("", |_| {}).await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("-2")).times(1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let t = token.clone();
    let gap = time_retry_gap(&mock, move |r| r.token.split(',').any(|x| x == t));
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: code -2 asks for at least a second.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device), vec![(Some(200), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    let codes: Vec<Value> = received_for(&mock, &token, 2).await.iter().map(|r| r.answer["code"].clone()).collect();
    assert_eq!(codes, vec![json!(-2), json!(0)]);
}

#[actix_rt::test]
async fn a_rejected_auth_token_is_refreshed_once_and_the_push_delivered() {
    let (d, mock) = start("", |_| {}).await;
    let token = register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "warm up").await;
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");
    assert_eq!(mock.auth_requests(), 1);

    // The mock revokes the token it answers 11 for: only a fresh one can succeed.
    mock.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));
    d.send_text("m2", "alice", &["bob"], "hi").await;

    let device = d.wait_outcome("bob", "m2", "phone").await;
    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device), vec![(Some(200), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(mock.auth_requests(), 2, "exactly one refresh");
    let got = received_for(&mock, &token, 3).await;
    assert_eq!(got[1].answer["code"], 11);
    assert_ne!(got[1].body["auth_token"], got[2].body["auth_token"]);
}

#[actix_rt::test]
async fn the_auth_token_is_renewed_before_oppo_would_expire_it() {
    let (d, mock) = start("", |_| {}).await;
    register(&d, "bob", "phone").await;
    d.send_text("m1", "alice", &["bob"], "one").await;
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");

    // 21 h later the 24 h token still works at the mock, but pushd renews it at 20 h.
    d.clock.advance(chrono::Duration::hours(21));
    d.send_text("m2", "alice", &["bob"], "two").await;
    let device = d.wait_outcome("bob", "m2", "phone").await;

    assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    assert_eq!(attempts(&device).len(), 1, "{device:#}");
    assert_eq!(mock.auth_requests(), 2);
}

#[actix_rt::test]
async fn the_daily_quota_parks_pushes_until_midnight_china_time() {
    let (d, mock) = start("[delivery]\nquota_recheck_ms = 20", |_| {}).await;
    let token = register(&d, "bob", "phone").await;
    mock.script(MockRule::for_token(&token, MockAnswer::with_reason("33")).times(1));

    d.send_text("m1", "alice", &["bob"], "one").await;
    let first = d.wait_push_outcome("bob", "m1", "phone", "quota_exhausted").await;
    assert_eq!(first["push"]["reason"], "daily_quota", "{first:#}");
    // Sent while parked: reported parked without a request.
    d.send_text("m2", "alice", &["bob"], "two").await;
    d.wait_push_outcome("bob", "m2", "phone", "quota_exhausted").await;
    assert_eq!(mock.received().len(), 1, "nothing more reaches OPPO the same day");

    d.clock.set(after_china_midnight(d.clock_now()));
    for m in ["m1", "m2"] {
        let device = d.wait_push_outcome("bob", m, "phone", "delivered").await;
        assert_eq!(device["push"]["outcome"], "delivered", "{device:#}");
    }
    assert_eq!(mock.delivered_to(&token).len(), 2);
    assert_eq!(mock.answered(33), 1);
}

#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_in_batches() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50", |_| {}).await;
    let users = users(30);
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(register(&d, u, "phone").await);
    }
    d.send(group_message("g1", &users)).await;

    let all = wait_tokens_total(&mock, 30, |r| r.token.split(',').count()).await;
    for u in &users {
        assert_eq!(d.wait_outcome(u, "g1", "phone").await["push"]["outcome"], "delivered", "{u}");
    }
    assert!(all.len() < 30, "{} requests for 30 devices", all.len());
    assert!(all.iter().any(|r| r.headers[":path"] == UNICAST_BATCH));
    let delivered: std::collections::BTreeSet<String> =
        mock.delivered().into_iter().map(|x| x.registration_id).collect();
    assert_eq!(delivered, tokens.into_iter().collect());
    // One message, one app_message_id for every target: OPPO de-duplicates per target.
    let ids: std::collections::BTreeSet<Option<String>> =
        mock.delivered().into_iter().map(|x| x.app_message_id).collect();
    assert_eq!(ids.len(), 1);
}

#[actix_rt::test]
async fn an_invalid_id_inside_a_batch_prunes_only_that_token() {
    let (d, mock) = start("[delivery]\nbatch_linger_ms = 50", |_| {}).await;
    let users = users(5);
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(register(&d, u, "phone").await);
    }
    mock.script(MockRule::for_token(&tokens[2], MockAnswer::with_reason("10000")));
    d.send(group_message("g1", &users)).await;

    for (i, u) in users.iter().enumerate() {
        let device = d.wait_outcome(u, "g1", "phone").await;
        let expected = if i == 2 { "invalid_token" } else { "delivered" };
        assert_eq!(device["push"]["outcome"], expected, "{u}: {device:#}");
    }
    for (i, u) in users.iter().enumerate() {
        let listed = d.listed_device(u, "phone").await["token"].clone();
        assert_eq!(listed.is_null(), i == 2, "{u}: {listed}");
    }
    let requests = mock.received();
    assert!(requests.len() < users.len(), "{} requests for {} devices", requests.len(), users.len());
    let batch = requests.iter().find(|r| r.token.contains(&tokens[2])).expect("the bad id was sent");
    assert_eq!(batch.headers[":path"], UNICAST_BATCH);
    let entry =
        batch.answer["data"].as_array().and_then(|es| es.iter().find(|e| e["registrationId"] == tokens[2].as_str()));
    assert_eq!(entry.map(|e| e["errorCode"].clone()), Some(json!(10000)));
}
