//! Frees fjall's flushed memtables on a thread of pushd's own, where no store lock is held.
//!
//! A memtable is a skiplist of every write since the last flush (up to
//! `MESSAGE_MEMTABLE_BYTES`, 32 MiB: a few hundred thousand nodes). Once flushed, fjall drops
//! it wherever its last reference goes, and that is the version-history maintenance run at the
//! next memtable rotation: under that keyspace's version lock, which every writer of the
//! keyspace takes while it holds fjall's journal lock. Freeing the nodes one by one took
//! 30–70 ms of CPU on the project's VM, and every store write of the HTTP workers and the
//! session arbiters waited behind it: the embedded store's latency stalls (load harness, issue
//! 6, `load-tests/README.md` item 27: `perf` showed fjall's worker in
//! `SuperVersions::maintenance` → `Node::finalize` → `mi_free` for the whole stall, and the
//! stalls stayed with the store on tmpfs, so they are not the disk).
//!
//! So this thread holds a reference to each keyspace's active memtable (taken every
//! [`POLL`]); when the memtable has been replaced and the thread holds the last reference,
//! it drops it here, at a lower priority. The free costs the same CPU, but no writer waits for
//! it. A memtable that
//! lives less than one poll (32 MiB written in 50 ms) is freed by fjall as before; nothing
//! depends on the thread but the latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
// fjall re-exports lsm-tree's tree trait (hidden from its docs) and a keyspace's tree is a
// public field: `active_memtable` is the call fjall itself uses. Pinned by Cargo.lock; the unit
// test below fails if a fjall upgrade stops leaving the last reference to the reaper.
use fjall::{AbstractTree, Keyspace};

/// How often the thread looks for a new active memtable.
const POLL: Duration = Duration::from_millis(50);

/// The handle to the reaper thread; dropping it stops the thread.
pub(crate) struct Reaper {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the unit test"))]
    freed: Arc<AtomicU64>,
}

impl Reaper {
    pub(crate) fn start(keyspaces: Vec<Keyspace>) -> Self {
        Self::every(keyspaces, POLL)
    }

    fn every(keyspaces: Vec<Keyspace>, poll: Duration) -> Self {
        let (stop, stopped) = bounded::<()>(0);
        let freed = Arc::new(AtomicU64::new(0));
        let count = freed.clone();
        let thread = std::thread::Builder::new()
            .name("pushd-memtables".into())
            .spawn(move || {
                lower_priority();
                run(&keyspaces, |k| k.tree.active_memtable(), |m| m.size(), poll, &stopped, &count);
            })
            // Spawning fails only when the OS is out of resources at start: fail loudly.
            .expect("spawn the memtable reaper thread");
        Self { stop: Some(stop), thread: Some(thread), freed }
    }

    /// Memtables this thread has freed (tests).
    #[cfg(test)]
    fn freed(&self) -> u64 {
        self.freed.load(Ordering::Relaxed)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Nice 10 for this thread: a free yields the cores to the HTTP workers and arbiters, and runs
/// in the time they leave (measured, same hour, two runs each: half-rate p99 7.9–15.5 ms
/// (`commit`) and 5.6–6.9 ms (`interval`) against 14.7–17.0 and 8.8–14.0 ms at normal priority,
/// same throughput and memory). It still gets its share on saturated cores: at the fan-out's
/// maximum rate a free took 120–160 ms of wall time (46–98 ms at half rate, `RUST_LOG` debug
/// lines below), for one memtable every 2–3 s. A thread may always lower its own priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: two system calls about the calling thread; no memory is shared with them.
        let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) } != 0;
        if failed {
            tracing::debug!(error = %std::io::Error::last_os_error(), "memtable thread keeps its priority");
        }
    }
}

/// Generic over the memtable type so that pushd need not depend on lsm-tree to name it.
fn run<T>(
    keyspaces: &[Keyspace],
    active: impl Fn(&Keyspace) -> Arc<T>,
    size: impl Fn(&T) -> u64,
    poll: Duration,
    stopped: &Receiver<()>,
    freed: &AtomicU64,
) {
    let mut current: Vec<Arc<T>> = keyspaces.iter().map(&active).collect();
    let mut replaced: Vec<Arc<T>> = Vec::new();
    loop {
        match stopped.recv_timeout(poll) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped: what is still held goes back to fjall's own bookkeeping.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        for (keyspace, held) in keyspaces.iter().zip(current.iter_mut()) {
            let now = active(keyspace);
            if !Arc::ptr_eq(&now, held) {
                replaced.push(std::mem::replace(held, now));
            }
        }
        // The last holder frees: no one else can reach a memtable no version refers to.
        let mut i = 0;
        while i < replaced.len() {
            if Arc::strong_count(&replaced[i]) > 1 {
                i += 1;
                continue;
            }
            let memtable = replaced.swap_remove(i);
            let bytes = size(&memtable);
            let started = Instant::now();
            drop(memtable);
            freed.fetch_add(1, Ordering::Relaxed);
            let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            tracing::debug!(bytes, took_us, "freed a flushed memtable off the store's locks");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use fjall::{Database, KeyspaceCreateOptions};

    use super::Reaper;

    #[test]
    fn a_flushed_memtable_is_freed_by_the_reaper_not_by_fjall() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path()).open().expect("open");
        let ks = db.keyspace("k", KeyspaceCreateOptions::default).expect("keyspace");
        let reaper = Reaper::every(vec![ks.clone()], Duration::from_millis(1));

        // Each round writes to the active memtable (the reaper, polling every millisecond,
        // takes hold of it), then seals and flushes it; fjall's version maintenance at a later
        // rotation lets go of the flushed one, and the reaper is left holding it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut round = 0;
        while reaper.freed() == 0 {
            assert!(Instant::now() < deadline, "the reaper never became a flushed memtable's last holder");
            for i in 0..100 {
                ks.insert(format!("r{round}-{i}"), b"value").expect("insert");
            }
            ks.rotate_memtable_and_wait().expect("flush");
            round += 1;
        }
        assert_eq!(ks.get("r0-7").expect("get").as_deref(), Some(&b"value"[..]), "flushed data stays readable");
        #[cfg(target_os = "linux")]
        assert!(reaper_nice_levels().contains(&10), "the reaper runs at nice 10: {:?}", reaper_nice_levels());
    }

    /// The nice level of every thread of this process named like the reaper.
    #[cfg(target_os = "linux")]
    fn reaper_nice_levels() -> Vec<i64> {
        crate::process::threads().into_iter().filter(|t| t.name == "pushd-memtables").map(|t| t.nice).collect()
    }
}
