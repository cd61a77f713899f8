//! What the vendors that send one form-encoded request to a comma-separated token list share
//! (Xiaomi, Meizu): the send URL under a base endpoint, the token list (a token with a comma is
//! left out and classified invalid, so one bad registration never fails a batch), the
//! notification texts cut to the vendor's limits, the FNV-1a hash behind their collapse ids,
//! and the classifier's frame (a non-200 status, an unreadable 200, per-token outcomes).
//!
//! Deliberately not here: each vendor's form fields, auth (Xiaomi's secret header, Meizu's MD5
//! `sign`), answer shape and code tables (`xiaomi.rs`, `meizu.rs`).
//!
//! ```text
//! endpoint + SEND_PATH ─▶ send_url        tokens ─▶ token_list ─▶ "a,b,…" (commas left out)
//! (status, body) ─▶ outcomes: 200 ─▶ the vendor's answer reader ─▶ one Outcome per token
//!                             else ─▶ by_status (5xx, 429 retried; anything else Fatal)
//! ```

use std::time::Duration;

use http::StatusCode;

use super::{BuildError, Outcome, VendorPush};
use crate::model::Token;

/// The vendor's texts of build errors (static: they name the vendor).
pub(crate) struct Texts {
    /// The endpoint is not an http(s) base URL.
    pub(crate) bad_endpoint: &'static str,
    /// Too few or too many tokens for one request.
    pub(crate) batch: &'static str,
    /// Every token of the request contains a comma.
    pub(crate) comma: &'static str,
    /// Neither a title nor a body to show.
    pub(crate) no_text: &'static str,
}

/// `endpoint` with `path` (segments separated by `/`) appended.
pub(crate) fn send_url(endpoint: url::Url, path: &str, texts: &Texts) -> Result<url::Url, BuildError> {
    if !matches!(endpoint.scheme(), "https" | "http") {
        return Err(BuildError::Payload(texts.bad_endpoint));
    }
    let mut send_url = endpoint;
    send_url
        .path_segments_mut()
        .map_err(|_| BuildError::Payload(texts.bad_endpoint))?
        .pop_if_empty()
        .extend(path.split('/'));
    Ok(send_url)
}

/// A token that can go in the comma-separated list.
fn listable(token: &Token) -> bool {
    !token.as_str().contains(',')
}

/// The comma-separated list of 1 to `max` tokens, those with a comma left out.
pub(crate) fn token_list(tokens: &[Token], max: usize, texts: &Texts) -> Result<String, BuildError> {
    if tokens.is_empty() || tokens.len() > max {
        return Err(BuildError::Payload(texts.batch));
    }
    let list = tokens.iter().filter(|t| listable(t)).map(Token::as_str).collect::<Vec<_>>().join(",");
    if list.is_empty() {
        return Err(BuildError::Payload(texts.comma));
    }
    Ok(list)
}

/// Title and body as sent: each cut to its limit in chars; both are required, so an empty one
/// borrows the other's text.
pub(crate) fn texts(
    push: &VendorPush,
    title_max: usize,
    body_max: usize,
    texts: &Texts,
) -> Result<(String, String), BuildError> {
    let blank = |s: &str| s.trim().is_empty();
    let (title, body) = match (blank(&push.title), blank(&push.body)) {
        (true, true) => return Err(BuildError::Payload(texts.no_text)),
        (false, true) => (push.title.as_str(), push.title.as_str()),
        (true, false) => (push.body.as_str(), push.body.as_str()),
        (false, false) => (push.title.as_str(), push.body.as_str()),
    };
    Ok((clip(title, title_max), clip(body, body_max)))
}

/// At most `max` chars, the last one "…" when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().nth(max).is_none() {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The FNV-1a hash of `key`: stable across processes, so one conversation keeps one collapse id.
pub(crate) fn fnv1a(key: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// An answer that is not HTTP 200: 5xx (and 429, retried after `rate_limit_after`) are
/// transport trouble, anything else Fatal. **Unverified**: both document only 200 and 5xx.
fn by_status(status: StatusCode, rate_limit_after: Duration) -> Outcome {
    if status.is_server_error() {
        Outcome::Retry { after: None, reason: "server_error" }
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry { after: Some(rate_limit_after), reason: "rate_limited" }
    } else {
        Outcome::Fatal { reason: "http_status" }
    }
}

/// One outcome per token: a non-200 status by [`by_status`]; a 200 by `read`, the vendor's
/// reader of its answer (`None`: not the vendor's JSON, e.g. a proxy page, so the send is in
/// doubt and retried). A token with a comma was never sent: invalid.
pub(crate) fn outcomes(
    tokens: &[Token],
    status: StatusCode,
    body: &[u8],
    rate_limit_after: Duration,
    read: impl FnOnce(&[u8]) -> Option<Vec<Outcome>>,
) -> Vec<Outcome> {
    let answer = if status == StatusCode::OK {
        read(body).unwrap_or_else(|| vec![Outcome::Retry { after: None, reason: "unreadable_answer" }; tokens.len()])
    } else {
        vec![by_status(status, rate_limit_after); tokens.len()]
    };
    tokens
        .iter()
        .zip(answer)
        .map(
            |(t, outcome)| {
                if listable(t) {
                    outcome
                } else {
                    Outcome::InvalidToken { reason: "malformed_token", since: None }
                }
            },
        )
        .collect()
}
