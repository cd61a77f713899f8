//! The OAuth 2.0 access-token answer (RFC 6749 §5.1) that FCM and the Huawei lineage (Huawei,
//! Honor) share: `200 {"access_token": …, "expires_in": seconds}`, and how pushd schedules the
//! refresh from it.

use http::StatusCode;
use serde::Deserialize;

use super::{AuthToken, Outcome};
use crate::model::Timestamp;

/// Refresh the access token this long before it expires (fcm.md §2, huawei.md §2).
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Never schedule a refresh sooner than this, however short-lived the token: a token endpoint
/// answering `expires_in: 0` must not turn the cache into a loop (Huawei allows 1000 token calls
/// per app per 5 minutes).
pub const MIN_REFRESH_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// Longest access-token life pushd believes, in seconds (Google and Huawei issue one hour): an
/// absurd `expires_in` can neither overflow the clock arithmetic nor keep a token for days.
pub const MAX_TOKEN_LIFE_SECS: i64 = 86_400;

/// The success answer (extra fields, e.g. Keycloak's `refresh_expires_in`, ignored).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<i64>,
}

/// The access token of a token endpoint's answer, refreshed [`REFRESH_MARGIN`] before it
/// expires (never sooner than [`MIN_REFRESH_AFTER`]). An answer without `expires_in` is
/// refreshed after `without_expiry`, or is unreadable when that is `None`. A refused client
/// (4xx: wrong secret, disabled account) is Fatal for the credential; 5xx, 429 and an
/// unreadable 200 are transient.
pub fn access_token(
    status: StatusCode,
    body: &[u8],
    now: Timestamp,
    without_expiry: Option<chrono::Duration>,
) -> Result<AuthToken, Outcome> {
    if status.is_success() {
        let bad = Outcome::Retry { after: None, reason: "auth_bad_answer" };
        let answer = serde_json::from_slice::<TokenAnswer>(body)
            .ok()
            .filter(|a| !a.access_token.is_empty())
            .ok_or(bad.clone())?;
        let refresh_after = match answer.expires_in {
            Some(secs) => chrono::Duration::seconds(secs.clamp(0, MAX_TOKEN_LIFE_SECS)) - REFRESH_MARGIN,
            None => without_expiry.ok_or(bad)?,
        };
        return Ok(AuthToken { value: answer.access_token, refresh_at: now + refresh_after.max(MIN_REFRESH_AFTER) });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(Outcome::Retry { after: None, reason: "auth_unavailable" })
    } else {
        Err(Outcome::Fatal { reason: "auth_rejected" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp")
    }

    #[test]
    fn an_answer_without_its_life_is_refreshed_as_the_vendor_says_or_is_unreadable() {
        let body = br#"{"access_token":"t"}"#;
        let hour = chrono::Duration::minutes(55);
        assert_eq!(access_token(StatusCode::OK, body, now(), Some(hour)).unwrap().refresh_at, now() + hour);
        assert_eq!(
            access_token(StatusCode::OK, body, now(), None).unwrap_err(),
            Outcome::Retry { after: None, reason: "auth_bad_answer" }
        );
        let life = br#"{"access_token":"t","expires_in":3600}"#;
        let at = access_token(StatusCode::OK, life, now(), None).unwrap().refresh_at;
        assert_eq!(at, now() + chrono::Duration::minutes(55));
        let absurd = br#"{"access_token":"t","expires_in":-5}"#;
        assert_eq!(access_token(StatusCode::OK, absurd, now(), None).unwrap().refresh_at, now() + MIN_REFRESH_AFTER);
    }
}
