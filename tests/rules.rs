//! The push rules of product.md §2, one test per rule, driven through the HTTP API: what the
//! mock APNs received, and the decision word the trace gives per device.
//!
//! Absence is never proven by sleeping: a test sends a later message that must be pushed (to a
//! control device or user, or to the same device once the rule no longer applies), waits for it
//! at the mock, and only then asserts the earlier message never arrived. Tests that must not see
//! an ack timeout fire (all_offline, acks, offline transitions) start with a long
//! `policy.ack_timeout_ms`, so the only way a push can happen within the test is the rule under
//! test.

mod support;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use pushd::clock::Clock as _;
use serde_json::{json, Value};
use support::TestDaemon;

/// A policy section where no ack timeout fires during a test (60 s, far above `support::WAIT`).
const NO_ACK_TIMEOUT: &str = "[policy]\nack_timeout_ms = 60000";

/// A text message from alice in conversation `conv_id` of type `conv_type`.
fn message(id: &str, conv_type: &str, conv_id: &str, to: &[&str]) -> Value {
    json!({
        "id": id, "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": conv_id, "type": conv_type, "name": "Team"},
        "to": to, "kind": "text", "text": "hello"
    })
}

/// A group message in conversation `team`.
fn group(id: &str, to: &[&str]) -> Value {
    message(id, "group", "team", to)
}

/// Message ids the mock APNs received for `token`, in arrival order.
fn pushed(d: &TestDaemon, token: &str) -> Vec<String> {
    d.apns.received_for(token).iter().map(|r| r.body["msg"].as_str().unwrap_or("?").to_owned()).collect()
}

/// Waits until `token` received a push of `message`; returns that request's body.
async fn wait_push(d: &TestDaemon, token: &str, message: &str) -> Value {
    let (t, m) = (token.to_owned(), message.to_owned());
    let got = d
        .apns
        .wait_for(move |r| r.iter().any(|x| x.token == t && x.body["msg"] == m.as_str()), support::WAIT)
        .await
        .unwrap_or_else(|e| panic!("{message} never reached the device: {e}"));
    got.into_iter().find(|x| x.token == token && x.body["msg"] == message).unwrap().body
}

/// The whole trace entry of `message` for `user` (the POST that delivered it has returned, so
/// the decision is already recorded).
async fn trace(d: &TestDaemon, user: &str, message: &str) -> Value {
    d.wait_trace(user, message, |_| true).await
}

/// The decision word for `device` in a trace entry.
fn decision_in(entry: &Value, device: &str) -> String {
    let found = entry["devices"].as_array().and_then(|ds| ds.iter().find(|x| x["device"] == device));
    found.and_then(|x| x["decision"].as_str()).unwrap_or_else(|| panic!("no {device} in {entry:#}")).to_owned()
}

/// The fall-back causes recorded in a trace entry, oldest first.
fn fallback_causes(entry: &Value) -> Vec<String> {
    entry["fallbacks"]
        .as_array()
        .map_or(Vec::new(), |f| f.iter().map(|x| x["cause"].as_str().unwrap().to_owned()).collect())
}

async fn put_settings(d: &TestDaemon, user: &str, body: Value) -> Value {
    let (s, b) = d.put(&format!("/v1/users/{user}/settings"), body).await;
    assert_eq!(s, 200, "user settings: {b}");
    b
}

async fn put_conversation_settings(d: &TestDaemon, user: &str, conv: &str, body: Value) -> Value {
    let (s, b) = d.put(&format!("/v1/users/{user}/conversations/{conv}/settings"), body).await;
    assert_eq!(s, 200, "conversation settings: {b}");
    b
}

/// "HH:MM" for a minute of the day, wrapping around midnight.
fn hhmm(minute: i64) -> String {
    let m = minute.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The minute of the day the daemon's clock shows in `tz`.
fn local_minute(d: &TestDaemon, tz: Tz) -> i64 {
    let local = d.clock.now().with_timezone(&tz);
    i64::from(local.hour() * 60 + local.minute())
}

/// Moves the shared clock forward (never back, so cached vendor auth stays valid) to the next
/// instant that reads `hour:minute` in `tz`; returns it.
fn advance_to_local(d: &TestDaemon, tz: Tz, hour: u32, minute: u32) -> DateTime<Utc> {
    let now = d.clock.now();
    let local = now.with_timezone(&tz).naive_local();
    let mut target = local.date().and_hms_opt(hour, minute, 0).expect("valid wall time");
    if target <= local {
        target += Duration::days(1);
    }
    let at = tz.from_local_datetime(&target).single().expect("the zones used here have no DST gap").with_timezone(&Utc);
    d.clock.set(at);
    at
}

// ---- 1. presence and multi-device policy ----

#[actix_rt::test]
async fn under_all_offline_one_online_device_means_nobody_is_pushed() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    let control = d.register_apns("carol", "phone").await;
    d.presence("bob", "pad", "online").await;

    d.send(group("m1", &["bob"])).await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "presence");
    assert_eq!(decision_in(&entry, "pad"), "wait");
    assert_eq!(entry["counted_in_badge"], false);

    d.send(group("m2", &["carol"])).await;
    wait_push(&d, &control, "m2").await;
    assert!(pushed(&d, &phone).is_empty(), "the offline phone was pushed: {:?}", pushed(&d, &phone));
    assert!(pushed(&d, &pad).is_empty(), "the online pad was pushed: {:?}", pushed(&d, &pad));
}

#[actix_rt::test]
async fn under_any_offline_offline_devices_are_pushed_while_another_is_online() {
    let d = TestDaemon::start_with("[policy]\nmulti_device = \"any_offline\"\nack_timeout_ms = 60000").await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    d.presence("bob", "pad", "online").await;

    d.send(group("m1", &["bob"])).await;
    let body = wait_push(&d, &phone, "m1").await;
    assert_eq!(body["aps"]["badge"], 1);
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "push");
    assert_eq!(decision_in(&entry, "pad"), "wait");
    // The pad would have been dispatched in the same decision, before the phone ("pad" < "phone").
    assert!(pushed(&d, &pad).is_empty(), "the online pad was pushed: {:?}", pushed(&d, &pad));
}

#[actix_rt::test]
async fn a_kicked_device_is_never_pushed_until_it_registers_again() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "kicked").await;
    assert_eq!(d.listed_device("bob", "phone").await["presence"], "kicked");

    d.send(group("m1", &["bob"])).await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "kicked");

    // Registering again ends the kick.
    assert_eq!(d.register_apns("bob", "phone").await, phone);
    assert_eq!(d.listed_device("bob", "phone").await["presence"], "offline");
    d.send(group("m2", &["bob"])).await;
    wait_push(&d, &phone, "m2").await;
    assert_eq!(d.decision("bob", "m2", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["m2"], "the kicked device got m1");
}

#[actix_rt::test]
async fn a_device_whose_token_moved_to_another_user_gets_no_push_and_the_trace_says_no_token() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    // Carol logs in on bob's phone: the token moves to her ("last login wins").
    let (s, b) = d.put("/v1/users/carol/devices/phone", json!({"credential": "test-apns", "token": phone})).await;
    assert_eq!(s, 200, "register: {b}");
    d.wait_device("bob", "phone", |x| x["token"].is_null()).await;

    d.send(group("m1", &["bob"])).await;
    wait_push(&d, &pad, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "no_token");
    assert_eq!(decision_in(&entry, "pad"), "push");
    assert!(pushed(&d, &phone).is_empty(), "the moved token got bob's message: {:?}", pushed(&d, &phone));
}

#[actix_rt::test]
async fn a_presence_only_device_never_gets_a_push_and_the_trace_says_no_token() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    // The gateway knows a watch that never registered a token.
    d.presence("bob", "watch", "offline").await;

    d.send(group("m1", &["bob"])).await;
    wait_push(&d, &phone, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "watch"), "no_token");
    assert_eq!(decision_in(&entry, "phone"), "push");
    assert_eq!(d.apns.received().len(), 1, "only the phone is pushed");
}

// ---- 2. push mode ----

#[actix_rt::test]
async fn push_mode_none_at_user_level_stops_every_push() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_settings(&d, "bob", json!({"push_mode": "none"})).await;

    d.send_text("m1", "alice", &["bob"], "hi").await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "push_mode");

    let back = put_settings(&d, "bob", json!({"push_mode": "all"})).await;
    assert_eq!(back["push_mode"], "all");
    d.send_text("m2", "alice", &["bob"], "hi again").await;
    wait_push(&d, &phone, "m2").await;
    assert_eq!(pushed(&d, &phone), ["m2"]);
}

#[actix_rt::test]
async fn push_mode_mentions_pushes_only_what_mentions_the_user_or_everyone_and_every_single_chat_message() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_settings(&d, "bob", json!({"push_mode": "mentions"})).await;

    d.send(group("g1", &["bob", "carol"])).await;
    let mut g2 = group("g2", &["bob", "carol"]);
    g2["mentions"] = json!(["bob"]);
    d.send(g2).await;
    let mut g3 = group("g3", &["bob", "carol"]);
    g3["mentions"] = json!(["carol"]);
    d.send(g3).await;
    let mut g4 = group("g4", &["bob", "carol"]);
    g4["mention_all"] = json!(true);
    d.send(g4).await;
    d.send_text("s5", "alice", &["bob"], "just you and me").await;

    for (id, word) in [("g1", "push_mode"), ("g2", "push"), ("g3", "push_mode"), ("g4", "push"), ("s5", "push")] {
        assert_eq!(d.decision("bob", id, "phone").await, word, "{id}");
    }
    d.apns_received(&phone, 3).await;
    wait_push(&d, &phone, "s5").await;
    let mut got = pushed(&d, &phone);
    got.sort();
    assert_eq!(got, ["g2", "g4", "s5"]);
}

#[actix_rt::test]
async fn a_conversation_push_mode_wins_over_the_user_push_mode() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_settings(&d, "bob", json!({"push_mode": "none"})).await;
    put_conversation_settings(&d, "bob", "team", json!({"push_mode": "all"})).await;

    d.send(message("o1", "group", "other", &["bob"])).await;
    d.send(group("t1", &["bob"])).await;
    wait_push(&d, &phone, "t1").await;
    assert_eq!(d.decision("bob", "o1", "phone").await, "push_mode");
    assert_eq!(d.decision("bob", "t1", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["t1"]);

    // And the other way round: a muted conversation of a user who wants everything.
    put_settings(&d, "bob", json!({"push_mode": "all"})).await;
    put_conversation_settings(&d, "bob", "noisy", json!({"push_mode": "none"})).await;
    d.send(message("n2", "group", "noisy", &["bob"])).await;
    d.send(message("o2", "group", "other", &["bob"])).await;
    wait_push(&d, &phone, "o2").await;
    assert_eq!(d.decision("bob", "n2", "phone").await, "push_mode");
    assert_eq!(pushed(&d, &phone), ["t1", "o2"]);
}

#[actix_rt::test]
async fn deleting_conversation_settings_falls_back_to_the_user_settings() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_settings(&d, "bob", json!({"push_mode": "mentions"})).await;
    put_conversation_settings(&d, "bob", "team", json!({"push_mode": "all"})).await;

    d.send(group("t1", &["bob"])).await;
    wait_push(&d, &phone, "t1").await;
    assert_eq!(d.decision("bob", "t1", "phone").await, "push");

    let (s, b) = d.delete("/v1/users/bob/conversations/team/settings").await;
    assert_eq!(s, 204, "delete: {b}");
    let (s, _) = d.get("/v1/users/bob/conversations/team/settings").await;
    assert_eq!(s, 404);

    // The user's `mentions` applies again (not the operator default `all`).
    d.send(group("t2", &["bob"])).await;
    assert_eq!(d.decision("bob", "t2", "phone").await, "push_mode");
    let mut t3 = group("t3", &["bob"]);
    t3["mentions"] = json!(["bob"]);
    d.send(t3).await;
    wait_push(&d, &phone, "t3").await;
    assert_eq!(pushed(&d, &phone), ["t1", "t3"]);
}

// ---- 3. do not disturb ----

#[actix_rt::test]
async fn a_dnd_window_applies_in_the_users_time_zone() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
    let now = local_minute(&d, kolkata);
    // Half an hour either side of Kolkata's wall clock (UTC is 5:30 behind, far outside it).
    let window = json!({"from": hhmm(now - 30), "to": hhmm(now + 30)});
    let s = put_settings(&d, "bob", json!({"timezone": "Asia/Kolkata", "dnd": window})).await;
    assert_eq!(s["dnd"], window);

    d.send_text("m1", "alice", &["bob"], "late").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "dnd");

    // The same window read in UTC does not cover now.
    put_settings(&d, "bob", json!({"timezone": "UTC"})).await;
    d.send_text("m2", "alice", &["bob"], "later").await;
    wait_push(&d, &phone, "m2").await;
    assert_eq!(d.decision("bob", "m2", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["m2"]);
}

#[actix_rt::test]
async fn a_dnd_window_across_midnight_covers_late_evening_and_early_morning() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
    put_settings(&d, "bob", json!({"timezone": "Asia/Shanghai", "dnd": {"from": "22:00", "to": "08:00"}})).await;

    let cases =
        [((21, 59), "push"), ((22, 0), "dnd"), ((23, 30), "dnd"), ((0, 30), "dnd"), ((7, 59), "dnd"), ((8, 0), "push")];
    for (i, ((h, m), word)) in cases.into_iter().enumerate() {
        let at = advance_to_local(&d, shanghai, h, m);
        let id = format!("m{i}");
        d.send_text(&id, "alice", &["bob"], "hi").await;
        assert_eq!(d.decision("bob", &id, "phone").await, word, "at {h:02}:{m:02} Shanghai ({at})");
        if word == "push" {
            // Let the vendor answer before the clock moves on: the mock checks the age of the
            // auth token against the shared clock.
            assert_eq!(d.wait_outcome("bob", &id, "phone").await["push"]["outcome"], "delivered");
        }
    }
    wait_push(&d, &phone, "m5").await;
    assert_eq!(pushed(&d, &phone), ["m0", "m5"]);
}

#[actix_rt::test]
async fn dnd_minutes_mutes_until_that_many_minutes_from_now() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    let start = d.clock.now();
    let s = put_settings(&d, "bob", json!({"dnd_minutes": 30})).await;
    let until: DateTime<Utc> = serde_json::from_value(s["dnd_until"].clone()).expect("dnd_until is a time");
    assert_eq!(until, start + Duration::minutes(30));

    d.send_text("m1", "alice", &["bob"], "one").await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "dnd");
    d.clock.advance(Duration::minutes(29));
    d.send_text("m2", "alice", &["bob"], "two").await;
    assert_eq!(d.decision("bob", "m2", "phone").await, "dnd");
    d.clock.advance(Duration::minutes(2));
    d.send_text("m3", "alice", &["bob"], "three").await;
    wait_push(&d, &phone, "m3").await;
    assert_eq!(d.decision("bob", "m3", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["m3"]);
}

#[actix_rt::test]
async fn turning_dnd_off_clears_both_the_window_and_the_mute_duration() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    let s = put_settings(&d, "bob", json!({"dnd": {"from": "00:00", "to": "00:00"}, "dnd_minutes": 60})).await;
    assert!(!s["dnd"].is_null() && !s["dnd_until"].is_null(), "{s}");
    d.send_text("m1", "alice", &["bob"], "one").await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "dnd");

    let s = put_settings(&d, "bob", json!({"dnd": null})).await;
    assert!(s["dnd"].is_null() && s["dnd_until"].is_null(), "{s}");
    let (_, s) = d.get("/v1/users/bob/settings").await;
    assert!(s["dnd"].is_null() && s["dnd_until"].is_null(), "{s}");

    d.send_text("m2", "alice", &["bob"], "two").await;
    wait_push(&d, &phone, "m2").await;
    assert_eq!(d.decision("bob", "m2", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["m2"]);
}

#[actix_rt::test]
async fn a_conversation_dnd_mutes_only_that_conversation() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_conversation_settings(&d, "bob", "team", json!({"dnd": {"from": "00:00", "to": "24:00"}})).await;

    d.send(group("t1", &["bob"])).await;
    d.send(message("o1", "group", "other", &["bob"])).await;
    wait_push(&d, &phone, "o1").await;
    assert_eq!(d.decision("bob", "t1", "phone").await, "dnd");
    assert_eq!(d.decision("bob", "o1", "phone").await, "push");
    assert_eq!(pushed(&d, &phone), ["o1"]);
}

#[actix_rt::test]
async fn messages_held_back_by_dnd_still_count_toward_the_badge() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    put_settings(&d, "bob", json!({"dnd": {"from": "00:00", "to": "00:00"}})).await;

    d.send_text("m1", "alice", &["bob"], "one").await;
    d.send_text("m2", "alice", &["bob"], "two").await;
    for id in ["m1", "m2"] {
        let entry = trace(&d, "bob", id).await;
        assert_eq!(decision_in(&entry, "phone"), "dnd", "{id}");
        assert_eq!(entry["counted_in_badge"], true, "{id}");
    }

    put_settings(&d, "bob", json!({"dnd": null})).await;
    d.send_text("m3", "alice", &["bob"], "three").await;
    let body = wait_push(&d, &phone, "m3").await;
    assert_eq!(body["aps"]["badge"], 3);
    assert_eq!(pushed(&d, &phone), ["m3"]);
}

// ---- 4. force push ----

#[actix_rt::test]
async fn force_push_for_everyone_overrides_dnd_and_push_mode_none() {
    let d = TestDaemon::start().await;
    let bob = d.register_apns("bob", "phone").await;
    let carol = d.register_apns("carol", "phone").await;
    put_settings(&d, "bob", json!({"dnd": {"from": "00:00", "to": "00:00"}})).await;
    put_settings(&d, "carol", json!({"push_mode": "none"})).await;

    let mut m1 = group("m1", &["bob", "carol"]);
    m1["push"] = json!({"force": true});
    d.send(m1).await;
    wait_push(&d, &bob, "m1").await;
    wait_push(&d, &carol, "m1").await;
    assert_eq!(d.wait_outcome("bob", "m1", "phone").await["decision"], "push");
    assert_eq!(d.wait_outcome("carol", "m1", "phone").await["decision"], "push");
}

#[actix_rt::test]
async fn force_push_to_a_user_list_overrides_only_for_the_listed_users() {
    let d = TestDaemon::start().await;
    let bob = d.register_apns("bob", "phone").await;
    let carol = d.register_apns("carol", "phone").await;
    put_settings(&d, "bob", json!({"push_mode": "none"})).await;
    put_settings(&d, "carol", json!({"push_mode": "none", "dnd": {"from": "00:00", "to": "00:00"}})).await;

    let mut m1 = group("m1", &["bob", "carol"]);
    m1["push"] = json!({"force": ["bob"]});
    d.send(m1).await;
    wait_push(&d, &bob, "m1").await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "push");
    assert_eq!(d.decision("carol", "m1", "phone").await, "push_mode");

    let mut m2 = group("m2", &["carol"]);
    m2["push"] = json!({"force": ["carol"]});
    d.send(m2).await;
    wait_push(&d, &carol, "m2").await;
    assert_eq!(pushed(&d, &carol), ["m2"], "carol was not named in m1's force list");
}

#[actix_rt::test]
async fn force_push_does_not_override_presence_or_a_kick() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    let bob_phone = d.register_apns("bob", "phone").await;
    let bob_pad = d.register_apns("bob", "pad").await;
    let dave = d.register_apns("dave", "phone").await;
    let carol = d.register_apns("carol", "phone").await;
    d.presence("bob", "pad", "online").await;
    d.presence("dave", "phone", "kicked").await;

    let mut m1 = group("m1", &["bob", "dave", "carol"]);
    m1["push"] = json!({"force": true});
    d.send(m1).await;
    wait_push(&d, &carol, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "presence");
    assert_eq!(decision_in(&entry, "pad"), "wait");
    assert_eq!(d.decision("dave", "m1", "phone").await, "kicked");
    assert_eq!(d.decision("carol", "m1", "phone").await, "push");

    // A later forced message to carol arrives: nothing of m1 is on its way to the others.
    let mut m2 = group("m2", &["carol"]);
    m2["push"] = json!({"force": true});
    d.send(m2).await;
    wait_push(&d, &carol, "m2").await;
    for token in [&bob_phone, &bob_pad, &dave] {
        assert!(pushed(&d, token).is_empty(), "{token} was pushed: {:?}", pushed(&d, token));
    }
}

// ---- chatrooms ----

#[actix_rt::test]
async fn chatroom_messages_are_not_pushed_by_default() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;

    d.send(message("r1", "chatroom", "lobby", &["bob"])).await;
    let entry = trace(&d, "bob", "r1").await;
    assert_eq!(decision_in(&entry, "phone"), "chatroom");
    assert_eq!(entry["counted_in_badge"], false);

    d.send_text("m2", "alice", &["bob"], "hi").await;
    let body = wait_push(&d, &phone, "m2").await;
    assert_eq!(body["aps"]["badge"], 1, "the chatroom message does not count");
    assert_eq!(pushed(&d, &phone), ["m2"]);
}

#[actix_rt::test]
async fn chatroom_messages_are_pushed_when_the_operator_enables_them() {
    let d = TestDaemon::start_with("[policy]\npush_chatrooms = true").await;
    let phone = d.register_apns("bob", "phone").await;

    d.send(message("r1", "chatroom", "lobby", &["bob"])).await;
    let body = wait_push(&d, &phone, "r1").await;
    assert_eq!(body["conv"], "lobby");
    assert_eq!(d.wait_outcome("bob", "r1", "phone").await["decision"], "push");
}

// ---- in flight: acks, ack timeout, offline transitions ----

#[actix_rt::test]
async fn an_acked_message_is_never_pushed_and_the_trace_says_acked() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    d.presence("bob", "phone", "online").await;
    d.presence("bob", "pad", "online").await;

    d.send(group("m1", &["bob"])).await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "wait");
    assert_eq!(decision_in(&entry, "pad"), "wait");

    let (s, b) = d.post("/v1/acks", json!({"user": "bob", "device": "pad", "message_ids": ["m1"]})).await;
    assert_eq!(s, 202, "ack: {b}");
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "pad"), "acked");
    assert_eq!(decision_in(&entry, "phone"), "delivered_online");
    assert_eq!(entry["counted_in_badge"], false);

    // Both devices leave: an acked message is not in flight any more, so nothing falls back.
    d.presence("bob", "phone", "offline").await;
    d.presence("bob", "pad", "offline").await;
    d.send(group("m2", &["bob"])).await;
    let body = wait_push(&d, &phone, "m2").await;
    assert_eq!(body["aps"]["badge"], 1, "a message delivered online does not count");
    wait_push(&d, &pad, "m2").await;
    assert_eq!(pushed(&d, &phone), ["m2"]);
    assert_eq!(pushed(&d, &pad), ["m2"]);
    assert!(fallback_causes(&trace(&d, "bob", "m1").await).is_empty());
}

#[actix_rt::test]
async fn an_unacked_message_falls_back_and_is_pushed_after_the_ack_timeout() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "online").await;

    d.send(group("m1", &["bob"])).await;
    // The POST returned after the decision: the device waits for an ack first.
    let first = trace(&d, "bob", "m1").await;
    assert!(
        decision_in(&first, "phone") == "wait" || !fallback_causes(&first).is_empty(),
        "an online device is not pushed at once: {first:#}"
    );

    let body = wait_push(&d, &phone, "m1").await;
    assert_eq!(body["aps"]["badge"], 1);
    let entry = d.wait_outcome("bob", "m1", "phone").await;
    assert_eq!(entry["decision"], "push");
    assert_eq!(entry["push"]["outcome"], "delivered");
    assert_eq!(fallback_causes(&trace(&d, "bob", "m1").await), ["ack_timeout"]);
}

#[actix_rt::test]
async fn a_device_going_offline_makes_its_unacked_messages_fall_back_at_once() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    let phone = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "online").await;
    d.send(group("m1", &["bob"])).await;
    d.send(group("m2", &["bob"])).await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "wait");
    assert_eq!(d.decision("bob", "m2", "phone").await, "wait");

    // The connection dies; the ack timeout (60 s) is far away, so only this can push them.
    d.presence("bob", "phone", "offline").await;
    wait_push(&d, &phone, "m1").await;
    wait_push(&d, &phone, "m2").await;
    for id in ["m1", "m2"] {
        let entry = trace(&d, "bob", id).await;
        assert_eq!(decision_in(&entry, "phone"), "push", "{id}");
        assert_eq!(fallback_causes(&entry), ["offline"], "{id}");
    }
}

#[actix_rt::test]
async fn logging_out_a_device_makes_its_unacked_messages_fall_back_at_once() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    let phone = d.register_apns("bob", "phone").await;
    d.presence("bob", "phone", "online").await;
    d.send(group("m1", &["bob"])).await;
    assert_eq!(d.decision("bob", "m1", "phone").await, "wait");

    // Logout keeping the token: the device is offline and still gets offline pushes.
    let (s, b) = d.delete("/v1/users/bob/devices/phone?unbind_token=false").await;
    assert_eq!(s, 204, "logout: {b}");
    wait_push(&d, &phone, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "push");
    assert_eq!(fallback_causes(&entry), ["offline"]);
}

#[actix_rt::test]
async fn logging_out_the_online_device_lets_the_other_devices_be_pushed_at_once() {
    let d = TestDaemon::start_with(NO_ACK_TIMEOUT).await;
    d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    d.presence("bob", "phone", "online").await;
    d.send(group("m1", &["bob"])).await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "phone"), "wait");
    assert_eq!(decision_in(&entry, "pad"), "presence");

    // Full logout: the phone and its token are gone, so nobody online is left waiting.
    let (s, b) = d.delete("/v1/users/bob/devices/phone?unbind_token=true").await;
    assert_eq!(s, 204, "logout: {b}");
    wait_push(&d, &pad, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(decision_in(&entry, "pad"), "push");
    assert_eq!(decision_in(&entry, "phone"), "logged_out", "no longer shown as waiting");
    assert_eq!(fallback_causes(&entry), ["offline"]);
}

#[actix_rt::test]
async fn a_zombie_connection_cannot_swallow_a_message_under_all_offline() {
    // Long enough that the presence event below is handled well before the timeout.
    let d = TestDaemon::start_with("[policy]\nack_timeout_ms = 1500").await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    d.presence("bob", "phone", "online").await;
    d.presence("bob", "pad", "online").await;
    d.send(group("m1", &["bob"])).await;

    // The phone leaves; the pad (a zombie: online, never acks) still waits, so nothing yet.
    d.presence("bob", "phone", "offline").await;
    let entry = trace(&d, "bob", "m1").await;
    assert!(fallback_causes(&entry).is_empty(), "fell back while the pad still waited: {entry:#}");
    assert_eq!(decision_in(&entry, "pad"), "wait");
    assert!(d.apns.received().is_empty(), "pushed while the pad still waited");

    // The pad's ack timeout passes: both count as offline for m1 and both are pushed.
    wait_push(&d, &phone, "m1").await;
    wait_push(&d, &pad, "m1").await;
    let entry = trace(&d, "bob", "m1").await;
    assert_eq!(fallback_causes(&entry), ["ack_timeout"]);
    assert_eq!(decision_in(&entry, "phone"), "push");
    assert_eq!(decision_in(&entry, "pad"), "push");
}

#[actix_rt::test]
async fn a_fall_back_never_pushes_a_device_that_already_got_the_message() {
    let d = TestDaemon::start_with("[policy]\nmulti_device = \"any_offline\"").await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    d.presence("bob", "pad", "online").await;

    d.send(group("m1", &["bob"])).await;
    wait_push(&d, &phone, "m1").await;
    // The pad never acks: after the timeout it counts as offline and is pushed; the phone was
    // pushed already.
    wait_push(&d, &pad, "m1").await;
    let entry = d.wait_outcome("bob", "m1", "pad").await;
    assert_eq!(entry["decision"], "push");
    assert_eq!(fallback_causes(&trace(&d, "bob", "m1").await), ["ack_timeout"]);

    d.presence("bob", "pad", "offline").await;
    d.send(group("m2", &["bob"])).await;
    wait_push(&d, &phone, "m2").await;
    assert_eq!(pushed(&d, &phone), ["m1", "m2"]);
}

// ---- badge ----

#[actix_rt::test]
async fn the_badge_counts_offline_messages_and_resets_when_any_device_comes_online() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;
    d.register_apns("bob", "pad").await;

    for (i, id) in ["m1", "m2", "m3"].into_iter().enumerate() {
        d.send_text(id, "alice", &["bob"], "hi").await;
        let body = wait_push(&d, &phone, id).await;
        assert_eq!(body["aps"]["badge"], i + 1, "{id}");
    }

    // The pad (not the phone) comes online and leaves again.
    d.presence("bob", "pad", "online").await;
    d.presence("bob", "pad", "offline").await;
    d.send_text("m4", "alice", &["bob"], "again").await;
    let body = wait_push(&d, &phone, "m4").await;
    assert_eq!(body["aps"]["badge"], 1);
}

// ---- presence ordering ----

#[actix_rt::test]
async fn a_presence_event_older_than_the_last_applied_one_is_ignored() {
    let d = TestDaemon::start().await;
    d.register_apns("bob", "phone").await;
    let t = d.clock.now();
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);

    let (s, b) = d
        .post("/v1/presence", json!({"events": [{"user": "bob", "device": "phone", "state": "online", "at": at(t)}]}))
        .await;
    assert_eq!((s, &b["applied"], &b["ignored_stale"]), (202, &json!(1), &json!(0)), "{b}");

    let late =
        json!({"events": [{"user": "bob", "device": "phone", "state": "offline", "at": at(t - Duration::seconds(1))}]});
    let (s, b) = d.post("/v1/presence", late).await;
    assert_eq!((s, &b["applied"], &b["ignored_stale"]), (202, &json!(0), &json!(1)), "{b}");
    assert_eq!(d.listed_device("bob", "phone").await["presence"], "online");

    let newer =
        json!({"events": [{"user": "bob", "device": "phone", "state": "offline", "at": at(t + Duration::seconds(1))}]});
    let (s, b) = d.post("/v1/presence", newer).await;
    assert_eq!((s, &b["applied"], &b["ignored_stale"]), (202, &json!(1), &json!(0)), "{b}");
    assert_eq!(d.listed_device("bob", "phone").await["presence"], "offline");
}

// ---- deduplication ----

#[actix_rt::test]
async fn posting_the_same_message_id_twice_pushes_it_once() {
    let d = TestDaemon::start().await;
    let phone = d.register_apns("bob", "phone").await;

    let first = d.send_text("m1", "alice", &["bob"], "hi").await;
    assert_eq!(first["accepted"], json!(["m1"]));
    wait_push(&d, &phone, "m1").await;
    let again = d.send_text("m1", "alice", &["bob"], "hi").await;
    assert_eq!(again["accepted"], json!([]));
    assert_eq!(again["duplicates"], json!(["m1"]));

    d.send_text("m2", "alice", &["bob"], "next").await;
    let body = wait_push(&d, &phone, "m2").await;
    assert_eq!(body["aps"]["badge"], 2, "the retried post did not count twice");
    assert_eq!(pushed(&d, &phone), ["m1", "m2"]);
    let (_, traces) = d.get("/v1/users/bob/pushes").await;
    let m1_entries = traces["pushes"].as_array().unwrap().iter().filter(|e| e["message_id"] == "m1").count();
    assert_eq!(m1_entries, 1);
}
