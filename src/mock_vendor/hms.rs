//! What the mocks of Huawei Push Kit and its descendant Honor Push share: one server core
//! ([`Server`]) that serves the OAuth 2.0 client-credentials token endpoint and the send
//! endpoint, checks auth and the limits both apply (token count `80300010`, body size without
//! the token list `80300008`), looks scripted rules up per token of a batch, answers, records
//! and delays; plus the body checks both spell alike (title/body present, click action, badge
//! numbers, string fields).
//!
//! Deliberately not here: what differs, in `huawei.rs` and `honor.rs` through [`Dialect`]
//! (implemented by each vendor's config): token paths, token text and token answer, the send
//! route and who may use it, extra header checks (Honor's `timestamp`), the body's shape and
//! field names, the code table, the answer bodies and which per-token lists a rule fills.
//!
//! ```text
//! POST Dialect::TOKEN_PATHS ─▶ client_credentials ─▶ Dialect::admit ─▶ issue ─▶ Dialect::token_answer
//! POST send ─▶ Dialect::route ─▶ Bearer (80200001 / 80200003) ─▶ Dialect::check_headers ─▶ JSON
//!           ─▶ Dialect::message (shape, fields) ─▶ count, size ─▶ per token: format, rule
//!           ─▶ Dialect::accepted | Dialect::error_body ─▶ record ─▶ delay ─▶ answer
//! ```

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::oauth::{client_credentials, Access, AccessTokens, OauthError, Wording};
use super::tls::Protocols;
use super::{
    bearer, reply, scripted_delay, start_mock, Conn, Core, MockAnswer, MockServer, MockTls, ReadRequest, Received,
    Reply, Vendor,
};
use crate::clock::SharedClock;
use crate::model::Timestamp;

/// Bytes of the message without `token` (huawei.md §4; honor.md §7 takes Huawei's limit).
const MAX_PAYLOAD: usize = 4096;
/// Tokens per request (huawei.md §4; a mock convention for Honor).
const MAX_TOKENS: usize = 1000;
/// Longest token the mocks accept (mock convention; neither vendor documents one).
const MAX_TOKEN_CHARS: usize = 512;

/// A refusal with a business code; the HTTP status comes from the vendor's code table.
#[derive(Debug)]
pub(crate) struct Refusal {
    code: &'static str,
    msg: String,
}

/// A refusal with `code` and this message.
pub(crate) fn refuse(code: &'static str, msg: impl Into<String>) -> Refusal {
    Refusal { code, msg: msg.into() }
}

/// What differs between the HMS-lineage mocks; implemented by each vendor's config.
pub(crate) trait Dialect: Clone + Send + Sync + 'static {
    /// [`Received::vendor`](super::Received::vendor).
    const VENDOR: &'static str;
    /// Paths of the token endpoint, the documented one first.
    const TOKEN_PATHS: &'static [&'static str];
    /// The codes a script can name, with the HTTP status the mock pairs them with and the
    /// vendor's message.
    const CODES: &'static [(&'static str, u16, &'static str)];
    /// The `error_description`s of refused token calls.
    const WORDING: Wording;
    /// The list a token of bad format is named in.
    const BAD_FORMAT_LIST: &'static str;
    /// What the send route names (an app or project), read by [`Dialect::addressed`].
    type Route;
    /// State the token endpoint keeps beyond the ledger (Huawei's throttle window).
    type TokenState: Default + Send + Sync;

    /// The OAuth client: id and secret.
    fn client(&self) -> (&str, &str);
    /// Lifetime of issued access tokens, seconds.
    fn token_ttl_secs(&self) -> u64;
    /// Whether to issue another token at `now` (Huawei's optional throttle); yes by default.
    fn admit(&self, state: &Self::TokenState, now: Timestamp) -> Result<(), OauthError> {
        let _ = (state, now);
        Ok(())
    }
    /// The `n`-th access token's text.
    fn access_token(n: u64) -> String;
    /// The token endpoint's success answer.
    fn token_answer(&self, token: &str) -> Reply;
    /// The tokens a send body addressed.
    fn tokens_of(body: &Value) -> Vec<String>;
    /// The send route a path names; `None` answers 404.
    fn route(&self, path: &str) -> Option<Self::Route>;
    /// Whether a token issued to `client` may send on `route`.
    fn addressed(&self, route: &Self::Route, client: &str) -> bool;
    /// Header checks after auth; none by default.
    fn check_headers(&self, r: &ReadRequest) -> Result<(), Refusal> {
        let _ = r;
        Ok(())
    }
    /// The checked message object (the one with `token`) of a parsed body.
    fn message<'b>(&self, body: Option<&'b Value>) -> Result<&'b Map<String, Value>, Refusal>;
    /// A script's reason as the code of a whole-request answer.
    fn script_code(reason: &str) -> &str {
        reason
    }
    /// The list a per-token rule's reason puts its token in, if it is a per-token reason.
    fn token_list(reason: &str) -> Option<&'static str>;
    /// The answer body of an error; `n` numbers the answers.
    fn error_body(code: &str, msg: &str, n: u64) -> Value;
    /// The 200 answer to `sent` tokens of which `listed` (list, token) were not taken.
    fn accepted(&self, sent: usize, listed: &[(&'static str, &str)], n: u64) -> Value;
}

/// One HMS-lineage mock: the vendor's config and the state every such mock keeps.
pub(crate) struct Server<C: Dialect> {
    core: Arc<Core>,
    cfg: C,
    tokens: AccessTokens,
    token_state: C::TokenState,
    token_requests: AtomicU64,
    /// Numbers the request ids of answers.
    answers: AtomicU64,
}

/// How the mock answers one send.
struct Answer {
    http: u16,
    body: Option<Value>,
    retry_after_secs: Option<u64>,
    delay_ms: Option<u64>,
}

impl Answer {
    fn plain(http: u16, body: Option<Value>) -> Self {
        Self { http, body, retry_after_secs: None, delay_ms: None }
    }
}

/// What a valid send carried.
struct Valid {
    access_token: String,
    tokens: Vec<String>,
}

/// A running mock of an HMS-lineage vendor ([`MockHuawei`](super::huawei::MockHuawei),
/// [`MockHonor`](super::honor::MockHonor)): derefs to [`MockServer`] for rules, the record and
/// counters, and adds the token endpoint's. Cheap to clone; clones share the server.
pub struct HmsMock<C> {
    server: MockServer,
    ledger: Arc<dyn Ledger>,
    /// The (documented) token endpoint's path.
    token_path: &'static str,
    /// Reads the tokens of a recorded send body.
    tokens_of: fn(&Value) -> Vec<String>,
    vendor: PhantomData<fn() -> C>,
}

impl<C> Clone for HmsMock<C> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
            ledger: self.ledger.clone(),
            token_path: self.token_path,
            tokens_of: self.tokens_of,
            vendor: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for HmsMock<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmsMock").field("server", &self.server).finish_non_exhaustive()
    }
}

impl<C> Deref for HmsMock<C> {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl<C> From<HmsMock<C>> for MockServer {
    fn from(mock: HmsMock<C>) -> MockServer {
        mock.server
    }
}

impl<C> HmsMock<C> {
    /// The (documented) token endpoint, `https://127.0.0.1:PORT/<token path>`.
    pub fn token_url(&self) -> url::Url {
        let mut url = self.url();
        url.set_path(self.token_path);
        url
    }

    /// Calls to the token endpoint(s) so far, successful or not.
    pub fn token_requests(&self) -> u64 {
        self.ledger.token_requests()
    }

    /// Expires every access token issued so far: the next send with one gets `80200003`.
    pub fn expire_all_tokens(&self) {
        self.ledger.expire_all_tokens();
    }

    /// The sends whose token list includes `token` (a batch names many tokens).
    pub fn sends_to(&self, token: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| (self.tokens_of)(&r.body).iter().any(|t| t == token)).collect()
    }
}

/// What a [`HmsMock`] handle asks of its server, whatever the vendor.
trait Ledger: Send + Sync {
    fn token_requests(&self) -> u64;
    fn expire_all_tokens(&self);
}

/// Binds `addr` and serves HTTPS (ALPN `h2`, `http/1.1`) on the current tokio runtime, token
/// expiry measured with `clock`. Returns once listening.
pub(crate) async fn start<C: Dialect>(
    addr: SocketAddr,
    tls: Option<Arc<MockTls>>,
    clock: SharedClock,
    cfg: C,
) -> std::io::Result<HmsMock<C>> {
    let protocols = Protocols::H2OrHttp1 { max_concurrent_streams: 1000 };
    let (server, ledger) = start_mock(C::VENDOR, addr, tls, clock, protocols, |core| Server {
        core,
        cfg,
        tokens: AccessTokens::new(),
        token_state: C::TokenState::default(),
        token_requests: AtomicU64::new(0),
        answers: AtomicU64::new(0),
    })
    .await?;
    Ok(HmsMock { server, ledger, token_path: C::TOKEN_PATHS[0], tokens_of: C::tokens_of, vendor: PhantomData })
}

impl<C: Dialect> Ledger for Server<C> {
    fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    fn expire_all_tokens(&self) {
        self.tokens.revoke_all();
    }
}

impl<C: Dialect> Server<C> {
    fn next_answer(&self) -> u64 {
        self.answers.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn coded(&self, code: &str) -> (u16, Value) {
        let (http, msg) =
            C::CODES.iter().find(|(c, _, _)| *c == code).map_or((400, "Scripted error"), |(_, h, m)| (*h, *m));
        (http, C::error_body(code, msg, self.next_answer()))
    }

    fn refused(&self, r: &Refusal) -> Answer {
        let http = C::CODES.iter().find(|(c, _, _)| *c == r.code).map_or(400, |(_, http, _)| *http);
        Answer::plain(http, Some(C::error_body(r.code, &r.msg, self.next_answer())))
    }

    /// Per token: format, then the first matching rule. A per-token rule names its token in a
    /// list; any other rule answers the whole request at once.
    fn answer(&self, valid: &Valid) -> Answer {
        let mut listed: Vec<(&'static str, &str)> = Vec::new();
        let mut delay_ms = None;
        for token in &valid.tokens {
            if !token_format_ok(token) {
                listed.push((C::BAD_FORMAT_LIST, token));
                continue;
            }
            match self.core.take_answer(token) {
                None => {}
                Some(a) => match per_token_list::<C>(&a) {
                    Some(list) => {
                        listed.push((list, token));
                        delay_ms = delay_ms.max(a.delay_ms);
                    }
                    None => return self.scripted(&a, valid),
                },
            }
        }
        let body = self.cfg.accepted(valid.tokens.len(), &listed, self.next_answer());
        Answer { http: 200, body: Some(body), retry_after_secs: None, delay_ms }
    }

    fn scripted(&self, a: &MockAnswer, valid: &Valid) -> Answer {
        let (http, body) = if a.expire_auth {
            self.tokens.revoke(&valid.access_token);
            let (http, body) = self.coded("80200003");
            (http, Some(body))
        } else {
            match (a.status, a.reason.as_deref()) {
                (None | Some(200), None) => (200, Some(self.cfg.accepted(valid.tokens.len(), &[], self.next_answer()))),
                (status, Some(reason)) => {
                    let (http, body) = self.coded(C::script_code(reason));
                    (status.unwrap_or(http), Some(body))
                }
                (Some(400), None) => (400, Some(self.coded("80100001").1)),
                (Some(401), None) => (401, Some(self.coded("80200001").1)),
                (Some(500), None) => (500, Some(self.coded("81000001").1)),
                // 429, 503 flow control, 502, 504: the gateway answers without a business code.
                (Some(status), None) => (status, None),
            }
        };
        Answer { http, body, retry_after_secs: a.retry_after_secs, delay_ms: a.delay_ms }
    }

    /// Send checks: route, auth, headers, body, count, size. `Err(None)` = 404.
    fn validate(&self, r: &ReadRequest, body: Option<&Value>) -> Result<Valid, Option<Refusal>> {
        let route = self.cfg.route(&r.path).ok_or(None)?;
        if r.method != Method::POST {
            return Err(None);
        }
        let access_token = r.header("authorization").and_then(bearer).unwrap_or_default().to_owned();
        let table_msg = |code| C::CODES.iter().find(|(c, _, _)| *c == code).map_or("", |(_, _, m)| *m);
        match self.tokens.check(&access_token, self.core.clock().now()) {
            Access::Valid(client) if self.cfg.addressed(&route, &client) => {}
            Access::Expired => return Err(Some(refuse("80200003", table_msg("80200003")))),
            // Unknown, or issued to another app than the one addressed.
            Access::Valid(_) | Access::Unknown => return Err(Some(refuse("80200001", table_msg("80200001")))),
        }
        self.cfg.check_headers(r).map_err(Some)?;
        if !r.content_type_is("application/json") {
            return Err(Some(refuse("80100001", "Content-Type must be application/json")));
        }
        let message = self.cfg.message(body).map_err(Some)?;
        let tokens = token_strings(message.get("token"));
        if tokens.is_empty() || tokens.len() > MAX_TOKENS {
            return Err(Some(refuse("80300010", table_msg("80300010"))));
        }
        let mut without_token = message.clone();
        without_token.remove("token");
        if Value::Object(without_token).to_string().len() > MAX_PAYLOAD {
            return Err(Some(refuse("80300008", table_msg("80300008"))));
        }
        Ok(Valid { access_token, tokens })
    }

    fn token_endpoint(&self, r: &ReadRequest) -> Reply {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        match self.exchange(r) {
            Ok(token) => self.cfg.token_answer(&token),
            Err(e) => e.reply(),
        }
    }

    fn exchange(&self, r: &ReadRequest) -> Result<String, OauthError> {
        let (client_id, secret) = self.cfg.client();
        client_credentials(r, client_id, secret, &C::WORDING)?;
        let now = self.core.clock().now();
        self.cfg.admit(&self.token_state, now)?;
        Ok(self.tokens.issue(client_id, now, self.cfg.token_ttl_secs(), C::access_token))
    }
}

impl<C: Dialect> Vendor for Server<C> {
    type ConnState = ();

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<()>) -> Reply {
        let read = ReadRequest::read(req).await;
        if C::TOKEN_PATHS.contains(&read.path.as_str()) {
            return self.token_endpoint(&read);
        }
        let parsed = read.json();
        let tokens = parsed.as_ref().map(C::tokens_of).unwrap_or_default();
        let answer = match self.validate(&read, parsed.as_ref()) {
            Ok(valid) => self.answer(&valid),
            Err(Some(r)) => self.refused(&r),
            // Not a send route: the gateway answers 404 without a business code.
            Err(None) => Answer::plain(404, None),
        };
        let recorded = answer.body.clone().unwrap_or(Value::Null);
        self.core.record(read.received(C::VENDOR, tokens.join(","), conn.id, answer.http, recorded));
        let script = MockAnswer { delay_ms: answer.delay_ms, ..MockAnswer::default() };
        scripted_delay(Some(&script)).await;
        let headers: Vec<_> =
            answer.retry_after_secs.map(|s| (http::header::RETRY_AFTER, s.to_string())).into_iter().collect();
        reply(answer.http, &headers, answer.body.as_ref())
    }
}

/// The list a rule puts its token in, if it is a per-token rule (a plain 200 naming a list).
fn per_token_list<C: Dialect>(a: &MockAnswer) -> Option<&'static str> {
    if a.expire_auth || !matches!(a.status, None | Some(200)) {
        return None;
    }
    a.reason.as_deref().and_then(C::token_list)
}

/// Mock convention: 1–512 characters, no whitespace.
fn token_format_ok(token: &str) -> bool {
    !token.is_empty() && token.chars().count() <= MAX_TOKEN_CHARS && !token.chars().any(char::is_whitespace)
}

/// The strings of a `token` array (none if it is not one).
pub(crate) fn token_strings(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|ts| ts.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The first key of `obj` not in `known`.
pub(crate) fn unknown_key<'a>(obj: &'a Map<String, Value>, known: &[&str]) -> Option<&'a str> {
    obj.keys().map(String::as_str).find(|k| !known.contains(k))
}

/// Each of `names` present in `obj` must be a string (`80100003`).
pub(crate) fn strings(obj: &Map<String, Value>, names: &[&str], path: &str) -> Result<(), Refusal> {
    match names.iter().find(|n| obj.get(**n).is_some_and(|v| !v.is_string())) {
        Some(n) => Err(refuse("80100003", format!("Illegal payload, {path}.{n} must be a string"))),
        None => Ok(()),
    }
}

/// `name` absent, or an integer in `range`.
pub(crate) fn int_in(obj: &Map<String, Value>, name: &str, range: std::ops::RangeInclusive<i64>) -> bool {
    obj.get(name).is_none_or(|v| v.as_i64().is_some_and(|n| range.contains(&n)))
}

/// `title` and `body` each set on the Android notification or the top-level one (`80100003`).
pub(crate) fn texts_present(n: &Map<String, Value>, top: Option<&Map<String, Value>>) -> Result<(), Refusal> {
    for text in ["title", "body"] {
        if !n.contains_key(text) && !top.is_some_and(|t| t.contains_key(text)) {
            return Err(refuse("80100003", format!("Illegal payload, {text} is mandatory")));
        }
    }
    Ok(())
}

/// A click action: type 1 needs `intent` or `action`, 2 an HTTPS `url`, 3 opens the app.
pub(crate) fn click_ok(click: &Map<String, Value>) -> bool {
    let has = |k: &str| click.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    match click.get("type").and_then(Value::as_i64) {
        Some(1) => has("intent") || has("action"),
        Some(2) => click.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("https://")),
        Some(3) => true,
        _ => false,
    }
}

/// A badge: a non-empty launcher class (`class_key`), add 1..99 and set 0..99 when present.
pub(crate) fn badge_ok(b: &Map<String, Value>, [class_key, add_key, set_key]: [&str; 3]) -> bool {
    let class_ok = b.get(class_key).and_then(Value::as_str).is_some_and(|c| !c.is_empty());
    class_ok && int_in(b, add_key, 1..=99) && int_in(b, set_key, 0..=99)
}
