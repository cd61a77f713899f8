//! Every metric pushd exports: names, label keys, bucket sets and help texts, in one place.
//! Labels are bounded: enums, `&'static str` reasons and operator-configured credential names;
//! never user ids, device ids, tokens, message ids, URLs or raw error text.
//!
//! The recorder is process-global. [`install`] sets it up once and hands out the handle that
//! the operator listener renders on `/metrics`; later calls return the same handle, so several
//! daemons in one test process share it (tests assert on deltas or on labels unique to them).
//!
//! The exception to the `pushd_` prefix: the standard process metrics every Prometheus client
//! library exports (`process_cpu_seconds_total`, …), under their standard names so that the
//! usual dashboards and the load harness read them unchanged. They are rendered from
//! [`Usage`] at each scrape ([`render_process`]), not recorded.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::process::Usage;

/// Messages accepted by `POST /v1/messages` (a retried id is not counted again).
pub const MESSAGES_ACCEPTED: &str = "pushd_messages_accepted_total";
/// Push decisions per device, by the rule that stopped it or `push`/`wait`.
pub const DECISIONS: &str = "pushd_decisions_total";
/// Final push outcomes, labels `vendor`, `credential`, `outcome`.
pub const PUSHES: &str = "pushd_pushes_total";
/// Tokens removed after an invalid-token answer, label `vendor`.
pub const INVALID_TOKENS_REMOVED: &str = "pushd_invalid_tokens_removed_total";
/// Retries scheduled, labels `vendor`, `reason`.
pub const PUSH_RETRIES: &str = "pushd_push_retries_total";
/// Auth tokens fetched or signed, labels `credential`, `outcome`.
pub const AUTH_REFRESHES: &str = "pushd_auth_refreshes_total";
/// Time spent waiting for the credential's rate limiter, label `credential`.
pub const RATE_LIMIT_WAIT: &str = "pushd_rate_limit_wait_seconds";
/// One vendor HTTP request, labels `vendor`, `outcome`.
pub const VENDOR_REQUEST_DURATION: &str = "pushd_vendor_request_duration_seconds";
/// Message accepted → final vendor answer, label `vendor`.
pub const DELIVERY_LATENCY: &str = "pushd_delivery_latency_seconds";
/// Session actors alive.
pub const SESSIONS_ACTIVE: &str = "pushd_sessions_active";
/// Messages that fell back from in-flight to offline handling, label `cause` (`offline`, `ack_timeout`).
pub const INFLIGHT_FALLBACKS: &str = "pushd_inflight_fallbacks_total";
/// Vendor requests in flight, label `credential`.
pub const VENDOR_IN_FLIGHT: &str = "pushd_vendor_requests_in_flight";
/// Presence events, label `outcome` (`applied`, `stale`).
pub const PRESENCE_EVENTS: &str = "pushd_presence_events_total";
/// Pushes parked because a credential's daily quota was spent, label `credential`.
pub const QUOTA_PARKED: &str = "pushd_quota_parked_total";
/// 1 while a credential's daily quota is spent, label `credential`.
pub const CREDENTIAL_PARKED: &str = "pushd_credential_parked";
/// 1 while the mass-invalidation guard holds token pruning for a credential, label `credential`.
pub const PRUNING_PAUSED: &str = "pushd_pruning_paused";
/// Accepted (message, recipient) pairs not done yet (bounded by `api.max_pending`).
pub const PENDING: &str = "pushd_pending_messages";
/// Journal entries replayed at start.
pub const RECOVERED: &str = "pushd_recovered_messages_total";
/// API requests rejected, label `code` (the stable error code).
pub const API_ERRORS: &str = "pushd_api_errors_total";
/// Matrix notify requests: one per device by `outcome` (`delivered`, `duplicate`,
/// `invalid_token`, `unknown_app`, `failed`, …), or one per refused request (`forbidden`,
/// `bad_request`).
pub const MATRIX_NOTIFICATIONS: &str = "pushd_matrix_notifications_total";
/// CPU time (user + system) the process used since it started, seconds (standard name).
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
/// Resident memory of the process, bytes (standard name).
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// When the process started, seconds since the Unix epoch (standard name).
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// Vendor round trips on loopback take ~0.1 ms and real vendors 20–500 ms; slow answers and
/// timeouts reach seconds. Buckets span 0.5 ms to 30 s so both the mock and production land
/// in the middle of the range.
const REQUEST_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// End-to-end latency includes rate-limit waits and retries with backoff (seconds to minutes),
/// so the top buckets reach 10 minutes.
const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];
/// Rate-limit waits are zero when under the limit and up to a few seconds when saturated.
const WAIT_BUCKETS: &[f64] = &[0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (once per process) and returns the render handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(VENDOR_REQUEST_DURATION.into()), REQUEST_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), LATENCY_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RATE_LIMIT_WAIT.into()), WAIT_BUCKETS))
                // Invariant: bucket lists above are non-empty constants, the only error case.
                .expect("bucket sets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours
            // still renders what it sees through the handle, and that is fine for tests.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            start_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The name of the thread that does it.
pub const UPKEEP_THREAD: &str = "pushd-metrics";

/// Folds recorded histogram samples into their buckets every [`UPKEEP_INTERVAL`], for the life
/// of the process. The exporter keeps every sample until then (three per push); without this
/// only a scrape of `/metrics` did it. Measured (load harness, issue 6): with nobody scraping,
/// the samples of every push since the start stayed in memory, about 24 MB per million pushes.
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name(UPKEEP_THREAD.into()).spawn(move || loop {
        std::thread::sleep(UPKEEP_INTERVAL);
        handle.run_upkeep();
    });
    if let Err(e) = spawned {
        // Scrapes still fold the samples; only the memory between scrapes is at stake.
        tracing::error!(error = %e, "metrics upkeep thread not started");
    }
}

fn describe() {
    describe_counter!(MESSAGES_ACCEPTED, "Messages accepted from the gateway.");
    describe_counter!(DECISIONS, "Push decisions per device, by verdict or stopping rule.");
    describe_counter!(PUSHES, "Final push outcomes per vendor and credential.");
    describe_counter!(INVALID_TOKENS_REMOVED, "Device tokens removed after an invalid-token answer.");
    describe_counter!(PUSH_RETRIES, "Vendor request retries scheduled.");
    describe_counter!(AUTH_REFRESHES, "Vendor auth tokens signed or fetched.");
    describe_histogram!(RATE_LIMIT_WAIT, Unit::Seconds, "Time waiting for a credential's rate limiter.");
    describe_histogram!(VENDOR_REQUEST_DURATION, Unit::Seconds, "Duration of one vendor HTTP request.");
    describe_histogram!(DELIVERY_LATENCY, Unit::Seconds, "Message accepted to final vendor answer.");
    describe_gauge!(SESSIONS_ACTIVE, "Session actors alive.");
    describe_counter!(INFLIGHT_FALLBACKS, "In-flight messages that fell back to offline handling.");
    describe_gauge!(VENDOR_IN_FLIGHT, "Vendor requests in flight per credential.");
    describe_counter!(PRESENCE_EVENTS, "Presence events by outcome.");
    describe_counter!(API_ERRORS, "API requests rejected, by error code.");
    describe_gauge!(PENDING, "Accepted (message, recipient) pairs not done yet.");
    describe_counter!(RECOVERED, "(message, recipient) pairs replayed from the journal at start.");
    describe_counter!(QUOTA_PARKED, "Pushes parked because a credential's daily quota was spent.");
    describe_gauge!(CREDENTIAL_PARKED, "1 while a credential's daily quota is spent.");
    describe_gauge!(PRUNING_PAUSED, "1 while the mass-invalidation guard holds token pruning.");
    describe_counter!(MATRIX_NOTIFICATIONS, "Matrix notify devices (or refused requests) by outcome.");
}

/// The standard process metrics for `usage` in Prometheus text format, to append to the
/// recorder's output. Written here instead of recorded through the `metrics` crate: its
/// counters hold whole numbers, `process_cpu_seconds_total` is a counter of fractional seconds,
/// and as a gauge its `_total` suffix fails `promtool check metrics`.
pub fn render_process(usage: &Usage) -> String {
    let Usage { cpu_seconds, rss_bytes, start_time_seconds, .. } = *usage;
    format!(
        "# HELP {PROCESS_CPU} Total user and system CPU time spent in seconds.\n\
         # TYPE {PROCESS_CPU} counter\n\
         {PROCESS_CPU} {cpu_seconds}\n\
         # HELP {PROCESS_RESIDENT_MEMORY} Resident memory size in bytes.\n\
         # TYPE {PROCESS_RESIDENT_MEMORY} gauge\n\
         {PROCESS_RESIDENT_MEMORY} {rss_bytes}\n\
         # HELP {PROCESS_START_TIME} Start time of the process since unix epoch in seconds.\n\
         # TYPE {PROCESS_START_TIME} gauge\n\
         {PROCESS_START_TIME} {start_time_seconds}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::{install, UPKEEP_THREAD};

    fn threads_named(name: &str) -> usize {
        crate::process::threads().iter().filter(|t| t.name == name).count()
    }

    #[test]
    fn installing_the_recorder_starts_one_upkeep_thread_however_often_it_is_called() {
        install();
        install();
        // A new thread names itself once it runs: wait (bounded) until the kernel shows it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while threads_named(UPKEEP_THREAD) == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(threads_named(UPKEEP_THREAD), 1);
    }
}
