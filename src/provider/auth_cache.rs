//! One cached vendor auth token per credential, shared by every request of that credential.
//!
//! Refreshes are single-flight: callers that find the token stale queue on one async mutex and
//! the first one refreshes; the others then see the fresh token. An auth-failure answer
//! invalidates only the token it was sent with, so a burst of rejected requests causes one
//! refresh, not one per request (the "refresh once" rule of style.md §3).

use std::future::Future;

use tokio::sync::Mutex;

use super::{AuthToken, Outcome};
use crate::model::Timestamp;

/// The cached token of one credential.
#[derive(Debug, Default)]
pub struct AuthCache {
    current: Mutex<Option<AuthToken>>,
}

impl AuthCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token if still fresh at `now`, else the result of `refresh` (cached on
    /// success). `refresh` runs at most once at a time per credential.
    pub async fn get<F, Fut>(&self, now: Timestamp, refresh: F) -> Result<AuthToken, Outcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AuthToken, Outcome>>,
    {
        let mut slot = self.current.lock().await;
        if let Some(token) = slot.as_ref() {
            if now < token.refresh_at {
                return Ok(token.clone());
            }
        }
        let token = refresh().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Drops `rejected` if it is still the cached token (a newer one is kept).
    pub async fn invalidate(&self, rejected: &AuthToken) {
        let mut slot = self.current.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == rejected.value) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn token(v: &str, refresh_at: Timestamp) -> AuthToken {
        AuthToken { value: v.into(), refresh_at }
    }

    #[tokio::test]
    async fn a_fresh_token_is_reused_and_a_stale_one_refreshed() {
        let cache = AuthCache::new();
        let t0 = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let calls = AtomicU32::new(0);
        let fetch = |v: &'static str| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(token(v, t0 + chrono::Duration::minutes(50))) }
        };
        assert_eq!(cache.get(t0, || fetch("a")).await.unwrap().value, "a");
        assert_eq!(cache.get(t0, || fetch("b")).await.unwrap().value, "a");
        let later = t0 + chrono::Duration::minutes(51);
        assert_eq!(cache.get(later, || fetch("c")).await.unwrap().value, "c");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidating_an_old_token_keeps_the_newer_one() {
        let cache = AuthCache::new();
        let t0 = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let far = t0 + chrono::Duration::hours(1);
        let a = cache.get(t0, || async { Ok(token("a", far)) }).await.unwrap();
        cache.invalidate(&a).await;
        let b = cache.get(t0, || async { Ok(token("b", far)) }).await.unwrap();
        cache.invalidate(&a).await;
        assert_eq!(cache.get(t0, || async { Ok(token("c", far)) }).await.unwrap(), b);
    }
}
