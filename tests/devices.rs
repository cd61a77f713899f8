//! Devices through the gateway API (product.md §1, §5): registering and listing (tokens
//! masked), re-registering, "last login wins" when a token moves to another user, logout with
//! and without unbinding the token, and the message intake's dedup and batches.

mod support;

use pushd::mock_vendor::Received;
use serde_json::{json, Value};
use support::{apns_token, masked, TestDaemon};

/// PUTs `body` as `user`/`device`; asserts 200 and returns the answer.
async fn register(d: &TestDaemon, user: &str, device: &str, body: Value) -> Value {
    let (status, answer) = d.put(&format!("/v1/users/{user}/devices/{device}"), body).await;
    assert_eq!(status, 200, "register {user}/{device}: {answer}");
    answer
}

/// The message ids the APNs mock received for `token`, in arrival order.
fn pushed_ids(got: &[Received]) -> Vec<String> {
    got.iter().map(|r| r.body["msg"].as_str().unwrap_or_default().to_owned()).collect()
}

#[actix_rt::test]
async fn a_registered_device_is_listed_with_its_token_masked() {
    let d = TestDaemon::start().await;
    let token = apns_token("bob/phone");
    let answer = register(
        &d,
        "bob",
        "phone",
        json!({"credential": "test-apns", "token": token, "timezone": "Europe/Berlin", "locale": "de-DE"}),
    )
    .await;
    assert_eq!(answer["token"], masked(&token));

    let list = d.devices("bob").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let dev = &list[0];
    assert_eq!(dev["device"], "phone");
    assert_eq!(dev["credential"], "test-apns");
    assert_eq!(dev["token"], masked(&token));
    assert_eq!(dev["timezone"], "Europe/Berlin");
    assert_eq!(dev["locale"], "de-DE");
    assert_eq!(dev["presence"], "offline", "a device without presence events is offline");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&token), "the full token leaked: {text}");
}

#[actix_rt::test]
async fn re_registering_a_device_updates_it_and_pushes_go_to_the_new_token() {
    let d = TestDaemon::start().await;
    let old = d.register_apns("bob", "phone").await;
    let new = apns_token("bob/phone/reinstalled");
    register(&d, "bob", "phone", json!({"credential": "test-apns", "token": new, "timezone": "Asia/Shanghai"})).await;

    let list = d.devices("bob").await;
    assert_eq!(list.len(), 1, "re-registering must not add a device: {list:?}");
    assert_eq!(list[0]["token"], masked(&new));
    assert_eq!(list[0]["timezone"], "Asia/Shanghai");

    d.send_text("m1", "alice", &["bob"], "hi").await;
    let got = d.apns_received(&new, 1).await;
    assert_eq!(pushed_ids(&got), ["m1"]);
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");
    assert!(d.apns.received_for(&old).is_empty(), "the replaced token got a push");
}

#[actix_rt::test]
async fn a_token_registered_by_another_user_moves_to_them_last_login_wins() {
    let d = TestDaemon::start().await;
    let shared = apns_token("shared-phone");
    register(&d, "ann", "phone", json!({"credential": "test-apns", "token": shared})).await;
    // The phone changes hands: Ben logs in on it, the app reports the same token.
    register(&d, "ben", "phone", json!({"credential": "test-apns", "token": shared})).await;

    // Ann's device stays listed, without a token. The move reaches Ann's session
    // asynchronously, so wait for it (see the report on this race).
    let ann = d.wait_device("ann", "phone", |x| x.is_object() && x["token"].is_null()).await;
    assert_eq!(ann["credential"], "test-apns");
    assert_eq!(d.find_device("ben", "phone").await.expect("ben's phone")["token"], masked(&shared));

    d.send_text("for-ann", "alice", &["ann"], "hi Ann").await;
    assert_eq!(d.decision("ann", "for-ann", "phone").await, "no_token");
    d.send_text("for-ben", "alice", &["ben"], "hi Ben").await;
    let got = d.apns_received(&shared, 1).await;
    assert_eq!(d.wait_outcome("ben", "for-ben", "phone").await["push"]["outcome"], "delivered");
    // Ann's message was decided before Ben's was sent: the phone only ever got Ben's.
    assert_eq!(pushed_ids(&got), ["for-ben"]);
    assert_eq!(pushed_ids(&d.apns.received_for(&shared)), ["for-ben"]);
}

#[actix_rt::test]
async fn logout_with_unbind_removes_the_device_and_it_gets_no_push() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let control = d.register_apns("carol", "phone").await;

    let (status, body) = d.delete("/v1/users/bob/devices/phone").await;
    assert_eq!(status, 204, "{body}");
    assert!(d.devices("bob").await.is_empty());

    d.send_text("m1", "alice", &["bob"], "hi").await;
    let entry = d.wait_trace("bob", "m1", |_| true).await;
    assert!(entry["devices"].as_array().is_some_and(|ds| ds.is_empty()), "{entry:#}");
    // A later push to someone else arrives: had bob's been sent, it would be there by now too.
    d.send_text("m2", "alice", &["carol"], "control").await;
    d.apns_received(&control, 1).await;
    assert!(d.apns.received_for(&token).is_empty(), "a logged-out device got a push");
}

#[actix_rt::test]
async fn logout_without_unbind_keeps_the_device_and_it_still_gets_offline_pushes() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "online").await;

    let (status, body) = d.delete("/v1/users/bob/devices/phone?unbind_token=false").await;
    assert_eq!(status, 204, "{body}");
    let listed = d.find_device("bob", "phone").await.expect("the device stays");
    assert_eq!(listed["token"], masked(&token));
    assert_eq!(listed["presence"], "offline", "a logged-out device is offline");

    d.send_text("m1", "alice", &["bob"], "hi").await;
    let got = d.apns_received(&token, 1).await;
    assert_eq!(pushed_ids(&got), ["m1"]);
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["push"]["outcome"], "delivered");
}

#[actix_rt::test]
async fn deleting_an_unknown_device_answers_404_and_changes_nothing() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    for path in ["/v1/users/bob/devices/tablet", "/v1/users/nobody/devices/phone"] {
        let (status, body) = d.delete(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let list = d.devices("bob").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["token"], masked(&token));
}

#[actix_rt::test]
async fn a_message_posted_twice_is_pushed_once() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("bob", "phone").await;
    let message = json!({
        "id": "m1", "from": {"id": "alice"}, "conversation": {"id": "c1", "type": "single"},
        "to": ["bob"], "kind": "text", "text": "hi"
    });
    let first = d.send(message.clone()).await;
    assert_eq!(first, json!({"accepted": ["m1"], "duplicates": []}));
    // The gateway timed out and retries the same request.
    let again = d.send(message).await;
    assert_eq!(again, json!({"accepted": [], "duplicates": ["m1"]}));

    // A later control message reaches the mock after anything m1's retry could have caused.
    d.send_text("m2", "alice", &["bob"], "control").await;
    d.apns_received(&token, 2).await;
    assert_eq!(d.wait_outcome("bob", "m2", "phone").await["push"]["outcome"], "delivered");
    assert_eq!(pushed_ids(&d.apns.received_for(&token)), ["m1", "m2"]);
}

#[actix_rt::test]
async fn a_batch_of_messages_is_accepted_whole_and_each_is_pushed() {
    let d = TestDaemon::start().await;
    let bob = d.register_apns("bob", "phone").await;
    let carol = d.register_fcm("carol", "pixel").await;
    let msg = |id: &str, to: &str| {
        json!({
            "id": id, "from": {"id": "alice"}, "conversation": {"id": "team", "type": "group"},
            "to": [to], "kind": "text", "text": id
        })
    };
    let batch = json!({"messages": [msg("b1", "bob"), msg("b2", "carol"), msg("b3", "bob")]});
    let answer = d.send(batch.clone()).await;
    assert_eq!(answer, json!({"accepted": ["b1", "b2", "b3"], "duplicates": []}));

    let got = d.apns_received(&bob, 2).await;
    let mut ids = pushed_ids(&got);
    ids.sort();
    assert_eq!(ids, ["b1", "b3"]);
    let got = d.fcm_received(&carol, 1).await;
    assert_eq!(got[0].body["message"]["data"]["msg"], "b2");

    // The same batch again is all duplicates, and pushes nothing new (shown by a control).
    let answer = d.send(batch).await;
    assert_eq!(answer, json!({"accepted": [], "duplicates": ["b1", "b2", "b3"]}));
    d.send(msg("b4", "bob")).await;
    d.apns_received(&bob, 3).await;
    assert_eq!(d.wait_outcome("bob", "b4", "phone").await["push"]["outcome"], "delivered");
    let mut ids = pushed_ids(&d.apns.received_for(&bob));
    ids.sort();
    assert_eq!(ids, ["b1", "b3", "b4"]);
    assert_eq!(d.fcm.received_for(&carol).len(), 1);
}
