//! The shared delivery layer: one [`ProviderActor`] per credential.
//!
//! Messages it accepts:
//! - [`Deliver`]: send one rendered push to one or more tokens of this credential.
//!
//! Each push runs as a spawned future on the actor's arbiter (many in flight at once, never
//! awaited one by one in the mailbox). Every attempt goes through the same steps, in order:
//! take a rate-limit token → take an in-flight permit → get auth from the cache → build the
//! request ([`Vendor::request`]) → send with a per-attempt timeout → [`Vendor::classify`] →
//! record metrics. Between attempts it waits the larger of the jittered backoff and the
//! vendor's Retry-After, and stops at `max_attempts` or the deadline. A rejected cached auth
//! token is refreshed once. The final outcome of each token goes to the [`ReportSink`].
//!
//! Batching: for a vendor that accepts several tokens per request, pushes with the same
//! [`Vendor::batch_key`] arriving within `batch_linger` are merged into one request of up to
//! `max_batch` tokens (group fan-out); each token still gets its own outcome. A vendor whose
//! batches name uploaded content ([`Vendor::prepare`], vivo's `taskId`) has it uploaded once
//! per batch and kept for the batch's retries; if the vendor says it forgot the upload
//! ([`Vendor::prepared_expired`]), it is uploaded again and the batch resent at once, once per
//! batch.
//!
//! Daily quotas: a `QuotaExhausted` answer parks the credential until the vendor's day rolls
//! over (00:00 China Standard Time unless the vendor said when). Parked pushes are reported to
//! the session (the trace says so), re-checked every `quota_recheck` against the clock, and sent
//! when the day has turned; parking counts neither as an attempt nor against the deadline. While
//! parked, other non-urgent pushes (all but VoIP) wait too instead of spending requests.
//!
//! Mass invalidation: when most recent answers of a credential say "invalid token" (a wrong
//! app id or environment rather than a million uninstalls), pruning pauses for that credential:
//! reports carry `prune: false` and `pushd_pruning_paused{credential}` is 1.
//!
//! The HTTP/2 stream limit the vendor advertises (APNs lowers it to 1 after rejections) is
//! honoured below this layer: the h2 client never opens more streams than the peer allows and
//! queues the rest, so the effective in-flight count is `min(max_in_flight, peer limit)`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::auth_cache::AuthCache;
use super::h2::{Answer, H2Transport};
use super::retry::RetryPolicy;
use super::{AuthPlan, AuthToken, Outcome, Vendor, VendorPush, VendorRequest};
use crate::clock::SharedClock;
use crate::metrics as m;
use crate::model::{CredentialName, DeviceId, MessageId, Timestamp, Token, UserId, VendorKind};

/// One device a push goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub user: UserId,
    pub device: DeviceId,
    pub token: Token,
    pub message_id: MessageId,
}

/// A rendered push and the devices (all on this credential) that get it.
#[derive(Clone)]
pub struct PushJob {
    pub push: Arc<VendorPush>,
    pub targets: Vec<Target>,
    /// When pushd accepted the message (end-to-end latency).
    pub accepted_at: Timestamp,
    /// Where this job's reports go instead of the provider's sink (a caller waiting for the
    /// vendor's answer, e.g. the Matrix gateway). Such jobs are never merged into batches.
    pub reply: Option<ReportSink>,
}

impl std::fmt::Debug for PushJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushJob").field("targets", &self.targets.len()).finish_non_exhaustive()
    }
}

/// One vendor request made for a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: Timestamp,
    /// HTTP status, `None` for a transport failure.
    pub status: Option<u16>,
    pub outcome: &'static str,
    pub reason: &'static str,
}

/// The final word on one target.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub target: Target,
    pub credential: CredentialName,
    pub vendor: VendorKind,
    pub attempts: Vec<Attempt>,
    /// Final, except `QuotaExhausted`: the push is parked and a final report follows.
    pub outcome: Outcome,
    /// False while the mass-invalidation guard holds: keep the token despite `InvalidToken`.
    pub prune: bool,
}

/// Where final outcomes go (the session registry routes them to the user's session).
pub type ReportSink = Arc<dyn Fn(DeliveryReport) + Send + Sync>;

/// How to reach the vendor.
#[derive(Debug, Clone, Default)]
pub struct TransportSettings {
    /// Speak HTTP/2 only (ALPN `h2`), as APNs requires.
    pub http2_only: bool,
    /// Extra trust roots (PEM), e.g. the mock vendors' CA.
    pub extra_roots_pem: Vec<String>,
    /// Client certificate and key (PEM), for APNs certificate auth.
    pub identity_pem: Option<String>,
}

/// Limits of one credential.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub credential: CredentialName,
    /// Requests per second (retries and auth calls excluded from nothing: every send counts).
    pub rate_per_sec: NonZeroU32,
    pub burst: NonZeroU32,
    /// Requests in flight at once (further capped by the vendor's HTTP/2 stream limit).
    pub max_in_flight: usize,
    /// Pushes accepted by this provider but not finished; beyond it `deliver` answers Busy.
    pub queue_capacity: usize,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub transport: TransportSettings,
    /// How long a batchable push waits for others with the same content.
    pub batch_linger: Duration,
    /// How often parked (quota-exhausted) pushes look at the clock.
    pub quota_recheck: Duration,
    pub guard: GuardSettings,
}

/// When the mass-invalidation guard pauses pruning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardSettings {
    /// Final answers remembered per credential.
    pub window: usize,
    /// Fewer answers than this never trip the guard.
    pub min_samples: usize,
    /// Share of invalid-token answers in the window that pauses pruning; it resumes below half.
    pub ratio: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        Self { window: 200, min_samples: 50, ratio: 0.5 }
    }
}

/// The mass-invalidation guard's memory: the last final answers (true = invalid token).
#[derive(Debug, Default)]
struct Guard {
    recent: std::collections::VecDeque<bool>,
    invalid: usize,
    paused: bool,
}

impl Guard {
    /// Records one final answer; returns whether pruning is allowed now.
    fn record(&mut self, invalid: bool, s: &GuardSettings) -> bool {
        self.recent.push_back(invalid);
        self.invalid += usize::from(invalid);
        while self.recent.len() > s.window.max(1) {
            if self.recent.pop_front() == Some(true) {
                self.invalid -= 1;
            }
        }
        let n = self.recent.len();
        let share = self.invalid as f64 / n as f64;
        if !self.paused && n >= s.min_samples && share >= s.ratio {
            self.paused = true;
        } else if self.paused && share < s.ratio / 2.0 {
            self.paused = false;
        }
        !self.paused
    }
}

/// The provider cannot take more work now; the caller keeps the push and tries later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("provider queue is full")]
pub struct Busy;

/// A transport could not be built from the credential's settings.
#[derive(Debug, thiserror::Error)]
#[error("credential {credential}: {what}")]
pub struct TransportError {
    pub credential: String,
    pub what: String,
}

struct Shared {
    settings: ProviderSettings,
    vendor: Arc<dyn Vendor>,
    transport: Transport,
    limiter: DefaultDirectRateLimiter,
    permits: Semaphore,
    auth: AuthCache,
    clock: SharedClock,
    sink: ReportSink,
    queued: AtomicUsize,
    /// Whether the vendor has an auth step at all (fixed by its config). Measured (load
    /// harness, issue 6): asking `auth_plan` on every attempt signed a fresh JWT each time
    /// (RS256 for FCM, ES256 for APNs) only to throw it away when the cache held a token; that
    /// was a fifth of all CPU of a fan-out run. Asked once at start instead.
    needs_auth: bool,
    /// Until when the vendor's daily quota is spent.
    parked_until: std::sync::Mutex<Option<Timestamp>>,
    guard: std::sync::Mutex<Guard>,
}

/// Pushes with one batch key waiting to go out together.
struct Batch {
    push: Arc<VendorPush>,
    targets: Vec<Target>,
    accepted_at: Timestamp,
    /// Jobs merged in (each counted once in `queued`).
    jobs: usize,
}

/// The actor owning one credential's delivery.
pub struct ProviderActor {
    shared: Arc<Shared>,
    batches: std::collections::HashMap<u64, Batch>,
}

/// Send a rendered push to tokens of this credential.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub PushJob);

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The handle checks `queue_capacity` before sending, so the mailbox never holds more.
        ctx.set_mailbox_capacity(self.shared.settings.queue_capacity.max(1));
    }
}

impl Handler<Deliver> for ProviderActor {
    type Result = ();

    fn handle(&mut self, Deliver(job): Deliver, ctx: &mut Self::Context) {
        let max = self.shared.vendor.max_batch();
        let key = if max > 1 && job.reply.is_none() { self.shared.vendor.batch_key(&job.push) } else { None };
        let Some(key) = key else {
            self.spawn(job, 1);
            return;
        };
        let linger = self.shared.settings.batch_linger;
        let batch = self.batches.entry(key).or_insert_with(|| {
            // The first push of a batch opens the window; the rest join until it closes or fills.
            ctx.run_later(linger, move |act, _| act.flush(key));
            Batch { push: job.push.clone(), targets: Vec::new(), accepted_at: job.accepted_at, jobs: 0 }
        });
        batch.targets.extend(job.targets);
        batch.accepted_at = batch.accepted_at.min(job.accepted_at);
        batch.jobs += 1;
        if batch.targets.len() >= max {
            self.flush(key);
        }
    }
}

impl ProviderActor {
    fn spawn(&self, job: PushJob, jobs: usize) {
        let shared = self.shared.clone();
        actix::spawn(async move {
            shared.deliver(job).await;
            shared.queued.fetch_sub(jobs, Ordering::AcqRel);
        });
    }

    /// Sends what a batch holds (a timer may find it already sent: then nothing happens).
    fn flush(&mut self, key: u64) {
        if let Some(b) = self.batches.remove(&key) {
            self.spawn(PushJob { push: b.push, targets: b.targets, accepted_at: b.accepted_at, reply: None }, b.jobs);
        }
    }
}

/// A typed handle to a provider actor.
#[derive(Clone)]
pub struct ProviderHandle {
    addr: Addr<ProviderActor>,
    shared: Arc<Shared>,
}

impl ProviderHandle {
    /// Starts the provider for one credential on `arbiter`.
    pub fn start(
        arbiter: &ArbiterHandle,
        settings: ProviderSettings,
        vendor: Arc<dyn Vendor>,
        clock: SharedClock,
        sink: ReportSink,
    ) -> Result<Self, TransportError> {
        let transport = build_transport(&settings)?;
        let quota = Quota::per_second(settings.rate_per_sec).allow_burst(settings.burst);
        let needs_auth = !matches!(vendor.auth_plan(clock.now()), AuthPlan::None);
        let shared = Arc::new(Shared {
            needs_auth,
            permits: Semaphore::new(settings.max_in_flight.max(1)),
            limiter: RateLimiter::direct(quota),
            auth: AuthCache::new(),
            queued: AtomicUsize::new(0),
            parked_until: std::sync::Mutex::new(None),
            guard: std::sync::Mutex::new(Guard::default()),
            settings,
            vendor,
            transport,
            clock,
            sink,
        });
        let actor = ProviderActor { shared: shared.clone(), batches: Default::default() };
        let addr = ProviderActor::start_in_arbiter(arbiter, move |_| actor);
        Ok(Self { addr, shared })
    }

    /// The vendor this credential speaks.
    pub fn vendor(&self) -> &Arc<dyn Vendor> {
        &self.shared.vendor
    }

    /// Hands a push over; `Busy` when the credential already holds `queue_capacity` pushes.
    pub fn deliver(&self, job: PushJob) -> Result<(), Busy> {
        let cap = self.shared.settings.queue_capacity;
        if self.shared.queued.fetch_add(1, Ordering::AcqRel) >= cap {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        self.addr.try_send(Deliver(job)).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            Busy
        })
    }

    /// Pushes accepted and not yet finished.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

/// How a credential reaches its vendor.
enum Transport {
    /// reqwest's pooled client (HTTP/1.1 or HTTP/2 as the vendor answers).
    Pooled(reqwest::Client),
    /// One HTTP/2 connection, for HTTP/2-only vendors (APNs).
    Http2(H2Transport),
}

fn build_transport(s: &ProviderSettings) -> Result<Transport, TransportError> {
    let err = |what: String| TransportError { credential: s.credential.to_string(), what };
    if s.transport.http2_only {
        return H2Transport::new(&s.transport).map(Transport::Http2).map_err(err);
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // Without TCP_NODELAY a quiet HTTP/2 connection waits ~40 ms per request (Nagle +
        // delayed ACK); see docs/decisions.md.
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .http2_keep_alive_interval(Some(Duration::from_secs(60)))
        .http2_keep_alive_while_idle(true)
        .connect_timeout(Duration::from_secs(10));
    for pem in &s.transport.extra_roots_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| err(format!("extra root: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    if let Some(pem) = &s.transport.identity_pem {
        let id = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| err(format!("client certificate: {e}")))?;
        b = b.identity(id);
    }
    b.build().map(Transport::Pooled).map_err(|e| err(format!("HTTP client: {e}")))
}

/// A target still being worked on, with its attempts so far.
struct Pending {
    target: Target,
    attempts: Vec<Attempt>,
}

/// The retry reason of a batch whose prepared content the vendor forgot.
const PREPARED_EXPIRED: &str = "prepared_expired";

/// A batch's prepared content ([`Vendor::prepare`]): uploaded once, kept for its retries.
#[derive(Default)]
struct Prepared {
    /// The id the vendor answered, while it is good.
    id: Option<String>,
    /// The id the vendor said it forgot. Set at most once per batch: a second expiry is
    /// classified as the vendor says, never uploaded again (no loop on a vendor that forgets).
    expired: Option<String>,
}

impl Prepared {
    /// Forgets `id` so the next attempt uploads again; false if this batch already did.
    fn expire(&mut self) -> bool {
        if self.expired.is_some() || self.id.is_none() {
            return false;
        }
        self.expired = self.id.take();
        true
    }
}

/// What one attempt came back with.
struct Attempted {
    /// The auth token sent, to invalidate if the vendor rejected it.
    auth: Option<AuthToken>,
    /// One outcome per target, in order.
    outcomes: Vec<Outcome>,
    /// The vendor's HTTP status; `None` when nothing was answered.
    status: Option<u16>,
    /// The vendor forgot the prepared content: upload it again and resend at once.
    prepare_again: bool,
}

impl Attempted {
    /// The same outcome for all `n` targets.
    fn all(n: usize, auth: Option<AuthToken>, outcome: Outcome, status: Option<u16>) -> Self {
        Self { auth, outcomes: vec![outcome; n], status, prepare_again: false }
    }
}

impl Shared {
    async fn deliver(self: &Arc<Self>, job: PushJob) {
        let sink = job.reply.clone().unwrap_or_else(|| self.sink.clone());
        let batch = self.vendor.max_batch().max(1);
        let mut targets = job.targets.into_iter();
        loop {
            let chunk: Vec<Pending> =
                targets.by_ref().take(batch).map(|target| Pending { target, attempts: Vec::new() }).collect();
            if chunk.is_empty() {
                break;
            }
            self.deliver_chunk(&job.push, chunk, job.accepted_at, &sink).await;
        }
    }

    /// Runs attempts for one request's worth of targets until each has a final outcome.
    async fn deliver_chunk(
        &self,
        push: &VendorPush,
        mut pending: Vec<Pending>,
        accepted_at: Timestamp,
        sink: &ReportSink,
    ) {
        let mut started = tokio::time::Instant::now();
        let mut attempt_no: u32 = 0;
        let mut refreshed = false;
        let mut prepared = Prepared::default();
        // Calls get through while the quota is spent unless the vendor refused them too.
        let mut urgent = push.push_type == crate::model::PushType::Voip;
        while !pending.is_empty() {
            if !urgent && self.wait_if_parked(&pending, sink).await {
                // Parking is not the pushes' fault: attempts and deadline start over.
                started = tokio::time::Instant::now();
                attempt_no = 0;
            }
            attempt_no += 1;
            let Attempted { auth, outcomes, status, prepare_again } = self.attempt(push, &pending, &mut prepared).await;
            let at = self.clock.now();
            let mut retry_after: Option<Duration> = None;
            let mut again = Vec::new();
            let mut refresh = false;
            let mut parked = false;
            for (mut p, outcome) in pending.into_iter().zip(outcomes) {
                p.attempts.push(Attempt { at, status, outcome: outcome.class(), reason: outcome.reason() });
                match outcome {
                    Outcome::Retry { after, reason } => {
                        metrics::counter!(m::PUSH_RETRIES, "vendor" => self.vendor.kind().as_str(), "reason" => reason)
                            .increment(1);
                        retry_after = retry_after.max(after);
                        again.push((p, Outcome::Retry { after, reason }));
                    }
                    Outcome::RefreshAuth { reason } if !refreshed => {
                        refresh = true;
                        again.push((p, Outcome::Fatal { reason }));
                    }
                    Outcome::RefreshAuth { reason } => self.finish(p, Outcome::Fatal { reason }, accepted_at, sink),
                    Outcome::QuotaExhausted { until, reason } => {
                        self.park(until, at);
                        parked = true;
                        again.push((p, Outcome::QuotaExhausted { until, reason }));
                    }
                    other => self.finish(p, other, accepted_at, sink),
                }
            }
            if again.is_empty() {
                return;
            }
            pending = again.into_iter().map(|(p, _)| p).collect();
            if parked {
                urgent = false;
                continue;
            }
            if prepare_again {
                // Upload again, then resend at once: only the uploaded content was missing.
                continue;
            }
            if refresh {
                // Refresh once, then retry at once: the request was rejected for its auth only.
                refreshed = true;
                if let Some(token) = &auth {
                    self.auth.invalidate(token).await;
                }
                continue;
            }
            match self.settings.retry.next_delay(attempt_no, started.elapsed(), retry_after, rand::random()) {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    for p in pending {
                        let last = p.attempts.last().map_or("gave_up", |a| a.reason);
                        self.finish(p, Outcome::Retry { after: None, reason: last }, accepted_at, sink);
                    }
                    return;
                }
            }
        }
    }

    /// Marks the credential's quota spent until `until` (default: the vendor's next day).
    fn park(&self, until: Option<Timestamp>, now: Timestamp) {
        let until = until.unwrap_or_else(|| next_vendor_day(now));
        let mut slot = self.parked_until.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|u| u < until) {
            *slot = Some(until);
            let credential = self.settings.credential.as_str().to_owned();
            metrics::gauge!(m::CREDENTIAL_PARKED, "credential" => credential).set(1.0);
            tracing::warn!(credential = %self.settings.credential, %until, "daily quota spent: parking pushes");
        }
    }

    /// While the credential is parked, tells the sessions (trace) and waits for the vendor's day
    /// to turn, looking at the clock every `quota_recheck`. Returns whether it waited.
    async fn wait_if_parked(&self, pending: &[Pending], sink: &ReportSink) -> bool {
        let mut reported = false;
        loop {
            let now = self.clock.now();
            let until = {
                let mut slot = self.parked_until.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_some_and(|u| u <= now) {
                    *slot = None;
                    let credential = self.settings.credential.as_str().to_owned();
                    metrics::gauge!(m::CREDENTIAL_PARKED, "credential" => credential).set(0.0);
                }
                *slot
            };
            let Some(until) = until else { return reported };
            if !reported {
                reported = true;
                let credential = self.settings.credential.as_str().to_owned();
                metrics::counter!(m::QUOTA_PARKED, "credential" => credential).increment(pending.len() as u64);
                for p in pending {
                    let reason = p.attempts.last().map_or("quota_parked", |a| a.reason);
                    sink(DeliveryReport {
                        target: p.target.clone(),
                        credential: self.settings.credential.clone(),
                        vendor: self.vendor.kind(),
                        attempts: p.attempts.clone(),
                        outcome: Outcome::QuotaExhausted { until: Some(until), reason },
                        prune: true,
                    });
                }
            }
            let left = (until - now).to_std().unwrap_or_default();
            tokio::time::sleep(left.min(self.settings.quota_recheck)).await;
        }
    }

    /// One vendor request for `pending`: one outcome per target, in order.
    async fn attempt(&self, push: &VendorPush, pending: &[Pending], prepared: &mut Prepared) -> Attempted {
        let n = pending.len();
        let kind = self.vendor.kind().as_str();
        let credential = self.settings.credential.as_str().to_owned();

        let waited = tokio::time::Instant::now();
        self.limiter.until_ready().await;
        metrics::histogram!(m::RATE_LIMIT_WAIT, "credential" => credential.clone())
            .record(waited.elapsed().as_secs_f64());

        let Ok(_permit) = self.permits.acquire().await else {
            // Invariant: the semaphore is never closed.
            return Attempted::all(n, None, Outcome::Fatal { reason: "shutdown" }, None);
        };

        let auth = match self.auth_token().await {
            Ok(auth) => auth,
            Err(outcome) => return Attempted::all(n, None, outcome, None),
        };
        let tokens: Vec<Token> = pending.iter().map(|p| p.target.token.clone()).collect();
        // A vendor whose batches need their content uploaded first (vivo): once per batch, kept
        // for its retries.
        if tokens.len() > 1 && prepared.id.is_none() {
            let expired = prepared.expired.as_deref();
            if let Some(upload) = self.vendor.prepare(push, &tokens, auth.as_ref(), expired, self.clock.now()) {
                let Ok(upload) = upload else {
                    return Attempted::all(n, auth, Outcome::Fatal { reason: "build_failed" }, None);
                };
                match self.send(upload).await {
                    Ok((status, headers, body)) => match self.vendor.parse_prepare(status, &headers, &body) {
                        Ok(id) => prepared.id = Some(id),
                        Err(outcome) => return Attempted::all(n, auth, outcome, Some(status.as_u16())),
                    },
                    Err(outcome) => return Attempted::all(n, auth, outcome, None),
                }
            }
        }
        let now = self.clock.now();
        let built = match prepared.id.as_deref().filter(|_| tokens.len() > 1) {
            Some(id) => self.vendor.request_prepared(push, &tokens, auth.as_ref(), id, now),
            None => self.vendor.request(push, &tokens, auth.as_ref(), now),
        };
        let request = match built {
            Ok(r) => r,
            Err(_) => return Attempted::all(n, auth, Outcome::Fatal { reason: "build_failed" }, None),
        };
        let sent_prepared = prepared.id.is_some() && tokens.len() > 1;

        let gauge = metrics::gauge!(m::VENDOR_IN_FLIGHT, "credential" => credential);
        gauge.increment(1.0);
        let sent = tokio::time::Instant::now();
        let answer = self.send(request).await;
        gauge.decrement(1.0);
        let mut attempted = match answer {
            Ok((status, headers, body)) => {
                // The vendor forgot the uploaded content (vivo 10151): upload it again, do not fail.
                let prepare_again =
                    sent_prepared && self.vendor.prepared_expired(status, &headers, &body) && prepared.expire();
                let outcomes = if prepare_again {
                    vec![Outcome::Retry { after: None, reason: PREPARED_EXPIRED }; n]
                } else {
                    self.vendor.classify(&tokens, status, &headers, &body)
                };
                Attempted { auth, outcomes, status: Some(status.as_u16()), prepare_again }
            }
            Err(outcome) => Attempted::all(n, auth, outcome, None),
        };
        if attempted.outcomes.len() != n {
            attempted.outcomes = vec![Outcome::Fatal { reason: "classify_mismatch" }; n];
        }
        let label = attempted.outcomes.first().map_or("none", Outcome::class);
        metrics::histogram!(m::VENDOR_REQUEST_DURATION, "vendor" => kind, "outcome" => label)
            .record(sent.elapsed().as_secs_f64());
        attempted
    }

    async fn send(&self, r: VendorRequest) -> Result<Answer, Outcome> {
        let client = match &self.transport {
            Transport::Pooled(client) => client,
            Transport::Http2(h2) => return h2.send(r, self.settings.request_timeout).await,
        };
        let req =
            client.request(r.method, r.url).headers(r.headers).body(r.body).timeout(self.settings.request_timeout);
        let resp = req.send().await.map_err(transport_outcome)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport_outcome)?;
        Ok((status, headers, body))
    }

    async fn auth_token(&self) -> Result<Option<AuthToken>, Outcome> {
        if !self.needs_auth {
            return Ok(None);
        }
        let now = self.clock.now();
        let credential = self.settings.credential.as_str().to_owned();
        let token = self
            .auth
            .get(now, || async {
                let result = match self.vendor.auth_plan(now) {
                    AuthPlan::None => Err(Outcome::Fatal { reason: "auth_not_supported" }),
                    AuthPlan::Local(signed) => signed.map_err(|_| Outcome::Fatal { reason: "auth_signing_failed" }),
                    AuthPlan::Remote(Err(_)) => Err(Outcome::Fatal { reason: "auth_signing_failed" }),
                    AuthPlan::Remote(Ok(request)) => match self.send(request).await {
                        Ok((status, _, body)) => self.vendor.parse_auth(status, &body, self.clock.now()),
                        Err(outcome) => Err(outcome),
                    },
                };
                let label = if result.is_ok() { "ok" } else { "failed" };
                metrics::counter!(m::AUTH_REFRESHES, "credential" => credential.clone(), "outcome" => label)
                    .increment(1);
                result
            })
            .await?;
        Ok(Some(token))
    }

    fn finish(&self, p: Pending, outcome: Outcome, accepted_at: Timestamp, sink: &ReportSink) {
        let kind = self.vendor.kind();
        let credential = self.settings.credential.as_str().to_owned();
        metrics::counter!(m::PUSHES, "vendor" => kind.as_str(), "credential" => credential, "outcome" => outcome.class())
            .increment(1);
        let latency = (self.clock.now() - accepted_at).to_std().unwrap_or_default();
        metrics::histogram!(m::DELIVERY_LATENCY, "vendor" => kind.as_str()).record(latency.as_secs_f64());
        let prune = match &outcome {
            Outcome::Delivered | Outcome::InvalidToken { .. } => {
                let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
                let was_paused = guard.paused;
                let allowed = guard.record(matches!(outcome, Outcome::InvalidToken { .. }), &self.settings.guard);
                if guard.paused != was_paused {
                    let credential = self.settings.credential.as_str().to_owned();
                    metrics::gauge!(m::PRUNING_PAUSED, "credential" => credential)
                        .set(f64::from(u8::from(guard.paused)));
                    if guard.paused {
                        tracing::error!(credential = %self.settings.credential, "most tokens turned invalid at once: \
                            token pruning paused (wrong app id or environment?)");
                    } else {
                        tracing::info!(credential = %self.settings.credential, "token pruning resumed");
                    }
                }
                allowed
            }
            _ => true,
        };
        sink(DeliveryReport {
            target: p.target,
            credential: self.settings.credential.clone(),
            vendor: kind,
            attempts: p.attempts,
            outcome,
            prune,
        });
    }
}

/// The start of the next vendor day: the Chinese vendors reset daily quotas at 00:00 China
/// Standard Time (UTC+8, no daylight saving).
pub fn next_vendor_day(now: Timestamp) -> Timestamp {
    use chrono::TimeZone;
    let tz = chrono_tz::Asia::Shanghai;
    let tomorrow = now.with_timezone(&tz).date_naive() + chrono::Days::new(1);
    let midnight = tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight)
        .single()
        .map_or(now + chrono::Duration::days(1), |t| t.with_timezone(&chrono::Utc))
}

fn transport_outcome(e: reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Outcome::Retry { after: None, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_day_turns_at_midnight_china_time() {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        // 15:59 UTC is 23:59 in Beijing: the day turns a minute later.
        assert_eq!(next_vendor_day(t("2026-11-24T15:59:00Z")), t("2026-11-24T16:00:00Z"));
        // 16:00 UTC is already the next day in Beijing.
        assert_eq!(next_vendor_day(t("2026-11-24T16:00:00Z")), t("2026-11-25T16:00:00Z"));
    }

    #[test]
    fn the_guard_pauses_pruning_when_most_answers_are_invalid_and_resumes_below_half() {
        let s = GuardSettings { window: 10, min_samples: 4, ratio: 0.5 };
        let mut g = Guard::default();
        assert!(g.record(true, &s), "too few samples to judge");
        assert!(g.record(true, &s));
        assert!(g.record(false, &s));
        assert!(!g.record(true, &s), "3 of 4 invalid");
        for _ in 0..6 {
            g.record(false, &s);
        }
        assert!(g.paused, "3 of 10 is not below half the ratio yet");
        g.record(false, &s);
        g.record(false, &s);
        assert!(!g.paused, "1 of 10 is");
    }
}
