//! The operator listener: /metrics passes `promtool check metrics`, histograms have explicit
//! buckets, labels are bounded, the standard process metrics are there; /healthz and /readyz
//! answer.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use pushd::process::Usage;
use support::{metric, TestDaemon};

#[actix_rt::test]
async fn metrics_pass_promtool_and_carry_push_outcomes_with_buckets() {
    let d = TestDaemon::start().await;
    let token = d.register_apns("mia", "phone").await;
    d.send_text("metrics-1", "alice", &["mia"], "hi").await;
    d.apns_received(&token, 1).await;
    d.wait_outcome("mia", "metrics-1", "phone").await;

    let text = d.metrics().await;
    assert!(text.contains(r#"pushd_pushes_total{vendor="apns",credential="test-apns",outcome="delivered"}"#), "{text}");
    assert!(text.contains("pushd_vendor_request_duration_seconds_bucket{"), "histogram buckets missing:\n{text}");
    assert!(text.contains("pushd_delivery_latency_seconds_bucket{"), "{text}");
    assert!(text.contains("pushd_messages_accepted_total"), "{text}");
    assert!(!text.contains(&token), "a token leaked into a label");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test (Debian package `prometheus`; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_rt::test]
async fn metrics_show_the_process_cpu_memory_and_start_time() {
    let d = TestDaemon::start().await;
    // The daemon runs in this test process, so the figures are this process's.
    let before = Usage::read().expect("/proc is readable on Linux");

    let text = d.metrics().await;

    let after = Usage::read().expect("/proc is readable on Linux");
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} is not a {kind}:\n{text}");
    }
    let cpu = metric(&text, "process_cpu_seconds_total", &[]);
    let rss = metric(&text, "process_resident_memory_bytes", &[]);
    let start = metric(&text, "process_start_time_seconds", &[]);
    assert!((before.cpu_seconds..=after.cpu_seconds).contains(&cpu), "CPU {cpu}: {before:?} → {after:?}");
    assert!(rss > 1024.0 * 1024.0, "RSS above 1 MiB: {rss}");
    assert_eq!(start, before.start_time_seconds);
    assert!(start <= now + 1.0 && start > now - 3600.0, "started within the last hour: {start}, now {now}");
}

#[actix_rt::test]
async fn health_and_readiness_answer_on_the_operator_listener() {
    let d = TestDaemon::start().await;
    for path in ["/healthz", "/readyz"] {
        let r = d.http.get(format!("{}{path}", d.operator)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The gateway API is not served on the operator listener.
    let r = d.http.get(format!("{}/v1/users/x/devices", d.operator)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[actix_rt::test]
async fn an_admin_adds_a_template_that_messages_can_then_use() {
    let d = TestDaemon::start_with("[api]\nadmin_keys = [\"admin-key-123\"]").await;
    let url = format!("{}/admin/templates/urgent", d.operator);
    let body = serde_json::json!({"title": "Urgent from {sender_name}", "body": "{text}"});

    let denied = d.http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = d.http.put(&url).bearer_auth(support::API_KEY).json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401, "a gateway key is not an admin key");
    let bad = serde_json::json!({"title": "{nope}", "body": "x"});
    let rejected = d.http.put(&url).bearer_auth("admin-key-123").json(&bad).send().await.unwrap();
    assert_eq!(rejected.status(), 400);
    let ok = d.http.put(&url).bearer_auth("admin-key-123").json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let list: serde_json::Value = d
        .http
        .get(format!("{}/admin/templates", d.operator))
        .bearer_auth("admin-key-123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["templates"], serde_json::json!(["default", "detail", "urgent"]));

    let token = d.register_apns("noa", "phone").await;
    d.send(serde_json::json!({
        "id": "t1", "from": {"id": "alice", "name": "Alice"}, "conversation": {"id": "c", "type": "single"},
        "to": ["noa"], "kind": "text", "text": "call me", "push": {"template": "urgent"}
    }))
    .await;
    let got = d.apns_received(&token, 1).await;
    assert_eq!(got[0].body["aps"]["alert"]["title"], "Urgent from Alice");
    assert_eq!(got[0].body["aps"]["alert"]["body"], "call me");
}
