//! The request plumbing of the form-encoded send endpoints (Xiaomi, Meizu): decode the form,
//! let the vendor answer from its fields, record the request with the decoded fields as its
//! body, then apply the script's delay and `Retry-After`; and the lookup of scripted rules per
//! target ([`look_up`]). The vendor file keeps its checks, codes and what its rules mean. OPPO's form carries its auth token and JSON entries and is read by
//! `oppo.rs` itself.
//!
//! ```text
//! body ─form_urlencoded─▶ fields ─▶ FormSend::validate ─▶ FormSend::answer ─▶ record (token, fields) ─▶ delay ─▶ reply
//! ```

use std::collections::BTreeMap;

use http::header::HeaderName;
use http::Request;
use hyper::body::Incoming;
use serde_json::Value;

use super::{reply, scripted_delay, Conn, Core, MockAnswer, ReadRequest, Reply};

/// The decoded fields of a form; a repeated name keeps its last value.
pub(crate) type Fields = BTreeMap<String, String>;

/// A form vendor's answer to one request: HTTP status, JSON body (`None`: empty), and the
/// scripted answer it applied, if any (for its delay and `Retry-After`).
pub(crate) struct FormAnswer {
    pub(crate) http: u16,
    pub(crate) body: Option<Value>,
    pub(crate) script: Option<MockAnswer>,
}

/// What a form-encoded send endpoint implements; [`serve`] does the rest.
pub(crate) trait FormSend {
    /// [`Received::vendor`](super::Received::vendor).
    const VENDOR: &'static str;
    /// The fields naming the targets, in order of preference: the first present one is
    /// recorded as [`Received::token`](super::Received::token).
    const TARGET_FIELDS: &'static [&'static str];
    /// Fields recorded parsed when they hold JSON (Meizu's `messageJson`).
    const JSON_FIELDS: &'static [&'static str] = &[];

    /// What a request that passed the checks carries.
    type Valid;

    /// The shared state the request is recorded in.
    fn core(&self) -> &Core;

    /// The vendor's checks, in its order; a refusal is an HTTP status and a JSON body (no
    /// scripted rule is consulted).
    fn validate(&self, r: &ReadRequest, fields: &Fields) -> Result<Self::Valid, (u16, Value)>;

    /// The answer to a request that passed the checks, scripted rules applied.
    fn answer(&self, valid: Self::Valid) -> FormAnswer;
}

/// Serves one request of a form vendor (see the module doc).
pub(crate) async fn serve<V: FormSend>(vendor: &V, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
    let read = ReadRequest::read(req).await;
    let fields: Fields = url::form_urlencoded::parse(&read.body).into_owned().collect();
    let token = V::TARGET_FIELDS.iter().find_map(|name| fields.get(*name)).cloned().unwrap_or_default();
    let FormAnswer { http, body, script } = match vendor.validate(&read, &fields) {
        Ok(valid) => vendor.answer(valid),
        Err((http, body)) => FormAnswer { http, body: Some(body), script: None },
    };
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    if let Some(secs) = script.as_ref().and_then(|a| a.retry_after_secs) {
        headers.push((http::header::RETRY_AFTER, secs.to_string()));
    }
    let mut received = read.received(V::VENDOR, token, conn.id, http, body.clone().unwrap_or(Value::Null));
    if !fields.is_empty() {
        received.body = recorded(&fields, V::JSON_FIELDS);
    }
    vendor.core().record(received);
    scripted_delay(script.as_ref()).await;
    reply(http, &headers, body.as_ref())
}

/// The fields as a JSON object of strings, `json_fields` parsed where they are JSON.
fn recorded(fields: &Fields, json_fields: &[&str]) -> Value {
    let parsed = |name: &str, text: &str| {
        json_fields.contains(&name).then(|| serde_json::from_str::<Value>(text).ok()).flatten()
    };
    let object =
        fields.iter().map(|(k, v)| (k.clone(), parsed(k, v).unwrap_or_else(|| Value::String(v.clone())))).collect();
    Value::Object(object)
}

/// What the scripted rules say about a request's targets.
pub(crate) struct Lookup<T> {
    /// The targets a per-target rule named, in order, with what each rule says.
    pub(crate) listed: Vec<(String, T)>,
    /// The first per-target rule with a delay: the answer waits for it.
    pub(crate) delay: Option<MockAnswer>,
    /// The first request-level rule: it answers the whole request and ended the lookup (so
    /// its `times` counts requests, not targets).
    pub(crate) request: Option<MockAnswer>,
}

/// Looks the scripted rules up per target, in order: `per_target` tells a rule about one
/// target (what it says) from one that answers the whole request.
pub(crate) fn look_up<'a, T>(
    core: &Core,
    targets: impl IntoIterator<Item = &'a String>,
    per_target: impl Fn(&MockAnswer) -> Option<T>,
) -> Lookup<T> {
    let mut lookup = Lookup { listed: Vec::new(), delay: None, request: None };
    for id in targets {
        let Some(answer) = core.take_answer(id) else { continue };
        match per_target(&answer) {
            Some(said) => {
                lookup.listed.push((id.clone(), said));
                if lookup.delay.is_none() && answer.delay_ms.is_some() {
                    lookup.delay = Some(answer);
                }
            }
            None => {
                lookup.request = Some(answer);
                break;
            }
        }
    }
    lookup
}
