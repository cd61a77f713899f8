//! What the current process costs: CPU time, resident memory, start time, read from Linux's
//! `/proc`. Served as the standard Prometheus `process_*` metrics on pushd's `/metrics` and as
//! `GET /mock/process` on the mock control server, so the load harness can measure a pushd and
//! mocks that run in other processes. [`threads`] reads the same per thread (the harness splits
//! CPU by thread name; tests look for a thread). Not here: other processes, and any platform
//! without `/proc` (there [`Usage::read`] answers `None` and [`threads`] nothing).

use std::path::Path;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`). The kernel exposes
/// 100 on every architecture Linux supports, whatever its internal `HZ`; reading it through
/// `sysconf(_SC_CLK_TCK)` would need libc for a constant.
const USER_HZ: f64 = 100.0;

/// CPU, memory and start time of one process, as `/proc` reported them at one read.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usage {
    /// The process id.
    pub pid: u32,
    /// User plus system CPU time since the process started, seconds (10 ms resolution).
    pub cpu_seconds: f64,
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// When the process started, seconds since the Unix epoch (10 ms resolution). With `pid`
    /// it names a process: two answers with equal `pid` and start time come from one process.
    pub start_time_seconds: f64,
}

impl Usage {
    /// The current process's usage; `None` when `/proc` is unavailable or unreadable
    /// (non-Linux systems, a sandbox without `/proc`).
    pub fn read() -> Option<Usage> {
        let stat = read(Path::new("/proc/self/stat"))?;
        let status = read(Path::new("/proc/self/status"))?;
        let system = read(Path::new("/proc/stat"))?;
        parse(&stat, &status, &system)
    }
}

/// One thread of the current process, as `/proc/self/task/<tid>/stat` reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadUsage {
    /// The thread's name (`comm`: at most 15 bytes).
    pub name: String,
    /// User plus system CPU time of this thread, seconds (10 ms resolution).
    pub cpu_seconds: f64,
    /// Its nice level (-20 to 19).
    pub nice: i64,
}

/// Every thread of the current process that could be read; empty without `/proc`.
pub fn threads() -> Vec<ThreadUsage> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks.flatten().filter_map(|task| parse_thread(&read(&task.path().join("stat"))?)).collect()
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `pid (comm) state ppid …`: comm may hold spaces and parentheses, so the fields after it start
/// after the *last* ')'. Returns the text before that ')' and the fields after it.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let (head, tail) = stat.rsplit_once(')')?;
    Some((head, tail.split_whitespace().collect()))
}

/// Field `n` of a stat line as proc(5) numbers them, from 1 (state, the first after the name,
/// is 3), parsed.
fn field<T: std::str::FromStr>(fields: &[&str], n: usize) -> Option<T> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

/// Builds a [`ThreadUsage`] from the text of `/proc/self/task/<tid>/stat`: utime is field 14,
/// stime 15, nice 19.
fn parse_thread(stat: &str) -> Option<ThreadUsage> {
    let (head, fields) = stat_fields(stat)?;
    let (utime, stime): (u64, u64) = (field(&fields, 14)?, field(&fields, 15)?);
    Some(ThreadUsage {
        name: head.split_once(" (")?.1.to_owned(),
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        nice: field(&fields, 19)?,
    })
}

/// Builds a [`Usage`] from the texts of `/proc/self/stat`, `/proc/self/status` and `/proc/stat`.
fn parse(stat: &str, status: &str, system: &str) -> Option<Usage> {
    // utime is field 14, stime 15, starttime 22.
    let (head, fields) = stat_fields(stat)?;
    let pid: u32 = head.split_once(" (")?.0.trim().parse().ok()?;
    let (utime, stime, starttime): (u64, u64, u64) = (field(&fields, 14)?, field(&fields, 15)?, field(&fields, 22)?);

    let rss_kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim().parse().ok()?;
    let boot_time: u64 = system.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;

    Some(Usage {
        pid,
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        rss_bytes: rss_kib * 1024,
        start_time_seconds: boot_time as f64 + starttime as f64 / USER_HZ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    #[test]
    fn the_current_process_reads_with_plausible_values() {
        let before = Usage::read().expect("/proc is readable on Linux");
        let now = SystemClock.now().timestamp_micros() as f64 / 1e6;

        // Burn CPU until the tick counter moves (10 ms), bounded to a few seconds of work.
        let mut after = before;
        let mut x = 0u64;
        for round in 0..2_000u64 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i ^ round));
            }
            after = Usage::read().expect("/proc is readable on Linux");
            if after.cpu_seconds > before.cpu_seconds {
                break;
            }
        }

        assert_eq!(before.pid, std::process::id());
        assert!(before.rss_bytes > 1024 * 1024, "RSS of a test process is above 1 MiB: {before:?}");
        assert!(before.start_time_seconds <= now + 1.0, "started in the future: {before:?}, now {now}");
        assert!(before.start_time_seconds > now - 3600.0, "started more than an hour ago: {before:?}, now {now}");
        assert!(after.cpu_seconds > before.cpu_seconds, "CPU did not grow: {before:?} → {after:?} ({x})");
        assert_eq!(after.start_time_seconds, before.start_time_seconds, "same process, same start");
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_parses() {
        let stat = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 123456 1000 10";
        let status = "Name:\ta b) (c\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";

        let usage = parse(stat, status, system).expect("parses");

        assert_eq!((usage.pid, usage.rss_bytes), (4242, 2048 * 1024));
        assert!((usage.cpu_seconds - 3.25).abs() < 1e-9, "{usage:?}");
        assert!((usage.start_time_seconds - 1_700_001_234.56).abs() < 1e-6, "{usage:?}");
    }

    #[test]
    fn a_thread_reads_with_its_name_cpu_and_nice_level() {
        let stat = "4243 (pushd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 30 10 3 0 123456";

        let thread = parse_thread(stat).expect("parses");

        assert_eq!((thread.name.as_str(), thread.nice), ("pushd (x) y", 10));
        assert!((thread.cpu_seconds - 3.25).abs() < 1e-9, "{thread:?}");
        assert_eq!(parse_thread("4243 (x) S 1"), None);
    }

    #[test]
    fn this_process_threads_are_listed() {
        let threads = threads();
        assert!(!threads.is_empty(), "a running process has a thread");
        assert!(threads.iter().all(|t| (-20..=19).contains(&t.nice)), "{threads:?}");
    }

    #[test]
    fn a_text_without_the_fields_reads_as_none() {
        assert_eq!(parse("4242 (x) S 1", "VmRSS: 1 kB", "btime 1"), None);
        assert_eq!(parse("", "", ""), None);
    }
}
