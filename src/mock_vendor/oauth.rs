//! What the mocks' token endpoints share: the ledger of access tokens a mock issued
//! ([`AccessTokens`]: who for, until when on the mock clock, revoked or not) and the reading of
//! a form-encoded token request ([`token_form`], [`client_credentials`]).
//!
//! Users: the OAuth endpoints of Huawei and Honor (client credentials) and FCM (JWT-bearer
//! assertion); OPPO's and vivo's signed auth calls keep their tokens in the same ledger. Each
//! vendor file keeps what differs: the grant it verifies, the shape of its token answer, its
//! token format and its refusal codes on sends.
//!
//! ```text
//! POST token endpoint ─▶ token_form (POST? form-encoded? fields) ─▶ vendor's grant check
//!                     ─▶ AccessTokens::issue ─▶ vendor's answer
//! send ─▶ AccessTokens::check (Valid / Expired / Unknown) ─▶ vendor's refusal code
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::json;

use super::{lock, reply, ReadRequest, Reply};
use crate::model::Timestamp;

/// How long an expired token is still told apart from one never issued ([`Access::Expired`]
/// rather than [`Access::Unknown`]); after that it is forgotten, which bounds the ledger.
const EXPIRED_KEPT: chrono::Duration = chrono::Duration::days(1);

/// Access tokens a mock issued: who for, until when, whether revoked.
pub(crate) struct AccessTokens {
    issued: Mutex<HashMap<String, Issued>>,
    count: AtomicU64,
}

struct Issued {
    client: String,
    expires_at: Timestamp,
    revoked: bool,
}

/// What an access token presented on a send is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access {
    /// Issued to this client and still good.
    Valid(String),
    /// Issued, but expired or revoked.
    Expired,
    /// Never issued here.
    Unknown,
}

impl AccessTokens {
    /// An empty ledger.
    pub(crate) fn new() -> Self {
        Self { issued: Mutex::new(HashMap::new()), count: AtomicU64::new(0) }
    }

    /// Issues the `n`-th token (`make(n)`, n = 1, 2, …) to `client` for `ttl_secs` from `now`.
    pub(crate) fn issue(
        &self,
        client: &str,
        now: Timestamp,
        ttl_secs: u64,
        make: impl FnOnce(u64) -> String,
    ) -> String {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let token = make(n);
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        let expires_at = now.checked_add_signed(chrono::Duration::seconds(ttl)).unwrap_or(Timestamp::MAX_UTC);
        let mut issued = lock(&self.issued);
        issued.retain(|_, t| t.expires_at + EXPIRED_KEPT > now);
        issued.insert(token.clone(), Issued { client: client.to_owned(), expires_at, revoked: false });
        token
    }

    /// Tokens issued so far.
    pub(crate) fn issued(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// What `token` is at `now`.
    pub(crate) fn check(&self, token: &str, now: Timestamp) -> Access {
        match lock(&self.issued).get(token) {
            Some(t) if !t.revoked && now < t.expires_at => Access::Valid(t.client.clone()),
            Some(_) => Access::Expired,
            None => Access::Unknown,
        }
    }

    /// Whether `token` is good at `now`, whoever it was issued to (vendors with one client).
    pub(crate) fn is_valid(&self, token: &str, now: Timestamp) -> bool {
        matches!(self.check(token, now), Access::Valid(_))
    }

    /// Expires `token` now (a scripted `expire_auth`).
    pub(crate) fn revoke(&self, token: &str) {
        if let Some(t) = lock(&self.issued).get_mut(token) {
            t.revoked = true;
        }
    }

    /// Expires every token issued so far.
    pub(crate) fn revoke_all(&self) {
        lock(&self.issued).values_mut().for_each(|t| t.revoked = true);
    }
}

/// A refused token call: HTTP status, OAuth `error` and `error_description`.
#[derive(Debug)]
pub(crate) struct OauthError {
    pub(crate) http: u16,
    pub(crate) error: &'static str,
    pub(crate) description: Cow<'static, str>,
}

impl OauthError {
    pub(crate) fn new(http: u16, error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Self { http, error, description: description.into() }
    }

    /// The JSON answer: `{"error": …, "error_description": …}`.
    pub(crate) fn reply(&self) -> Reply {
        reply(self.http, &[], Some(&json!({ "error": self.error, "error_description": self.description })))
    }
}

/// Reads a token request: POST (else 405 with the vendor's `not_post` wording), a
/// form-encoded body (else 400), and the first value of each of `names`.
pub(crate) fn token_form<const N: usize>(
    r: &ReadRequest,
    names: [&str; N],
    not_post: &'static str,
) -> Result<[Option<String>; N], OauthError> {
    if r.method != http::Method::POST {
        return Err(OauthError::new(405, "invalid_request", not_post));
    }
    if !r.content_type_is("application/x-www-form-urlencoded") {
        return Err(OauthError::new(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded"));
    }
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in url::form_urlencoded::parse(&r.body) {
        if let Some(i) = names.iter().position(|n| *n == key) {
            if out[i].is_none() {
                out[i] = Some(value.into_owned());
            }
        }
    }
    Ok(out)
}

/// A vendor's wording of the client-credentials refusals (`error_description`).
pub(crate) struct Wording {
    /// Another method than POST (405).
    pub(crate) not_post: &'static str,
    /// A `grant_type` other than `client_credentials` (400 `unsupported_grant_type`).
    pub(crate) bad_grant: &'static str,
    /// A wrong client id or secret (401 `invalid_client`).
    pub(crate) bad_client: &'static str,
}

/// Checks an OAuth 2.0 client-credentials token request (Huawei, Honor) for this one client.
pub(crate) fn client_credentials(
    r: &ReadRequest,
    client_id: &str,
    client_secret: &str,
    wording: &Wording,
) -> Result<(), OauthError> {
    let [grant_type, id, secret] = token_form(r, ["grant_type", "client_id", "client_secret"], wording.not_post)?;
    if grant_type.as_deref() != Some("client_credentials") {
        return Err(OauthError::new(400, "unsupported_grant_type", wording.bad_grant));
    }
    if id.as_deref() != Some(client_id) || secret.as_deref() != Some(client_secret) {
        return Err(OauthError::new(401, "invalid_client", wording.bad_client));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(secs, 0).expect("valid timestamp")
    }

    #[test]
    fn tokens_expire_are_revoked_and_are_forgotten_a_day_after_expiry() {
        let tokens = AccessTokens::new();
        let first = tokens.issue("app", at(0), 60, |n| format!("t{n}"));
        let second = tokens.issue("app", at(0), 3600, |n| format!("t{n}"));

        assert_eq!((first.as_str(), second.as_str(), tokens.issued()), ("t1", "t2", 2));
        assert_eq!(tokens.check(&first, at(59)), Access::Valid("app".into()));
        assert_eq!(tokens.check(&first, at(60)), Access::Expired);
        assert_eq!(tokens.check("t9", at(0)), Access::Unknown);
        tokens.revoke(&second);
        assert!(!tokens.is_valid(&second, at(1)));
        tokens.issue("app", at(60 + 86_400), 60, |n| format!("t{n}"));
        assert_eq!(tokens.check(&first, at(60 + 86_400)), Access::Unknown, "forgotten");
    }
}
