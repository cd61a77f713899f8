//! The Matrix push gateway API (issue 7, docs/matrix.md): notify requests shaped as Synapse
//! sends them, posted without the gateway API key, and what the mock vendors received and
//! the homeserver was answered: the full format, `event_id_only` (a silent push with only the
//! ids), badge-only updates, several pushers on APNs, FCM and Huawei in one request, dead
//! pushkeys in `rejected` (never a 4xx), unknown app ids, 502 once retries give up or the
//! answer would be late, one push per (event, pushkey) across homeserver retries, the source
//! network check, bad input answered 4xx, and the endpoint being off by default.
//!
//! The test config allows 3 attempts, 20–200 ms backoff and a 5 s deadline.

mod support;

use pushd::api::matrix::{trace_user, NOTIFY_PATH};
use pushd::mock_vendor::huawei::{tokens_of, MockHuawei, MockHuaweiConfig};
use pushd::mock_vendor::{MockAnswer, MockRule, Received};
use serde_json::{json, Value};
use support::{apns_token, fcm_token, metric, TestDaemon, TestEnv, WAIT};

const IOS: &str = "com.example.ios";
const ANDROID: &str = "com.example.android";
const HUAWEI: &str = "com.example.huawei";
const EVENT: &str = "$3957tyerfgewrf384";
const ROOM: &str = "!slw48wfj34rtnrf:example.com";

/// The `[matrix]` section every test but the "off" and "allowed networks" ones uses.
const MATRIX: &str = r#"
[matrix]
enabled = true
[matrix.apps]
"com.example.ios" = "test-apns"
"com.example.android" = "test-fcm"
"#;

async fn start() -> TestDaemon {
    TestDaemon::start_with(MATRIX).await
}

/// [`MATRIX`] with one more `[matrix]` key.
fn matrix_with(line: &str) -> String {
    MATRIX.replacen("enabled = true", &format!("enabled = true\n{line}"), 1)
}

/// Posts to the notify endpoint as a homeserver does: JSON, no credentials.
async fn notify(d: &TestDaemon, body: &Value) -> (u16, Value) {
    notify_raw(d, body.to_string()).await
}

async fn notify_raw(d: &TestDaemon, body: String) -> (u16, Value) {
    let resp = d
        .http
        .post(format!("{}{NOTIFY_PATH}", d.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One pusher as Synapse lists it.
fn pusher(app_id: &str, pushkey: &str) -> Value {
    json!({"app_id": app_id, "pushkey": pushkey, "pushkey_ts": 1_700_000_000, "data": {}, "tweaks": {"sound": "bing"}})
}

/// The spec's example notification for `event_id`, to `devices`.
fn message_event(event_id: &str, devices: Vec<Value>) -> Value {
    json!({"notification": {
        "id": event_id,
        "event_id": event_id,
        "room_id": ROOM,
        "type": "m.room.message",
        "sender": "@exampleuser:matrix.org",
        "sender_display_name": "Major Tom",
        "room_name": "Mission Control",
        "room_alias": "#exampleroom:matrix.org",
        "prio": "high",
        "content": {"msgtype": "m.text", "body": "I'm floating in a most peculiar way."},
        "counts": {"unread": 2, "missed_calls": 1},
        "devices": devices,
    }})
}

async fn outcome_count(d: &TestDaemon, outcome: &str) -> f64 {
    metric(&d.metrics().await, "pushd_matrix_notifications_total", &[&format!("outcome=\"{outcome}\"")])
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// No visible text in an APNs `aps`: no alert, or one with empty title and body.
fn no_alert_text(aps: &Value) -> bool {
    let alert = &aps["alert"];
    let empty = |field: &str| alert[field].as_str().unwrap_or("").is_empty();
    alert.is_null() || (empty("title") && empty("body"))
}

// ---- formats ----

#[actix_rt::test]
async fn a_full_notification_reaches_apns_with_room_sender_text_badge_sound_and_ids() {
    let d = start().await;
    let key = apns_token("ios-1");
    let (status, body) = notify(&d, &message_event(EVENT, vec![pusher(IOS, &key)])).await;
    assert_eq!((status, &body), (200, &json!({"rejected": []})));

    // The answer comes after the vendor's: the push is already recorded.
    let got = d.apns.received_for(&key);
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    let aps = &r.body["aps"];
    assert_eq!(aps["alert"]["title"], "Mission Control");
    assert_eq!(aps["alert"]["body"], "Major Tom: I'm floating in a most peculiar way.");
    assert_eq!((&aps["badge"], &aps["sound"], &aps["thread-id"]), (&json!(2), &json!("bing"), &json!(ROOM)));
    assert_eq!((&r.body["event_id"], &r.body["room_id"]), (&json!(EVENT), &json!(ROOM)));
    assert_eq!((r.headers["apns-push-type"].as_str(), r.headers["apns-priority"].as_str()), ("alert", "10"));

    // The pusher's trace, as for the native API.
    let user = trace_user(IOS, &key).expect("trace user");
    let (status, pushes) = d.get(&format!("/v1/users/{user}/pushes")).await;
    assert_eq!(status, 200, "{pushes}");
    let entry = &pushes["pushes"][0];
    assert_eq!((&entry["message_id"], &entry["conversation_id"]), (&json!(EVENT), &json!(ROOM)), "{pushes:#}");
    let push = &entry["devices"][0]["push"];
    assert_eq!(
        (&push["vendor"], &push["credential"], &push["outcome"]),
        (&json!("apns"), &json!("test-apns"), &json!("delivered"))
    );
}

#[actix_rt::test]
async fn a_low_priority_notification_reaches_fcm_as_a_normal_priority_alert() {
    let d = start().await;
    let key = fcm_token("android-1");
    let mut event = message_event(EVENT, vec![pusher(ANDROID, &key)]);
    event["notification"]["prio"] = json!("low");
    event["notification"]["content"] = json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://x/y"});
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body), (200, &json!({"rejected": []})));

    let got = d.fcm.received_for(&key);
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = &got[0].body["message"];
    assert_eq!(m["notification"], json!({"title": "Mission Control", "body": "Major Tom: [Image]"}));
    assert_eq!(m["data"], json!({"event_id": EVENT, "room_id": ROOM}));
    assert_eq!(m["android"]["priority"], "NORMAL");
    assert_eq!(m["android"]["notification"]["notification_count"], 2);
}

#[actix_rt::test]
async fn event_id_only_sends_a_silent_push_carrying_only_the_ids() {
    let d = start().await;
    let (ios, android) = (apns_token("ios-eio"), fcm_token("android-eio"));
    let only_ids = |app: &str, key: &str| json!({"app_id": app, "pushkey": key, "pushkey_ts": 1_700_000_000, "data": {"format": "event_id_only"}});
    // What Synapse sends for an event_id_only pusher.
    let event = json!({"notification": {"event_id": EVENT, "room_id": ROOM, "counts": {"unread": 3},
        "prio": "high", "devices": [only_ids(IOS, &ios), only_ids(ANDROID, &android)]}});
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body), (200, &json!({"rejected": []})));

    let apns = &d.apns.received_for(&ios)[0];
    assert_eq!(keys(&apns.body), ["aps", "event_id", "room_id"], "{:#}", apns.body);
    assert_eq!(apns.body["aps"], json!({"content-available": 1}));
    assert_eq!((&apns.body["event_id"], &apns.body["room_id"]), (&json!(EVENT), &json!(ROOM)));
    assert_eq!((apns.headers["apns-push-type"].as_str(), apns.headers["apns-priority"].as_str()), ("background", "5"));

    let fcm = &d.fcm.received_for(&android)[0].body["message"];
    assert!(fcm["notification"].is_null(), "a data-only message: {fcm:#}");
    assert!(fcm["android"]["notification"].is_null(), "{fcm:#}");
    assert_eq!(fcm["data"], json!({"event_id": EVENT, "room_id": ROOM}));
    assert_eq!(fcm["android"]["priority"], "HIGH", "wakes an Android app in Doze");
}

#[actix_rt::test]
async fn a_notification_without_event_id_only_updates_the_badge() {
    let d = start().await;
    let (ios, android) = (apns_token("ios-badge"), fcm_token("android-badge"));
    // Synapse's badge update after a read receipt: no event, empty id and sender, null type.
    let update = json!({"notification": {"id": "", "type": null, "sender": "", "counts": {"unread": 5},
        "devices": [pusher(IOS, &ios), pusher(ANDROID, &android)]}});
    let (status, body) = notify(&d, &update).await;
    assert_eq!((status, &body), (200, &json!({"rejected": []})));

    let apns = &d.apns.received_for(&ios)[0].body;
    assert_eq!(apns["aps"]["badge"], 5, "{apns:#}");
    assert!(apns["aps"]["sound"].is_null() && no_alert_text(&apns["aps"]), "{apns:#}");
    assert_eq!(keys(apns), ["aps"], "no event ids: {apns:#}");

    let fcm = &d.fcm.received_for(&android)[0].body["message"];
    assert!(fcm["notification"].is_null(), "{fcm:#}");
    assert_eq!(fcm["data"], json!({"unread": "5"}));

    // Count updates are idempotent: a second one is pushed again.
    assert_eq!(notify(&d, &update).await.0, 200);
    assert_eq!(d.apns.received_for(&ios).len(), 2);
}

// ---- several pushers ----

#[actix_rt::test]
async fn pushers_on_apns_fcm_and_huawei_in_one_request_are_each_pushed_once() {
    let mock = |env: &TestEnv| {
        let mut cfg = MockHuaweiConfig::new("104123456", "huawei-test-app-secret");
        cfg.tls = Some(env.tls.clone());
        cfg.clock = env.shared_clock();
        cfg.require_im_category = true;
        MockHuawei::start(cfg)
    };
    let extra = format!("{MATRIX}\n\"{HUAWEI}\" = \"test-huawei\"");
    let (d, huawei) = TestDaemon::start_with_mock(&extra, "huawei", mock, |huawei| {
        format!(
            r#"
            app_id = "104123456"
            client_secret = "huawei-test-app-secret"
            token_url = "{token_url}"
            send_url = "{url}"
            "#,
            token_url = huawei.token_url(),
            url = huawei.url(),
        )
    })
    .await;
    let (ios, android, hms) =
        (apns_token("ios-multi"), fcm_token("android-multi"), format!("IQAAAACy0tEXAAD-{}", "h".repeat(80)));
    let event = message_event(EVENT, vec![pusher(IOS, &ios), pusher(ANDROID, &android), pusher(HUAWEI, &hms)]);
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body), (200, &json!({"rejected": []})));

    assert_eq!(d.apns.received_for(&ios)[0].body["aps"]["alert"]["title"], "Mission Control");
    assert_eq!(d.fcm.received_for(&android)[0].body["message"]["notification"]["title"], "Mission Control");
    let to_hms: Vec<Received> = huawei.received().into_iter().filter(|r| tokens_of(&r.body).contains(&hms)).collect();
    assert_eq!(to_hms.len(), 1, "{to_hms:#?}");
    let android_msg = &to_hms[0].body["message"]["android"];
    assert_eq!(android_msg["category"], "IM");
    assert_eq!(android_msg["notification"]["title"], "Mission Control");
    assert_eq!(android_msg["notification"]["body"], "Major Tom: I'm floating in a most peculiar way.");
    let data: Value =
        serde_json::from_str(to_hms[0].body["message"]["data"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(data, json!({"event_id": EVENT, "room_id": ROOM}));
}

// ---- rejected pushkeys ----

#[actix_rt::test]
async fn a_410_from_apns_rejects_that_pushkey_and_no_other() {
    let d = start().await;
    let (dead, alive, android) = (apns_token("ios-dead"), apns_token("ios-alive"), fcm_token("android-alive"));
    d.apns.script(MockRule::for_token(&dead, MockAnswer::with_reason("Unregistered")));
    let before = outcome_count(&d, "invalid_token").await;

    let event = message_event(EVENT, vec![pusher(IOS, &dead), pusher(IOS, &alive), pusher(ANDROID, &android)]);
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body), (200, &json!({"rejected": [dead]})), "a dead token is never a 4xx");
    assert_eq!(d.apns.received_for(&dead)[0].status, 410);
    assert_eq!(d.apns.received_for(&alive)[0].status, 200);
    assert_eq!(d.fcm.received_for(&android)[0].status, 200);
    assert_eq!(d.apns.received_for(&dead).len(), 1, "an invalid token is not retried");
    assert_eq!(outcome_count(&d, "invalid_token").await, before + 1.0);
}

#[actix_rt::test]
async fn an_unknown_app_id_or_a_malformed_pushkey_is_rejected_without_a_push() {
    let d = start().await;
    let (known, not_hex) = (apns_token("ios-known"), "not-a-hex-token".to_owned());
    let event = message_event(
        EVENT,
        vec![pusher("org.example.unknown", "some-key"), pusher(IOS, &not_hex), pusher(IOS, &known)],
    );
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body), (200, &json!({"rejected": ["some-key", not_hex]})));
    assert_eq!(d.apns.requests_total(), 1, "only the known, well-formed pusher was pushed");
    assert_eq!(d.fcm.requests_total(), 0);
    assert!(outcome_count(&d, "unknown_app").await >= 1.0);
}

// ---- failures and retries ----

#[actix_rt::test]
async fn vendor_5xx_until_retries_give_up_answers_502_and_the_retry_then_delivers_once() {
    let d = start().await;
    let key = apns_token("ios-5xx");
    d.apns.script(MockRule::for_token(&key, MockAnswer::with_reason("InternalServerError")));
    let event = message_event(EVENT, vec![pusher(IOS, &key)]);

    let (status, body) = notify(&d, &event).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "not_delivered", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("failed"), "{body}");
    assert_eq!(d.apns.received_for(&key).len(), 3, "max_attempts, then the 502");

    // APNs recovers; the homeserver's retry delivers, and a further retry pushes nothing.
    d.apns.clear_rules();
    assert_eq!(notify(&d, &event).await, (200, json!({"rejected": []})));
    assert_eq!(d.apns.received_for(&key).len(), 4);
    assert_eq!(notify(&d, &event).await, (200, json!({"rejected": []})));
    assert_eq!(d.apns.received_for(&key).len(), 4);
}

#[actix_rt::test]
async fn a_retried_request_is_answered_200_without_a_second_push() {
    let d = start().await;
    let (ios, android) = (apns_token("ios-retry"), fcm_token("android-retry"));
    let event = message_event(EVENT, vec![pusher(IOS, &ios), pusher(ANDROID, &android)]);
    let before = outcome_count(&d, "duplicate").await;
    assert_eq!(notify(&d, &event).await, (200, json!({"rejected": []})));
    assert_eq!(notify(&d, &event).await, (200, json!({"rejected": []})));
    assert_eq!((d.apns.received_for(&ios).len(), d.fcm.received_for(&android).len()), (1, 1));
    assert_eq!(outcome_count(&d, "duplicate").await, before + 2.0);

    // Another event to the same pushers is a new push.
    assert_eq!(notify(&d, &message_event("$another", vec![pusher(IOS, &ios)])).await.0, 200);
    assert_eq!(d.apns.received_for(&ios).len(), 2);
}

#[actix_rt::test]
async fn a_retry_sent_while_the_first_push_is_in_flight_waits_for_it_instead_of_pushing_again() {
    let d = start().await;
    let key = apns_token("ios-inflight");
    let slow = MockAnswer { delay_ms: Some(500), ..MockAnswer::default() };
    d.apns.script(MockRule::for_token(&key, slow));
    let event = message_event(EVENT, vec![pusher(IOS, &key)]);
    let (first, second) = tokio::join!(notify(&d, &event), notify(&d, &event));
    assert_eq!(first, (200, json!({"rejected": []})));
    assert_eq!(second, (200, json!({"rejected": []})));
    assert_eq!(d.apns.received_for(&key).len(), 1);
}

#[actix_rt::test]
async fn a_late_vendor_answer_gives_502_in_time_and_the_retries_push_nothing_more() {
    let d = TestDaemon::start_with(&matrix_with("answer_timeout_ms = 300")).await;
    let key = apns_token("ios-late");
    d.apns.script(MockRule::for_token(&key, MockAnswer { delay_ms: Some(1500), ..MockAnswer::default() }).times(1));
    let event = message_event(EVENT, vec![pusher(IOS, &key)]);
    let started = std::time::Instant::now();
    let (status, body) = notify(&d, &event).await;
    assert_eq!((status, &body["error"]["code"]), (502, &json!("not_delivered")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("timeout"), "{body}");
    assert!(started.elapsed() < WAIT);

    // The homeserver retries until it gets a 200: waiting on the first push (502 again while
    // it is still in flight), then seeing it delivered.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = notify(&d, &event).await;
        if status == 200 {
            assert_eq!(body, json!({"rejected": []}));
            break;
        }
        assert_eq!(status, 502, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never answered 200: {body}");
    }
    assert_eq!(d.apns.received_for(&key).len(), 1);
}

// ---- bad input and access ----

#[actix_rt::test]
async fn bad_input_is_a_400_in_the_api_error_shape_and_pushes_nothing() {
    let d = start().await;
    let cases = [
        ("{\"notification\": ", "malformed_json"),
        ("[1, 2]", "invalid_field"),
        (r#"{"notification": {"event_id": "$e"}}"#, "invalid_field"),
        (r#"{"notification": {"devices": [{"app_id": "com.example.ios"}]}}"#, "invalid_field"),
        (r#"{"notification": {"devices": []}}"#, "invalid_field"),
    ];
    for (body, code) in cases {
        let (status, answer) = notify_raw(&d, body.to_owned()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let huge = message_event(&"x".repeat(70_000), vec![pusher(IOS, &apns_token("ios-huge"))]);
    let (status, answer) = notify(&d, &huge).await;
    assert_eq!((status, &answer["error"]["code"]), (413, &json!("body_too_large")), "{answer}");
    let get = d.http.get(format!("{}{NOTIFY_PATH}", d.base)).send().await.expect("request");
    assert_eq!(get.status().as_u16(), 405, "the spec's answer to another method");
    assert_eq!(d.apns.requests_total() + d.fcm.requests_total(), 0);
}

#[actix_rt::test]
async fn allowed_networks_refuses_a_source_outside_them_with_403() {
    let d = TestDaemon::start_with(&matrix_with(r#"allowed_networks = ["10.0.0.0/8"]"#)).await;
    let key = apns_token("ios-refused");
    let (status, body) = notify(&d, &message_event(EVENT, vec![pusher(IOS, &key)])).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(d.apns.requests_total(), 0);

    let d = TestDaemon::start_with(&matrix_with(r#"allowed_networks = ["127.0.0.0/8"]"#)).await;
    assert_eq!(notify(&d, &message_event(EVENT, vec![pusher(IOS, &key)])).await.0, 200);
}

#[actix_rt::test]
async fn the_endpoint_is_off_by_default() {
    let d = TestDaemon::start().await;
    let key = apns_token("ios-off");
    let (status, _) = notify(&d, &message_event(EVENT, vec![pusher(IOS, &key)])).await;
    assert_eq!(status, 404);
    assert_eq!(d.apns.requests_total(), 0);
}

#[actix_rt::test]
async fn a_matrix_listener_of_its_own_serves_notify_without_the_gateway_api() {
    let d = TestDaemon::start_with(
        "[matrix]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[matrix.apps]\n\"com.example.ios\" = \"test-apns\"",
    )
    .await;
    let addr = d.running.matrix_addr.expect("own listener");
    let token = support::apns_token("own-listener");
    let body = serde_json::json!({"notification": {
        "event_id": "$own", "room_id": "!r:example.org", "type": "m.room.message", "sender": "@a:example.org",
        "content": {"msgtype": "m.text", "body": "hi"}, "counts": {"unread": 1},
        "devices": [{"app_id": "com.example.ios", "pushkey": token, "pushkey_ts": 1}]
    }});
    let r = d.http.post(format!("http://{addr}/_matrix/push/v1/notify")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["rejected"], serde_json::json!([]));
    assert_eq!(d.apns_received(&token, 1).await[0].status, 200);
    // The gateway listener does not serve it when the endpoint has a listener of its own, and
    // the Matrix listener serves nothing of the gateway API.
    let r = d.http.post(format!("{}/_matrix/push/v1/notify", d.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = d.http.get(format!("http://{addr}/v1/users/x/devices")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
