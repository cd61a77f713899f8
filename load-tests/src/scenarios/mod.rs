//! What every scenario shares: the context (runtimes, mocks, scale), one result row, a
//! measured run (CPU, peak RSS, latency and deliveries from the mocks), and the two ways of
//! sending messages: closed loop at the maximum rate, and open loop at a fixed rate.
//!
//! Every loop here is bounded by a count and a deadline.

pub mod fanout;
pub mod group;
pub mod memory;
pub mod presence;
pub mod trouble;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::measure::{self, Collector, Cpu, RssSampler, SendTimes, SharedCollector};
use crate::remote::{Probe, Target};
use crate::rig::{Daemon, DaemonOptions, Gateway, Mocks};

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Users registered for the message scenarios.
    pub users: usize,
    /// Length of each timed phase.
    pub phase: Duration,
    /// Messages sent by a max-rate phase, at most.
    pub max_messages: usize,
    /// Devices registered by the memory scenario (two steps: 40 % then all).
    pub memory_devices: usize,
    /// Sessions made active by the memory scenario.
    pub memory_sessions: usize,
    /// Events sent by the presence-ingest phase.
    pub presence_events: usize,
    /// Groups of 500 in the group scenario, and messages per group.
    pub groups: usize,
    pub group_messages: usize,
    /// Concurrency of the vendor connections (pushd's `max_in_flight` and the raw clients').
    pub concurrency: usize,
}

impl Scale {
    pub fn full() -> Self {
        Self {
            users: 20_000,
            phase: Duration::from_secs(8),
            max_messages: 400_000,
            memory_devices: 1_000_000,
            memory_sessions: 100_000,
            presence_events: 1_000_000,
            groups: 10,
            group_messages: 40,
            concurrency: 500,
        }
    }

    pub fn smoke() -> Self {
        Self {
            users: 200,
            phase: Duration::from_millis(300),
            max_messages: 1_000,
            memory_devices: 1_000,
            memory_sessions: 200,
            presence_events: 5_000,
            groups: 1,
            group_messages: 2,
            concurrency: 20,
        }
    }
}

/// What a scenario gets.
pub struct Ctx {
    pub load: Handle,
    pub mocks: Mocks,
    pub scale: Scale,
    pub work: std::path::PathBuf,
    /// Raw hyper requests/s to the mock APNs, once measured (the ratio's denominator).
    pub ceiling: Mutex<Vec<f64>>,
    /// A running pushd to drive instead of starting one per scenario.
    pub target: Option<Targeted>,
    /// `--latency-log`: every measured push, one line each.
    pub latency_log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

/// The running pushd of target mode.
pub struct Targeted {
    pub target: Target,
    pub probe: Arc<Probe>,
    /// Ids of this run start with this, so runs against one pushd do not meet.
    pub run: String,
    /// Scenarios so far: each gets its own id namespace (users one left online stay apart).
    pub attached: std::sync::atomic::AtomicUsize,
    /// pushd and the mocks are one process (`pushd demo`): its CPU is in pushd's column.
    pub one_process: bool,
}

impl Ctx {
    /// A fresh data dir for one daemon.
    pub fn data_dir(&self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A pushd for one scenario: started with `o`, or the target (whose config is its own).
    pub async fn daemon(&self, name: &str, o: &DaemonOptions) -> anyhow::Result<Daemon> {
        if let Some(t) = &self.target {
            let k = t.attached.fetch_add(1, Ordering::Relaxed);
            return Daemon::attach(&t.target, t.probe.clone(), format!("{}{k}-", t.run));
        }
        let dir = self.data_dir(name)?;
        let mut o = o.clone();
        if o.max_in_flight == DaemonOptions::default().max_in_flight {
            o.max_in_flight = self.scale.concurrency;
        }
        Daemon::start(self.mocks.local()?, &dir, &o).await
    }

    /// CPU seconds so far of pushd, the mocks and the load generator: thread by thread in
    /// this process, or from the target's `/metrics` and the mocks' `/mock/process`.
    pub async fn cpu_now(&self) -> Cpu {
        let Some(t) = &self.target else { return Cpu::now() };
        let mock = match (&self.mocks, t.one_process) {
            (crate::rig::Mocks::Remote(m), false) => m.process().await.map_or(0.0, |p| p.cpu_seconds),
            _ => 0.0,
        };
        Cpu { pushd: t.probe.cpu_seconds(), mock, load: Cpu::now().total() }
    }

    /// Starts a new peak-RSS window (pushd's: this process's, or the target's).
    pub fn reset_peak_rss(&self) {
        match &self.target {
            Some(t) => t.probe.reset_peak_rss(),
            None => measure::reset_peak_rss(),
        }
    }

    /// pushd's peak RSS since [`Ctx::reset_peak_rss`].
    pub fn peak_rss(&self) -> u64 {
        match &self.target {
            Some(t) => t.probe.peak_rss(),
            None => measure::peak_rss(),
        }
    }

    pub fn ceiling(&self) -> Option<f64> {
        let c = self.ceiling.lock().unwrap_or_else(|p| p.into_inner());
        (!c.is_empty()).then(|| c.iter().sum::<f64>() / c.len() as f64)
    }
}

/// One line of the summary table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub store: &'static str,
    /// Pushes answered 200 by the mocks (or requests, for the raw clients).
    pub pushes: u64,
    pub per_sec: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub cpu: Cpu,
    pub peak_rss: u64,
    pub note: String,
}

/// A measured phase in progress: started before the load, finished after pushd drained.
pub struct Measured {
    start: Instant,
    cpu: Cpu,
    /// This process's RSS, sampled (an in-process pushd); a target's comes from its probe.
    rss: Option<RssSampler>,
    collector: SharedCollector,
    stop: Arc<AtomicBool>,
    drainer: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub times: Arc<SendTimes>,
    mocks: Mocks,
}

impl Measured {
    /// Starts measuring; message ids `<prefix>-<n>` for `n < capacity` are timed.
    pub async fn begin(ctx: &Ctx, prefix: &str, capacity: usize) -> anyhow::Result<Self> {
        ctx.mocks.reset().await?;
        ctx.reset_peak_rss();
        let start = Instant::now();
        let times = SendTimes::new(start, capacity);
        let collector = Arc::new(Mutex::new(Collector::new(prefix, times.clone(), ctx.latency_log.is_some())));
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let (c, stop, mocks) = (collector.clone(), stop.clone(), ctx.mocks.clone());
            ctx.load.spawn(async move {
                // Bounded: until told to stop, at most an hour.
                for _ in 0..180_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let records = mocks.take().await?;
                    c.lock().unwrap_or_else(|p| p.into_inner()).ingest(records);
                }
                Ok(())
            })
        };
        Ok(Self {
            start,
            cpu: ctx.cpu_now().await,
            rss: ctx.target.is_none().then(RssSampler::start),
            collector,
            stop,
            drainer,
            times,
            mocks: ctx.mocks.clone(),
        })
    }

    /// Ends the phase (call once pushd has drained) and returns its row.
    pub async fn finish(self, ctx: &Ctx, scenario: &str, store: &'static str) -> anyhow::Result<Row> {
        self.stop.store(true, Ordering::Relaxed);
        self.drainer.await??;
        let wall_end = Instant::now();
        let cpu = ctx.cpu_now().await.cores_since(self.cpu, wall_end - self.start);
        let peak = self.rss.map_or_else(|| ctx.peak_rss(), RssSampler::finish);
        let records = self.mocks.take().await?;
        let mut c = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        c.ingest(records);
        let delivered = c.tally.delivered_total();
        // Throughput over the span from the first send to the last delivery.
        let span = c.tally.last.map_or(wall_end - self.start, |l| l.saturating_duration_since(self.start));
        if let (Some(log), Some(samples)) = (&ctx.latency_log, &c.samples) {
            write_latency_log(&mut *log.lock().unwrap_or_else(|p| p.into_inner()), scenario, store, samples)?;
        }
        let mut vendors: Vec<String> = c.tally.delivered.iter().map(|(v, n)| format!("{v} {n}")).collect();
        vendors.sort();
        Ok(Row {
            scenario: scenario.to_owned(),
            store,
            pushes: delivered,
            per_sec: delivered as f64 / span.as_secs_f64().max(1e-9),
            p50: measure::ms(&c.latency, 0.5),
            p99: measure::ms(&c.latency, 0.99),
            p999: measure::ms(&c.latency, 0.999),
            cpu,
            peak_rss: peak,
            note: format!(
                "pushd {:.0} µs CPU/push; {}; {} refused answers",
                cpu.pushd * (wall_end - self.start).as_secs_f64() * 1e6 / delivered.max(1) as f64,
                vendors.join(", "),
                c.tally.refused
            ),
        })
    }
}

/// Builds the JSON of message `n`.
pub type MakeMessage = Arc<dyn Fn(usize) -> String + Send + Sync>;

fn batch_body(make: &MakeMessage, ids: Range<usize>) -> Vec<u8> {
    let mut out = String::from("{\"messages\":[");
    for (i, n) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&make(n));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// How many (message, recipient) pairs pushd holds not yet answered by the vendor.
pub type Backlog = Arc<dyn Fn() -> usize + Send + Sync>;

/// Closed loop: `posters` tasks post batches of `batch` messages from `ids` as fast as pushd
/// delivers them — a poster waits while pushd's backlog is above `max_backlog` pairs, so the
/// rate measured is what pushd sustains, not what its intake journal can absorb — until all
/// are sent or `limit` passes. Returns how many were sent.
#[allow(clippy::too_many_arguments)]
pub async fn post_max(
    gw: &Gateway,
    times: &Arc<SendTimes>,
    ids: Range<usize>,
    batch: usize,
    posters: usize,
    limit: Duration,
    backlog: (Backlog, usize),
    make: MakeMessage,
) -> anyhow::Result<usize> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(ids.start));
    let deadline = Instant::now() + limit;
    let mut tasks = Vec::new();
    for _ in 0..posters.max(1) {
        let (gw, times, next, make, end) = (gw.clone(), times.clone(), next.clone(), make.clone(), ids.end);
        let (backlog, max_backlog) = (backlog.0.clone(), backlog.1);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while Instant::now() < deadline {
                if backlog() > max_backlog {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                    continue;
                }
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= end {
                    break;
                }
                let to = (from + batch).min(end);
                let body = batch_body(&make, from..to);
                let now = Instant::now();
                for n in from..to {
                    times.mark(n, now);
                }
                gw.post_retrying("/v1/messages", body).await?;
                sent += to - from;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await??;
    }
    Ok(sent)
}

/// Open loop: `rate` messages per second from `ids`, posted every `tick` as one batch, for
/// `duration` (at most `max_outstanding` requests unanswered). Returns how many were sent.
/// What an open-loop run posted: the message count, and the round trip of each
/// `POST /v1/messages` to its 202 (the intake's share of accept → vendor answer).
pub struct Posted {
    pub sent: usize,
    pub intake: hdrhistogram::Histogram<u64>,
}

impl Posted {
    /// "202 after p50 X / p99 Y ms": where the intake stands in the end-to-end latency.
    pub fn intake_note(&self) -> String {
        format!("202 after p50 {:.2} / p99 {:.2} ms", measure::ms(&self.intake, 0.5), measure::ms(&self.intake, 0.99))
    }
}

pub async fn post_rate(
    gw: &Gateway,
    times: &Arc<SendTimes>,
    ids: Range<usize>,
    rate: f64,
    duration: Duration,
    make: MakeMessage,
) -> anyhow::Result<Posted> {
    let tick = Duration::from_millis(2);
    let max_outstanding = Arc::new(tokio::sync::Semaphore::new(256));
    let start = Instant::now();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = ids.start;
    let mut tasks = Vec::new();
    while start.elapsed() < duration && next < ids.end {
        interval.tick().await;
        let due = ids.start + (start.elapsed().as_secs_f64() * rate) as usize;
        let to = due.min(ids.end);
        if to <= next {
            continue;
        }
        let Ok(permit) = max_outstanding.clone().acquire_owned().await else { break };
        let (from, body) = (next, batch_body(&make, next..to));
        next = to;
        let now = Instant::now();
        for n in from..to {
            times.mark(n, now);
        }
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let r = gw.post_retrying("/v1/messages", body).await;
            drop(permit);
            r.map(|_| now.elapsed())
        }));
    }
    let mut intake = measure::latency_histogram();
    for t in tasks {
        let took = t.await??;
        intake.saturating_record(took.as_micros() as u64);
    }
    Ok(Posted { sent: next - ids.start, intake })
}

/// A small deterministic generator (xorshift) so runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// Appends one phase's pushes to the `--latency-log` file: scenario, store, when the message
/// was sent (µs since the Unix epoch) and its latency (µs), tab-separated, in send order.
fn write_latency_log(
    out: &mut impl std::io::Write,
    scenario: &str,
    store: &str,
    samples: &[(u64, u64)],
) -> std::io::Result<()> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    for (sent, latency) in sorted {
        writeln!(out, "{scenario}\t{store}\t{sent}\t{latency}")?;
    }
    out.flush()
}
