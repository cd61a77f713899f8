//! Mock APNs: the HTTP/2 provider API with token (JWT) auth, validating requests as
//! `docs/vendors/apns.md` §7 items 1–8 describe and answering with APNs reasons.
//!
//! Owns: the APNs request checks, JWT verification (ES256, one key), per-connection token
//! state, the reason table and APNs answer bodies. Does not own: TLS, recording, rules
//! (`mod.rs`, `tls.rs`). Not implemented: certificate auth, stream throttling after
//! rejections, GOAWAY scripting, `apns-unique-id`, strict push-type/payload consistency.
//!
//! ```text
//! request ─▶ method/path/token ─▶ JWT (format, kid, signature, iss, age) ─▶ connection token
//!         ─▶ topic / push type / headers ─▶ body ─▶ scripted rule? ─▶ record ─▶ answer
//! ```

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Request};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::tls::Protocols;
use super::{
    bearer, default_addr, lock, reply, scripted_delay, start_mock, Conn, Core, MockAnswer, MockServer, MockTls,
    ReadRequest, Reply, Vendor,
};
use crate::clock::{SharedClock, SystemClock};

/// APNs rejects a token whose `iat` is more than this old.
const TOKEN_MAX_AGE_SECS: i64 = 3600;
/// Body limit for every push type but VoIP.
const MAX_BODY: usize = 4096;
/// Body limit for VoIP pushes.
const MAX_BODY_VOIP: usize = 5120;
/// `apns-collapse-id` limit, in bytes.
const MAX_COLLAPSE_ID: usize = 64;

/// Push types and the suffix each needs on the topic (apns.md §3). `mdm` has no fixed form
/// with token auth; the mock expects the plain bundle id.
const PUSH_TYPES: &[(&str, &str)] = &[
    ("alert", ""),
    ("background", ""),
    ("voip", ".voip"),
    ("location", ".location-query"),
    ("complication", ".complication"),
    ("fileprovider", ".pushkit.fileprovider"),
    ("mdm", ""),
    ("liveactivity", ".push-type.liveactivity"),
    ("pushtotalk", ".voip-ptt"),
];

/// Every APNs reason with its status (apns.md §5), so a script can name just the reason.
const REASONS: &[(&str, u16)] = &[
    ("BadCollapseId", 400),
    ("BadDeviceToken", 400),
    ("BadExpirationDate", 400),
    ("BadMessageId", 400),
    ("BadPriority", 400),
    ("BadTopic", 400),
    ("DeviceTokenNotForTopic", 400),
    ("DuplicateHeaders", 400),
    ("IdleTimeout", 400),
    ("InvalidPushType", 400),
    ("MissingDeviceToken", 400),
    ("MissingTopic", 400),
    ("PayloadEmpty", 400),
    ("TopicDisallowed", 400),
    ("MockInvalidJson", 400),
    ("BadCertificate", 403),
    ("BadCertificateEnvironment", 403),
    ("ExpiredProviderToken", 403),
    ("Forbidden", 403),
    ("InvalidProviderToken", 403),
    ("MissingProviderToken", 403),
    ("UnrelatedKeyIdInToken", 403),
    ("BadPath", 404),
    ("MethodNotAllowed", 405),
    ("ExpiredToken", 410),
    ("Unregistered", 410),
    ("PayloadTooLarge", 413),
    ("TooManyProviderTokenUpdates", 429),
    ("TooManyRequests", 429),
    ("InternalServerError", 500),
    ("ServiceUnavailable", 503),
    ("Shutdown", 503),
];

/// The reason a script gets when it sets only a status.
fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "BadDeviceToken",
        403 => "Forbidden",
        404 => "BadPath",
        405 => "MethodNotAllowed",
        410 => "Unregistered",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        _ => "ServiceUnavailable",
    }
}

/// Configuration of a [`MockApns`].
#[derive(Clone)]
pub struct MockApnsConfig {
    /// Where to listen; default `127.0.0.1:0`.
    pub addr: std::net::SocketAddr,
    /// TLS material to share with other mocks; `None` generates a CA for this mock.
    pub tls: Option<Arc<MockTls>>,
    /// The clock JWT ages and 410 timestamps are measured with.
    pub clock: SharedClock,
    /// The Team ID tokens must carry as `iss`.
    pub team_id: String,
    /// The Key ID tokens must carry as `kid`.
    pub key_id: String,
    /// The key's ES256 public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
    /// The app's bundle id; push types with a suffix (`.voip`, …) append it.
    pub topic: String,
    /// Required device-token length in hex characters; `None` accepts any even length.
    pub token_hex_len: Option<usize>,
    /// A connection refuses a new token (different `iat`) less than this after the current
    /// one's `iat` (`429 TooManyProviderTokenUpdates`). APNs: 20 minutes.
    pub token_update_min_interval: Duration,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on every connection.
    pub max_concurrent_streams: u32,
}

impl std::fmt::Debug for MockApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockApnsConfig")
            .field("addr", &self.addr)
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("topic", &self.topic)
            .field("token_hex_len", &self.token_hex_len)
            .field("token_update_min_interval", &self.token_update_min_interval)
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .finish_non_exhaustive()
    }
}

impl MockApnsConfig {
    /// A config for one team/key/app with every other setting at its default.
    pub fn new(
        team_id: impl Into<String>,
        key_id: impl Into<String>,
        public_key_pem: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            addr: default_addr(),
            tls: None,
            clock: Arc::new(SystemClock),
            team_id: team_id.into(),
            key_id: key_id.into(),
            public_key_pem: public_key_pem.into(),
            topic: topic.into(),
            token_hex_len: Some(64),
            token_update_min_interval: Duration::from_secs(20 * 60),
            max_concurrent_streams: 1000,
        }
    }
}

/// A running mock APNs. Derefs to [`MockServer`] for rules, the record and counters.
/// Cheap to clone; clones share the server.
#[derive(Clone, Debug)]
pub struct MockApns {
    server: MockServer,
}

impl Deref for MockApns {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl From<MockApns> for MockServer {
    fn from(mock: MockApns) -> MockServer {
        mock.server
    }
}

impl MockApns {
    /// Binds `cfg.addr` and serves HTTP/2 over TLS on the current tokio runtime. Returns once
    /// listening. Fails on a bad public key or a bind error.
    pub async fn start(cfg: MockApnsConfig) -> std::io::Result<Self> {
        let key = DecodingKey::from_ec_pem(cfg.public_key_pem.as_bytes()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("mock apns: public_key_pem: {e}"))
        })?;
        let mut validation = Validation::new(Algorithm::ES256);
        // APNs tokens carry no `exp`/`aud`; age is checked against the mock clock instead.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let protocols = Protocols::H2 { max_concurrent_streams: cfg.max_concurrent_streams };
        let (server, _) = start_mock("apns", cfg.addr, cfg.tls.clone(), cfg.clock.clone(), protocols, |core| Apns {
            core,
            key,
            validation,
            cfg,
        })
        .await?;
        Ok(Self { server })
    }
}

struct Apns {
    core: Arc<Core>,
    cfg: MockApnsConfig,
    key: DecodingKey,
    validation: Validation,
}

/// Per connection: the `iat` of the token the connection uses (fixed by the first valid one),
/// and the last provider token whose signature was verified on it, with its `iat`.
#[derive(Default)]
struct ApnsConn {
    token_iat: Mutex<Option<i64>>,
    /// Measured (load harness, issue 6): verifying the ES256 signature of every request took
    /// about half of all CPU of a load run, mock included. A client sends the same token on a
    /// connection for up to an hour, as APNs expects, so an identical header is not verified
    /// again; its age is still checked against the clock on every request.
    verified: Mutex<Option<(String, i64)>>,
}

/// A refusal: status and reason.
struct Refused(u16, &'static str);

impl Vendor for Apns {
    type ConnState = ApnsConn;

    async fn handle(&self, req: Request<Incoming>, conn: &Conn<ApnsConn>) -> Reply {
        let read = ReadRequest::read(req).await;
        let token = read.path.strip_prefix("/3/device/").unwrap_or_default().to_owned();
        let (status, reason, script) = match self.validate(&read, &token, &conn.state, conn.client_cert) {
            Err(Refused(status, reason)) => (status, Some(reason.to_owned()), None),
            Ok(()) => match self.core.take_answer(&token) {
                None => (200, None, None),
                Some(answer) => {
                    let (status, reason) = scripted(&answer);
                    (status, reason, Some(answer))
                }
            },
        };
        // APNs echoes a valid apns-id and makes one up otherwise.
        let apns_id = read
            .header("apns-id")
            .filter(|id| is_uuid(id))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let body = reason.map(|reason| {
            let mut body = json!({ "reason": reason });
            if status == 410 {
                let now = self.core.clock().now().timestamp_millis();
                let at = script.as_ref().and_then(|a| a.timestamp_ms).unwrap_or(now);
                body["timestamp"] = json!(at);
            }
            body
        });
        let mut headers = vec![(HeaderName::from_static("apns-id"), apns_id)];
        if let Some(secs) = script.as_ref().and_then(|a| a.retry_after_secs) {
            headers.push((http::header::RETRY_AFTER, secs.to_string()));
        }
        self.core.record(read.received("apns", token, conn.id, status, body.clone().unwrap_or(Value::Null)));
        scripted_delay(script.as_ref()).await;
        reply(status, &headers, body.as_ref())
    }
}

/// Status and reason of a scripted answer; 200 means "answer normally".
fn scripted(answer: &MockAnswer) -> (u16, Option<String>) {
    if answer.expire_auth {
        return (403, Some("ExpiredProviderToken".to_owned()));
    }
    match (answer.status, answer.reason.as_deref()) {
        (None, None) | (Some(200), _) => (200, None),
        (Some(status), Some(reason)) => (status, Some(reason.to_owned())),
        (Some(status), None) => (status, Some(default_reason(status).to_owned())),
        (None, Some(reason)) => {
            let status = REASONS.iter().find(|(r, _)| *r == reason).map_or(400, |(_, s)| *s);
            (status, Some(reason.to_owned()))
        }
    }
}

impl Apns {
    /// The APNs checks, in the order APNs would meet them.
    fn validate(&self, r: &ReadRequest, token: &str, conn: &ApnsConn, client_cert: bool) -> Result<(), Refused> {
        if r.method != Method::POST {
            return Err(Refused(405, "MethodNotAllowed"));
        }
        if !r.path.starts_with("/3/device/") {
            return Err(Refused(404, "BadPath"));
        }
        if r.headers.keys().any(|name| r.headers.get_all(name).iter().count() > 1) {
            return Err(Refused(400, "DuplicateHeaders"));
        }
        if token.is_empty() {
            return Err(Refused(400, "MissingDeviceToken"));
        }
        if !self.token_well_formed(token) {
            return Err(Refused(400, "BadDeviceToken"));
        }
        // A connection with a client certificate is certificate-authenticated: APNs ignores
        // any authorization header on it (apns.md §2.2).
        if !client_cert {
            let iat = self.verify_jwt_cached(r, conn)?;
            self.use_token(conn, iat)?;
        }

        let topic = r.header("apns-topic").ok_or(Refused(400, "MissingTopic"))?;
        let push_type = match r.headers.get("apns-push-type") {
            Some(value) => value.to_str().map_err(|_| Refused(400, "InvalidPushType"))?,
            // Absent: APNs infers it; a VoIP topic can only mean a VoIP push.
            None if topic == format!("{}.voip", self.cfg.topic) => "voip",
            None => "alert",
        };
        let suffix = PUSH_TYPES
            .iter()
            .find(|(name, _)| *name == push_type)
            .map(|(_, suffix)| *suffix)
            .ok_or(Refused(400, "InvalidPushType"))?;
        if topic != format!("{}{suffix}", self.cfg.topic) {
            let ours = PUSH_TYPES.iter().any(|(_, s)| topic == format!("{}{s}", self.cfg.topic));
            // One of this app's topics with the wrong suffix for the push type, or not ours.
            return Err(Refused(400, if ours { "BadTopic" } else { "TopicDisallowed" }));
        }
        if let Some(priority) = r.headers.get("apns-priority") {
            if !matches!(priority.as_bytes(), b"1" | b"5" | b"10") {
                return Err(Refused(400, "BadPriority"));
            }
        }
        if let Some(expiration) = r.headers.get("apns-expiration") {
            let integer = expiration.to_str().ok().and_then(|e| e.parse::<i64>().ok()).is_some_and(|e| e >= 0);
            if !integer {
                return Err(Refused(400, "BadExpirationDate"));
            }
        }
        if let Some(id) = r.headers.get("apns-id") {
            if !id.to_str().is_ok_and(is_uuid) {
                return Err(Refused(400, "BadMessageId"));
            }
        }
        if let Some(collapse_id) = r.headers.get("apns-collapse-id") {
            if collapse_id.len() > MAX_COLLAPSE_ID {
                return Err(Refused(400, "BadCollapseId"));
            }
        }

        if r.too_large {
            return Err(Refused(413, "PayloadTooLarge"));
        }
        if r.body.is_empty() {
            return Err(Refused(400, "PayloadEmpty"));
        }
        let limit = if push_type == "voip" { MAX_BODY_VOIP } else { MAX_BODY };
        if r.body.len() > limit {
            return Err(Refused(413, "PayloadTooLarge"));
        }
        let has_aps = r.json().is_some_and(|body| body.get("aps").is_some_and(Value::is_object));
        if !has_aps {
            // APNs' answer to malformed JSON is undocumented; a mock-only reason (apns.md §7.8).
            return Err(Refused(400, "MockInvalidJson"));
        }
        Ok(())
    }

    fn token_well_formed(&self, token: &str) -> bool {
        token.len() % 2 == 0
            && token.bytes().all(|b| b.is_ascii_hexdigit())
            && self.cfg.token_hex_len.is_none_or(|len| token.len() == len)
    }

    /// [`Apns::verify_jwt`], skipping the signature check for the header last verified on this
    /// connection (the age check always runs).
    fn verify_jwt_cached(&self, r: &ReadRequest, conn: &ApnsConn) -> Result<i64, Refused> {
        let header = r.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let cached = {
            let verified = lock(&conn.verified);
            verified.as_ref().filter(|(h, _)| Some(h.as_bytes()) == header).map(|(_, iat)| *iat)
        };
        if let Some(iat) = cached {
            if self.core.clock().now().timestamp() - iat > TOKEN_MAX_AGE_SECS {
                return Err(Refused(403, "ExpiredProviderToken"));
            }
            return Ok(iat);
        }
        let iat = self.verify_jwt(r)?;
        if let Some(h) = header.and_then(|h| std::str::from_utf8(h).ok()) {
            *lock(&conn.verified) = Some((h.to_owned(), iat));
        }
        Ok(iat)
    }

    /// Verifies the provider token; returns its `iat`.
    fn verify_jwt(&self, r: &ReadRequest) -> Result<i64, Refused> {
        const INVALID: Refused = Refused(403, "InvalidProviderToken");
        let value = r.headers.get(http::header::AUTHORIZATION).ok_or(Refused(403, "MissingProviderToken"))?;
        let jwt = value.to_str().ok().and_then(bearer).ok_or(INVALID)?;
        if jwt.split('.').count() != 3 {
            return Err(INVALID);
        }
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| INVALID)?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.cfg.key_id.as_str()) {
            return Err(INVALID);
        }
        let claims = jsonwebtoken::decode::<Value>(jwt, &self.key, &self.validation).map_err(|_| INVALID)?.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.cfg.team_id.as_str()) {
            return Err(INVALID);
        }
        let iat = claims.get("iat").and_then(Value::as_i64).ok_or(INVALID)?;
        if self.core.clock().now().timestamp() - iat > TOKEN_MAX_AGE_SECS {
            return Err(Refused(403, "ExpiredProviderToken"));
        }
        Ok(iat)
    }

    /// Per-connection token rule: the first valid token is the connection's; a new one (other
    /// `iat`) replaces it only if issued at least `token_update_min_interval` apart.
    fn use_token(&self, conn: &ApnsConn, iat: i64) -> Result<(), Refused> {
        let mut current = lock(&conn.token_iat);
        match *current {
            Some(in_use) if in_use != iat => {
                let apart = iat.abs_diff(in_use);
                if apart < self.cfg.token_update_min_interval.as_secs() {
                    return Err(Refused(429, "TooManyProviderTokenUpdates"));
                }
                *current = Some(iat);
            }
            Some(_) => {}
            None => *current = Some(iat),
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex digits (either case).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{client, stranger_ec_key_pem, APNS_KEY_P8, APNS_PUB_PEM};
    use super::super::MockRule;
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use jsonwebtoken::{EncodingKey, Header};

    const TEAM: &str = "DEMOTEAM01";
    const KID: &str = "DEMOKEY001";
    const TOPIC: &str = "com.example.im";
    const TOKEN: &str = "5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d5c1f3a0e9d0a0b";

    fn at_2026() -> ManualClock {
        ManualClock::new(chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid timestamp"))
    }

    fn jwt_with(key_pem: &str, kid: &str, team: &str, iat: i64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("demo key parses");
        jsonwebtoken::encode(&header, &json!({ "iss": team, "iat": iat }), &key).expect("signs")
    }

    fn jwt(iat: i64) -> String {
        jwt_with(APNS_KEY_P8, KID, TEAM, iat)
    }

    async fn start(clock: &ManualClock, tweak: impl FnOnce(&mut MockApnsConfig)) -> MockApns {
        let mut cfg = MockApnsConfig::new(TEAM, KID, APNS_PUB_PEM, TOPIC);
        cfg.clock = Arc::new(clock.clone());
        tweak(&mut cfg);
        MockApns::start(cfg).await.expect("mock starts")
    }

    struct Push {
        method: Method,
        token: String,
        auth: Option<String>,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    }

    impl Push {
        fn alert(auth: String) -> Self {
            Self {
                method: Method::POST,
                token: TOKEN.to_owned(),
                auth: Some(format!("bearer {auth}")),
                headers: vec![
                    ("apns-topic", TOPIC.to_owned()),
                    ("apns-push-type", "alert".to_owned()),
                    ("apns-priority", "10".to_owned()),
                ],
                body: br#"{"aps":{"alert":{"title":"Alice","body":"See you at 3?"}},"conv":"42"}"#.to_vec(),
            }
        }

        fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.retain(|(n, _)| *n != name);
            self.headers.push((name, value.to_owned()));
            self
        }

        async fn send(self, client: &reqwest::Client, mock: &MockApns) -> (u16, Value) {
            let url = mock.url().join(&format!("3/device/{}", self.token)).expect("url");
            let mut request = client.request(self.method, url).body(self.body);
            if let Some(auth) = self.auth {
                request = request.header("authorization", auth);
            }
            for (name, value) in self.headers {
                request = request.header(name, value);
            }
            let response = request.send().await.expect("mock answers");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("body");
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
    }

    #[tokio::test]
    async fn accepted_push_is_recorded_with_headers_and_body() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let now = clock.now().timestamp();
        let id = "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b";

        let (status, body) = Push::alert(jwt(now)).header("apns-id", id).send(&client, &mock).await;

        assert_eq!((status, body), (200, Value::Null));
        let got = mock.received_for(TOKEN);
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!((r.seq, r.vendor, r.status, r.connection), (1, "apns", 200, 1));
        assert_eq!(r.http_version, "HTTP/2.0");
        assert_eq!(r.headers["apns-topic"], TOPIC);
        assert_eq!(r.headers["apns-id"], id);
        assert_eq!(r.headers[":method"], "POST");
        assert_eq!(r.headers["authorization"], "bearer eyJ0e");
        assert_eq!(r.body["aps"]["alert"]["title"], "Alice");
        assert_eq!(r.body_bytes, Push::alert(String::new()).body.len());
        assert_eq!(r.answer, Value::Null);
        assert_eq!(mock.connections_opened(), 1);
    }

    #[tokio::test]
    async fn success_echoes_the_apns_id() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let id = "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b";
        let url = mock.url().join(&format!("3/device/{TOKEN}")).expect("url");

        let response = client
            .post(url)
            .header("authorization", format!("Bearer {}", jwt(clock.now().timestamp())))
            .header("apns-topic", TOPIC)
            .header("apns-id", id)
            .body(r#"{"aps":{}}"#)
            .send()
            .await
            .expect("mock answers");

        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["apns-id"], id);
    }

    #[tokio::test]
    async fn token_signed_by_another_key_is_invalid_provider_token() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let forged = jwt_with(&stranger_ec_key_pem(), KID, TEAM, clock.now().timestamp());

        let answer = Push::alert(forged).send(&client, &mock).await;

        assert_eq!(answer, (403, json!({ "reason": "InvalidProviderToken" })));
        assert_eq!(mock.received()[0].status, 403);
    }

    #[tokio::test]
    async fn token_older_than_an_hour_is_expired_provider_token() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let issued = clock.now().timestamp();
        clock.advance(chrono::Duration::seconds(3601));

        let answer = Push::alert(jwt(issued)).send(&client, &mock).await;

        assert_eq!(answer, (403, json!({ "reason": "ExpiredProviderToken" })));
    }

    #[tokio::test]
    async fn new_token_within_the_update_interval_is_too_many_provider_token_updates() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let first = clock.now().timestamp();

        let answers = [
            Push::alert(jwt(first)).send(&client, &mock).await.0,
            Push::alert(jwt(first + 60)).send(&client, &mock).await.0,
            // The connection kept the first token, which still works.
            Push::alert(jwt(first)).send(&client, &mock).await.0,
            Push::alert(jwt(first + 20 * 60)).send(&client, &mock).await.0,
        ];

        assert_eq!(answers, [200, 429, 200, 200]);
        assert_eq!(mock.received()[1].answer["reason"], "TooManyProviderTokenUpdates");
        assert_eq!(mock.connections_opened(), 1);
    }

    #[tokio::test]
    async fn oversized_body_is_payload_too_large_except_within_the_voip_limit() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());
        let body_of = |len: usize| {
            let mut body = br#"{"aps":{},"pad":""#.to_vec();
            body.resize(len - 2, b'x');
            body.extend_from_slice(br#""}"#);
            body
        };
        let mut big_alert = Push::alert(auth.clone());
        big_alert.body = body_of(4097);
        let mut fitting_alert = Push::alert(auth.clone());
        fitting_alert.body = body_of(4096);
        let mut voip =
            Push::alert(auth.clone()).header("apns-push-type", "voip").header("apns-topic", &format!("{TOPIC}.voip"));
        voip.body = body_of(5120);
        let mut big_voip =
            Push::alert(auth).header("apns-push-type", "voip").header("apns-topic", &format!("{TOPIC}.voip"));
        big_voip.body = body_of(5121);

        let too_large = json!({ "reason": "PayloadTooLarge" });
        assert_eq!(big_alert.send(&client, &mock).await, (413, too_large.clone()));
        assert_eq!(fitting_alert.send(&client, &mock).await.0, 200);
        assert_eq!(voip.send(&client, &mock).await.0, 200);
        assert_eq!(big_voip.send(&client, &mock).await, (413, too_large));
        let sizes: Vec<usize> = mock.received().iter().map(|r| r.body_bytes).collect();
        assert_eq!(sizes, [4097, 4096, 5120, 5121]);
    }

    #[tokio::test]
    async fn scripted_410_carries_the_chosen_timestamp_then_rule_runs_out() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());
        mock.script(
            MockRule::for_token(
                TOKEN,
                MockAnswer { timestamp_ms: Some(1_767_139_200_123), ..MockAnswer::with_reason("Unregistered") },
            )
            .times(1),
        );

        let first = Push::alert(auth.clone()).send(&client, &mock).await;
        let second = Push::alert(auth).send(&client, &mock).await;

        assert_eq!(first, (410, json!({ "reason": "Unregistered", "timestamp": 1_767_139_200_123_i64 })));
        assert_eq!(second.0, 200);
        assert!(mock.rules().is_empty());
    }

    #[tokio::test]
    async fn scripted_410_without_timestamp_uses_the_mock_clock() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        mock.script(MockRule::any(MockAnswer::with_status(410)));

        let answer = Push::alert(jwt(clock.now().timestamp())).send(&client, &mock).await;

        let now_ms = clock.now().timestamp_millis();
        assert_eq!(answer, (410, json!({ "reason": "Unregistered", "timestamp": now_ms })));
    }

    #[tokio::test]
    async fn scripted_rules_apply_only_after_validation_passes() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        mock.script(MockRule::any(MockAnswer::with_status(503)).times(1));

        let refused = Push::alert("not-a-jwt".into()).send(&client, &mock).await;
        let scripted = Push::alert(jwt(clock.now().timestamp())).send(&client, &mock).await;

        assert_eq!(refused, (403, json!({ "reason": "InvalidProviderToken" })));
        assert_eq!(scripted, (503, json!({ "reason": "ServiceUnavailable" })));
    }

    #[tokio::test]
    async fn expire_auth_answers_expired_provider_token_once() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());
        mock.script(MockRule::any(MockAnswer { expire_auth: true, ..MockAnswer::default() }).times(1));

        let first = Push::alert(auth.clone()).send(&client, &mock).await;
        let second = Push::alert(auth).send(&client, &mock).await;

        assert_eq!(first, (403, json!({ "reason": "ExpiredProviderToken" })));
        assert_eq!(second.0, 200);
    }

    #[tokio::test]
    async fn malformed_requests_get_the_apns_reason() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());
        let ok = || Push::alert(auth.clone());
        let with_token = |token: &str| Push { token: token.to_owned(), ..ok() };
        let with_body = |body: &[u8]| Push { body: body.to_vec(), ..ok() };
        let cases: Vec<(&str, Push, u16, &str)> = vec![
            ("GET", Push { method: Method::GET, ..ok() }, 405, "MethodNotAllowed"),
            ("empty token", with_token(""), 400, "MissingDeviceToken"),
            ("odd hex", with_token(&TOKEN[1..]), 400, "BadDeviceToken"),
            ("not hex", with_token(&"zz".repeat(32)), 400, "BadDeviceToken"),
            ("short", with_token(&TOKEN[2..]), 400, "BadDeviceToken"),
            ("no auth", Push { auth: None, ..ok() }, 403, "MissingProviderToken"),
            ("basic scheme", Push { auth: Some(format!("Basic {auth}")), ..ok() }, 403, "InvalidProviderToken"),
            (
                "unknown kid",
                Push::alert(jwt_with(APNS_KEY_P8, "OTHERKEY01", TEAM, clock.now().timestamp())),
                403,
                "InvalidProviderToken",
            ),
            (
                "other team",
                Push::alert(jwt_with(APNS_KEY_P8, KID, "OTHERTEAM1", clock.now().timestamp())),
                403,
                "InvalidProviderToken",
            ),
            ("no topic", Push { headers: vec![], ..ok() }, 400, "MissingTopic"),
            ("foreign topic", ok().header("apns-topic", "com.other"), 400, "TopicDisallowed"),
            ("voip topic for alert", ok().header("apns-topic", &format!("{TOPIC}.voip")), 400, "BadTopic"),
            ("push type", ok().header("apns-push-type", "shout"), 400, "InvalidPushType"),
            ("priority", ok().header("apns-priority", "7"), 400, "BadPriority"),
            ("expiration", ok().header("apns-expiration", "soon"), 400, "BadExpirationDate"),
            ("apns-id", ok().header("apns-id", "42"), 400, "BadMessageId"),
            ("collapse id", ok().header("apns-collapse-id", &"c".repeat(65)), 400, "BadCollapseId"),
            ("empty body", with_body(b""), 400, "PayloadEmpty"),
            ("not json", with_body(b"{\"aps\":"), 400, "MockInvalidJson"),
            ("no aps", with_body(br#"{"alert":"hi"}"#), 400, "MockInvalidJson"),
            ("aps not object", with_body(br#"{"aps":1}"#), 400, "MockInvalidJson"),
        ];
        let mut failures = Vec::new();
        for (name, push, status, reason) in cases {
            let expected = (status, json!({ "reason": reason }));
            let got = push.send(&client, &mock).await;
            if got != expected {
                failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        let (wrong_path, _) = send_raw(&client, mock.url().join("3/devices/x").expect("url")).await;
        assert_eq!(wrong_path, 404);
    }

    async fn send_raw(client: &reqwest::Client, url: url::Url) -> (u16, Value) {
        let response = client.post(url).send().await.expect("mock answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn lowered_max_concurrent_streams_is_respected() {
        let clock = at_2026();
        let mock = start(&clock, |cfg| cfg.max_concurrent_streams = 3).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());
        // Warm-up: the client learns the server's SETTINGS before the burst.
        assert_eq!(Push::alert(auth.clone()).send(&client, &mock).await.0, 200);
        mock.script(MockRule::any(MockAnswer { delay_ms: Some(40), ..MockAnswer::default() }));

        let burst = (0..24).map(|_| Push::alert(auth.clone()).send(&client, &mock));
        let answers = futures_util::future::join_all(burst).await;

        assert!(answers.iter().all(|(status, _)| *status == 200));
        let peak = mock.max_concurrent_seen();
        assert!((2..=3).contains(&peak), "peak concurrent streams {peak}");
        assert_eq!(mock.connections_opened(), 1);
    }

    #[tokio::test]
    async fn wait_for_returns_once_the_condition_holds_or_reports_what_arrived() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let client = client(&mock, true);
        let auth = jwt(clock.now().timestamp());

        let waiter = mock.wait_for(|r| r.len() == 2, Duration::from_secs(10));
        let sender = async {
            Push::alert(auth.clone()).send(&client, &mock).await;
            Push::alert(auth.clone()).send(&client, &mock).await;
        };
        let (waited, ()) = tokio::join!(waiter, sender);
        let timed_out = mock.wait_for(|r| r.len() == 3, Duration::from_millis(50)).await;

        assert_eq!(waited.expect("two requests arrive").len(), 2);
        let error = timed_out.expect_err("a third never comes");
        assert!(error.contains("2 request(s) received"), "{error}");
        assert!(error.contains(TOKEN), "{error}");
    }

    #[tokio::test]
    async fn shutdown_stops_serving_new_connections() {
        let clock = at_2026();
        let mock = start(&clock, |_| {}).await;
        let url = mock.url().join(&format!("3/device/{TOKEN}")).expect("url");
        mock.shutdown();

        // Refused, reset or never answered: any way, not served. The timeout only bounds
        // the test if the kernel queued the connection before the listener closed.
        let outcome = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).expect("CA"))
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client")
            .post(url)
            .send()
            .await;

        assert!(outcome.is_err(), "{outcome:?}");
        assert!(mock.received().is_empty());
    }
}
