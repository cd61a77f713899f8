//! Test support: a daemon started in-process on loopback ports with mock APNs and FCM, a
//! small HTTP client for the gateway API, and helpers that wait on conditions (never on time).

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushd::clock::{ManualClock, SharedClock};
use pushd::config::Loader;
use pushd::mock_vendor::{MockApns, MockApnsConfig, MockFcm, MockFcmConfig, MockServer, MockTls, Received};
use pushd::{Listeners, Running};
use serde_json::{json, Value};

pub const API_KEY: &str = "test-key-123";
/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn demo_file(name: &str) -> String {
    format!("{}/config/demo/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// What a test sets up before the daemon starts: a temp data dir, the clock shared by the
/// daemon and the mocks, and the mock CA (written to `ca_path`, trusted by every credential).
/// A vendor test starts its own mock with `tls` and `clock`, then the daemon with
/// [`TestDaemon::start_in`] and a credential pointing at the mock.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub tls: Arc<MockTls>,
    pub ca_path: std::path::PathBuf,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A fresh environment; the clock stands at the real now.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(chrono::Utc::now());
        let tls = Arc::new(MockTls::generate().expect("mock TLS"));
        let ca_path = dir.path().join("mock-ca.pem");
        std::fs::write(&ca_path, &tls.ca_pem).expect("write CA");
        Self { dir, clock, tls, ca_path }
    }

    /// The clock as the mocks take it.
    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }
}

/// The test daemon's config: loopback mocks at `apns_url`/`fcm_url` trusted through `ca_path`,
/// short retries, the in-memory store unless `PUSHD_TEST_STORE=embedded`.
pub fn daemon_config(
    dir: &tempfile::TempDir,
    ca_path: &std::path::Path,
    identity_path: &std::path::Path,
    apns_url: &str,
    fcm_url: &str,
) -> String {
    format!(
        r#"
            data_dir = "{dir}"
            [store]
            kind = "{store_kind}"
            [api]
            keys = ["{API_KEY}"]
            max_body_bytes = 65536
            max_message_batch = 10
            [policy]
            ack_timeout_ms = 300
            [sessions]
            idle_passivate_ms = 600000
            [delivery]
            max_attempts = 3
            backoff_base_ms = 20
            backoff_max_ms = 200
            deadline_ms = 5000
            request_timeout_ms = 3000
            [credentials.test-apns]
            vendor = "apns"
            endpoint = "{apns_url}"
            extra_roots = ["{ca}"]
            topic = "com.example.im"
            key_file = "{apns_key}"
            key_id = "KEY1234567"
            team_id = "TEAM123456"
            [credentials.test-apns-cert]
            vendor = "apns"
            endpoint = "{apns_url}"
            extra_roots = ["{ca}"]
            topic = "com.example.im"
            certificate_file = "{identity}"
            [credentials.test-fcm]
            vendor = "fcm"
            endpoint = "{fcm_url}"
            extra_roots = ["{ca}"]
            service_account_file = "{fcm_sa}"
            token_uri = "{fcm_url}token"
            "#,
        dir = dir.path().display(),
        ca = ca_path.display(),
        // The suite runs on the in-memory store; PUSHD_TEST_STORE=embedded runs it all on
        // the persistent one (tests/durability.rs always uses it).
        store_kind = std::env::var("PUSHD_TEST_STORE").unwrap_or_else(|_| "memory".into()),
        identity = identity_path.display(),
        apns_key = demo_file("apns-demo-key.p8"),
        fcm_sa = demo_file("fcm-service-account.json"),
    )
}

/// A running daemon with its mocks.
pub struct TestDaemon {
    pub running: Running,
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub base: String,
    pub operator: String,
    extra: String,
    tls: Arc<MockTls>,
    ca_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// FNV-1a over the bytes of `seed`, continuing from `h`.
fn fnv1a_from(mut h: u64, seed: &str) -> u64 {
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A stable 64-bit hash (FNV-1a) of `seed`: the material the vendor token builders shape.
pub fn seed_hash(seed: &str) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, seed)
}

/// One APNs token per (user, device), 64 hex chars, stable within a test.
pub fn apns_token(seed: &str) -> String {
    let mut out = String::new();
    let mut h = seed_hash(seed);
    while out.len() < 64 {
        out.push_str(&format!("{h:016x}"));
        h = fnv1a_from(h, seed);
    }
    out.truncate(64);
    out
}

/// An FCM registration token, stable per seed.
pub fn fcm_token(seed: &str) -> String {
    format!("fcm-{seed}:APA91b{}", "x".repeat(40))
}

/// What the device listing shows of a token: first 6 and last 4 characters.
pub fn masked(token: &str) -> String {
    format!("{}…{}", &token[..6], &token[token.len() - 4..])
}

/// The attempts of a device trace as `(status, outcome)` pairs.
pub fn attempts(device: &Value) -> Vec<(Option<u64>, String)> {
    device["push"]["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts listed: {device:#}"))
        .iter()
        .map(|a| (a["status"].as_u64(), a["outcome"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The sum of the samples of `name` in a /metrics text whose labels include every one of `labels` (0 if none).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split_once('{').map_or(*series, |(n, _)| n) == name && labels.iter().all(|lb| series.contains(lb))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// The next 00:00:01 China time (Asia/Shanghai, where daily vendor quotas reset) after `now`.
pub fn after_china_midnight(now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let tz = chrono_tz::Asia::Shanghai;
    let tomorrow = now.with_timezone(&tz).date_naive() + chrono::Days::new(1);
    let midnight = tomorrow.and_hms_opt(0, 0, 1).expect("valid time");
    tz.from_local_datetime(&midnight).single().expect("China has no DST").with_timezone(&chrono::Utc)
}

/// The users `u0`, `u1`, … `u{n-1}` the group tests register and message.
pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

/// A text message from alice in the group conversation `team` to `to`.
pub fn group_message(id: &str, to: &[String]) -> Value {
    json!({
        "id": id, "from": {"id": "alice", "name": "Alice"},
        "conversation": {"id": "team", "type": "group", "name": "Team"},
        "to": to, "kind": "text", "text": "standup in 5"
    })
}

/// The mock APNs config matching the test credentials, on `tls` and `clock`.
pub fn apns_mock_config(tls: Arc<MockTls>, clock: SharedClock) -> MockApnsConfig {
    let mut cfg = MockApnsConfig::new(
        "TEAM123456",
        "KEY1234567",
        std::fs::read_to_string(demo_file("apns-demo-key.pub.pem")).expect("apns pub key"),
        "com.example.im",
    );
    cfg.tls = Some(tls);
    cfg.clock = clock;
    cfg
}

/// Waits until `mock` has recorded `n` requests that `carries(request, token)` accepts; returns those requests.
pub async fn wait_requests_for(
    mock: &MockServer,
    token: &str,
    n: usize,
    carries: impl Fn(&Received, &str) -> bool,
) -> Vec<Received> {
    mock.wait_for(|r| r.iter().filter(|x| carries(x, token)).count() >= n, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|x| carries(x, token))
        .collect()
}

/// Waits until `mock` has recorded `n` tokens in all (`tokens_in` counts a request's); returns the record.
pub async fn wait_tokens_total(mock: &MockServer, n: usize, tokens_in: impl Fn(&Received) -> usize) -> Vec<Received> {
    mock.wait_for(|r| r.iter().map(&tokens_in).sum::<usize>() >= n, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Times in the background the gap between the first two requests `mock` records that `matches`; start before sending.
pub fn time_retry_gap(
    mock: &MockServer,
    matches: impl Fn(&Received) -> bool + 'static,
) -> actix_rt::task::JoinHandle<Duration> {
    let mock = mock.clone();
    actix_rt::spawn(async move {
        let matches = &matches;
        let seen = |n: usize| move |r: &[Received]| r.iter().filter(|x| matches(x)).count() >= n;
        mock.wait_for(seen(1), WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        let first = Instant::now();
        mock.wait_for(seen(2), WAIT).await.unwrap_or_else(|e| panic!("{e}"));
        first.elapsed()
    })
}

impl TestDaemon {
    /// Starts with the test defaults.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts with `extra` TOML layered over the test config.
    pub async fn start_with(extra: &str) -> Self {
        Self::start_full(extra, |_| {}).await
    }

    /// Starts with `extra` TOML and a tweak of the mock APNs config (stream limit, …).
    pub async fn start_full(extra: &str, tweak_apns: impl FnOnce(&mut MockApnsConfig)) -> Self {
        Self::start_in(TestEnv::new(), extra, tweak_apns).await
    }

    /// Starts in a prepared environment (whose CA and clock other mocks may already use).
    pub async fn start_in(env: TestEnv, extra: &str, tweak_apns: impl FnOnce(&mut MockApnsConfig)) -> Self {
        let TestEnv { dir, clock, tls, ca_path } = env;
        let shared: SharedClock = Arc::new(clock.clone());
        let mut acfg = apns_mock_config(tls.clone(), shared.clone());
        tweak_apns(&mut acfg);
        let apns = MockApns::start(acfg).await.expect("mock apns");

        let account: Value =
            serde_json::from_str(&std::fs::read_to_string(demo_file("fcm-service-account.json")).unwrap()).unwrap();
        let mut fcfg = MockFcmConfig::new(
            account["project_id"].as_str().unwrap(),
            account["client_email"].as_str().unwrap(),
            std::fs::read_to_string(demo_file("fcm-demo-key.pub.pem")).expect("fcm pub key"),
        );
        fcfg.tls = Some(tls.clone());
        fcfg.clock = shared.clone();
        let fcm = MockFcm::start(fcfg).await.expect("mock fcm");

        let identity_path = dir.path().join("apns-cert.pem");
        std::fs::write(&identity_path, tls.client_identity_pem("Apple Push Services: com.example.im").unwrap())
            .unwrap();
        let config = daemon_config(&dir, &ca_path, &identity_path, apns.url().as_str(), fcm.url().as_str());
        let settings = Loader::new()
            .layer_str("test", &config)
            .and_then(|l| l.layer_str("extra", extra))
            .and_then(|l| l.layer_env(&HashMap::new()).settings())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut listeners = Listeners::loopback().expect("loopback listeners");
        if let (true, Some(addr)) = (settings.matrix.enabled, settings.matrix.listen) {
            listeners.matrix = Some(std::net::TcpListener::bind(addr).expect("matrix listener"));
        }
        let store = pushd::store::open(&settings).expect("store opens");
        let running = pushd::run(settings, listeners, store, shared).await.expect("pushd starts");
        let base = format!("http://{}", running.gateway_addr);
        let operator = format!("http://{}", running.operator_addr);
        Self {
            running,
            apns,
            fcm,
            clock,
            http: reqwest::Client::new(),
            base,
            operator,
            extra: extra.to_owned(),
            tls,
            ca_path,
            _dir: dir,
        }
    }

    /// Starts next to one vendor mock (`mock` starts it in a fresh env) with `extra` and a `test-{vendor}` credential.
    pub async fn start_with_mock<M, F>(
        extra: &str,
        vendor: &str,
        mock: impl FnOnce(&TestEnv) -> F,
        credential: impl FnOnce(&M) -> String,
    ) -> (Self, M)
    where
        F: Future<Output = std::io::Result<M>>,
    {
        let env = TestEnv::new();
        let mock = mock(&env).await.unwrap_or_else(|e| panic!("mock {vendor} starts: {e}"));
        let toml = format!(
            "{extra}\n[credentials.test-{vendor}]\nvendor = \"{vendor}\"\nextra_roots = [\"{ca}\"]\n{keys}\n",
            ca = env.ca_path.display(),
            keys = credential(&mock),
        );
        (Self::start_in(env, &toml, |_| {}).await, mock)
    }

    /// Stops the daemon gracefully and starts it again on the same data dir (new mocks, new
    /// ports, same CA and clock): what survives is what the store kept.
    pub async fn restart(self) -> Self {
        let TestDaemon { running, apns, fcm, clock, extra, tls, ca_path, _dir, .. } = self;
        running.stop().await;
        apns.shutdown();
        fcm.shutdown();
        Self::start_in(TestEnv { dir: _dir, clock, tls, ca_path }, &extra, |_| {}).await
    }

    /// Sends a request with the test API key; returns status and JSON body (Null if empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Registers `token` for `user`'s `device` on `credential`; returns the token.
    pub async fn register(&self, user: &str, device: &str, credential: &str, token: &str) -> String {
        let (s, b) = self
            .put(&format!("/v1/users/{user}/devices/{device}"), json!({"credential": credential, "token": token}))
            .await;
        assert_eq!(s, 200, "register: {b}");
        token.to_owned()
    }

    /// Registers `token` for `user`'s `device` on `credential`, then reports the device offline; returns the token.
    pub async fn register_offline(&self, user: &str, device: &str, credential: &str, token: &str) -> String {
        let token = self.register(user, device, credential, token).await;
        self.presence(user, device, "offline").await;
        token
    }

    /// Registers `device` offline for each of [`users`]`(n)`, token `token_of("{user}/{device}")`; returns the tokens.
    pub async fn register_offline_many(
        &self,
        n: usize,
        device: &str,
        credential: &str,
        token_of: impl Fn(&str) -> String,
    ) -> Vec<String> {
        let mut tokens = Vec::new();
        for user in users(n) {
            tokens.push(self.register_offline(&user, device, credential, &token_of(&format!("{user}/{device}"))).await);
        }
        tokens
    }

    /// Registers an APNs device and returns its token.
    pub async fn register_apns(&self, user: &str, device: &str) -> String {
        self.register(user, device, "test-apns", &apns_token(&format!("{user}/{device}"))).await
    }

    /// Registers an FCM device and returns its token.
    pub async fn register_fcm(&self, user: &str, device: &str) -> String {
        self.register(user, device, "test-fcm", &fcm_token(&format!("{user}-{device}"))).await
    }

    /// The devices `user` has listed.
    pub async fn devices(&self, user: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/users/{user}/devices")).await;
        assert_eq!(status, 200, "devices of {user}: {body}");
        body["devices"].as_array().unwrap_or_else(|| panic!("no device list: {body}")).clone()
    }

    /// The listed device `device` of `user`, if listed.
    pub async fn find_device(&self, user: &str, device: &str) -> Option<Value> {
        self.devices(user).await.into_iter().find(|x| x["device"] == device)
    }

    /// The listed device `device` of `user` (panics if it is not listed).
    pub async fn listed_device(&self, user: &str, device: &str) -> Value {
        let devices = self.devices(user).await;
        devices
            .iter()
            .find(|x| x["device"] == device)
            .cloned()
            .unwrap_or_else(|| panic!("{user}/{device} not listed: {}", Value::from(devices.clone())))
    }

    /// Polls the device listing (bounded) until `user`'s `device` (Null while unlisted) satisfies `pred`.
    pub async fn wait_device(&self, user: &str, device: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let listed = self.find_device(user, device).await.unwrap_or(Value::Null);
            if pred(&listed) {
                return listed;
            }
            assert!(tokio::time::Instant::now() < deadline, "{user}/{device} never matched; last: {listed:#}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Applies one presence event now.
    pub async fn presence(&self, user: &str, device: &str, state: &str) {
        let (s, b) =
            self.post("/v1/presence", json!({"events": [{"user": user, "device": device, "state": state}]})).await;
        assert_eq!(s, 202, "presence: {b}");
    }

    /// Sends a text message in a single conversation from `from` to `to`.
    pub async fn send_text(&self, id: &str, from: &str, to: &[&str], text: &str) -> Value {
        self.send(json!({
            "id": id, "from": {"id": from, "name": from.to_uppercase()},
            "conversation": {"id": format!("c-{from}"), "type": "single"},
            "to": to, "kind": "text", "text": text
        }))
        .await
    }

    /// Posts one message; asserts 202.
    pub async fn send(&self, message: Value) -> Value {
        let (s, b) = self.post("/v1/messages", message).await;
        assert_eq!(s, 202, "message: {b}");
        b
    }

    /// Sends one [`group_message`] `id` to [`users`]`(n)`.
    pub async fn send_group(&self, id: &str, n: usize) -> Value {
        self.send(group_message(id, &users(n))).await
    }

    /// Waits until the trace entry of `message` for `user` satisfies `pred`.
    pub async fn wait_trace(&self, user: &str, message: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = Value::Null;
        loop {
            let (_, body) = self.get(&format!("/v1/users/{user}/pushes")).await;
            if let Some(entry) = body["pushes"].as_array().and_then(|a| a.iter().find(|e| e["message_id"] == message)) {
                if pred(entry) {
                    return entry.clone();
                }
                last = entry.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "trace of {message} for {user} never matched; last: {last:#}"
            );
            // Polling a read-only endpoint a bounded number of times, with a short pause.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the trace of `message` for `user` lists `device` and `pred` holds for it; returns that device.
    pub async fn wait_trace_device(
        &self,
        user: &str,
        message: &str,
        device: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let entry = self
            .wait_trace(user, message, |e| {
                e["devices"].as_array().is_some_and(|ds| ds.iter().any(|d| d["device"] == device && pred(d)))
            })
            .await;
        entry["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["device"] == device))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the trace of `message` shows a final outcome for `device`.
    pub async fn wait_outcome(&self, user: &str, message: &str, device: &str) -> Value {
        self.wait_trace_device(user, message, device, |d| !d["push"]["outcome"].is_null()).await
    }

    /// Waits until the trace of `message` shows `outcome` for `user`'s `device`; returns the device.
    pub async fn wait_push_outcome(&self, user: &str, message: &str, device: &str, outcome: &str) -> Value {
        self.wait_trace_device(user, message, device, |d| d["push"]["outcome"] == outcome).await
    }

    /// The decision word for `device` in the trace of `message`.
    pub async fn decision(&self, user: &str, message: &str, device: &str) -> String {
        let d = self.wait_trace_device(user, message, device, |_| true).await;
        d["decision"].as_str().unwrap().to_owned()
    }

    /// Waits until the APNs mock has answered `n` requests for `token`.
    pub async fn apns_received(&self, token: &str, n: usize) -> Vec<Received> {
        wait_requests_for(&self.apns, token, n, |r, t| r.token == t).await
    }

    /// Waits until the FCM mock has answered `n` sends for `token`.
    pub async fn fcm_received(&self, token: &str, n: usize) -> Vec<Received> {
        wait_requests_for(&self.fcm, token, n, |r, t| r.token == t).await
    }

    /// The test clock's current time.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        pushd::clock::Clock::now(&self.clock)
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.operator)).send().await.unwrap().text().await.unwrap()
    }
}

// ---- the pushd binary as a child process ----

/// A `pushd` child process this test started. Dropping it kills and reaps that one process,
/// so a test that fails half-way leaves nothing running.
pub struct PushdChild {
    pub child: std::process::Child,
}

impl PushdChild {
    /// Starts the real `pushd` binary with `args` in `cwd` (logs at warn, to the test's stderr).
    pub fn spawn(args: &[&str], cwd: &std::path::Path) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pushd"))
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the pushd binary");
        Self { child }
    }

    /// The JSON of the ready file the child writes once listening (`--ready-file`). Polls: a
    /// file appearing is no event to await. Bounded to 30 s; fails at once if the child exits.
    pub async fn wait_ready(&mut self, path: &std::path::Path) -> Value {
        for _ in 0..600 {
            if let Ok(text) = std::fs::read_to_string(path) {
                return serde_json::from_str(&text).unwrap_or_else(|e| panic!("ready file {text:?}: {e}"));
            }
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("pushd exited before writing {}: {status}", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pushd wrote no {} within 30 s", path.display());
    }
}

/// Any free loopback port, for a child's listen flags.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// The mock vendors' address flags of `pushd demo|mocks`, each on any free loopback port.
pub const ANY_MOCK_PORTS: [&str; 6] = ["--mock-apns", ANY_PORT, "--mock-fcm", ANY_PORT, "--mock-control", ANY_PORT];

/// A temp path as an argument (temp dirs have UTF-8 names).
pub fn arg_path(p: &std::path::Path) -> String {
    p.to_str().expect("a UTF-8 temp path").to_owned()
}

impl PushdChild {
    /// `pushd mocks` in `cwd` with `--data-dir data_dir`, writing `config` for `pushd serve`;
    /// returns it once listening, with its ready file (written next to `config`).
    pub async fn mocks(cwd: &std::path::Path, data_dir: &str, config: &std::path::Path) -> (Self, Value) {
        let ready_path = config.with_extension("mocks.json");
        let mut args = vec!["mocks".to_owned()];
        args.extend(ANY_MOCK_PORTS.iter().map(|a| a.to_string()));
        for (flag, value) in [
            ("--data-dir", data_dir.to_owned()),
            ("--config-out", arg_path(config)),
            ("--ready-file", arg_path(&ready_path)),
        ] {
            args.extend([flag.to_owned(), value]);
        }
        let mut child = Self::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), cwd);
        let ready = child.wait_ready(&ready_path).await;
        (child, ready)
    }

    /// `pushd serve --config config` in `cwd` on any free ports; returns it once listening,
    /// with its ready file's path and content (the file sits next to `config`).
    pub async fn serve(cwd: &std::path::Path, config: &std::path::Path) -> (Self, std::path::PathBuf, Value) {
        let ready_path = config.with_extension("serve.json");
        let (config, ready_arg) = (arg_path(config), arg_path(&ready_path));
        let args =
            ["serve", "--config", &config, "--gateway", ANY_PORT, "--operator", ANY_PORT, "--ready-file", &ready_arg];
        let mut child = Self::spawn(&args, cwd);
        let ready = child.wait_ready(&ready_path).await;
        (child, ready_path, ready)
    }
}

impl Drop for PushdChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
