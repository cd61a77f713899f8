//! Group commit: one thread makes the embedded store durable for many callers at once.
//!
//! Callers write to the store directly (fjall's memtable and journal buffer: no disk flush on
//! the caller's thread, never on an arbiter). A caller that must not answer before its writes
//! are durable — the 202 of `POST /v1/messages`, the answers of device and settings calls —
//! sends a waiter over a bounded crossbeam channel; the thread takes every waiter queued,
//! flushes once, and wakes them all. So a thousand concurrent requests cost one flush.
//!
//! ```text
//! API ─┬─ waiter ─▶ [bounded channel] ─▶ sync thread: drain → persist(mode) → wake all
//! API ─┘                                     └─ every interval: persist(SyncAll) (background writes)
//! ```
//!
//! The knob (`store.sync`): `commit` (default) flushes to disk (fsync) before acknowledging:
//! nothing acknowledged is lost even on power loss. `interval` acknowledges once the writes
//! reached the OS (safe against a process crash such as kill -9) and fsyncs every
//! `store.sync_interval_ms`, so a power loss can take the last interval's acknowledged writes.
//! In both modes background writes (dedup records, badges, traces) are fsynced every interval.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use fjall::{Database, PersistMode};
use tokio::sync::oneshot;

use super::{Durable, StoreError};

/// When an acknowledged write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync before acknowledging.
    Commit,
    /// Flush to the OS before acknowledging; fsync every interval.
    Interval,
}

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// Waiters a sync thread holds at most; beyond it callers get "unavailable" (503).
const MAX_WAITERS: usize = 65_536;

/// The handle to the sync thread.
pub struct Syncer {
    tx: Option<Sender<Waiter>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the sync thread for `db`.
    pub fn start(db: Database, mode: SyncMode, interval: Duration) -> Self {
        let (tx, rx) = bounded::<Waiter>(MAX_WAITERS);
        let thread = std::thread::Builder::new()
            .name("pushd-sync".into())
            .spawn(move || run(db, rx, mode, interval.max(Duration::from_millis(1))))
            // Invariant-ish: spawning a thread fails only when the OS is out of resources at
            // start, where failing loudly is right.
            .expect("spawn the store sync thread");
        Self { tx: Some(tx), thread: Some(thread) }
    }

    /// A future that resolves when everything written before this call is durable.
    pub fn sync(&self) -> Durable {
        let (waiter, done) = oneshot::channel();
        let sent = match &self.tx {
            Some(tx) => tx.try_send(waiter),
            None => return Box::pin(std::future::ready(Err(StoreError::Unavailable("store closed".into())))),
        };
        match sent {
            Ok(()) => Box::pin(async move {
                done.await.unwrap_or_else(|_| Err(StoreError::Unavailable("sync thread stopped".into())))
            }),
            Err(TrySendError::Full(_)) => {
                Box::pin(std::future::ready(Err(StoreError::Unavailable("too many writes waiting".into()))))
            }
            Err(TrySendError::Disconnected(_)) => {
                Box::pin(std::future::ready(Err(StoreError::Unavailable("sync thread stopped".into()))))
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel makes the thread flush one last time and exit.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: Database, rx: Receiver<Waiter>, mode: SyncMode, interval: Duration) {
    let ack_mode = match mode {
        SyncMode::Commit => PersistMode::SyncAll,
        SyncMode::Interval => PersistMode::Buffer,
    };
    let mut last_fsync = std::time::Instant::now();
    loop {
        let first = match rx.recv_timeout(interval.saturating_sub(last_fsync.elapsed())) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let _ = db.persist(PersistMode::SyncAll);
                return;
            }
        };
        if let Some(first) = first {
            let mut waiters = vec![first];
            while let Ok(w) = rx.try_recv() {
                waiters.push(w);
            }
            let result = db.persist(ack_mode).map_err(|e| StoreError::Unavailable(format!("flush: {e}")));
            if ack_mode == PersistMode::SyncAll {
                last_fsync = std::time::Instant::now();
            }
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
        if last_fsync.elapsed() >= interval {
            if let Err(e) = db.persist(PersistMode::SyncAll) {
                tracing::error!(error = %e, "background fsync failed");
            }
            last_fsync = std::time::Instant::now();
        }
    }
}
