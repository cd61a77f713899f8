//! What the vendor modules' unit tests share: one rendered push, test times and tokens, readers
//! of the bodies a vendor builds, a shortcut to its `classify`, and the context and table a
//! credential is built from. A vendor's own credentials, auth token and recorded answers stay in
//! its test module.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::credential::CredentialContext;
use super::{Outcome, Priority, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token};

/// `secs` seconds after the Unix epoch.
pub(crate) fn at(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(secs, 0).expect("valid test time")
}

/// `ms` milliseconds after the Unix epoch.
pub(crate) fn at_ms(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).expect("valid test time")
}

/// Alice's "See you at 8?" in conversation `c42` (message `m9`) as the render layer hands it
/// over: high priority, the default sound, a day to live, a badge of 3 on alerts only.
pub(crate) fn push(push_type: PushType) -> VendorPush {
    VendorPush {
        push_type,
        title: "Alice".into(),
        body: "See you at 8?".into(),
        badge: if push_type == PushType::Alert { Some(3) } else { None },
        sound: Some("default".into()),
        priority: Priority::High,
        collapse_id: None,
        ttl: Some(Duration::from_secs(86_400)),
        created_at: at(1_767_225_600),
        thread_id: Some("c42".into()),
        data: BTreeMap::from([
            ("conv".to_owned(), "c42".to_owned()),
            ("msg".to_owned(), "m9".to_owned()),
            ("sender".to_owned(), "alice".to_owned()),
        ]),
    }
}

/// A token taken as given: registration would refuse some (a comma in it), but a vendor module
/// must still cope with them.
pub(crate) fn token(s: &str) -> Token {
    Token::from_trusted(s.to_owned())
}

/// [`token`] for each of `ids`.
pub(crate) fn tokens(ids: &[&str]) -> Vec<Token> {
    ids.iter().map(|id| token(id)).collect()
}

/// The fields of a form-encoded request body (a repeated name keeps its last value).
pub(crate) fn form(req: &VendorRequest) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

/// A JSON request body.
pub(crate) fn json_body(req: &VendorRequest) -> Value {
    serde_json::from_slice(&req.body).expect("JSON body")
}

/// `vendor`'s outcomes for an answer to a request carrying `tokens`.
pub(crate) fn classify(
    vendor: &dyn Vendor,
    tokens: &[Token],
    status: u16,
    headers: &HeaderMap,
    body: &str,
) -> Vec<Outcome> {
    vendor.classify(tokens, StatusCode::from_u16(status).expect("status"), headers, body.as_bytes())
}

/// `vendor`'s outcome for an answer to a request carrying `token` alone.
pub(crate) fn classify_one(vendor: &dyn Vendor, token: Token, status: u16, body: &str) -> Outcome {
    let mut out = classify(vendor, &[token], status, &HeaderMap::new(), body);
    assert_eq!(out.len(), 1, "one outcome per token");
    out.remove(0)
}

/// The context a credential named `name` is built in (data under `/tmp`).
pub(crate) fn credential_ctx(name: &'static str) -> CredentialContext<'static> {
    CredentialContext { name, data_dir: std::path::Path::new("/tmp") }
}

/// A credential table written as TOML.
pub(crate) fn table(s: &str) -> toml::Table {
    s.parse().expect("toml")
}
