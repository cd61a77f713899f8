//! Backoff math for vendor retries, pure: the jitter is an argument so tests need no sleep
//! and no randomness. The shared provider layer asks [`RetryPolicy::next_delay`] after each
//! failed attempt and stops when it answers `None`.

use std::time::Duration;

/// Limits for retrying one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// Backoff before the second attempt (doubles each time).
    pub base: Duration,
    /// Backoff ceiling (a vendor's Retry-After may exceed it).
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            deadline: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempts_made + 1`, or `None` to give up.
    ///
    /// `elapsed` is the time since the first attempt started; `jitter` in `[0, 1)` scales the
    /// exponential backoff ("full jitter" over the upper half, so waits never collapse to 0).
    /// The vendor's `retry_after` is a floor: pushd never comes back earlier than asked.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let exp = attempts_made.saturating_sub(1).min(20);
        let backoff = self.base.saturating_mul(1u32 << exp).min(self.max_backoff);
        let jitter = jitter.clamp(0.0, 1.0);
        let jittered = backoff.mul_f64(0.5 + 0.5 * jitter);
        let wait = match retry_after {
            Some(after) => after.max(jittered),
            None => jittered,
        };
        if elapsed.saturating_add(wait) > self.deadline {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_within_the_jitter_band() {
        let p = policy();
        assert_eq!(p.next_delay(1, Duration::ZERO, None, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.next_delay(2, Duration::ZERO, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.next_delay(3, Duration::ZERO, None, 0.0), Some(Duration::from_millis(200)));
    }

    #[test]
    fn retry_after_is_a_floor_never_shortened() {
        let p = policy();
        let d = p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(3)), 1.0);
        assert_eq!(d, Some(Duration::from_secs(3)));
    }

    #[test]
    fn gives_up_at_max_attempts() {
        assert_eq!(policy().next_delay(4, Duration::ZERO, None, 0.5), None);
    }

    #[test]
    fn gives_up_when_the_next_attempt_would_pass_the_deadline() {
        let p = policy();
        assert_eq!(p.next_delay(1, Duration::from_millis(9_990), None, 1.0), None);
        assert_eq!(p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(11)), 0.0), None);
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy { max_attempts: 30, ..policy() };
        assert_eq!(p.next_delay(25, Duration::ZERO, None, 1.0), Some(Duration::from_secs(1)));
    }
}
