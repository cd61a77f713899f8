//! Bad input (product.md §5, §7): every refusal is a 4xx with a stable error code in the shape
//! `{"error": {"code", "message"}}`, and nothing of a refused request changes state. Each
//! test sets up some state first, sends the bad request, then reads the state back.
//!
//! The test config: `max_body_bytes = 65536`, `max_message_batch = 10`.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{apns_token, TestDaemon, API_KEY};

/// How a raw request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Key,
    None,
    Header(&'a str),
}

/// Sends `body` as is (not necessarily JSON); returns the status and the JSON body, with a
/// `WWW-Authenticate` header folded in as `"www_authenticate"` (a body that is not JSON comes
/// back as `{"not_json": text}`).
async fn raw(d: &TestDaemon, method: Method, path: &str, body: impl Into<Vec<u8>>, auth: Auth<'_>) -> (u16, Value) {
    let mut req = d
        .http
        .request(method, format!("{}{path}", d.base))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.into());
    req = match auth {
        Auth::Key => req.bearer_auth(API_KEY),
        Auth::None => req,
        Auth::Header(value) => req.header(reqwest::header::AUTHORIZATION, value),
    };
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let challenge = resp.headers().get(reqwest::header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap_or_default();
    let mut body: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "not_json": text }));
    if let Some(c) = challenge {
        body["www_authenticate"] = json!(c);
    }
    (status, body)
}

/// Asserts a refusal: `status`, `code`, and exactly `{"error": {"code", "message"}}` (plus the
/// challenge header [`raw`] folds in). Returns the message.
#[track_caller]
fn refused(got: (u16, Value), status: u16, code: &str) -> String {
    let (s, body) = got;
    assert_eq!(s, status, "status; body: {body}");
    let top: Vec<&String> =
        body.as_object().expect("JSON object").keys().filter(|k| *k != "www_authenticate").collect();
    assert_eq!(top, ["error"], "error shape: {body}");
    let error = body["error"].as_object().expect("error object");
    let mut keys: Vec<&String> = error.keys().collect();
    keys.sort();
    assert_eq!(keys, ["code", "message"], "error shape: {body}");
    assert_eq!(body["error"]["code"], code, "code; body: {body}");
    let message = body["error"]["message"].as_str().expect("message is a string");
    assert!(!message.is_empty(), "empty message: {body}");
    message.to_owned()
}

/// A valid single-conversation text message.
fn message(id: &str, to: &str) -> Value {
    json!({
        "id": id, "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "c-alice", "type": "single"},
        "to": [to], "kind": "text", "text": "hi"
    })
}

/// `value` with `key` set to `v` (objects only).
fn with(mut value: Value, key: &str, v: Value) -> Value {
    value[key] = v;
    value
}

async fn settings(d: &TestDaemon, user: &str) -> Value {
    let (status, body) = d.get(&format!("/v1/users/{user}/settings")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Posts `message` and asserts it is accepted as new (so no refused request had accepted it).
async fn accepted_as_new(d: &TestDaemon, message: Value) {
    let id = message["id"].clone();
    let answer = d.send(message).await;
    assert_eq!(answer, json!({"accepted": [id], "duplicates": []}), "a refused request had accepted it");
}

#[actix_rt::test]
async fn malformed_json_is_refused_and_changes_nothing() {
    let d = TestDaemon::start().await;
    d.register_apns("bob", "phone").await;
    d.put("/v1/users/bob/settings", json!({"push_mode": "mentions"})).await;
    let (devices_before, settings_before) = (d.devices("bob").await, settings(&d, "bob").await);

    let token = apns_token("bob/tablet");
    let cases: Vec<(Method, &str, String)> = vec![
        (Method::PUT, "/v1/users/bob/devices/tablet", format!(r#"{{"credential": "test-apns", "token": "{token}""#)),
        (Method::PUT, "/v1/users/bob/devices/phone", String::new()),
        (Method::PUT, "/v1/users/bob/settings", r#"{"push_mode": "none",}"#.to_owned()),
        (
            Method::POST,
            "/v1/presence",
            r#"{"events": [{"user": "bob", "device": "phone", "state": "online"}"#.to_owned(),
        ),
        (Method::POST, "/v1/messages", format!("{}x", message("m1", "bob"))),
        (Method::POST, "/v1/messages", "not json at all".to_owned()),
    ];
    for (method, path, body) in cases {
        let message = refused(raw(&d, method.clone(), path, body.clone(), Auth::Key).await, 400, "malformed_json");
        assert!(message.starts_with("malformed JSON"), "{method} {path} {body:?}: {message}");
    }

    assert_eq!(d.devices("bob").await, devices_before);
    assert_eq!(settings(&d, "bob").await, settings_before);
    assert_eq!(devices_before[0]["presence"], "offline");
    accepted_as_new(&d, message("m1", "bob")).await;
}

#[actix_rt::test]
async fn a_body_over_max_body_bytes_is_refused_with_413_and_changes_nothing() {
    let d = TestDaemon::start().await;
    let padding = "x".repeat(70_000);
    let device = json!({"credential": "test-apns", "token": apns_token("bob/phone"), "locale": padding});
    let got = raw(&d, Method::PUT, "/v1/users/bob/devices/phone", device.to_string(), Auth::Key).await;
    refused(got, 413, "body_too_large");
    assert!(d.devices("bob").await.is_empty());

    let big = with(message("big", "bob"), "text", json!(padding));
    refused(raw(&d, Method::POST, "/v1/messages", big.to_string(), Auth::Key).await, 413, "body_too_large");
    let big_settings = json!({"display_name": padding});
    let got = raw(&d, Method::PUT, "/v1/users/bob/settings", big_settings.to_string(), Auth::Key).await;
    refused(got, 413, "body_too_large");
    assert!(settings(&d, "bob").await["display_name"].is_null());
    accepted_as_new(&d, message("big", "bob")).await;
}

#[actix_rt::test]
async fn an_unknown_credential_is_refused_and_the_device_is_unchanged() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let before = d.devices("bob").await;
    for credential in ["no-such-credential", "not a name!", ""] {
        let got = d.put("/v1/users/bob/devices/phone", json!({"credential": credential, "token": token})).await;
        let message = refused(got, 400, "unknown_credential");
        assert!(message.contains(credential), "{message}");
        let got = d.put("/v1/users/bob/devices/tablet", json!({"credential": credential, "token": token})).await;
        refused(got, 400, "unknown_credential");
    }
    assert_eq!(d.devices("bob").await, before);
}

#[actix_rt::test]
async fn a_badly_formed_token_is_refused_and_the_device_is_unchanged() {
    let d = TestDaemon::start().await;
    d.register_apns("bob", "phone").await;
    d.register_fcm("bob", "pixel").await;
    let before = d.devices("bob").await;
    let cases = [
        ("phone", "test-apns", "abc".to_owned()),                // odd length
        ("phone", "test-apns", "zz".repeat(32)),                 // not hex
        ("phone", "test-apns", format!("{} ", "ab".repeat(32))), // trailing space
        ("phone", "test-apns", String::new()),
        ("pixel", "test-fcm", "has a space".to_owned()),
        ("pixel", "test-fcm", "x".repeat(5000)), // longer than any vendor token
    ];
    for (device, credential, token) in cases {
        let got =
            d.put(&format!("/v1/users/bob/devices/{device}"), json!({"credential": credential, "token": token})).await;
        let message = refused(got, 400, "invalid_token_format");
        // Tokens stay out of answers as they stay out of logs (short non-tokens aside).
        assert!(token.len() < 8 || !message.contains(&token), "the token is echoed back: {message}");
    }
    assert_eq!(d.devices("bob").await, before);
}

#[actix_rt::test]
async fn an_invalid_time_zone_is_refused_and_nothing_changes() {
    let d = TestDaemon::start().await;
    let token = apns_token("bob/phone");
    let device = json!({"credential": "test-apns", "token": token, "timezone": "Europe/Berlin"});
    let (status, body) = d.put("/v1/users/bob/devices/phone", device.clone()).await;
    assert_eq!(status, 200, "{body}");
    d.put("/v1/users/bob/settings", json!({"timezone": "Asia/Tokyo"})).await;
    let (devices_before, settings_before) = (d.devices("bob").await, settings(&d, "bob").await);

    for zone in ["Mars/Olympus_Mons", "UTC+25", "", "europe/berlin "] {
        let got = d.put("/v1/users/bob/devices/phone", with(device.clone(), "timezone", json!(zone))).await;
        refused(got, 400, "invalid_timezone");
        refused(d.put("/v1/users/bob/settings", json!({"timezone": zone})).await, 400, "invalid_timezone");
    }
    assert_eq!(d.devices("bob").await, devices_before);
    assert_eq!(settings(&d, "bob").await, settings_before);
    assert_eq!(settings_before["timezone"], "Asia/Tokyo");
}

#[actix_rt::test]
async fn unknown_fields_are_refused_in_device_message_settings_and_presence_bodies() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.put("/v1/users/bob/settings", json!({"push_mode": "mentions"})).await;
    let (devices_before, settings_before) = (d.devices("bob").await, settings(&d, "bob").await);

    let device = json!({"credential": "test-apns", "token": token, "colour": "red"});
    let message_text = refused(d.put("/v1/users/bob/devices/phone", device).await, 400, "invalid_field");
    assert!(message_text.contains("colour"), "{message_text}");

    let good = message("m1", "bob");
    let bad_messages = [
        with(good.clone(), "priority", json!("high")),
        with(good.clone(), "from", json!({"id": "alice", "avatar": "a.png"})),
        with(good.clone(), "conversation", json!({"id": "c", "type": "single", "topic": "x"})),
        with(good.clone(), "push", json!({"sound": "ding"})),
    ];
    for bad in bad_messages {
        let got = d.post("/v1/messages", bad.clone()).await;
        let text = refused(got, 400, "invalid_field");
        assert!(text.contains("unknown field"), "{bad}: {text}");
    }

    let got = d.put("/v1/users/bob/settings", json!({"push_mode": "none", "volume": 3})).await;
    refused(got, 400, "invalid_field");
    let got =
        d.put("/v1/users/bob/settings", json!({"dnd": {"from": "22:00", "to": "07:00", "days": "weekdays"}})).await;
    refused(got, 400, "invalid_field");
    let got = d.put("/v1/users/bob/conversations/c1/settings", json!({"push_mode": "none", "pinned": true})).await;
    refused(got, 400, "invalid_field");

    let event = json!({"user": "bob", "device": "phone", "state": "online", "battery": 50});
    refused(d.post("/v1/presence", json!({"events": [event]})).await, 400, "invalid_field");
    let event = json!({"user": "bob", "device": "phone", "state": "online"});
    refused(d.post("/v1/presence", json!({"events": [event], "source": "gw-1"})).await, 400, "invalid_field");

    assert_eq!(d.devices("bob").await, devices_before, "device or presence changed");
    assert_eq!(settings(&d, "bob").await, settings_before);
    let (status, body) = d.get("/v1/users/bob/conversations/c1/settings").await;
    assert_eq!(status, 404, "conversation settings were created: {body}");
    accepted_as_new(&d, good).await;
}

#[actix_rt::test]
async fn a_request_without_a_valid_api_key_is_refused_with_401() {
    let d = TestDaemon::start().await;
    let device = json!({"credential": "test-apns", "token": apns_token("bob/phone")}).to_string();
    let path = "/v1/users/bob/devices/phone";
    for (auth, code) in [
        (Auth::None, "missing_api_key"),
        (Auth::Header("Basic dGVzdDp0ZXN0"), "missing_api_key"),
        (Auth::Header(API_KEY), "missing_api_key"),
        (Auth::Header("Bearer wrong-key"), "wrong_api_key"),
        (Auth::Header("Bearer test-key-1234"), "wrong_api_key"),
    ] {
        let got = raw(&d, Method::PUT, path, device.clone(), auth).await;
        assert_eq!(got.1["www_authenticate"], "Bearer", "{}", got.1);
        refused(got, 401, code);
    }
    refused(raw(&d, Method::GET, "/v1/users/bob/devices", "", Auth::None).await, 401, "missing_api_key");
    let m1 = message("m1", "bob").to_string();
    refused(raw(&d, Method::POST, "/v1/messages", m1, Auth::Header("Bearer nope")).await, 401, "wrong_api_key");

    assert!(d.devices("bob").await.is_empty());
    accepted_as_new(&d, message("m1", "bob")).await;
}

#[actix_rt::test]
async fn a_batch_with_one_bad_message_is_refused_whole_naming_its_index() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let good = message("g1", "bob");
    let bad_ones = [
        ("invalid_field", with(message("b1", "bob"), "kind", json!("sticker"))),
        ("invalid_field", with(message("b1", "bob"), "to", json!([]))),
        ("invalid_field", with(message("b1", "bob"), "push", json!({"data": {"from": "x"}}))),
        ("unknown_template", with(message("b1", "bob"), "push", json!({"template": "no-such-template"}))),
    ];
    for (code, bad) in bad_ones {
        let got = d.post("/v1/messages", json!({"messages": [good, bad]})).await;
        let text = refused(got, 400, code);
        assert!(text.contains("messages[1]"), "the error does not name the bad message: {text}");
    }

    // Nothing of the batch was accepted: the good message is new, and pushed once.
    accepted_as_new(&d, good).await;
    let got = d.apns_received(&token, 1).await;
    assert_eq!(got[0].body["msg"], "g1");
    accepted_as_new(&d, message("b1", "bob")).await;
}

#[actix_rt::test]
async fn a_bad_message_in_a_batch_is_named_even_when_it_has_too_many_recipients() {
    let d = TestDaemon::start_with("[api]\nmax_recipients = 2").await;
    let bad = with(message("b1", "bob"), "to", json!(["bob", "carol", "dan"]));
    let got = d.post("/v1/messages", json!({"messages": [message("g1", "bob"), bad]})).await;
    let text = refused(got, 400, "too_many_items");
    assert!(text.contains("messages[1]"), "the error does not name the bad message: {text}");
    accepted_as_new(&d, message("g1", "bob")).await;
}

#[actix_rt::test]
async fn a_batch_larger_than_max_message_batch_is_refused_whole() {
    let d = TestDaemon::start().await;
    let batch: Vec<Value> = (0..11).map(|i| message(&format!("m{i}"), "bob")).collect();
    let text = refused(d.post("/v1/messages", json!({ "messages": batch })).await, 400, "too_many_items");
    assert!(text.contains("10"), "the limit is not named: {text}");
    refused(d.post("/v1/messages", json!({"messages": []})).await, 400, "invalid_field");

    // Ten is fine, and none of them had been accepted before.
    let ten: Vec<Value> = (0..10).map(|i| message(&format!("m{i}"), "bob")).collect();
    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(d.send(json!({ "messages": ten })).await, json!({"accepted": ids, "duplicates": []}));
    accepted_as_new(&d, message("m10", "bob")).await;
}

#[actix_rt::test]
async fn a_bad_presence_state_or_time_is_refused_and_no_event_of_the_batch_applies() {
    let d = TestDaemon::start().await;
    d.register_apns("bob", "phone").await;
    d.register_apns("bob", "tablet").await;
    d.presence("bob", "phone", "online").await;
    let before = d.devices("bob").await;

    let offline = json!({"user": "bob", "device": "phone", "state": "offline"});
    let bad_events = [
        json!({"user": "bob", "device": "tablet", "state": "away"}),
        json!({"user": "bob", "device": "tablet", "state": "ONLINE"}),
        json!({"user": "bob", "device": "tablet", "state": "online", "at": "yesterday"}),
        json!({"user": "bob", "device": "tablet", "state": "online", "at": "2026-11-24T08:00:00"}),
        json!({"user": "bob", "device": "tablet", "state": "online", "at": "2026-13-24T08:00:00Z"}),
        json!({"user": "bob", "device": "tablet", "state": "online", "at": 1767225600}),
    ];
    for bad in bad_events {
        let got = d.post("/v1/presence", json!({"events": [offline, bad]})).await;
        let text = refused(got, 400, "invalid_field");
        assert!(text.contains("events[1]") || text.contains("at"), "{bad}: {text}");
    }
    let devices_after = d.devices("bob").await;
    assert_eq!(devices_after, before, "an event of a refused batch was applied");
    assert_eq!(devices_after.iter().find(|x| x["device"] == "phone").unwrap()["presence"], "online");
}

#[actix_rt::test]
async fn a_reserved_push_data_key_is_refused() {
    let d = TestDaemon::start().await;
    for key in ["from", "message_type", "google.c.a.e", "gcm.n.e", "aps", "msg"] {
        let bad = with(message("m1", "bob"), "push", json!({"data": {key: "x", "deep_link": "im://c/1"}}));
        let text = refused(d.post("/v1/messages", bad).await, 400, "invalid_field");
        assert!(text.contains(key), "{text}");
    }
    accepted_as_new(&d, with(message("m1", "bob"), "push", json!({"data": {"deep_link": "im://c/1"}}))).await;
}

#[actix_rt::test]
async fn a_bad_dnd_time_is_refused_and_the_window_is_unchanged() {
    let d = TestDaemon::start().await;
    let (status, body) = d.put("/v1/users/bob/settings", json!({"dnd": {"from": "22:00", "to": "07:00"}})).await;
    assert_eq!(status, 200, "{body}");
    let before = settings(&d, "bob").await;

    for (from, to) in
        [("25:00", "08:00"), ("22:00", "24:01"), ("24:00", "08:00"), ("7:00", "08:00"), ("22:60", "08:00")]
    {
        let dnd = json!({"dnd": {"from": from, "to": to}});
        refused(d.put("/v1/users/bob/settings", dnd.clone()).await, 400, "invalid_field");
        refused(d.put("/v1/users/bob/conversations/c1/settings", dnd).await, 400, "invalid_field");
    }
    assert_eq!(settings(&d, "bob").await, before);
    assert_eq!(before["dnd"], json!({"from": "22:00", "to": "07:00"}));
    let (status, body) = d.get("/v1/users/bob/conversations/c1/settings").await;
    assert_eq!(status, 404, "conversation settings were created: {body}");
}

#[actix_rt::test]
async fn an_unknown_template_is_refused_in_messages_and_settings() {
    let d = TestDaemon::start().await;
    d.put("/v1/users/bob/settings", json!({"template": "detail"})).await;
    let before = settings(&d, "bob").await;
    assert_eq!(before["template"], "detail");

    let bad = with(message("m1", "bob"), "push", json!({"template": "no-such-template"}));
    let text = refused(d.post("/v1/messages", bad).await, 400, "unknown_template");
    assert!(text.contains("no-such-template"), "{text}");
    for name in ["no-such-template", "bad name!"] {
        refused(d.put("/v1/users/bob/settings", json!({"template": name})).await, 400, "unknown_template");
    }
    assert_eq!(settings(&d, "bob").await, before);
    accepted_as_new(&d, with(message("m1", "bob"), "push", json!({"template": "detail"}))).await;
}

#[actix_rt::test]
async fn an_unknown_route_or_method_answers_404_in_the_error_shape() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let body = json!({"credential": "test-apns", "token": token}).to_string();
    for (method, path) in [
        (Method::POST, "/v1/users/bob/devices/phone"),
        (Method::PATCH, "/v1/users/bob/settings"),
        (Method::GET, "/v1/no-such-thing"),
    ] {
        let text = refused(raw(&d, method.clone(), path, body.clone(), Auth::Key).await, 404, "not_found");
        assert!(text.contains(path), "{method} {path}: {text}");
    }
    assert_eq!(d.devices("bob").await.len(), 1);
}

#[actix_rt::test]
async fn a_presence_event_stamped_far_in_the_future_is_refused() {
    let d = TestDaemon::start().await;
    d.register_apns("zed", "phone").await;
    let at = (d.clock_now() + chrono::Duration::hours(2)).to_rfc3339();
    let (s, b) = d
        .post("/v1/presence", json!({"events": [{"user": "zed", "device": "phone", "state": "online", "at": at}]}))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_field");
    // The device is unchanged and later events still apply.
    d.presence("zed", "phone", "online").await;
    let (_, list) = d.get("/v1/users/zed/devices").await;
    assert_eq!(list["devices"][0]["presence"], "online");
}
