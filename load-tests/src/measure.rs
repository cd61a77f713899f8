//! What a scenario reports: CPU per part of the process (from `/proc/self/task`, split by thread
//! name), resident memory (current and peak), and accept → vendor-answer latency in an HDR
//! histogram, computed from the mocks' records (`Received::at_us`) against the instant the
//! harness sent each message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use pushd::mock_vendor::Received;
use serde_json::Value;

/// CPU seconds used so far by pushd, the mocks and the load generator (thread-name prefixes
/// `mock`, `load`; everything else is pushd's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub pushd: f64,
    pub mock: f64,
    pub load: f64,
}

impl Cpu {
    pub fn now() -> Self {
        let mut cpu = Cpu::default();
        for thread in pushd::process::threads() {
            let secs = thread.cpu_seconds;
            if thread.name.starts_with("mock") {
                cpu.mock += secs;
            } else if thread.name.starts_with("load") {
                cpu.load += secs;
            } else {
                cpu.pushd += secs;
            }
        }
        cpu
    }

    /// Every part together (the whole process).
    pub fn total(self) -> f64 {
        self.pushd + self.mock + self.load
    }

    /// Cores used between `earlier` and now over `wall`.
    pub fn cores_since(self, earlier: Cpu, wall: Duration) -> Cpu {
        let w = wall.as_secs_f64().max(1e-9);
        Cpu {
            pushd: (self.pushd - earlier.pushd) / w,
            mock: (self.mock - earlier.mock) / w,
            load: (self.load - earlier.load) / w,
        }
    }
}

fn status_kib(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident set size now, in bytes.
pub fn rss() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Peak resident set size since the last [`reset_peak_rss`], in bytes.
pub fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Resets the peak RSS counter (Linux ≥ 4.0: writing 5 to clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Gives freed heap back to the OS before a memory reading, so RSS shows what is live
/// rather than what the allocator kept from a peak.
pub fn trim_heap() {
    extern "C" {
        /// mimalloc's own "collect": the process allocator is mimalloc (`pushd`'s lib.rs).
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect takes a flag and touches only the allocator's own free lists and
    // pages; it is safe to call from any thread at any time.
    unsafe {
        mi_collect(true);
    }
}

/// When each message was sent, by message number (ids are `<prefix>-<n>`).
pub struct SendTimes {
    base: Instant,
    /// The wall clock at `base`, to compare with pushd's trace timestamps.
    base_wall: std::time::SystemTime,
    nanos: Vec<AtomicU64>,
}

impl SendTimes {
    pub fn new(base: Instant, capacity: usize) -> Arc<Self> {
        let base_wall = std::time::SystemTime::now() - base.elapsed();
        Arc::new(Self { base, base_wall, nanos: (0..capacity).map(|_| AtomicU64::new(0)).collect() })
    }

    /// When message `n` was sent, on the wall clock.
    pub fn wall(&self, n: usize) -> Option<std::time::SystemTime> {
        self.get(n).map(|at| self.base_wall + at.saturating_duration_since(self.base))
    }

    pub fn mark(&self, n: usize, at: Instant) {
        if let Some(slot) = self.nanos.get(n) {
            let ns = u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
            slot.store(ns.max(1), Ordering::Relaxed);
        }
    }

    fn get(&self, n: usize) -> Option<Instant> {
        let ns = self.nanos.get(n)?.load(Ordering::Relaxed);
        (ns > 0).then(|| self.base + Duration::from_nanos(ns))
    }
}

/// The message id of a push, wherever the vendor's body carries it (APNs top level, FCM
/// `message.data`, Huawei `message.data` as a JSON string).
fn message_id(body: &Value) -> Option<String> {
    match body {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("msg") {
                return Some(id.clone());
            }
            map.values().find_map(message_id)
        }
        Value::String(s) if s.starts_with('{') => serde_json::from_str::<Value>(s).ok().as_ref().and_then(message_id),
        Value::Array(items) => items.iter().find_map(message_id),
        _ => None,
    }
}

/// One request a mock recorded, as the harness needs it, whether the mock runs in this process
/// or behind a control endpoint.
#[derive(Debug, Clone)]
pub struct Record {
    pub vendor: String,
    pub status: u16,
    /// A token-endpoint call (FCM, Huawei OAuth) rather than a push.
    pub auth_call: bool,
    /// Tokens addressed (Huawei batches several).
    pub tokens: u64,
    pub message_id: Option<String>,
    /// When the mock decided its answer, on this process's clock.
    pub answered: Instant,
}

impl Record {
    /// From a mock's record (vendor, `:path` header, status, body), answered at `answered`.
    pub fn of(vendor: &str, path: Option<&str>, status: u16, body: &Value, answered: Instant) -> Self {
        let tokens =
            if vendor == "huawei" { pushd::mock_vendor::huawei::tokens_of(body).len().max(1) as u64 } else { 1 };
        Self {
            vendor: vendor.to_owned(),
            status,
            auth_call: path.is_some_and(|p| p.ends_with("/token")),
            tokens,
            message_id: message_id(body),
            answered,
        }
    }

    /// From an in-process mock's record.
    pub fn local(r: &Received, started: Instant) -> Self {
        let path = r.headers.get(":path").map(String::as_str);
        Self::of(r.vendor, path, r.status, &r.body, started + Duration::from_micros(r.at_us))
    }
}

/// This process's clock at one wall-clock moment, to place another process's wall-clock
/// timestamps (a remote mock's records) on it. Both clocks are read once, together.
fn anchor() -> (Instant, SystemTime) {
    static ANCHOR: std::sync::OnceLock<(Instant, SystemTime)> = std::sync::OnceLock::new();
    *ANCHOR.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// The instant of a wall-clock time in microseconds since the Unix epoch.
pub fn instant_of_unix_us(us: u64) -> Instant {
    let (at, wall) = anchor();
    let then = UNIX_EPOCH + Duration::from_micros(us);
    match then.duration_since(wall) {
        Ok(after) => at + after,
        Err(before) => at.checked_sub(before.duration()).unwrap_or(at),
    }
}

/// Per-scenario tallies from the mocks' records.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Pushes answered 200 (counting each token of a batch), per vendor.
    pub delivered: HashMap<String, u64>,
    /// Requests answered otherwise (scripted trouble, retries to come).
    pub refused: u64,
    pub requests: u64,
    /// The last delivery.
    pub last: Option<Instant>,
}

impl Tally {
    pub fn delivered_total(&self) -> u64 {
        self.delivered.values().sum()
    }
}

/// Turns the mocks' records into latency samples and tallies.
pub struct Collector {
    pub latency: Histogram<u64>,
    pub tally: Tally,
    /// Each push's (sent, µs since the Unix epoch; latency, µs), when `--latency-log` asks.
    pub samples: Option<Vec<(u64, u64)>>,
    prefix: String,
    times: Arc<SendTimes>,
}

impl Collector {
    pub fn new(prefix: &str, times: Arc<SendTimes>, keep_samples: bool) -> Self {
        Self {
            latency: latency_histogram(),
            tally: Tally::default(),
            samples: keep_samples.then(Vec::new),
            prefix: format!("{prefix}-"),
            times,
        }
    }

    /// Counts records taken from the mocks.
    pub fn ingest(&mut self, records: impl IntoIterator<Item = Record>) {
        for r in records {
            self.tally.requests += 1;
            if r.status != 200 || r.auth_call {
                self.tally.refused += u64::from(r.status != 200);
                continue;
            }
            *self.tally.delivered.entry(r.vendor).or_default() += r.tokens;
            self.tally.last = Some(self.tally.last.map_or(r.answered, |l| l.max(r.answered)));
            let Some(id) = r.message_id else { continue };
            let Some(num) = id.strip_prefix(&self.prefix).and_then(|s| s.parse::<usize>().ok()) else { continue };
            if let Some(sent) = self.times.get(num) {
                let us = u64::try_from(r.answered.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                let _ = self.latency.record_n(us.max(1), r.tokens);
                if let (Some(samples), Some(wall)) = (&mut self.samples, self.times.wall(num)) {
                    let unix_us = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
                    samples.push((unix_us, us));
                }
            }
        }
    }
}

/// Samples RSS every 50 ms while a scenario runs and keeps the highest (a second opinion next
/// to the kernel's peak counter).
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("load-rss".into())
            .spawn(move || {
                // Bounded: stops when told, and in any case after an hour.
                for _ in 0..72_000 {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    p.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .ok();
        Self { peak, stop, thread }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed).max(peak_rss())
    }
}

/// A latency histogram in microseconds: 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Percentile of a histogram in milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A shared collector the load tasks and the drainer use.
pub type SharedCollector = Arc<Mutex<Collector>>;
