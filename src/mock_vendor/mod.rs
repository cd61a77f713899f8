//! Loopback mock vendors: HTTPS servers that speak APNs and FCM closely enough to test pushd
//! against them. They run in-process on the caller's tokio runtime (integration tests,
//! `pushd demo`, load tests) and bind `127.0.0.1:0` unless told otherwise.
//!
//! What lives where:
//! - this file: what every mock shares — scripted answers ([`MockRule`], [`MockAnswer`]), the
//!   record of what arrived ([`Received`]), waiting on it ([`MockServer::wait_for`]),
//!   counters, and the request plumbing a vendor file plugs into (the crate-private `Vendor`
//!   trait);
//! - [`tls`]: the test CA and server certificate, the accept loop, per-connection HTTP serving;
//! - [`apns`], [`fcm`]: one file per vendor: config, validation rules, error bodies;
//! - `oauth`: the access tokens a mock issued and the token-request form, for the mocks with
//!   a token endpoint or auth call (Huawei, Honor, FCM, OPPO, vivo);
//! - `form`: the request plumbing of the form-encoded send endpoints (Xiaomi, Meizu) and their
//!   per-target lookup of scripted rules;
//! - `hms`: the server core of the HMS-lineage mocks (Huawei and its descendant Honor): token
//!   endpoint, auth, limits, per-token rule lookup and answers, with each vendor's rules and
//!   field names in its own file;
//! - [`control`]: a plain HTTP/1.1 server to inspect and script mocks from outside.
//!
//! Adding a vendor (huawei, xiaomi, …) is one more file: a config, a `Vendor` impl and a
//! `MockX` wrapper that derefs to [`MockServer`].
//!
//! ```text
//! client ─TLS/ALPN─▶ tls accept loop ─▶ hyper h2|h1 ─▶ Vendor::handle
//!                                                      │ 1. validate as the vendor would
//!                                                      │ 2. first matching MockRule, if valid
//!                                                      │ 3. record Received, wake waiters
//!                                                      ▼ 4. answer (after delay_ms, if any)
//! ```
//!
//! Deliberately not here: GOAWAY/idle scripting and APNs stream throttling after rejections
//! (apns.md §7 items 14–16), client certificates, token-endpoint failure scripting.

pub mod apns;
pub mod control;
pub mod fcm;
mod form;
mod hms;
pub mod honor;
pub mod huawei;
pub mod meizu;
mod oauth;
pub mod oppo;
pub mod tls;
pub mod vivo;
pub mod xiaomi;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::{Clock, SharedClock, SystemClock};

pub use apns::{MockApns, MockApnsConfig};
pub use control::{serve_control, serve_mocks, ControlHandle};
pub use fcm::{MockFcm, MockFcmConfig};
pub use hms::HmsMock;
pub use tls::MockTls;

use tls::{Protocols, StopSignal, Stopper};

/// How many [`Received`] entries a mock keeps; older ones are dropped (the `seq` numbers keep
/// counting, see [`MockServer::requests_total`]). Bounds memory under load tests.
pub const RECORD_CAPACITY: usize = 100_000;

/// Largest request body a mock reads; anything longer is answered as too large without
/// being kept. Far above every vendor limit (4–5 KiB).
pub(crate) const BODY_READ_LIMIT: usize = 1 << 20;

/// A scripted answer. Fields left unset keep the normal behaviour.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct MockAnswer {
    /// HTTP status to answer; with only `reason` set, the vendor's status for that reason.
    pub status: Option<u16>,
    /// APNs `reason`, or FCM `errorCode` / `error.status`.
    pub reason: Option<String>,
    /// APNs 410 `timestamp` (ms since epoch); unset = the mock clock's now.
    pub timestamp_ms: Option<i64>,
    /// Adds a `Retry-After: <secs>` header.
    pub retry_after_secs: Option<u64>,
    /// Delays the answer (other streams and connections are not held up).
    pub delay_ms: Option<u64>,
    /// Answers as if the auth token expired: APNs `403 ExpiredProviderToken`, FCM `401
    /// UNAUTHENTICATED` (and the access token used is revoked).
    pub expire_auth: bool,
}

impl MockAnswer {
    /// An answer with this HTTP status (the vendor picks the usual reason for it).
    pub fn with_status(status: u16) -> Self {
        Self { status: Some(status), ..Self::default() }
    }

    /// An answer with this vendor reason (the vendor picks the status for it).
    pub fn with_reason(reason: impl Into<String>) -> Self {
        Self { reason: Some(reason.into()), ..Self::default() }
    }
}

/// When to give a scripted answer: which token, how many times.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MockRule {
    /// The device/registration token it applies to; `None` = any.
    #[serde(default)]
    pub token: Option<String>,
    /// How many matching requests it answers before it is removed; `None` = forever.
    #[serde(default)]
    pub times: Option<u32>,
    /// The answer.
    pub answer: MockAnswer,
}

impl MockRule {
    /// A rule for every request, forever.
    pub fn any(answer: MockAnswer) -> Self {
        Self { token: None, times: None, answer }
    }

    /// A rule for one token, forever.
    pub fn for_token(token: impl Into<String>, answer: MockAnswer) -> Self {
        Self { token: Some(token.into()), times: None, answer }
    }

    /// The same rule, limited to the next `n` matching requests.
    pub fn times(self, n: u32) -> Self {
        Self { times: Some(n), ..self }
    }

    fn matches(&self, token: &str) -> bool {
        self.times != Some(0) && self.token.as_deref().is_none_or(|t| t == token)
    }
}

/// What a mock received: one entry per request, in arrival order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    /// 1, 2, 3… per mock, in arrival order.
    pub seq: u64,
    /// `"apns"`, `"fcm"`, …
    pub vendor: &'static str,
    /// The device/registration token addressed (`""` if none could be read).
    pub token: String,
    /// Request headers, lower-case names, plus `:method` and `:path`; repeated headers joined
    /// with `", "`; `authorization` cut to its first 12 characters.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a body that is not JSON is kept as a string, an empty one as null.
    pub body: serde_json::Value,
    /// Body size in bytes as received.
    pub body_bytes: usize,
    /// The status answered. With `delay_ms` it is recorded before the delay elapses.
    pub status: u16,
    /// The body answered, or null when the answer had none.
    pub answer: serde_json::Value,
    /// Which connection (1, 2, … in accept order) carried the request.
    pub connection: u64,
    /// When it was recorded, in microseconds since the mock started ([`MockServer::started_at`],
    /// on the wall clock [`MockServer::started_unix_us`]):
    /// the moment the mock decided its answer, which goes out at once (or after `delay_ms`).
    /// The load harness measures accept → vendor answer with it.
    pub at_us: u64,
    /// `"HTTP/2.0"` or `"HTTP/1.1"`.
    pub http_version: String,
}

/// A running mock: the part every vendor shares. [`MockApns`] and [`MockFcm`] deref to it.
///
/// Cheap to clone (an `Arc`); clones share everything. The server stops when
/// [`MockServer::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct MockServer {
    core: Arc<Core>,
    _running: Arc<StopOnDrop>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("vendor", &self.core.vendor)
            .field("addr", &self.core.addr)
            .finish_non_exhaustive()
    }
}

/// Stops the server when the last [`MockServer`] clone goes. Server tasks hold the core, not
/// this, so they do not keep the mock alive.
struct StopOnDrop(Arc<Core>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl MockServer {
    fn new(core: Arc<Core>) -> Self {
        Self { _running: Arc::new(StopOnDrop(core.clone())), core }
    }

    /// The vendor name used in [`Received::vendor`] and the control routes.
    pub fn vendor(&self) -> &'static str {
        self.core.vendor
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// `https://127.0.0.1:PORT/` (the bound address; an unspecified IP becomes loopback).
    pub fn url(&self) -> url::Url {
        self.core.url.clone()
    }

    /// The CA certificate (PEM) the server certificate is signed by.
    pub fn ca_pem(&self) -> &str {
        &self.core.tls.ca_pem
    }

    /// The TLS material, to share with another mock ([`MockApnsConfig::tls`]).
    pub fn tls(&self) -> Arc<MockTls> {
        self.core.tls.clone()
    }

    /// Adds a scripted answer. Rules are checked first-match in insertion order, and only
    /// for requests that pass the vendor's auth and format checks.
    pub fn script(&self, rule: MockRule) {
        if rule.times != Some(0) {
            lock(&self.core.rules).push(rule);
        }
    }

    /// Removes every scripted answer.
    pub fn clear_rules(&self) {
        lock(&self.core.rules).clear();
    }

    /// The scripted answers still pending, with their remaining `times`.
    pub fn rules(&self) -> Vec<MockRule> {
        lock(&self.core.rules).clone()
    }

    /// Everything received (at most [`RECORD_CAPACITY`], newest last).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.core.record).entries.iter().cloned().collect()
    }

    /// Everything received for `token`, whatever the answer was.
    pub fn received_for(&self, token: &str) -> Vec<Received> {
        let record = lock(&self.core.record);
        record.entries.iter().filter(|r| r.token == token).cloned().collect()
    }

    /// How many requests were recorded since start (including any dropped from the record).
    pub fn requests_total(&self) -> u64 {
        lock(&self.core.record).total
    }

    /// Removes and returns everything recorded so far (oldest first). The load harness drains
    /// the record this way at a bounded rate, so no entry is dropped at [`RECORD_CAPACITY`] and
    /// nothing is cloned; [`MockServer::requests_total`] keeps counting.
    pub fn take_received(&self) -> Vec<Received> {
        std::mem::take(&mut lock(&self.core.record).entries).into()
    }

    /// The instant [`Received::at_us`] counts from.
    pub fn started_at(&self) -> std::time::Instant {
        self.core.started
    }

    /// The wall-clock time of [`MockServer::started_at`], in µs since the Unix epoch (read from
    /// the real clock whatever the mock's clock is): `started_unix_us() + at_us` is when a
    /// request was recorded, comparable across processes on one host.
    pub fn started_unix_us(&self) -> u64 {
        self.core.started_unix_us
    }

    /// Waits until `pred` holds for the record, then returns the record. Wakes on every new
    /// request, never polls. On timeout the error lists what was received.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[Received]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Received>, String> {
        let mut changes = self.core.changed.subscribe();
        let waiting = async {
            loop {
                changes.borrow_and_update();
                {
                    let mut record = lock(&self.core.record);
                    let entries = record.entries.make_contiguous();
                    if pred(entries) {
                        return entries.to_vec();
                    }
                }
                if changes.changed().await.is_err() {
                    // The sender lives in the core we hold; cannot happen. Let the timeout end it.
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(entries) => Ok(entries),
            Err(_) => Err(self.describe_timeout(timeout)),
        }
    }

    fn describe_timeout(&self, timeout: Duration) -> String {
        const SHOWN: usize = 50;
        let record = lock(&self.core.record);
        let mut out = format!(
            "mock {}: condition not met within {timeout:?}; {} request(s) received",
            self.core.vendor, record.total
        );
        let skip = record.entries.len().saturating_sub(SHOWN);
        if skip > 0 {
            let _ = write!(out, " (last {SHOWN} shown)");
        }
        out.push(':');
        for r in record.entries.iter().skip(skip) {
            let _ = write!(
                out,
                "\n  #{} conn {} {} {} token={:?} status={} answer={} body={}",
                r.seq,
                r.connection,
                r.http_version,
                r.headers.get(":path").map(String::as_str).unwrap_or("?"),
                r.token,
                r.status,
                r.answer,
                truncate_for_display(&r.body.to_string(), 300),
            );
        }
        out
    }

    /// TLS connections accepted so far.
    pub fn connections_opened(&self) -> u64 {
        self.core.connections.load(Ordering::Relaxed)
    }

    /// The most requests seen in flight at once on a single connection (for HTTP/2: concurrent
    /// streams; compare with the advertised `max_concurrent_streams`).
    pub fn max_concurrent_seen(&self) -> usize {
        self.core.max_per_connection.load(Ordering::Relaxed)
    }

    /// The most requests seen in flight at once over all connections.
    pub fn max_in_flight_seen(&self) -> usize {
        self.core.max_in_flight.load(Ordering::Relaxed)
    }

    /// Stops accepting; open connections get a graceful close. Idempotent.
    pub fn shutdown(&self) {
        self.core.stop();
    }
}

/// The answer of the first rule matching `token`; counts its `times` down and drops it at 0.
fn take_first_match(rules: &mut Vec<MockRule>, token: &str) -> Option<MockAnswer> {
    let i = rules.iter().position(|r| r.matches(token))?;
    let answer = rules[i].answer.clone();
    if let Some(left) = rules[i].times.as_mut() {
        *left = left.saturating_sub(1);
        if *left == 0 {
            rules.remove(i);
        }
    }
    Some(answer)
}

fn truncate_for_display(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Record {
    entries: VecDeque<Received>,
    total: u64,
}

/// Shared state of one running mock, held by the server tasks and every handle.
pub(crate) struct Core {
    vendor: &'static str,
    addr: SocketAddr,
    url: url::Url,
    tls: Arc<MockTls>,
    clock: SharedClock,
    rules: Mutex<Vec<MockRule>>,
    record: Mutex<Record>,
    /// Bumped after each record; `wait_for` subscribes to it.
    changed: watch::Sender<u64>,
    connections: AtomicU64,
    max_per_connection: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stopper: Stopper,
    /// What [`Received::at_us`] counts from.
    started: std::time::Instant,
    /// The wall clock at `started`, µs since the Unix epoch.
    started_unix_us: u64,
}

impl Core {
    pub(crate) fn vendor(&self) -> &'static str {
        self.vendor
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stop(&self) {
        self.stopper.stop();
    }

    pub(crate) fn stop_signal(&self) -> StopSignal {
        self.stopper.signal()
    }

    /// Counts a new connection and returns its id (1, 2, …).
    pub(crate) fn connection_opened(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks a request in flight on `conn` until the guard drops (also on cancellation).
    pub(crate) fn enter<'a, S>(&'a self, conn: &'a Conn<S>) -> InFlight<'a> {
        let here = conn.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_per_connection.fetch_max(here, Ordering::Relaxed);
        let all = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(all, Ordering::Relaxed);
        InFlight { conn: &conn.in_flight, all: &self.in_flight }
    }

    /// The first rule matching `token`, counting down its `times`.
    pub(crate) fn take_answer(&self, token: &str) -> Option<MockAnswer> {
        take_first_match(&mut lock(&self.rules), token)
    }

    /// Appends to the record (numbering and timing it) and wakes waiters.
    pub(crate) fn record(&self, mut entry: Received) {
        entry.at_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let total = {
            let mut record = lock(&self.record);
            record.total += 1;
            entry.seq = record.total;
            if record.entries.len() >= RECORD_CAPACITY {
                record.entries.pop_front();
            }
            record.entries.push_back(entry);
            record.total
        };
        self.changed.send_replace(total);
    }
}

/// Guard counting one request in flight.
pub(crate) struct InFlight<'a> {
    conn: &'a AtomicUsize,
    all: &'a AtomicUsize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.conn.fetch_sub(1, Ordering::Relaxed);
        self.all.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted connection as a vendor handler sees it.
pub(crate) struct Conn<S> {
    pub(crate) id: u64,
    /// The client presented a certificate the mock CA signed (APNs certificate auth).
    pub(crate) client_cert: bool,
    in_flight: AtomicUsize,
    /// Vendor-specific per-connection state (APNs: the token in use).
    pub(crate) state: S,
}

impl<S: Default> Conn<S> {
    pub(crate) fn new(id: u64, client_cert: bool) -> Self {
        Self { id, client_cert, in_flight: AtomicUsize::new(0), state: S::default() }
    }
}

/// An HTTP answer from a mock.
pub(crate) type Reply = Response<Full<Bytes>>;

/// What a vendor file implements: one request in, one answer out. Shared plumbing (TLS,
/// connection counting, in-flight tracking) happens around it.
pub(crate) trait Vendor: Send + Sync + 'static {
    /// Per-connection state, created when a connection is accepted.
    type ConnState: Default + Send + Sync + 'static;

    /// Answers one request. Must not panic on any input.
    fn handle(&self, req: Request<Incoming>, conn: &Conn<Self::ConnState>) -> impl Future<Output = Reply> + Send;
}

/// Binds, builds the shared core and vendor state, and spawns the TLS server.
pub(crate) async fn start_mock<V: Vendor>(
    vendor: &'static str,
    addr: SocketAddr,
    tls: Option<Arc<MockTls>>,
    clock: SharedClock,
    protocols: Protocols,
    make: impl FnOnce(Arc<Core>) -> V,
) -> io::Result<(MockServer, Arc<V>)> {
    let tls = match tls {
        Some(tls) => tls,
        None => Arc::new(MockTls::generate()?),
    };
    let config = tls.server_config(protocols.alpn())?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let url = loopback_url("https", addr)?;
    // Read one after the other, so `started_unix_us + at_us` is a record's wall-clock time (to a
    // few µs), which another process can compare with its own clock. The real clock, not the
    // mock's `clock`: tests set that to a manual one for token expiry, while `at_us` is real
    // elapsed time.
    let started = std::time::Instant::now();
    let started_unix_us = u64::try_from(SystemClock.now().timestamp_micros()).unwrap_or(0);
    let core = Arc::new(Core {
        vendor,
        addr,
        url,
        tls,
        clock,
        rules: Mutex::new(Vec::new()),
        record: Mutex::new(Record { entries: VecDeque::new(), total: 0 }),
        changed: watch::Sender::new(0),
        connections: AtomicU64::new(0),
        max_per_connection: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        stopper: Stopper::new(),
        started,
        started_unix_us,
    });
    let vendor_state = Arc::new(make(core.clone()));
    tls::spawn_tls_server(listener, config, core.clone(), vendor_state.clone(), protocols);
    Ok((MockServer::new(core), vendor_state))
}

/// `scheme://addr/`, with an unspecified bind address replaced by loopback.
pub(crate) fn loopback_url(scheme: &str, addr: SocketAddr) -> io::Result<url::Url> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let text = format!("{scheme}://{}/", SocketAddr::new(ip, addr.port()));
    url::Url::parse(&text).map_err(|e| io::Error::other(format!("mock url {text}: {e}")))
}

/// The default bind address: loopback, any free port.
pub(crate) fn default_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// A request with its body read (at most [`BODY_READ_LIMIT`] bytes).
pub(crate) struct ReadRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) version: Version,
    pub(crate) body: Bytes,
    /// The body exceeded [`BODY_READ_LIMIT`] and was discarded.
    pub(crate) too_large: bool,
}

impl ReadRequest {
    /// Reads the whole body. A body that fails mid-way (client reset) reads as empty; the
    /// client is gone and will not see the answer anyway.
    pub(crate) async fn read(req: Request<Incoming>) -> Self {
        let (parts, body) = req.into_parts();
        let (body, too_large) = match Limited::new(body, BODY_READ_LIMIT).collect().await {
            Ok(collected) => (collected.to_bytes(), false),
            Err(e) => (Bytes::new(), e.is::<LengthLimitError>()),
        };
        Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned()),
            headers: parts.headers,
            version: parts.version,
            body,
            too_large,
        }
    }

    /// A header's value as text; `None` if absent or not visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the Content-Type is `mime` (any case, parameters such as `charset` ignored).
    pub(crate) fn content_type_is(&self, mime: &str) -> bool {
        self.header("content-type")
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(mime))
    }

    /// The body parsed as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The record entry for this request (`seq` is set by [`Core::record`]).
    pub(crate) fn received(
        &self,
        vendor: &'static str,
        token: String,
        connection: u64,
        status: u16,
        answer: serde_json::Value,
    ) -> Received {
        let body = if self.body.is_empty() {
            serde_json::Value::Null
        } else {
            self.json().unwrap_or_else(|| serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()))
        };
        Received {
            seq: 0,
            vendor,
            token,
            headers: self.recorded_headers(),
            body,
            body_bytes: if self.too_large { BODY_READ_LIMIT } else { self.body.len() },
            status,
            answer,
            connection,
            http_version: format!("{:?}", self.version),
            at_us: 0,
        }
    }

    fn recorded_headers(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(":method".to_owned(), self.method.as_str().to_owned());
        out.insert(":path".to_owned(), self.path_and_query.clone());
        for name in self.headers.keys() {
            let values: Vec<String> =
                self.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            let mut value = values.join(", ");
            if name == http::header::AUTHORIZATION {
                // Enough to tell "bearer eyJ…" from "Bearer mock…", never a usable credential.
                value = value.chars().take(12).collect();
            }
            out.insert(name.as_str().to_owned(), value);
        }
        out
    }
}

/// Builds an answer. Invalid header values are skipped (they come from scripts, not pushd);
/// a status outside 100–999 becomes 500.
pub(crate) fn reply(status: u16, headers: &[(HeaderName, String)], body: Option<&serde_json::Value>) -> Reply {
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response_headers = response.headers_mut();
    if body.is_some() {
        response_headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name.clone(), value);
        }
    }
    response
}

/// The `authorization` value's credential if the scheme is `bearer` (any case).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim()).filter(|c| !c.is_empty())
}

/// Sleeps for a scripted delay, if any.
pub(crate) async fn scripted_delay(answer: Option<&MockAnswer>) {
    if let Some(ms) = answer.and_then(|a| a.delay_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the mock tests: demo keys, JWT signing, clients trusting a mock, a clock.

    use super::MockServer;

    /// The committed APNs demo key (PKCS#8, P-256).
    pub(crate) const APNS_KEY_P8: &str = include_str!("../../config/demo/apns-demo-key.p8");
    /// Its public key (SPKI PEM).
    pub(crate) const APNS_PUB_PEM: &str = include_str!("../../config/demo/apns-demo-key.pub.pem");
    /// The committed FCM demo service account.
    pub(crate) const FCM_ACCOUNT_JSON: &str = include_str!("../../config/demo/fcm-service-account.json");
    /// Its public key (SPKI PEM).
    pub(crate) const FCM_PUB_PEM: &str = include_str!("../../config/demo/fcm-demo-key.pub.pem");

    /// A manual clock at 2026-01-01 00:00 UTC, for token expiry.
    pub(crate) fn clock() -> crate::clock::ManualClock {
        crate::clock::ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    /// A reqwest client that trusts only the mock's CA.
    pub(crate) fn client(mock: &MockServer, h2_prior_knowledge: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).expect("mock CA parses");
        let builder =
            reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca);
        let builder = if h2_prior_knowledge { builder.http2_prior_knowledge() } else { builder };
        builder.build().expect("client builds")
    }

    /// A fresh P-256 key (PKCS#8 PEM) that no mock knows.
    pub(crate) fn stranger_ec_key_pem() -> String {
        rcgen::KeyPair::generate().expect("key generation").serialize_pem()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_first_in_order_and_count_down() {
        let rule_a = MockRule::for_token("a", MockAnswer::with_status(410)).times(1);
        let rule_any = MockRule::any(MockAnswer::with_status(500)).times(2);
        let mut rules = vec![rule_a, rule_any];
        let mut take = |token: &str| take_first_match(&mut rules, token).map(|a| a.status);
        assert_eq!(take("a"), Some(Some(410)));
        assert_eq!(take("a"), Some(Some(500)));
        assert_eq!(take("b"), Some(Some(500)));
        assert_eq!(take("b"), None);
        assert!(rules.is_empty());
    }

    #[test]
    fn rule_json_accepts_missing_optional_fields() {
        let rule: MockRule = serde_json::from_str(r#"{"answer":{"reason":"Unregistered"}}"#).expect("parses");
        assert_eq!(rule, MockRule::any(MockAnswer::with_reason("Unregistered")));
    }

    #[tokio::test]
    async fn records_are_timed_and_can_be_drained() {
        let mock =
            MockApns::start(MockApnsConfig::new("TEAM123456", "KEY1234567", testing::APNS_PUB_PEM, "com.example.im"))
                .await
                .expect("mock starts");
        let client = testing::client(&mock, true);
        let url = format!("{}3/device/{}", mock.url(), "ab".repeat(32));
        for _ in 0..2 {
            // No provider token: refused, but recorded all the same.
            let _ = client.post(&url).body("{}").send().await.expect("answered");
        }
        let taken = mock.take_received();
        assert_eq!(taken.len(), 2);
        assert!(taken[0].at_us <= taken[1].at_us, "recorded in order");
        let elapsed = u64::try_from(mock.started_at().elapsed().as_micros()).unwrap_or(u64::MAX);
        assert!(taken[1].at_us <= elapsed, "timed from the mock's start");
        assert!(mock.received().is_empty(), "drained");
        assert_eq!(mock.requests_total(), 2, "the count goes on");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("bearer"), None);
        assert_eq!(bearer("bearer "), None);
    }

    #[test]
    fn unspecified_bind_address_becomes_loopback_url() {
        let url = loopback_url("https", "0.0.0.0:8443".parse().expect("addr")).expect("url");
        assert_eq!(url.as_str(), "https://127.0.0.1:8443/");
        let url = loopback_url("https", "[::1]:9".parse().expect("addr")).expect("url");
        assert_eq!(url.as_str(), "https://[::1]:9/");
    }
}
