//! vivo Push end to end: pushd's HTTP API → the shared provider layer → `provider::vivo` →
//! the loopback mock (`mock_vendor::vivo`), which checks the signed auth, the `authToken`
//! header, the fields and the IM class, and answers in vivo's own `result` codes.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline. The daily-quota
//! tests need the shared layer's parking (`quota_recheck_ms`); the group tests its batching by
//! `batch_key` and its prepare step (`saveListPayload` once per batch, then `pushToList`; once
//! more when vivo answers 10151 because the task expired).

mod support;

use std::time::{Duration, Instant};

use pushd::mock_vendor::vivo::{MockVivo, MockVivoConfig, PUSH_TO_LIST_SCRIPT, SAVE_LIST_SCRIPT};
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

/// [`attempts`] of requests vivo answered with HTTP 200, one per outcome word.
fn answered(outcomes: &[&str]) -> Vec<(Option<u64>, String)> {
    outcomes.iter().map(|o| (Some(200), (*o).to_owned())).collect()
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
    assert_eq!(attempts(&device), answered(&["retry", "delivered"]));
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
    assert_eq!(attempts(&device), answered(&["refresh_auth", "delivered"]));
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

/// Holds a group's pushes for a second: long enough for the fan-out to 30 sessions to meet in
/// one batch even on a busy machine.
const GROUP_LINGER: &str = "[delivery]\nbatch_linger_ms = 1000";

/// Users `u0..u{n-1}`, each with a vivo phone; their regIds in order.
async fn register_many(d: &TestDaemon, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(register(d, &format!("u{i}"), "phone").await);
    }
    tokens
}

/// A group message from alice to `u0..u{n-1}`.
async fn send_group(d: &TestDaemon, id: &str, n: usize) {
    let to: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    d.send(json!({
        "id": id, "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "team", "type": "group", "name": "Team"},
        "to": to, "kind": "text", "text": "standup in 5"
    }))
    .await;
}

/// The recorded calls to `path`, oldest first.
fn calls(mock: &MockVivo, path: &str) -> Vec<Received> {
    mock.received().into_iter().filter(|r| r.headers[":path"] == path).collect()
}

/// The recorded `saveListPayload` and `pushToList` calls, oldest first.
fn group_calls(mock: &MockVivo) -> (Vec<Received>, Vec<Received>) {
    (calls(mock, "/message/saveListPayload"), calls(mock, "/message/pushToList"))
}

/// The regIds of a `pushToList` call.
fn reg_ids(r: &Received) -> Vec<String> {
    r.body["regIds"].as_array().expect("regIds").iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Waits until every one of `u0..u{n-1}` has `outcome` for `message`.
async fn all_outcomes(d: &TestDaemon, message: &str, n: usize, outcome: &str) {
    for i in 0..n {
        let device = wait_push_outcome(d, &format!("u{i}"), message, "phone", outcome).await;
        assert_eq!(device["push"]["outcome"], outcome, "u{i}: {device:#}");
    }
}

#[actix_rt::test]
async fn a_group_message_to_thirty_offline_users_goes_out_as_one_saved_payload_and_one_list_push() {
    let (d, mock) = start(GROUP_LINGER).await;
    let tokens = register_many(&d, 30).await;
    send_group(&d, "g1", 30).await;

    all_outcomes(&d, "g1", 30, "delivered").await;
    let (saves, lists) = group_calls(&mock);
    assert_eq!((saves.len(), lists.len()), (1, 1), "{:#?}", mock.received());
    assert!(calls(&mock, "/message/send").is_empty(), "no device went out alone");
    assert!(mock.received().len() < tokens.len(), "fewer requests than devices");

    let (save, list) = (&saves[0], &lists[0]);
    assert_eq!((save.status, save.answer["result"].as_i64()), (200, Some(0)), "{}", save.answer);
    assert!(save.body.get("regId").is_none(), "the payload names no device: {}", save.body);
    let class = (save.body["classification"].as_i64(), save.body["category"].as_str(), save.body["pushMode"].as_i64());
    assert_eq!(class, (Some(1), Some("IM"), Some(0)), "IM class: {}", save.body);
    assert_eq!(save.body["clientCustomMap"], json!({"msg": "g1", "conv": "team", "sender": "alice"}));
    assert_eq!(save.body["requestId"].as_str().map(str::len), Some(36));

    assert_eq!((list.status, list.answer["result"].as_i64()), (200, Some(0)), "{}", list.answer);
    assert_eq!(list.body["taskId"], save.answer["taskId"], "the list push names the saved task");
    assert_eq!(sorted(reg_ids(list)), sorted(tokens.clone()), "every regId exactly once");
    assert_eq!(list.body["requestId"].as_str().map(str::len), Some(36));
    assert_ne!(list.body["requestId"], save.body["requestId"], "each call has its own requestId");
    assert!([save, list].iter().all(|r| r.headers.get("authtoken").is_some_and(|t| !t.is_empty())));
    assert_eq!(mock.auth_requests(), 1);

    let delivered = mock.delivered();
    assert_eq!(delivered.len(), 30);
    assert!(delivered.iter().all(|x| (x.classification, x.category.as_deref()) == (Some(1), Some("IM"))));
    assert_eq!(mock.duplicates(), 0);
}

#[actix_rt::test]
async fn an_unknown_reg_id_inside_the_list_prunes_only_that_token() {
    let (d, mock) = start(GROUP_LINGER).await;
    let tokens = register_many(&d, 30).await;
    mock.script(MockRule::for_token(&tokens[7], MockAnswer::with_reason("unknown")));
    send_group(&d, "g1", 30).await;

    let u7 = wait_push_outcome(&d, "u7", "g1", "phone", "invalid_token").await;
    assert_eq!(u7["push"]["reason"], "unknown_reg_id", "{u7:#}");
    for i in (0..30).filter(|i| *i != 7) {
        wait_push_outcome(&d, &format!("u{i}"), "g1", "phone", "delivered").await;
    }
    let lists = calls(&mock, "/message/pushToList");
    let carrying = lists.iter().find(|r| reg_ids(r).contains(&tokens[7])).expect("u7 went out in a list");
    assert!(reg_ids(carrying).len() > 1, "u7 shared its request: {:?}", reg_ids(carrying));
    assert_eq!(carrying.answer["result"], 0);
    assert_eq!(carrying.answer["invalidUsers"], json!([{"status": 1, "userid": tokens[7]}]));

    assert!(listed_token(&d, "u7", "phone").await.is_null(), "u7's token pruned");
    for i in (0..30).filter(|i| *i != 7) {
        assert!(!listed_token(&d, &format!("u{i}"), "phone").await.is_null(), "u{i}'s token kept");
    }
    assert_eq!(mock.delivered().len(), 29);
    assert!(mock.delivered_to(&tokens[7]).is_empty());
}

/// A group message to `u0..u4` whose first `times` list pushes vivo answers with `result`;
/// waits until every push shows `outcome`. The daemon, the mock, the regIds and u0's trace.
async fn group_with_list_answer(result: &str, times: u32, outcome: &str) -> (TestDaemon, MockVivo, Vec<String>, Value) {
    let (d, mock) = start(GROUP_LINGER).await;
    let tokens = register_many(&d, 5).await;
    mock.script(MockRule::for_token(PUSH_TO_LIST_SCRIPT, MockAnswer::with_reason(result)).times(times));
    send_group(&d, "g1", 5).await;
    all_outcomes(&d, "g1", 5, outcome).await;
    let u0 = d.wait_outcome("u0", "g1", "phone").await;
    (d, mock, tokens, u0)
}

#[actix_rt::test]
async fn a_rate_limited_list_push_is_retried_with_the_same_task_and_request_id() {
    let (_d, mock, tokens, u0) = group_with_list_answer("10071", 1, "delivered").await;
    assert_eq!(attempts(&u0), answered(&["retry", "delivered"]));
    let (saves, lists) = group_calls(&mock);
    assert_eq!(saves.len(), 1, "the payload is uploaded once per batch, not per attempt");
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].answer["result"], 10071);
    assert_eq!(lists[1].body, lists[0].body, "same taskId, regIds and requestId");
    assert_eq!(sorted(reg_ids(&lists[1])), sorted(tokens));
    assert_eq!(mock.delivered().len(), 5);
}

#[actix_rt::test]
async fn an_expired_task_is_uploaded_again_once_and_the_group_delivered() {
    // vivo forgets the saved payload between the upload and the list push (10151).
    let (_d, mock, tokens, u0) = group_with_list_answer("10151", 1, "delivered").await;
    assert_eq!(attempts(&u0), answered(&["retry", "delivered"]));
    assert_eq!(u0["push"]["attempts"][0]["reason"], "prepared_expired", "{u0:#}");
    let (saves, lists) = group_calls(&mock);
    assert_eq!(saves.len(), 2, "uploaded again after the 10151: {:#?}", mock.received());
    assert_ne!(saves[1].body["requestId"], saves[0].body["requestId"], "a new upload, not a repeat vivo would dedup");
    assert_ne!(saves[1].answer["taskId"], saves[0].answer["taskId"]);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].answer["result"], 10151);
    assert_eq!(lists[1].body["taskId"], saves[1].answer["taskId"], "the resend names the new task");
    assert_eq!(sorted(reg_ids(&lists[1])), sorted(tokens));
    assert_eq!(mock.delivered().len(), 5);
}

#[actix_rt::test]
async fn a_task_expiring_again_after_the_new_upload_fails_the_group() {
    let (_d, mock, _, u0) = group_with_list_answer("10151", 2, "fatal").await;
    assert_eq!(u0["push"]["reason"], "task_id_empty", "{u0:#}");
    assert_eq!(attempts(&u0), answered(&["retry", "fatal"]));
    let (saves, lists) = group_calls(&mock);
    assert_eq!((saves.len(), lists.len()), (2, 2), "one new upload per batch, never a loop");
    assert!(mock.delivered().is_empty());
}

#[actix_rt::test]
async fn a_rejected_auth_token_on_the_payload_upload_is_refreshed_once_and_the_group_delivered() {
    let (d, mock) = start(GROUP_LINGER).await;
    register_many(&d, 5).await;
    mock.script(
        MockRule::for_token(SAVE_LIST_SCRIPT, MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1),
    );
    send_group(&d, "g1", 5).await;

    all_outcomes(&d, "g1", 5, "delivered").await;
    let u0 = d.wait_outcome("u0", "g1", "phone").await;
    assert_eq!(attempts(&u0), answered(&["refresh_auth", "delivered"]));
    let (saves, lists) = group_calls(&mock);
    assert_eq!(saves.len(), 2);
    assert_eq!(saves[0].answer["result"], 10000);
    assert_ne!(saves[0].headers["authtoken"], saves[1].headers["authtoken"], "a fresh token");
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].body["taskId"], saves[1].answer["taskId"]);
    assert_eq!(mock.auth_requests(), 2, "exactly one refresh");
}

#[actix_rt::test]
async fn a_daily_quota_answer_to_the_list_push_parks_the_group_and_reuses_the_task_the_next_day() {
    let (d, mock) = start(&format!("{GROUP_LINGER}\nquota_recheck_ms = 20")).await;
    register_many(&d, 5).await;
    mock.script(MockRule::for_token(PUSH_TO_LIST_SCRIPT, MockAnswer::with_reason("10070")).times(1));
    send_group(&d, "g1", 5).await;

    all_outcomes(&d, "g1", 5, "quota_exhausted").await;
    assert_eq!(calls(&mock, "/message/pushToList").len(), 1, "nothing more the same day");

    d.clock.set(after_china_midnight(d.clock_now()));
    all_outcomes(&d, "g1", 5, "delivered").await;
    let (saves, lists) = group_calls(&mock);
    assert_eq!(saves.len(), 1);
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[1].body["taskId"], lists[0].body["taskId"]);
    assert_eq!(mock.answered(10070), 1);
    assert_eq!(mock.delivered().len(), 5);
}
