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
