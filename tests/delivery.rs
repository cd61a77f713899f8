//! End to end: a registered offline device gets a correct push at the mock vendor, and the
//! trace explains it.

mod support;

use serde_json::json;
use support::TestDaemon;

#[actix_rt::test]
async fn an_offline_apns_device_gets_a_push_and_the_trace_shows_it() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "offline").await;
    d.send_text("m1", "alice", &["bob"], "See you at 3?").await;

    let got = d.apns_received(&token, 1).await;
    let r = &got[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["apns-push-type"], "alert");
    assert_eq!(r.headers["apns-topic"], "com.example.im");
    assert_eq!(r.headers["apns-priority"], "10");
    assert_eq!(r.body["aps"]["alert"]["title"], "pushd");
    assert_eq!(r.body["aps"]["alert"]["body"], "You have a new message");
    assert_eq!(r.body["aps"]["badge"], 1);
    assert_eq!(r.body["aps"]["thread-id"], "c-alice");
    assert_eq!(r.body["msg"], "m1");
    assert_eq!(r.body["sender"], "alice");

    let device = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(device["decision"], "push");
    assert_eq!(device["push"]["outcome"], "delivered");
    assert_eq!(device["push"]["vendor"], "apns");
    assert_eq!(device["push"]["credential"], "test-apns");
    assert_eq!(device["push"]["attempts"][0]["status"], 200);
}

#[actix_rt::test]
async fn an_offline_fcm_device_gets_a_push_with_the_detail_template() {
    let d = TestDaemon::start_with("[policy]\ndefault_template = \"detail\"").await;
    let token = d.register_fcm("carol", "pixel").await;
    d.send(json!({
        "id": "m2", "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "team", "type": "group", "name": "Team"},
        "to": ["carol"], "kind": "image"
    }))
    .await;
    let got = d.fcm_received(&token, 1).await;
    let msg = &got[0].body["message"];
    assert_eq!(got[0].status, 200);
    assert_eq!(msg["token"], token.as_str());
    assert_eq!(msg["notification"]["title"], "Alice in Team");
    assert_eq!(msg["notification"]["body"], "[Image]");
    assert_eq!(msg["data"]["conv"], "team");
    assert_eq!(msg["android"]["priority"], "HIGH");
    let device = d.wait_outcome("carol", "m2", "pixel").await;
    assert_eq!(device["push"]["outcome"], "delivered");
}

#[actix_rt::test]
async fn silent_and_voip_pushes_use_the_matching_apns_push_types() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("dan", "phone").await;
    let mut msg = json!({
        "id": "s1", "from": {"id": "alice"}, "conversation": {"id": "c1", "type": "single"},
        "to": ["dan"], "kind": "custom", "push": {"type": "silent", "data": {"route": "/sync"}}
    });
    d.send(msg.clone()).await;
    msg["id"] = json!("v1");
    msg["kind"] = json!("call");
    msg["push"] = json!({"type": "voip", "collapse_id": "call-7", "ttl_seconds": 30});
    d.send(msg).await;

    let got = d.apns_received(&token, 2).await;
    let silent = got.iter().find(|r| r.body["msg"] == "s1").unwrap();
    assert_eq!(silent.headers["apns-push-type"], "background");
    assert_eq!(silent.headers["apns-priority"], "5");
    assert_eq!(silent.body["aps"]["content-available"], 1);
    assert!(silent.body["aps"].get("alert").is_none());
    assert_eq!(silent.body["route"], "/sync");

    let voip = got.iter().find(|r| r.body["msg"] == "v1").unwrap();
    assert_eq!(voip.headers["apns-push-type"], "voip");
    assert_eq!(voip.headers["apns-topic"], "com.example.im.voip");
    assert_eq!(voip.headers["apns-collapse-id"], "call-7");
    let expiration: i64 = voip.headers["apns-expiration"].parse().unwrap();
    assert_eq!(expiration, d.clock_now().timestamp() + 30);
    assert!(voip.status == 200, "{voip:?}");
}

#[actix_rt::test]
async fn a_long_text_is_truncated_on_a_character_boundary_to_fit_apns() {
    let d = TestDaemon::start_with("[policy]\ndefault_template = \"detail\"\n[render]\npreview_chars = 100000").await;
    let token = d.register_apns("eve", "phone").await;
    let text = "消息".repeat(3000); // 18 000 bytes of UTF-8
    d.send_text("long-1", "alice", &["eve"], &text).await;
    let got = d.apns_received(&token, 1).await;
    assert_eq!(got[0].status, 200, "{:?}", got[0].answer);
    assert!(got[0].body_bytes <= 4096, "{}", got[0].body_bytes);
    let body = got[0].body["aps"]["alert"]["body"].as_str().unwrap();
    assert!(body.ends_with('…') && body.chars().count() > 100, "{body}");
}

#[actix_rt::test]
async fn pushd_never_exceeds_the_stream_limit_the_server_advertises() {
    use pushd::mock_vendor::{MockAnswer, MockRule};
    let d = TestDaemon::start_full("", |c| c.max_concurrent_streams = 2).await;
    // Slow answers keep streams open, so a client ignoring the limit would exceed it.
    d.apns.script(MockRule::any(MockAnswer { delay_ms: Some(50), ..MockAnswer::default() }));
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(d.register_apns(&format!("u{i}"), "phone").await);
    }
    let to: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    d.send(json!({
        "id": "burst", "from": {"id": "alice"}, "conversation": {"id": "g", "type": "group"},
        "to": to, "kind": "text", "text": "hi all"
    }))
    .await;
    let all = d.apns.wait_for(|r| r.len() >= 12, support::WAIT).await.unwrap();
    assert!(all.iter().all(|r| r.status == 200));
    assert!(d.apns.max_concurrent_seen() <= 2, "saw {}", d.apns.max_concurrent_seen());
    assert_eq!(d.apns.connections_opened(), 1, "one persistent HTTP/2 connection is reused");
}

#[actix_rt::test]
async fn the_apns_jwt_is_reused_within_the_hour_and_renewed_after_it() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("fay", "phone").await;
    d.send_text("j1", "alice", &["fay"], "one").await;
    d.wait_outcome("fay", "j1", "phone").await;
    // 30 minutes later the same JWT is still used: a new one would draw 429 from the mock
    // (TooManyProviderTokenUpdates, < 20 min) only if renewed too early; none is renewed.
    d.clock.advance(chrono::Duration::minutes(30));
    d.send_text("j2", "alice", &["fay"], "two").await;
    let second = d.wait_outcome("fay", "j2", "phone").await;
    assert_eq!(second["push"]["attempts"].as_array().unwrap().len(), 1, "{second}");
    // 61 minutes after the first JWT, reusing it would draw ExpiredProviderToken: pushd signs
    // a new one before that, so the push goes through on its first attempt.
    d.clock.advance(chrono::Duration::minutes(31));
    d.send_text("j3", "alice", &["fay"], "three").await;
    let third = d.wait_outcome("fay", "j3", "phone").await;
    assert_eq!(third["push"]["outcome"], "delivered");
    assert_eq!(third["push"]["attempts"].as_array().unwrap().len(), 1, "{third}");
    let got = d.apns_received(&token, 3).await;
    assert!(got.iter().all(|r| r.status == 200), "{got:?}");
}

#[actix_rt::test]
async fn an_apns_credential_with_certificate_auth_pushes_without_a_jwt() {
    let d = TestDaemon::start().await;
    let token = support::apns_token("cert-user/phone");
    let (s, b) =
        d.put("/v1/users/cert-user/devices/phone", json!({"credential": "test-apns-cert", "token": token})).await;
    assert_eq!(s, 200, "{b}");
    d.send_text("cert-1", "alice", &["cert-user"], "hello").await;
    let got = d.apns_received(&token, 1).await;
    assert_eq!(got[0].status, 200, "{:?}", got[0].answer);
    assert!(!got[0].headers.contains_key("authorization"), "certificate auth sends no JWT");
    let device = d.wait_outcome("cert-user", "cert-1", "phone").await;
    assert_eq!(device["push"]["credential"], "test-apns-cert");
    assert_eq!(device["push"]["outcome"], "delivered");
}
