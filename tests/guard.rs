//! The mass-invalidation guard: when most answers of a credential say "invalid token" at once
//! (a wrong app id or environment), pruning pauses instead of wiping every user's token.

mod support;

use pushd::mock_vendor::{MockAnswer, MockRule};
use support::TestDaemon;

#[actix_rt::test]
async fn pruning_pauses_when_most_tokens_of_a_credential_turn_invalid_at_once() {
    let d = TestDaemon::start_with(
        "[delivery]\nmass_invalidation_window = 10\nmass_invalidation_min = 4\nmass_invalidation_ratio = 0.5",
    )
    .await;
    d.apns.script(MockRule::any(MockAnswer {
        status: Some(400),
        reason: Some("BadDeviceToken".into()),
        ..MockAnswer::default()
    }));
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let user = format!("g{i}");
        d.register_apns(&user, "phone").await;
        // One at a time, so the order of the guard's samples is known.
        d.send_text(&format!("gm{i}"), "alice", &[user.as_str()], "hi").await;
        outcomes.push(d.wait_outcome(&user, &format!("gm{i}"), "phone").await);
    }
    let notes: Vec<&str> = outcomes.iter().map(|o| o["push"]["note"].as_str().unwrap_or("")).collect();
    // The first three answers are too few to judge: those tokens go.
    assert!(notes[..3].iter().all(|n| n.starts_with("token removed")), "{notes:?}");
    // From the fourth on, 4 of 4 are invalid: pruning pauses and the tokens stay.
    assert!(notes[3..].iter().all(|n| n.contains("pruning paused")), "{notes:?}");
    let (_, list) = d.get("/v1/users/g7/devices").await;
    assert!(list["devices"][0]["token"].is_string(), "{list}");
    assert!(d.metrics().await.contains(r#"pushd_pruning_paused{credential="test-apns"} 1"#));
}
