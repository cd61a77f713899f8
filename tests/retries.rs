//! How pushd acts on each class of vendor answer (product.md §4, apns.md §5, fcm.md §5):
//! invalid tokens are pruned (except under the APNs 410 timestamp rule), transient answers are
//! retried with backoff and Retry-After up to `max_attempts`, fatal answers are never retried,
//! and a rejected auth token is refreshed once, then fatal.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline.

mod support;

use std::time::Duration;

use pushd::mock_vendor::{MockAnswer, MockRule};
use serde_json::Value;
use support::{attempts, metric, time_retry_gap, TestDaemon};

fn rule(token: &str, answer: MockAnswer, times: u32) -> MockRule {
    MockRule::for_token(token, answer).times(times)
}

// ---- invalid tokens ----

#[actix_rt::test]
async fn apns_unregistered_removes_the_token_notes_it_in_the_trace_and_counts_it() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let registered = registered_at_ms(&d.listed_device("bob", "phone").await);
    let before = metric(&d.metrics().await, "pushd_invalid_tokens_removed_total", &[r#"vendor="apns""#]);
    // APNs saw the token invalid a minute after the device registered it.
    let answer = MockAnswer { timestamp_ms: Some(registered + 60_000), ..MockAnswer::with_reason("Unregistered") };
    d.apns.script(rule(&token, answer, 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "invalid_token", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "Unregistered");
    let note = dev["push"]["note"].as_str().unwrap_or_default();
    assert!(note.starts_with("token removed"), "note: {dev:#}");
    assert_eq!(attempts(&dev), vec![(Some(410), "invalid_token".to_owned())], "an invalid token is not retried");
    assert_eq!(d.apns.received_for(&token).len(), 1);

    assert!(d.listed_device("bob", "phone").await["token"].is_null());
    let after = metric(&d.metrics().await, "pushd_invalid_tokens_removed_total", &[r#"vendor="apns""#]);
    assert!(after >= before + 1.0, "metric went from {before} to {after}");

    // The device is still known but gets nothing any more.
    d.send_text("m2", "alice", &["bob"], "still there?").await;
    assert_eq!(d.decision("bob", "m2", "phone").await, "no_token");
    assert_eq!(d.apns.received_for(&token).len(), 1);
}

#[actix_rt::test]
async fn apns_unregistered_in_the_same_millisecond_as_the_registration_removes_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    // The mock's 410 timestamp defaults to its clock's now: the test clock stands still, so
    // that is the registration instant, in ms. apns.md §5: delete when registered_at (ms) ≤
    // timestamp; the boundary is inclusive.
    d.apns.script(rule(&token, MockAnswer::with_reason("Unregistered"), 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "invalid_token", "{dev:#}");
    assert!(dev["push"]["note"].as_str().unwrap_or_default().starts_with("token removed"), "{dev:#}");
    assert!(d.listed_device("bob", "phone").await["token"].is_null());
}

#[actix_rt::test]
async fn apns_unregistered_older_than_the_registration_keeps_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let listed = d.listed_device("bob", "phone").await;
    let registered = registered_at_ms(&listed);
    // APNs saw the token invalid a minute before the device registered it (again): keep it.
    let answer = MockAnswer { timestamp_ms: Some(registered - 60_000), ..MockAnswer::with_reason("Unregistered") };
    d.apns.script(rule(&token, answer, 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "invalid_token", "{dev:#}");
    assert!(dev["push"]["note"].as_str().unwrap_or_default().starts_with("token kept"), "{dev:#}");
    assert_eq!(d.listed_device("bob", "phone").await["token"], listed["token"]);

    // The kept token still gets the next push.
    d.send_text("m2", "alice", &["bob"], "again").await;
    let got = d.apns_received(&token, 2).await;
    assert_eq!(got[1].status, 200);
    assert_eq!(got[1].body["msg"], "m2");
}

/// `registered_at` of a listed device, in ms since the epoch.
fn registered_at_ms(device: &Value) -> i64 {
    let text = device["registered_at"].as_str().unwrap_or_else(|| panic!("registered_at missing: {device}"));
    chrono::DateTime::parse_from_rfc3339(text).expect("registered_at is RFC 3339").timestamp_millis()
}

#[actix_rt::test]
async fn apns_bad_device_token_removes_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(rule(&token, MockAnswer::with_reason("BadDeviceToken"), 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "invalid_token", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "BadDeviceToken");
    assert_eq!(attempts(&dev), vec![(Some(400), "invalid_token".to_owned())]);
    assert!(d.listed_device("bob", "phone").await["token"].is_null());
}

#[actix_rt::test]
async fn fcm_unregistered_removes_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    let before = metric(&d.metrics().await, "pushd_invalid_tokens_removed_total", &[r#"vendor="fcm""#]);
    d.fcm.script(rule(&token, MockAnswer::with_reason("UNREGISTERED"), 1));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "invalid_token", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "UNREGISTERED");
    assert!(dev["push"]["note"].as_str().unwrap_or_default().starts_with("token removed"), "{dev:#}");
    assert_eq!(d.fcm.received_for(&token).len(), 1);
    assert!(d.listed_device("carol", "pixel").await["token"].is_null());
    let after = metric(&d.metrics().await, "pushd_invalid_tokens_removed_total", &[r#"vendor="fcm""#]);
    assert!(after >= before + 1.0, "metric went from {before} to {after}");
}

// ---- transient answers ----

#[actix_rt::test]
async fn apns_retry_after_is_honoured_before_the_second_attempt() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let answer = MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(429) };
    d.apns.script(rule(&token, answer, 1));

    // Started before the message is sent, so the first arrival is seen as it happens.
    let t = token.clone();
    let gap = time_retry_gap(&d.apns, move |r| r.token == t);
    d.send_text("m1", "alice", &["bob"], "hi").await;
    let gap = gap.await.expect("waiter");
    // A lower bound only: pushd never comes back earlier than the vendor asked.
    assert!(gap >= Duration::from_secs(1), "second attempt came {gap:?} after the first");

    let got = d.apns.received_for(&token);
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);
    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(attempts(&dev), vec![(Some(429), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
}

#[actix_rt::test]
async fn apns_server_errors_are_retried_until_the_vendor_recovers() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(rule(&token, MockAnswer::with_status(500), 1));
    d.apns.script(rule(&token, MockAnswer::with_status(503), 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(
        attempts(&dev),
        vec![(Some(500), "retry".to_owned()), (Some(503), "retry".to_owned()), (Some(200), "delivered".to_owned())]
    );
    assert_eq!(d.apns.received_for(&token).iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 503, 200]);
}

#[actix_rt::test]
async fn apns_server_errors_are_given_up_after_max_attempts() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(MockRule::for_token(&token, MockAnswer::with_status(503)));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "retry", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "ServiceUnavailable");
    assert_eq!(attempts(&dev), vec![(Some(503), "retry".to_owned()); 3]);
    // The outcome is final: no fourth request follows.
    assert_eq!(d.apns.received_for(&token).len(), 3);
    // Giving up on a transient error does not touch the token.
    assert!(d.listed_device("bob", "phone").await["token"].is_string());
}

#[actix_rt::test]
async fn a_vendor_that_does_not_answer_in_time_is_retried() {
    let d = TestDaemon::start_with("[delivery]\nrequest_timeout_ms = 200").await;
    let token = d.register_apns("bob", "phone").await;
    // Answered only after pushd's per-attempt timeout; the mock records it on arrival.
    d.apns.script(rule(&token, MockAnswer { delay_ms: Some(2_000), ..MockAnswer::default() }, 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(attempts(&dev), vec![(None, "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(dev["push"]["attempts"][0]["reason"], "timeout");
    assert_eq!(d.apns.received_for(&token).len(), 2);
}

#[actix_rt::test]
async fn fcm_quota_exceeded_with_retry_after_is_retried_then_delivered() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    let answer = MockAnswer { retry_after_secs: Some(1), ..MockAnswer::with_status(429) };
    d.fcm.script(rule(&token, answer, 1));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(attempts(&dev), vec![(Some(429), "retry".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(d.fcm.received_for(&token).len(), 2);
}

#[actix_rt::test]
async fn fcm_quota_exceeded_without_retry_after_waits_a_minute_so_a_5s_deadline_gives_up() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    d.fcm.script(rule(&token, MockAnswer::with_status(429), 1));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    // fcm.md §6: without Retry-After, back off at least 60 s; that lands past the deadline.
    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "retry", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "QUOTA_EXCEEDED");
    assert_eq!(d.fcm.received_for(&token).len(), 1);
}

#[actix_rt::test]
async fn fcm_unavailable_is_retried_then_delivered() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    d.fcm.script(rule(&token, MockAnswer::with_status(503), 2));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(
        attempts(&dev),
        vec![(Some(503), "retry".to_owned()), (Some(503), "retry".to_owned()), (Some(200), "delivered".to_owned())]
    );
    assert_eq!(d.fcm.received_for(&token).len(), 3);
}

// ---- fatal answers ----

#[actix_rt::test]
async fn apns_bad_topic_is_fatal_never_retried_and_keeps_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(rule(&token, MockAnswer::with_reason("BadTopic"), 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "fatal", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "BadTopic");
    assert_eq!(attempts(&dev), vec![(Some(400), "fatal".to_owned())]);
    assert_eq!(d.apns.received_for(&token).len(), 1);
    assert!(d.listed_device("bob", "phone").await["token"].is_string());
}

#[actix_rt::test]
async fn fcm_sender_id_mismatch_is_fatal_never_retried_and_keeps_the_token() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    d.fcm.script(rule(&token, MockAnswer::with_reason("SENDER_ID_MISMATCH"), 1));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "fatal", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "SENDER_ID_MISMATCH");
    assert_eq!(attempts(&dev), vec![(Some(403), "fatal".to_owned())]);
    assert_eq!(d.fcm.received_for(&token).len(), 1);
    // A wrong credential answers this for every token: pruning would wipe them all.
    assert!(d.listed_device("carol", "pixel").await["token"].is_string());
}

// ---- auth refresh ----

#[actix_rt::test]
async fn apns_expired_provider_token_is_refreshed_once_and_the_push_delivered() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(rule(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }, 1));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(attempts(&dev), vec![(Some(403), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    let got = d.apns.received_for(&token);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].answer["reason"], "ExpiredProviderToken");
}

#[actix_rt::test]
async fn apns_auth_rejected_again_after_the_refresh_is_fatal_not_a_loop() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.apns.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }));
    d.send_text("m1", "alice", &["bob"], "hi").await;

    let dev = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(dev["push"]["outcome"], "fatal", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "ExpiredProviderToken");
    assert_eq!(attempts(&dev).len(), 2, "{dev:#}");
    assert_eq!(d.apns.received_for(&token).len(), 2);
    assert!(d.listed_device("bob", "phone").await["token"].is_string());
}

#[actix_rt::test]
async fn fcm_unauthenticated_fetches_a_new_access_token_once_and_delivers() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    d.send_text("m1", "alice", &["carol"], "warm up").await;
    assert_eq!(d.wait_outcome("carol", "m1", "pixel").await["push"]["outcome"], "delivered");
    assert_eq!(d.fcm.token_requests(), 1);

    // The mock also revokes the access token it answers 401 for: only a new one can succeed.
    d.fcm.script(rule(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }, 1));
    d.send_text("m2", "alice", &["carol"], "hi").await;
    let dev = d.wait_outcome("carol", "m2", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "delivered", "{dev:#}");
    assert_eq!(attempts(&dev), vec![(Some(401), "refresh_auth".to_owned()), (Some(200), "delivered".to_owned())]);
    assert_eq!(d.fcm.token_requests(), 2);
    assert_eq!(d.fcm.received_for(&token).len(), 3);
}

#[actix_rt::test]
async fn fcm_unauthenticated_again_after_the_refresh_is_fatal_not_a_loop() {
    let d = TestDaemon::start().await;
    let token = d.register_fcm("carol", "pixel").await;
    d.fcm.script(MockRule::for_token(&token, MockAnswer { expire_auth: true, ..MockAnswer::default() }));
    d.send_text("m1", "alice", &["carol"], "hi").await;

    let dev = d.wait_outcome("carol", "m1", "pixel").await;
    assert_eq!(dev["push"]["outcome"], "fatal", "{dev:#}");
    assert_eq!(dev["push"]["reason"], "UNAUTHENTICATED");
    assert_eq!(attempts(&dev).len(), 2, "{dev:#}");
    assert_eq!(d.fcm.received_for(&token).len(), 2);
    assert_eq!(d.fcm.token_requests(), 2, "one fetch for the first attempt, one refresh");
    assert!(d.listed_device("carol", "pixel").await["token"].is_string());
}
