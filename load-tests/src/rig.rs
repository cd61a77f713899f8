//! The rig: loopback mock vendors (APNs, FCM, Huawei) on their own runtime, pushd started
//! in-process against them, the user population, and a small client for the gateway API.
//!
//! Threads are named so `measure` can split CPU between pushd, the mocks and the load
//! generator: mocks run on `mock-*` threads, the load generator on `load-*` threads, and pushd
//! on its own (actix arbiters, actix-web workers, the store's sync thread).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use pushd::mock_vendor::huawei::{MockHuawei, MockHuaweiConfig};
use pushd::mock_vendor::MockRule;
use pushd::mock_vendor::{MockApns, MockApnsConfig, MockFcm, MockFcmConfig, MockServer, MockTls};
use pushd::{Listeners, Running};
use serde_json::{json, Value};
use tokio::runtime::Handle;

use crate::measure::Record;
use crate::remote::{Probe, RemoteMocks, Target};

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
    /// The mock's name (`Received::vendor`, the control routes); credentials are named
    /// `<prefix><name>`.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Apns => "apns",
            Vendor::Fcm => "fcm",
            Vendor::Huawei => "huawei",
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

/// User `i` of a daemon whose ids start with `ns` (empty for a daemon of its own; a running
/// target keeps what earlier runs left, so each run and scenario gets its own namespace).
pub fn user_id(ns: &str, i: usize) -> String {
    format!("{ns}u{i}")
}

/// The mocks a run uses: started here, or running elsewhere behind their control endpoint.
#[derive(Clone)]
pub enum Mocks {
    Local(LocalMocks),
    Remote(RemoteMocks),
}

/// What the raw clients need to reach the mock APNs.
#[derive(Debug, Clone)]
pub struct ApnsTarget {
    pub addr: SocketAddr,
    pub url: url::Url,
    pub ca_pem: String,
    /// The team and key the mock checks provider tokens against (signed with the demo key).
    pub team: &'static str,
    pub key_id: &'static str,
}

/// The demo mocks' APNs team and key (config/demo.toml), which `pushd demo|mocks` check.
const DEMO_APNS_TEAM: &str = "DEMOTEAM01";
const DEMO_APNS_KEY_ID: &str = "DEMOKEY001";

impl Mocks {
    /// Forgets what was recorded and every rule (between scenarios).
    pub async fn reset(&self) -> anyhow::Result<()> {
        match self {
            Mocks::Local(m) => {
                m.reset();
                Ok(())
            }
            Mocks::Remote(m) => m.reset().await,
        }
    }

    /// Removes and returns what the mocks recorded since the last call.
    pub async fn take(&self) -> anyhow::Result<Vec<Record>> {
        match self {
            Mocks::Local(m) => Ok(m
                .all()
                .iter()
                .flat_map(|(_, mock)| {
                    let started = mock.started_at();
                    mock.take_received().into_iter().map(move |r| Record::local(&r, started))
                })
                .collect()),
            Mocks::Remote(m) => m.take().await,
        }
    }

    /// Scripts an answer at one vendor's mock.
    pub async fn script(&self, vendor: Vendor, rule: MockRule) -> anyhow::Result<()> {
        match self {
            Mocks::Local(m) => {
                m.get(vendor).script(rule);
                Ok(())
            }
            Mocks::Remote(m) => m.script(vendor.name(), &rule).await,
        }
    }

    pub fn apns(&self) -> anyhow::Result<ApnsTarget> {
        match self {
            Mocks::Local(m) => Ok(ApnsTarget {
                addr: m.apns.addr(),
                url: m.apns.url(),
                ca_pem: m.apns.ca_pem().to_owned(),
                team: APNS_TEAM,
                key_id: APNS_KEY_ID,
            }),
            Mocks::Remote(m) => {
                let info = m.info("apns")?;
                let addr = info
                    .url
                    .socket_addrs(|| Some(443))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("mock apns url {} has no address", info.url))?;
                Ok(ApnsTarget {
                    addr,
                    url: info.url.clone(),
                    ca_pem: info.ca_pem.clone(),
                    team: DEMO_APNS_TEAM,
                    key_id: DEMO_APNS_KEY_ID,
                })
            }
        }
    }

    /// The mocks started here, for what only in-process mocks allow (starting a daemon on them).
    pub fn local(&self) -> anyhow::Result<&LocalMocks> {
        match self {
            Mocks::Local(m) => Ok(m),
            Mocks::Remote(_) => Err(anyhow!("this needs the mocks in-process (not with --target)")),
        }
    }

    pub fn shutdown(&self) {
        if let Mocks::Local(m) = self {
            m.shutdown();
        }
    }
}

/// The three mocks, running on the mock runtime.
#[derive(Clone)]
pub struct LocalMocks {
    pub apns: MockApns,
    pub fcm: MockFcm,
    pub huawei: MockHuawei,
    pub tls: Arc<MockTls>,
}

impl LocalMocks {
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

    pub fn get(&self, vendor: Vendor) -> &MockServer {
        match vendor {
            Vendor::Apns => &self.apns,
            Vendor::Fcm => &self.fcm,
            Vendor::Huawei => &self.huawei,
        }
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

/// A pushd the harness drives: one it started in-process, or a running target.
pub struct Daemon {
    pub base: String,
    pub http: reqwest::Client,
    /// User and message ids of this daemon start with this ([`user_id`]).
    pub ns: Arc<str>,
    api_key: Arc<str>,
    credential_prefix: Arc<str>,
    kind: Kind,
}

enum Kind {
    Local(Running),
    Remote(Arc<Probe>),
}

fn gateway_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build().context("gateway client")
}

impl Daemon {
    /// Starts pushd in the current actix system against the local mocks, its data in `dir`.
    pub async fn start(mocks: &LocalMocks, dir: &std::path::Path, o: &DaemonOptions) -> anyhow::Result<Self> {
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
        Ok(Self {
            base: format!("http://{}", running.gateway_addr),
            http: gateway_client()?,
            ns: "".into(),
            api_key: API_KEY.into(),
            credential_prefix: "load-".into(),
            kind: Kind::Local(running),
        })
    }

    /// The running target, its ids under `ns`.
    pub fn attach(target: &Target, probe: Arc<Probe>, ns: String) -> anyhow::Result<Self> {
        Ok(Self {
            base: format!("http://{}", target.gateway),
            http: gateway_client()?,
            ns: ns.into(),
            api_key: target.api_key.as_str().into(),
            credential_prefix: target.credential_prefix.as_str().into(),
            kind: Kind::Remote(probe),
        })
    }

    /// The in-process daemon, for what only it allows (reading its registry).
    pub fn running(&self) -> anyhow::Result<&Running> {
        match &self.kind {
            Kind::Local(r) => Ok(r),
            Kind::Remote(_) => Err(anyhow!("this needs pushd in-process (not with --target)")),
        }
    }

    /// Accepted (message, recipient) pairs not done yet (for a target: as of its last scrape).
    pub fn pending(&self) -> usize {
        match &self.kind {
            Kind::Local(r) => r.registry.services().pending(),
            Kind::Remote(p) => p.pending(),
        }
    }

    /// The backlog as a function load tasks can call.
    pub fn backlog(&self) -> crate::scenarios::Backlog {
        match &self.kind {
            Kind::Local(r) => {
                let services = r.registry.services().clone();
                Arc::new(move || services.pending())
            }
            Kind::Remote(p) => {
                let p = p.clone();
                Arc::new(move || p.pending())
            }
        }
    }

    /// Waits (bounded) until every accepted message has its final vendor answers.
    pub async fn drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let pending = match &self.kind {
                Kind::Local(_) => self.pending(),
                Kind::Remote(p) => match p.fresh_pending(deadline - tokio::time::Instant::now()).await {
                    Some(n) => n,
                    None => return false,
                },
            };
            if pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops an in-process pushd and prints what the process keeps afterwards (freed heap
    /// returned first). A target keeps running.
    pub async fn stop(self) {
        let Kind::Local(running) = self.kind else { return };
        let registry = Arc::downgrade(&running.registry);
        running.stop().await;
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
    /// The daemon's id namespace ([`user_id`]).
    pub ns: Arc<str>,
    api_key: Arc<str>,
    credential_prefix: Arc<str>,
}

impl Gateway {
    pub fn of(d: &Daemon) -> Self {
        Self {
            base: d.base.as_str().into(),
            http: d.http.clone(),
            ns: d.ns.clone(),
            api_key: d.api_key.clone(),
            credential_prefix: d.credential_prefix.clone(),
        }
    }

    /// User `i` of this daemon.
    pub fn user(&self, i: usize) -> String {
        user_id(&self.ns, i)
    }

    /// The credential name of a vendor on this daemon.
    pub fn credential(&self, vendor: Vendor) -> String {
        format!("{}{}", self.credential_prefix, vendor.name())
    }

    /// Sends a request; returns status and body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&*self.api_key);
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
                let body = json!({"credential": gw.credential(vendor), "token": vendor.token(u, d), "locale": "en"});
                (format!("/v1/users/{}/devices/{device}", gw.user(u)), body)
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
