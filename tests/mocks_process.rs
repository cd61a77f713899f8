//! The mock vendors in a process of their own: `pushd mocks` writes a config, and a `pushd
//! serve` in another process delivers to those mocks with it (how the load harness targets a
//! running pushd). `pushd demo` names its control endpoint in its ready file. Every process is
//! the real binary on loopback, port 0.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{apns_token, arg_path as path, PushdChild, ANY_MOCK_PORTS, ANY_PORT};

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth("demo-key");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn serve_with_the_config_pushd_mocks_wrote_delivers_to_those_mocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pushd.toml");
    // A relative --data-dir in the mocks' folder, and pushd serve started from elsewhere: the
    // written config must name its files absolutely.
    let (mocks, ready) = PushdChild::mocks(dir.path(), "data", &config).await;
    let (serve, _, served) = PushdChild::serve(std::path::Path::new("/"), &config).await;
    let control = format!("http://{}/mock", ready["mock_control"].as_str().expect("mock_control"));
    let gateway = format!("http://{}", served["gateway"].as_str().expect("gateway"));

    let token = apns_token("mocks-process");
    let (registered, device) = call(
        reqwest::Method::PUT,
        &format!("{gateway}/v1/users/bob/devices/iphone"),
        Some(json!({"credential": "demo-apns", "token": token})),
    )
    .await;
    let message = json!({
        "id": "apart-1", "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "alice-bob", "type": "single"}, "to": ["bob"], "kind": "text", "text": "hi"
    });
    let (accepted, answer) = call(reqwest::Method::POST, &format!("{gateway}/v1/messages"), Some(message)).await;
    // Drained as the harness does, until the push shows; bounded to 10 s. A poll: the mock
    // runs in another process, so its record has no change event to await from here.
    let mut drained = Vec::new();
    for _ in 0..200 {
        let (_, taken) = call(reqwest::Method::DELETE, &format!("{control}/apns/received"), None).await;
        drained.extend(taken.as_array().cloned().unwrap_or_default());
        if drained.iter().any(|r| r["body"]["msg"] == "apart-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, process) = call(reqwest::Method::GET, &format!("{control}/process"), None).await;
    let (_, apns) = call(reqwest::Method::GET, &format!("{control}/apns"), None).await;

    assert_eq!(ready["pid"], mocks.child.id());
    assert_eq!(ready["config"], config.display().to_string());
    assert_eq!(served["pid"], serve.child.id());
    assert!(served.get("mock_control").is_none(), "pushd serve runs no mocks: {served}");
    assert_eq!(registered, 200, "{device}");
    assert_eq!(accepted, 202, "{answer}");
    let push = drained.iter().find(|r| r["body"]["msg"] == "apart-1");
    let push = push.unwrap_or_else(|| panic!("the push never reached the mock APNs; drained: {drained:#?}"));
    assert_eq!((push["token"].as_str(), push["status"].as_u64()), (Some(token.as_str()), Some(200)), "{push:#}");
    assert_eq!(process["pid"], mocks.child.id(), "the mocks' own process: {process}");
    assert!(apns["ca_pem"].as_str().is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")), "{apns}");
    assert!(apns["started_unix_us"].as_u64().is_some_and(|us| us > 0), "{apns}");
}

#[tokio::test]
async fn the_demo_ready_file_names_the_mock_control_endpoint_in_the_same_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ready_path = dir.path().join("demo.json");
    let (data, ready_arg) = (path(&dir.path().join("data")), path(&ready_path));
    let mut args = vec!["demo", "--gateway", ANY_PORT, "--operator", ANY_PORT, "--data-dir", &data];
    args.extend(ANY_MOCK_PORTS);
    args.extend(["--ready-file", &ready_arg]);
    let mut demo = PushdChild::spawn(&args, dir.path());
    let ready = demo.wait_ready(&ready_path).await;
    let control = format!("http://{}/mock", ready["mock_control"].as_str().expect("mock_control"));

    let (status, process) = call(reqwest::Method::GET, &format!("{control}/process"), None).await;
    let metrics = reqwest::get(format!("http://{}/metrics", ready["operator"].as_str().expect("operator")))
        .await
        .expect("operator answers")
        .text()
        .await
        .expect("text");

    assert_eq!(status, 200, "{process}");
    assert_eq!(ready["pid"], demo.child.id());
    assert_eq!(process["pid"], demo.child.id(), "mocks and pushd share the demo's process");
    let start = support::metric(&metrics, "process_start_time_seconds", &[]);
    assert_eq!(process["start_time_seconds"].as_f64(), Some(start), "one process, one start time");
    assert!(ready["gateway"].is_string(), "{ready}");
}
