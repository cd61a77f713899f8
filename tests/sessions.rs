//! Session lifecycle: an idle session with nothing in flight passivates, and the user's state
//! (devices, kicked state, settings, badge) comes back from the store unchanged.

mod support;

use std::time::Duration;

use serde_json::json;
use support::TestDaemon;

/// Polls the registry a bounded number of times until no session is alive.
async fn until_passivated(d: &TestDaemon) {
    for _ in 0..500 {
        if d.running.registry.active() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sessions still alive: {}", d.running.registry.active());
}

#[actix_rt::test]
async fn an_idle_session_passivates_and_comes_back_with_its_state() {
    let d = TestDaemon::start_with("[sessions]\nidle_passivate_ms = 100").await;
    let token = d.register_apns("ivy", "phone").await;
    d.register_apns("ivy", "pad").await;
    d.presence("ivy", "pad", "kicked").await;
    let (s, _) = d.put("/v1/users/ivy/settings", json!({"push_mode": "mentions", "timezone": "Asia/Tokyo"})).await;
    assert_eq!(s, 200);
    d.send_text("p1", "alice", &["ivy"], "one").await; // single chat: counts as addressed
    d.wait_outcome("ivy", "p1", "phone").await;
    assert!(d.running.registry.active() >= 1);

    until_passivated(&d).await;

    let (_, settings) = d.get("/v1/users/ivy/settings").await;
    assert_eq!(settings["push_mode"], "mentions");
    assert_eq!(settings["timezone"], "Asia/Tokyo");
    d.send_text("p2", "alice", &["ivy"], "two").await;
    let got = d.apns_received(&token, 2).await;
    assert_eq!(got[1].body["aps"]["badge"], 2, "the badge survived passivation");
    assert_eq!(d.decision("ivy", "p2", "pad").await, "kicked", "the kick survived passivation");
}

#[actix_rt::test]
async fn a_session_with_a_message_in_flight_does_not_passivate() {
    let d = TestDaemon::start_with("[sessions]\nidle_passivate_ms = 50\n[policy]\nack_timeout_ms = 600").await;
    let token = d.register_apns("jon", "phone").await;
    d.presence("jon", "phone", "online").await;
    d.send_text("q1", "alice", &["jon"], "are you there?").await;
    assert_eq!(d.decision("jon", "q1", "phone").await, "wait");
    // The in-flight message holds the session past its idle time until the ack timeout pushes it.
    let got = d.apns_received(&token, 1).await;
    assert_eq!(got[0].body["msg"], "q1");
    let entry = d.wait_trace("jon", "q1", |e| e["fallbacks"].as_array().is_some_and(|f| !f.is_empty())).await;
    assert_eq!(entry["fallbacks"][0]["cause"], "ack_timeout");
    until_passivated(&d).await;
}
