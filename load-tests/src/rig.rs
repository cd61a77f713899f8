//! The rig: loopback mock vendors (APNs, FCM, Huawei) on their own runtime, pushd started
//! in-process against them, the user population, and a small client for the gateway API.
//!
//! Threads are named so `measure` can split CPU between pushd, the mocks and the load
//! generator: mocks run on `mock-*` threads, the load generator on `load-*` threads, and pushd
//! on its own (actix arbiters, actix-web workers, the store's sync thread).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use pushd::mock_vendor::huawei::{MockHuawei, MockHuaweiConfig};
use pushd::mock_vendor::{MockApns, MockApnsConfig, MockFcm, MockFcmConfig, MockServer, MockTls};
use pushd::{Listeners, Running};
use serde_json::{json, Value};
use tokio::runtime::Handle;

pub const API_KEY: &str = "load-key";
pub const APNS_TEAM: &str = "TEAM123456";
pub const APNS_KEY_ID: &str = "KEY1234567";
pub const TOPIC: &str = "com.example.im";
const HUAWEI_APP: &str = "104123456";
const HUAWEI_SECRET: &str = "load-huawei-secret";

/// A file of the committed demo keys.
pub fn demo_file(name: &str) -> String {
    format!("{}/config/demo/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The vendors a device can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Apns,
    Fcm,
    Huawei,
}

impl Vendor {
    pub fn credential(self) -> &'static str {
        match self {
            Vendor::Apns => "load-apns",
            Vendor::Fcm => "load-fcm",
            Vendor::Huawei => "load-huawei",
        }
    }

    /// A token of the vendor's format for one (user, device).
    pub fn token(self, user: usize, device: usize) -> String {
        match self {
            Vendor::Apns => format!("{:032x}{:032x}", user as u128 + 1, device as u128 + 0xa0),
            Vendor::Fcm => format!("fcm-{user}-{device}:APA91b{}", "x".repeat(40)),
            Vendor::Huawei => format!("IQAAAACy0tEXAAD-{user}-{device}-{}", "h".repeat(40)),
        }
    }
}

/// Which devices each user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Population {
    /// One iPhone per user: every push goes to the mock APNs (the ceiling comparison).
    ApnsOnly,
    /// An iPhone (APNs) and an Android phone, on FCM (even users) or Huawei (odd users).
    Mixed,
}

impl Population {
    pub fn devices(self, user: usize) -> Vec<(&'static str, Vendor)> {
        match self {
            Population::ApnsOnly => vec![("ios", Vendor::Apns)],
            Population::Mixed => {
                let android = if user % 2 == 0 { Vendor::Fcm } else { Vendor::Huawei };
                vec![("ios", Vendor::Apns), ("android", android)]
            }
        }
    }

    pub fn per_user(self) -> usize {
        match self {
            Population::ApnsOnly => 1,
            Population::Mixed => 2,
        }
    }
}

pub fn user_id(i: usize) -> String {
    format!("u{i}")
}

/// The three mocks, running on the mock runtime.
#[derive(Clone)]
pub struct Mocks {
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub huawei: MockHuawei,
    pub tls: Arc<MockTls>,
}

impl Mocks {
    /// Starts the mocks on `rt` (their connection tasks stay there).
    pub async fn start(rt: &Handle, apns_streams: u32) -> anyhow::Result<Self> {
        let tls = Arc::new(MockTls::generate()?);
        let mut acfg = MockApnsConfig::new(
            APNS_TEAM,
            APNS_KEY_ID,
            std::fs::read_to_string(demo_file("apns-demo-key.pub.pem"))?,
            TOPIC,
        );
        acfg.tls = Some(tls.clone());
        acfg.max_concurrent_streams = apns_streams;
        let account: Value = serde_json::from_str(&std::fs::read_to_string(demo_file("fcm-service-account.json"))?)?;
        let mut fcfg = MockFcmConfig::new(
            account["project_id"].as_str().unwrap_or_default(),
            account["client_email"].as_str().unwrap_or_default(),
            std::fs::read_to_string(demo_file("fcm-demo-key.pub.pem"))?,
        );
        fcfg.tls = Some(tls.clone());
        let mut hcfg = MockHuaweiConfig::new(HUAWEI_APP, HUAWEI_SECRET);
        hcfg.tls = Some(tls.clone());
        let apns = rt.spawn(MockApns::start(acfg)).await??;
        let fcm = rt.spawn(MockFcm::start(fcfg)).await??;
        let huawei = rt.spawn(MockHuawei::start(hcfg)).await??;
        Ok(Self { apns, fcm, huawei, tls })
    }

    pub fn all(&self) -> [(Vendor, &MockServer); 3] {
        [(Vendor::Apns, &self.apns), (Vendor::Fcm, &self.fcm), (Vendor::Huawei, &self.huawei)]
    }

    /// Forgets what was recorded and every rule (between scenarios).
    pub fn reset(&self) {
        for (_, m) in self.all() {
            m.clear_rules();
            drop(m.take_received());
        }
    }

    pub fn shutdown(&self) {
        for (_, m) in self.all() {
            m.shutdown();
        }
    }
}

/// How a scenario wants pushd configured.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// `"memory"` or `"embedded"`.
    pub store: &'static str,
    /// `store.sync`: `"commit"` (fsync before answering) or `"interval"`.
    pub sync: &'static str,
    /// `policy.ack_timeout_ms`.
    pub ack_timeout_ms: u64,
    /// `sessions.idle_passivate_ms`.
    pub idle_passivate_ms: u64,
    /// `delivery.max_in_flight` (per credential).
    pub max_in_flight: usize,
    /// Extra TOML layered last.
    pub extra: String,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            store: "memory",
            sync: "commit",
            ack_timeout_ms: 0,
            idle_passivate_ms: 600_000,
            max_in_flight: 1000,
            extra: String::new(),
        }
    }
}

/// A running pushd with the client that talks to it.
pub struct Daemon {
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

impl Daemon {
    /// Starts pushd in the current actix system, its data in `dir`.
    pub async fn start(mocks: &Mocks, dir: &std::path::Path, o: &DaemonOptions) -> anyhow::Result<Self> {
        let ca_path = dir.join("mock-ca.pem");
        std::fs::write(&ca_path, &mocks.tls.ca_pem)?;
        let toml = format!(
            r#"
            data_dir = "{dir}"
            log = "warn"
            shutdown_grace_ms = 5000
            [store]
            kind = "{store}"
            sync = "{sync}"
            [api]
            keys = ["{API_KEY}"]
            max_message_batch = 500
            max_presence_batch = 5000
            max_recipients = 10000
            [policy]
            ack_timeout_ms = {ack}
            [sessions]
            idle_passivate_ms = {idle}
            [delivery]
            max_attempts = 5
            backoff_base_ms = 50
            backoff_max_ms = 2000
            deadline_ms = 30000
            request_timeout_ms = 5000
            # The load harness measures pushd, not a vendor contract: no rate limit in the way.
            rate_per_sec = 1000000
            burst = 1000000
            max_in_flight = {in_flight}
            queue_capacity = 400000
            [credentials.load-apns]
            vendor = "apns"
            endpoint = "{apns}"
            extra_roots = ["{ca}"]
            topic = "{TOPIC}"
            key_file = "{apns_key}"
            key_id = "{APNS_KEY_ID}"
            team_id = "{APNS_TEAM}"
            [credentials.load-fcm]
            vendor = "fcm"
            endpoint = "{fcm}"
            extra_roots = ["{ca}"]
            service_account_file = "{fcm_sa}"
            token_uri = "{fcm}token"
            [credentials.load-huawei]
            vendor = "huawei"
            extra_roots = ["{ca}"]
            app_id = "{HUAWEI_APP}"
            client_secret = "{HUAWEI_SECRET}"
            token_url = "{hw_token}"
            send_url = "{hw}"
            "#,
            dir = dir.display(),
            store = o.store,
            sync = o.sync,
            ack = o.ack_timeout_ms,
            idle = o.idle_passivate_ms,
            in_flight = o.max_in_flight,
            apns = mocks.apns.url(),
            fcm = mocks.fcm.url(),
            hw = mocks.huawei.url(),
            hw_token = mocks.huawei.token_url(),
            ca = ca_path.display(),
            apns_key = demo_file("apns-demo-key.p8"),
            fcm_sa = demo_file("fcm-service-account.json"),
        );
        let settings = pushd::config::Loader::new()
            .layer_str("load", &toml)
            .and_then(|l| l.layer_str("extra", &o.extra))
            .and_then(|l| l.layer_env(&HashMap::new()).settings())
            .map_err(|e| anyhow!("{e}"))?;
        let store = pushd::store::open(&settings).map_err(|e| anyhow!("store: {e}"))?;
        let clock: pushd::clock::SharedClock = Arc::new(pushd::clock::SystemClock);
        let running = pushd::run(settings, Listeners::loopback()?, store, clock).await?;
        let base = format!("http://{}", running.gateway_addr);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .context("gateway client")?;
        Ok(Self { running, base, http })
    }

    /// Accepted (message, recipient) pairs not done yet.
    pub fn pending(&self) -> usize {
        self.running.registry.services().pending()
    }

    /// Waits (bounded) until every accepted message has its final vendor answers.
    pub async fn drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops pushd and prints what the process keeps afterwards (freed heap returned first).
    pub async fn stop(self) {
        let registry = Arc::downgrade(&self.running.registry);
        self.running.stop().await;
        drop(self.http);
        crate::measure::trim_heap();
        println!(
            "  pushd stopped; RSS now {:.0} MiB{}",
            crate::measure::rss() as f64 / (1024.0 * 1024.0),
            if registry.upgrade().is_some() { " (its registry is still referenced)" } else { "" }
        );
    }
}

/// A cloneable view of the gateway for load tasks.
#[derive(Clone)]
pub struct Gateway {
    pub base: Arc<str>,
    pub http: reqwest::Client,
}

impl Gateway {
    pub fn of(d: &Daemon) -> Self {
        Self { base: d.base.as_str().into(), http: d.http.clone() }
    }

    /// Sends a request; returns status and body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    /// POSTs JSON, retrying (bounded) while pushd answers 429/503 (back-pressure).
    pub async fn post_retrying(&self, path: &str, body: Vec<u8>) -> anyhow::Result<u16> {
        for _ in 0..2000 {
            let (status, answer) = self.send(reqwest::Method::POST, path, Some(body.clone())).await?;
            match status {
                429 | 503 => tokio::time::sleep(Duration::from_millis(5)).await,
                200..=299 => return Ok(status),
                _ => return Err(anyhow!("POST {path}: {status} {}", String::from_utf8_lossy(&answer))),
            }
        }
        Err(anyhow!("POST {path}: still refused after 2000 tries"))
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let (status, answer) = self.send(reqwest::Method::PUT, path, Some(serde_json::to_vec(body)?)).await?;
        if status != 200 {
            return Err(anyhow!("PUT {path}: {status} {}", String::from_utf8_lossy(&answer)));
        }
        Ok(())
    }
}

/// Registers users `from..to` of a population with `concurrency` requests at once.
pub async fn register(gw: &Gateway, pop: Population, from: usize, to: usize, concurrency: usize) -> anyhow::Result<()> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    // Owned paths and bodies: the stream's futures borrow nothing.
    let jobs: Vec<(String, Value)> = (from..to)
        .flat_map(|u| {
            pop.devices(u).into_iter().enumerate().map(move |(d, (device, vendor))| {
                let body = json!({"credential": vendor.credential(), "token": vendor.token(u, d), "locale": "en"});
                (format!("/v1/users/{}/devices/{device}", user_id(u)), body)
            })
        })
        .collect();
    stream::iter(jobs)
        .map(|(path, body)| {
            let gw = gw.clone();
            async move { gw.put_json(&path, &body).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// Runs `f` on the load runtime and waits for it.
pub async fn on<T: Send + 'static>(
    rt: &Handle,
    f: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    rt.spawn(f).await?
}
