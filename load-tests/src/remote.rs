//! Target mode: the harness drives a pushd and mock vendors that already run (`pushd demo`, or
//! `pushd mocks` plus `pushd serve`) instead of starting them in-process.
//!
//! - pushd is found through its ready file (`--ready-file` of `pushd serve|demo`: gateway,
//!   operator, pid, and `mock_control` for the demo). Its backlog, CPU and RSS come from its
//!   `/metrics` (`pushd_pending_messages`, `process_cpu_seconds_total`,
//!   `process_resident_memory_bytes`), scraped every [`SCRAPE_EVERY`].
//! - The mocks are read and scripted through their control endpoint: `DELETE
//!   /mock/{vendor}/received` drains the records (with `started_unix_us` from `GET
//!   /mock/{vendor}`, their times land on this process's clock), `GET /mock/process` gives
//!   their process's CPU.
//!
//! Load goes to loopback only unless `--allow-remote` says otherwise: the harness is a load
//! generator, and a typo must not point it at a shared host.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use pushd::mock_vendor::MockRule;
use serde::Deserialize;
use serde_json::Value;
use tokio::runtime::Handle;

use crate::measure::{instant_of_unix_us, Record};

/// How often the harness reads pushd's `/metrics` (backlog, CPU, RSS). Each scrape renders the
/// whole registry, a small cost on pushd's CPU that the rows include.
pub const SCRAPE_EVERY: Duration = Duration::from_millis(25);

/// What a ready file says (`pushd serve|demo|mocks --ready-file`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReadyFile {
    pub gateway: Option<String>,
    pub operator: Option<String>,
    pub pid: Option<u32>,
    pub mock_control: Option<String>,
}

impl ReadyFile {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("ready file {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("ready file {}: not the JSON pushd writes", path.display()))
    }
}

/// How to talk to the running pushd's gateway.
#[derive(Debug, Clone)]
pub struct Target {
    pub gateway: SocketAddr,
    pub api_key: String,
    /// Credential names are this plus `apns`, `fcm`, `huawei` (`demo-` for the demo config).
    pub credential_prefix: String,
}

/// `host:port` (or `http://host:port`), checked to be loopback unless `allow_remote`.
pub fn address(what: &str, s: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let bare = s.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = bare.parse().map_err(|_| anyhow!("{what}: {s:?} is not an address like 127.0.0.1:8080"))?;
    check_loopback(what, addr.ip(), allow_remote)?;
    Ok(addr)
}

fn check_loopback(what: &str, ip: IpAddr, allow_remote: bool) -> anyhow::Result<()> {
    if !ip.is_loopback() && !allow_remote {
        bail!("{what}: {ip} is not loopback; the harness sends load to loopback only unless --allow-remote is given");
    }
    Ok(())
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// pushd seen from outside: the latest `/metrics` readings, refreshed by a background task.
pub struct Probe {
    pending: AtomicUsize,
    cpu_bits: AtomicU64,
    rss: AtomicU64,
    peak_rss: AtomicU64,
    /// Successful scrapes: a waiter wants one that started after it asked.
    scrapes: AtomicU64,
    failures: AtomicU64,
    stop: AtomicBool,
}

impl Probe {
    /// Reads `/metrics` once (so a wrong address fails here) and keeps reading it on `rt`.
    pub async fn start(rt: &Handle, operator: SocketAddr) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let url = format!("http://{operator}/metrics");
        let probe = Arc::new(Self {
            pending: AtomicUsize::new(0),
            cpu_bits: AtomicU64::new(0),
            rss: AtomicU64::new(0),
            peak_rss: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let first = {
            let (http, url) = (http.clone(), url.clone());
            rt.spawn(async move { scrape(&http, &url).await }).await??
        };
        if sample(&first, "pushd_pending_messages").is_none() && !first.contains("pushd_") {
            bail!("{url} does not look like pushd's metrics");
        }
        probe.absorb(&first);
        let p = probe.clone();
        rt.spawn(async move {
            // Bounded: until stopped, at most two hours.
            let rounds = (2 * 3600 * 1000 / SCRAPE_EVERY.as_millis()) as u64;
            for _ in 0..rounds {
                if p.stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(SCRAPE_EVERY).await;
                match scrape(&http, &url).await {
                    Ok(text) => {
                        p.absorb(&text);
                        // Only a scrape that read something counts: "drained" is never
                        // concluded from a stale reading.
                        p.scrapes.fetch_add(1, Ordering::Release);
                    }
                    Err(e) => {
                        if p.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("pushd-load: scraping {url}: {e:#}");
                        }
                    }
                }
            }
        });
        Ok(probe)
    }

    fn absorb(&self, text: &str) {
        if let Some(v) = sample(text, "pushd_pending_messages") {
            self.pending.store(v.max(0.0) as usize, Ordering::Relaxed);
        }
        if let Some(v) = sample(text, "process_cpu_seconds_total") {
            self.cpu_bits.store(v.to_bits(), Ordering::Relaxed);
        }
        if let Some(v) = sample(text, "process_resident_memory_bytes") {
            self.rss.store(v as u64, Ordering::Relaxed);
            self.peak_rss.fetch_max(v as u64, Ordering::Relaxed);
        }
    }

    /// Accepted (message, recipient) pairs not done yet, as of the last scrape.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Waits (bounded by `limit`) for a successful scrape that began after this call, then
    /// gives the backlog it read: a fresh answer for "is pushd drained?" (`None` if none came).
    pub async fn fresh_pending(&self, limit: Duration) -> Option<usize> {
        let seen = self.scrapes.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + limit;
        // Two scrapes later, the newer one started after we asked.
        while self.scrapes.load(Ordering::Acquire) < seen + 2 {
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(SCRAPE_EVERY / 5).await;
        }
        Some(self.pending())
    }

    /// pushd's process CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        f64::from_bits(self.cpu_bits.load(Ordering::Relaxed))
    }

    pub fn reset_peak_rss(&self) {
        self.peak_rss.store(self.rss.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn peak_rss(&self) -> u64 {
        self.peak_rss.load(Ordering::Relaxed)
    }

    /// Stops the background scrape (within one interval; its task holds the probe until then).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let resp = http.get(url).send().await?;
    if !resp.status().is_success() {
        bail!("{url}: {}", resp.status());
    }
    Ok(resp.text().await?)
}

/// One mock behind the control endpoint (`GET /mock/{vendor}`).
#[derive(Debug, Clone)]
pub struct MockInfo {
    pub vendor: String,
    pub url: url::Url,
    pub ca_pem: String,
    /// The wall clock its records' `at_us` count from.
    pub started_unix_us: u64,
}

#[derive(Deserialize)]
struct InfoWire {
    vendor: String,
    url: String,
    ca_pem: String,
    started_unix_us: u64,
}

/// A mock's record as the control endpoint serves it (the fields the harness reads).
#[derive(Debug, Deserialize)]
struct Wire {
    vendor: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Value,
    status: u16,
    at_us: u64,
}

/// CPU of the mocks' process (`GET /mock/process`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ProcessUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
}

/// The mocks behind a control endpoint.
#[derive(Clone)]
pub struct RemoteMocks {
    base: String,
    http: reqwest::Client,
    /// The vendors the harness uses (apns, fcm, huawei), as the control endpoint describes them.
    pub mocks: Arc<Vec<MockInfo>>,
}

impl RemoteMocks {
    pub async fn connect(control: SocketAddr, allow_remote: bool) -> anyhow::Result<Self> {
        let base = format!("http://{control}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut mocks = Vec::new();
        for vendor in ["apns", "fcm", "huawei"] {
            let w: InfoWire = get_json(&http, &format!("{base}/mock/{vendor}")).await?;
            let url = w.url.parse().with_context(|| format!("mock {vendor}: url {:?}", w.url))?;
            let info = MockInfo { vendor: w.vendor, url, ca_pem: w.ca_pem, started_unix_us: w.started_unix_us };
            let host = info.url.host_str().unwrap_or_default().trim_matches(['[', ']']);
            if let Ok(ip) = host.parse::<IpAddr>() {
                check_loopback(&format!("mock {vendor} at {}", info.url), ip, allow_remote)?;
            } else if !allow_remote && host != "localhost" {
                bail!("mock {vendor} at {}: not loopback (see --allow-remote)", info.url);
            }
            mocks.push(info);
        }
        Ok(Self { base, http, mocks: Arc::new(mocks) })
    }

    pub fn info(&self, vendor: &str) -> anyhow::Result<&MockInfo> {
        self.mocks.iter().find(|m| m.vendor == vendor).ok_or_else(|| anyhow!("no mock {vendor} at {}", self.base))
    }

    /// Removes and returns what the mocks recorded since the last call.
    pub async fn take(&self) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        for m in self.mocks.iter() {
            let url = format!("{}/mock/{}/received", self.base, m.vendor);
            let resp = self.http.delete(&url).send().await?;
            if !resp.status().is_success() {
                bail!("DELETE {url}: {}", resp.status());
            }
            let wire: Vec<Wire> = resp.json().await.with_context(|| format!("DELETE {url}"))?;
            out.extend(wire.into_iter().map(|w| {
                let answered = instant_of_unix_us(m.started_unix_us + w.at_us);
                Record::of(&w.vendor, w.headers.get(":path").map(String::as_str), w.status, &w.body, answered)
            }));
        }
        Ok(out)
    }

    /// Forgets what was recorded and every scripted rule.
    pub async fn reset(&self) -> anyhow::Result<()> {
        for m in self.mocks.iter() {
            let url = format!("{}/mock/{}/rules", self.base, m.vendor);
            let resp = self.http.delete(&url).send().await?;
            if !resp.status().is_success() {
                bail!("DELETE {url}: {}", resp.status());
            }
        }
        self.take().await.map(drop)
    }

    pub async fn script(&self, vendor: &str, rule: &MockRule) -> anyhow::Result<()> {
        let url = format!("{}/mock/{vendor}/rules", self.base);
        let resp = self.http.post(&url).json(rule).send().await?;
        if !resp.status().is_success() {
            bail!("POST {url}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// The mocks' process CPU, if the control endpoint reports it.
    pub async fn process(&self) -> Option<ProcessUsage> {
        get_json(&self.http, &format!("{}/mock/process", self.base)).await.ok()
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> anyhow::Result<T> {
    let resp = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: {} {}", resp.status(), resp.text().await.unwrap_or_default());
    }
    resp.json().await.with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_exact_name() {
        let text = "# HELP pushd_pending_messages x\n# TYPE pushd_pending_messages gauge\n\
                    pushd_pending_messages_other 7\npushd_pending_messages 42\nprocess_cpu_seconds_total 1.5\n";
        assert_eq!(sample(text, "pushd_pending_messages"), Some(42.0));
        assert_eq!(sample(text, "process_cpu_seconds_total"), Some(1.5));
        assert_eq!(sample(text, "process_resident_memory_bytes"), None);
    }

    #[test]
    fn targets_off_loopback_need_allow_remote() {
        assert!(address("--gateway", "127.0.0.1:8080", false).is_ok());
        assert!(address("--gateway", "http://[::1]:8080/", false).is_ok());
        let err = address("--gateway", "10.1.2.3:8080", false).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(address("--gateway", "10.1.2.3:8080", true).is_ok());
        assert!(address("--gateway", "pushd:8080", false).is_err());
    }

    #[test]
    fn a_remote_wall_clock_lands_on_this_clock() {
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
        let here = instant_of_unix_us(now_us);
        let later = instant_of_unix_us(now_us + 1500);
        assert_eq!(later - here, Duration::from_micros(1500));
    }
}
