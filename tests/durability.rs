//! Durability and back-pressure (product.md §7): a restart keeps devices, settings, templates
//! and badges; kill -9 loses no accepted message and repeats none outside the documented
//! window; a burst past the pending bound gets 429 with Retry-After and loses nothing; SIGTERM
//! drains and exits 0.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pushd::clock::SystemClock;
use pushd::mock_vendor::{MockAnswer, MockApns, MockRule, MockServer, Received};
use serde_json::{json, Value};
use support::{apns_mock_config, apns_token, TestDaemon, TestEnv, API_KEY, WAIT};

const EMBEDDED: &str = "[store]\nkind = \"embedded\"\n[api]\nadmin_keys = [\"admin-key-123\"]";

#[actix_rt::test]
async fn devices_settings_templates_traces_and_badges_survive_a_restart() {
    let d = TestDaemon::start_with(EMBEDDED).await;
    let phone = d.register_apns("bob", "phone").await;
    d.register_apns("bob", "pad").await;
    d.presence("bob", "pad", "kicked").await;
    let (s, _) = d.put("/v1/users/bob/settings", json!({"push_mode": "mentions", "timezone": "Asia/Tokyo"})).await;
    assert_eq!(s, 200);
    let (s, _) = d.put("/v1/users/bob/conversations/team/settings", json!({"push_mode": "all"})).await;
    assert_eq!(s, 200);
    let t = json!({"title": "Urgent: {sender_name}", "body": "{text}"});
    let r = d.http.put(format!("{}/admin/templates/urgent", d.operator)).bearer_auth("admin-key-123").json(&t);
    assert_eq!(r.send().await.unwrap().status(), 200);
    for id in ["r1", "r2"] {
        d.send_text(id, "alice", &["bob"], "hi").await;
        d.wait_outcome("bob", id, "phone").await;
    }

    let d = d.restart().await;

    let (_, list) = d.get("/v1/users/bob/devices").await;
    let devices: BTreeMap<String, Value> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    assert_eq!(devices.len(), 2, "{list}");
    assert_eq!(devices["pad"]["presence"], "kicked");
    assert!(devices["phone"]["token"].is_string());
    let (_, settings) = d.get("/v1/users/bob/settings").await;
    assert_eq!((settings["push_mode"].as_str(), settings["timezone"].as_str()), (Some("mentions"), Some("Asia/Tokyo")));
    let (s, conv) = d.get("/v1/users/bob/conversations/team/settings").await;
    assert_eq!((s, conv["push_mode"].as_str()), (200, Some("all")));
    let (_, pushes) = d.get("/v1/users/bob/pushes").await;
    assert_eq!(pushes["pushes"].as_array().unwrap().len(), 2, "traces survive");

    // The template survived, and the badge goes on from 2.
    d.send(json!({
        "id": "r3", "from": {"id": "alice", "name": "Alice"}, "conversation": {"id": "team", "type": "group"},
        "to": ["bob"], "kind": "text", "text": "deploy now", "push": {"template": "urgent"}
    }))
    .await;
    let got = d.apns_received(&phone, 1).await;
    assert_eq!(got[0].body["aps"]["alert"]["title"], "Urgent: Alice");
    assert_eq!(got[0].body["aps"]["badge"], 3);
}

#[actix_rt::test]
async fn a_burst_past_the_pending_bound_gets_429_and_loses_nothing() {
    let d = TestDaemon::start_with("[store]\nkind = \"embedded\"\n[api]\nmax_pending = 20").await;
    // Slow vendor answers keep messages pending, so the bound is reached.
    d.apns.script(MockRule::any(MockAnswer { delay_ms: Some(200), ..MockAnswer::default() }));
    let users: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    let mut tokens = BTreeMap::new();
    for u in &users {
        tokens.insert(u.clone(), d.register_apns(u, "phone").await);
    }
    let rss_before = rss_kib();
    let sends = (0..120).map(|i| {
        let (d, to) = (&d, users[i % users.len()].clone());
        async move {
            let body = json!({
                "id": format!("burst-{i}"), "from": {"id": "alice"}, "conversation": {"id": "c", "type": "single"},
                "to": [to], "kind": "text", "text": "x"
            });
            let r =
                d.http.post(format!("{}/v1/messages", d.base)).bearer_auth(API_KEY).json(&body).send().await.unwrap();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (i, to, status, retry_after, body)
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted: Vec<_> = answers.iter().filter(|a| a.2 == 202).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.2 == 429).collect();
    assert_eq!(accepted.len() + refused.len(), answers.len(), "only 202 or 429");
    assert!(!refused.is_empty(), "the burst must hit the bound");
    for r in &refused {
        assert_eq!(r.3.as_deref(), Some("1"), "429 carries Retry-After");
        assert_eq!(r.4["error"]["code"], "too_many_pending");
    }
    // Every accepted message reaches its device exactly once.
    let expected: BTreeSet<(String, String)> =
        accepted.iter().map(|a| (format!("burst-{}", a.0), tokens[&a.1].clone())).collect();
    let got = wait_pushed(&d.apns, expected, Duration::from_secs(30)).await.unwrap();
    let refused_ids: BTreeSet<String> = refused.iter().map(|a| format!("burst-{}", a.0)).collect();
    assert!(
        got.iter().all(|x| !refused_ids.contains(x.body["msg"].as_str().unwrap_or(""))),
        "refused means not accepted"
    );
    let rss_after = rss_kib();
    println!("burst: {} accepted, {} refused; RSS {rss_before} → {rss_after} KiB", accepted.len(), refused.len());
    assert!(rss_after < rss_before + 100 * 1024, "memory grew by more than 100 MiB under a small burst");
}

/// The resident set of this process, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---- pushd as a child process ----

/// pushd started as a child process on a data dir, against a mock APNs in this process.
struct Child_ {
    child: Child,
    base: String,
}

fn child_config(env: &TestEnv, apns_url: &str) -> PathBuf {
    let identity = env.dir.path().join("apns-cert.pem");
    std::fs::write(&identity, env.tls.client_identity_pem("Apple Push Services: com.example.im").unwrap()).unwrap();
    // The FCM credential points at a port nothing listens on: these tests use APNs only.
    let config = support::daemon_config(&env.dir, &env.ca_path, &identity, apns_url, "https://127.0.0.1:9/");
    let path = env.dir.path().join("pushd.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn start_child(config: &Path, dir: &Path) -> Child_ {
    let ready = dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushd"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--ready-file")
        .arg(&ready)
        .env("PUSHD__STORE__KIND", "embedded")
        .env("PUSHD__LISTEN__GATEWAY", "127.0.0.1:0")
        .env("PUSHD__LISTEN__OPERATOR", "127.0.0.1:0")
        .env("PUSHD__SHUTDOWN_GRACE_MS", "5000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pushd");
    // Bounded wait for the ready file (the child writes it once listening).
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let v: Value = serde_json::from_str(&text).unwrap();
            return Child_ { child, base: format!("http://{}", v["gateway"].as_str().unwrap()) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("pushd did not become ready in 30 s");
}

async fn mock_apns(env: &TestEnv) -> MockApns {
    // The child signs with the real clock.
    MockApns::start(apns_mock_config(env.tls.clone(), Arc::new(SystemClock))).await.unwrap()
}

/// Waits (up to `timeout`) until `mock` has received every `(message id, token)` of `want`; returns the record.
async fn wait_pushed(
    mock: &MockServer,
    want: BTreeSet<(String, String)>,
    timeout: Duration,
) -> Result<Vec<Received>, String> {
    let seen_all = move |r: &[Received]| {
        let seen: BTreeSet<_> =
            r.iter().filter_map(|x| Some((x.body["msg"].as_str()?.to_owned(), x.token.clone()))).collect();
        want.is_subset(&seen)
    };
    mock.wait_for(seen_all, timeout).await
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> Option<u16> {
    let r = http.post(format!("{base}{path}")).bearer_auth(API_KEY).json(body).send().await.ok()?;
    Some(r.status().as_u16())
}

#[actix_rt::test]
async fn kill_9_mid_stream_loses_no_accepted_message() {
    let env = TestEnv::new();
    let apns = mock_apns(&env).await;
    // Answers take 30 ms, so pushes are in flight when the kill comes: those must be replayed.
    apns.script(MockRule::any(MockAnswer { delay_ms: Some(30), ..MockAnswer::default() }));
    let config = child_config(&env, apns.url().as_str());
    let http = reqwest::Client::new();
    let mut child = start_child(&config, env.dir.path());

    let users: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    for u in &users {
        let body = json!({"credential": "test-apns", "token": apns_token(u)});
        let r = http.put(format!("{}/v1/users/{u}/devices/phone", child.base)).bearer_auth(API_KEY).json(&body);
        assert_eq!(r.send().await.unwrap().status(), 200);
    }

    // A steady stream of messages; the daemon is killed with SIGKILL in the middle and started
    // again; only messages answered 202 count as accepted.
    let mut accepted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(4));
    for i in 0..300 {
        tick.tick().await;
        if i == 150 {
            child.child.kill().expect("SIGKILL");
            child.child.wait().unwrap();
            child = start_child(&config, env.dir.path());
        }
        let to = &users[i % users.len()];
        let body = json!({
            "id": format!("crash-{i}"), "from": {"id": "alice"}, "conversation": {"id": "c", "type": "single"},
            "to": [to], "kind": "text", "text": "x"
        });
        if post(&http, &child.base, "/v1/messages", &body).await == Some(202) {
            accepted.insert((format!("crash-{i}"), apns_token(to)));
        }
    }
    assert!(accepted.len() >= 250, "most messages accepted: {}", accepted.len());

    let got = wait_pushed(&apns, accepted.clone(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("accepted messages lost: {e}"));
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &got {
        if let Some(m) = r.body["msg"].as_str() {
            *counts.entry((m.to_owned(), r.token.clone())).or_default() += 1;
        }
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.0.clone()).collect();
    println!(
        "kill -9: {} accepted, all delivered; at-least-once window: {} duplicate pushes {:?}",
        accepted.len(),
        duplicates.len(),
        duplicates
    );
    // The window: pushes the vendor received whose answer pushd had not recorded durably
    // before the kill (the requests in flight, plus answers of the last store.sync_interval_ms).
    // Here about 30 ms of traffic at 250 messages/s; they carry apns-collapse-id = message id,
    // so the device replaces rather than repeats the notification.
    assert!(duplicates.len() <= 40, "too many duplicates: {duplicates:?}");
    for d in &duplicates {
        let n: usize = d.trim_start_matches("crash-").parse().unwrap();
        assert!(n < 150, "only messages accepted before the kill can repeat: {d}");
    }
    let dup = got.iter().find(|r| r.body["msg"] == "crash-0").unwrap();
    assert_eq!(dup.headers["apns-collapse-id"], "crash-0", "a repeat replaces the notification");
    child.child.kill().ok();
    child.child.wait().ok();
}

#[actix_rt::test]
async fn sigterm_finishes_in_flight_pushes_and_exits_zero() {
    let env = TestEnv::new();
    let apns = mock_apns(&env).await;
    apns.script(MockRule::any(MockAnswer { delay_ms: Some(300), ..MockAnswer::default() }));
    let config = child_config(&env, apns.url().as_str());
    let http = reqwest::Client::new();
    let mut child = start_child(&config, env.dir.path());
    let body = json!({"credential": "test-apns", "token": apns_token("t")});
    let r = http.put(format!("{}/v1/users/t/devices/phone", child.base)).bearer_auth(API_KEY).json(&body);
    assert_eq!(r.send().await.unwrap().status(), 200);
    for i in 0..5 {
        let m = json!({
            "id": format!("term-{i}"), "from": {"id": "alice"}, "conversation": {"id": "c", "type": "single"},
            "to": ["t"], "kind": "text", "text": "x"
        });
        assert_eq!(post(&http, &child.base, "/v1/messages", &m).await, Some(202));
    }
    let pid = child.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Bounded wait for the exit (shutdown grace is 5 s).
    let mut status = None;
    for _ in 0..200 {
        if let Some(s) = child.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("pushd exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    // The pushes in flight at SIGTERM were finished, not dropped.
    let got = apns.wait_for(|r| r.len() >= 5, WAIT).await.unwrap();
    assert_eq!(got.iter().filter(|r| r.status == 200).count(), 5);
}

#[actix_rt::test]
async fn a_push_awaiting_its_answer_shows_in_the_trace_which_is_stored_once_answered() {
    let d = TestDaemon::start_with(EMBEDDED).await;
    d.register_apns("gus", "phone").await;
    // A late answer (within the 3 s request timeout of the tests) keeps the message open in
    // the session, whose trace is not stored yet.
    d.apns.script(MockRule::any(MockAnswer { delay_ms: Some(1500), ..MockAnswer::default() }));
    d.send_text("slow-1", "alice", &["gus"], "hello").await;
    let pending = d.wait_trace_device("gus", "slow-1", "phone", |t| t["decision"] == "push").await;
    assert!(pending["push"]["outcome"].is_null(), "no answer yet: {pending:#}");
    let done = d.wait_outcome("gus", "slow-1", "phone").await;
    assert_eq!(done["push"]["outcome"], "delivered", "{done:#}");

    // Completed, the trace is in the store: a restarted daemon (no session yet) serves it.
    let d = d.restart().await;
    let (_, pushes) = d.get("/v1/users/gus/pushes").await;
    let entries = pushes["pushes"].as_array().expect("pushes");
    assert_eq!(entries.len(), 1, "{pushes:#}");
    assert_eq!(entries[0]["devices"][0]["push"]["outcome"], "delivered", "{pushes:#}");
}

/// A message replayed from the journal is checked against the dedup records an earlier run
/// wrote (it may have reached some devices before the crash); one just accepted is not looked
/// up, since nothing can be stored for it yet (`Arrival::Accepted`).
#[actix_rt::test]
async fn a_replayed_message_skips_the_devices_an_earlier_run_pushed_it_to() {
    use pushd::clock::Clock as _;
    use pushd::model::{Conversation, ConversationId, ConversationKind, Message, MessageId, MessageKind, Sender};
    use pushd::model::{DeviceId, PushOptions, UserId};

    let d = TestDaemon::start_with(EMBEDDED).await;
    let phone = d.register_apns("bob", "phone").await;
    let pad = d.register_apns("bob", "pad").await;
    // What a crash can leave: the message accepted and pending, the phone's push answered and
    // recorded, the pad's not yet.
    let bob = UserId::parse("bob").unwrap();
    let message = Message {
        id: MessageId::parse("m-crash").unwrap(),
        from: Sender { id: UserId::parse("alice").unwrap(), name: Some("Alice".into()) },
        conversation: Conversation {
            id: ConversationId::parse("c-1").unwrap(),
            kind: ConversationKind::Single,
            name: None,
        },
        to: vec![bob.clone()],
        kind: MessageKind::Text,
        text: Some("are you there?".into()),
        mentions: vec![],
        mention_all: false,
        push: PushOptions::default(),
        accepted_at: d.clock.now(),
    };
    let store = d.running.registry.services().store.clone();
    store.accept_message(&message).unwrap();
    store.mark_pushed(&bob, &message.id, &DeviceId::parse("phone").unwrap(), d.clock.now()).unwrap();
    store.sync().await.expect("synced");
    drop(store);

    let d = d.restart().await;
    d.apns_received(&pad, 1).await;
    d.wait_outcome("bob", "m-crash", "pad").await;
    assert!(d.apns.received_for(&phone).is_empty(), "the phone got m-crash twice");

    // A new message reaches both, with no dedup record to consult.
    d.send_text("m-new", "alice", &["bob"], "hello").await;
    d.apns_received(&phone, 1).await;
    d.apns_received(&pad, 2).await;
}
