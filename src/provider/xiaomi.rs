//! Xiaomi MiPush (小米推送, server REST API): the wire format, the app-secret header and the
//! error table of `docs/vendors/xiaomi.md`.
//!
//! Owns: the form-encoded `POST {endpoint}/v3/message/regid` for a batch of up to
//! [`MAX_BATCH`] regIds sharing one notification, the `Authorization: key=<AppSecret>` header
//! (per-request material, [`AuthPlan::None`]), the private-message channel
//! (`extra.channel_id`) that keeps IM out of the 1-per-day default class, pushd's text budget
//! (title < 50, description < 128 chars), and the mapping of every documented answer to an
//! [`Outcome`] per regId (`data.bad_regids` names the invalid ones of a batch).
//!
//! Deliberately not here: grouping pushes into batches (the shared layer, by [`Vendor::batch_key`]),
//! the transport, retries, parking on the daily quota, sleeping and metrics.
//!
//! ```text
//! VendorPush ─▶ form {registration_id=a,b,…, restricted_package_name, title, description,
//!               payload={msg,conv,sender,…}, notify_id, time_to_live, extra.channel_id, …}
//!            ─▶ POST /v3/message/regid + Authorization: key=<secret>
//! 200 {"result","code","reason","data":{"bad_regids":"…"}} ─▶ code table ─▶ Outcome per regId
//! ```

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::form::{self, Texts};
use super::{AuthPlan, AuthToken, BuildError, Outcome, Vendor, VendorPush, VendorRequest};
use crate::model::{PushType, Timestamp, Token, VendorKind};

/// Production host, mainland China (xiaomi.md §1).
pub const DEFAULT_ENDPOINT: &str = "https://api.xmpush.xiaomi.com";

/// The send path: one message to a list of regIds.
pub const SEND_PATH: &str = "v3/message/regid";

/// The `Content-Type` of a send.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";

/// Most regIds one request may carry (xiaomi.md §3–4).
pub const MAX_BATCH: usize = 1000;

/// Longest `title` Xiaomi accepts, in chars (a CJK char counts 1): "< 50".
pub const TITLE_MAX_CHARS: usize = 49;

/// Longest `description` Xiaomi accepts, in chars: "< 128". This is the push's size budget:
/// `render::fit` shortens the body to it.
pub const DESCRIPTION_MAX_CHARS: usize = 127;

/// Largest `payload` (the deep-link JSON) pushd sends, in bytes. **Unverified**: Xiaomi documents
/// error 65009 "payload too long" but no number; 4 KiB is the common limit of the other vendors.
pub const PAYLOAD_MAX_BYTES: usize = 4096;

/// Longest offline storage of a private (私信) message: 10 days (2024 doc); longer TTLs are capped.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 86_400);

/// `notify_id` values are kept within `0..=NOTIFY_ID_MAX`. **Unverified**: the id's range is not
/// documented; the Java SDK takes an `int`, so pushd stays in the non-negative `i32` range.
pub const NOTIFY_ID_MAX: u32 = i32::MAX as u32;

/// The key of `data` that lists the invalid regIds of an accepted batch, comma-separated.
/// **Unverified**: read by community clients (go-push-api, mizhousoft), absent from the readable
/// official docs. Without it every regId of an accepted call counts as delivered.
pub const BAD_REGIDS_FIELD: &str = "bad_regids";

/// Wait before retrying a rate-limited (10027) or busy (10002) answer: "retry after ≥ 1 s".
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The build errors' texts.
const TEXTS: Texts = Texts {
    bad_endpoint: "Xiaomi endpoint must be an http(s) base URL",
    batch: "Xiaomi takes 1 to 1000 regIds per request",
    comma: "a Xiaomi regId cannot contain a comma (the list separator)",
    no_text: "Xiaomi needs a title or a description",
};

/// `notify_type` = sound + vibrate + lights (the system default set).
const NOTIFY_TYPE_DEFAULT_ALL: &str = "-1";

/// `extra.notify_effect` = open the launcher activity; the app reads `payload` for the deep link.
const NOTIFY_EFFECT_LAUNCHER: &str = "1";

/// Configuration of one Xiaomi credential.
#[derive(Clone)]
pub struct XiaomiConfig {
    /// Base URL: [`DEFAULT_ENDPOINT`], a global regional host, or the loopback mock.
    pub endpoint: url::Url,
    /// The AppSecret from the Xiaomi console. Never logged.
    pub app_secret: String,
    /// The Android package, sent as `restricted_package_name`.
    pub package_name: String,
    /// The private-message (私信) channel approved for the app, sent as `extra.channel_id`.
    pub channel_id: String,
}

impl fmt::Debug for XiaomiConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XiaomiConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("app_secret", &"<redacted>")
            .field("package_name", &self.package_name)
            .field("channel_id", &self.channel_id)
            .finish()
    }
}

/// The Xiaomi vendor: builds requests and classifies answers for one credential.
pub struct Xiaomi {
    send_url: url::Url,
    authorization: HeaderValue,
    package_name: String,
    channel_id: String,
}

impl fmt::Debug for Xiaomi {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xiaomi")
            .field("send_url", &self.send_url.as_str())
            .field("package_name", &self.package_name)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

impl Xiaomi {
    /// Validates the configuration once, so a bad secret or URL fails at startup.
    pub fn new(cfg: XiaomiConfig) -> Result<Xiaomi, BuildError> {
        let send_url = form::send_url(cfg.endpoint, SEND_PATH, &TEXTS)?;
        if cfg.app_secret.trim().is_empty() {
            return Err(BuildError::Signing("Xiaomi app_secret is empty"));
        }
        let mut authorization = HeaderValue::from_str(&format!("key={}", cfg.app_secret))
            .map_err(|_| BuildError::Signing("Xiaomi app_secret is not a valid header value"))?;
        authorization.set_sensitive(true);
        if cfg.package_name.is_empty() {
            return Err(BuildError::Payload("Xiaomi package_name is empty"));
        }
        if cfg.channel_id.is_empty() {
            return Err(BuildError::Payload("Xiaomi channel_id is empty"));
        }
        Ok(Xiaomi { send_url, authorization, package_name: cfg.package_name, channel_id: cfg.channel_id })
    }

    /// Every form field but `registration_id`, in wire order: the content a batch shares.
    fn content_fields(&self, push: &VendorPush) -> Result<Vec<(&'static str, String)>, BuildError> {
        let payload = serde_json::to_string(&push.data)
            .map_err(|_| BuildError::Payload("Xiaomi payload could not be encoded as JSON"))?;
        if payload.len() > PAYLOAD_MAX_BYTES {
            return Err(BuildError::Payload("Xiaomi payload (custom data) is too long"));
        }
        let mut fields: Vec<(&'static str, String)> = vec![("restricted_package_name", self.package_name.clone())];
        match push.push_type {
            // Pass-through: no notification, the app gets the payload. Xiaomi has announced
            // it stops delivering these; it is the only silent form it has.
            PushType::Silent => {
                fields.push(("pass_through", "1".into()));
                fields.push(("payload", payload));
            }
            PushType::Alert | PushType::Voip => {
                let (title, description) = form::texts(push, TITLE_MAX_CHARS, DESCRIPTION_MAX_CHARS, &TEXTS)?;
                fields.push(("pass_through", "0".into()));
                fields.push(("title", title));
                fields.push(("description", description));
                fields.push(("payload", payload));
                fields.push(("notify_type", NOTIFY_TYPE_DEFAULT_ALL.into()));
                if let Some(id) = push.collapse_id.as_deref().or(push.thread_id.as_deref()) {
                    fields.push(("notify_id", notify_id(id).to_string()));
                }
            }
        }
        if let Some(ttl) = push.ttl {
            fields.push(("time_to_live", ttl.min(MAX_TTL).as_millis().to_string()));
        }
        fields.push(("extra.channel_id", self.channel_id.clone()));
        if push.push_type != PushType::Silent {
            fields.push(("extra.notify_effect", NOTIFY_EFFECT_LAUNCHER.into()));
            if let Some(sound) = push.sound.as_deref().filter(|s| *s != "default" && !s.is_empty()) {
                fields.push(("extra.sound_uri", format!("android.resource://{}/raw/{sound}", self.package_name)));
            }
        }
        Ok(fields)
    }
}

/// A stable `notify_id` for a conversation (or collapse id): FNV-1a, within [`NOTIFY_ID_MAX`].
/// One shown notification per conversation: a newer message replaces the older one.
fn notify_id(key: &str) -> u32 {
    form::fnv1a(key) & NOTIFY_ID_MAX
}

/// The JSON answer to a send (xiaomi.md §5). `code` is a number; every field may be missing.
#[derive(Deserialize)]
struct Answer {
    code: Option<i64>,
    #[serde(default)]
    reason: String,
    data: Option<serde_json::Value>,
}

/// The regIds named invalid in `data.`[`BAD_REGIDS_FIELD`]: a comma-separated string (also
/// read as a JSON array, in case).
fn bad_regids(data: Option<&serde_json::Value>) -> Vec<String> {
    match data.and_then(|d| d.get(BAD_REGIDS_FIELD)) {
        Some(serde_json::Value::String(s)) => {
            s.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect()
        }
        Some(serde_json::Value::Array(ids)) => ids.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// How a non-zero business code is treated for every regId of the request.
fn code_outcome(code: i64, reason: &str) -> Outcome {
    match code {
        -1 | 1 | 10001 | 10003 | 22102 | 26003 | 65029 => Outcome::Retry { after: None, reason: "server_error" },
        10002 => Outcome::Retry { after: Some(BUSY_RETRY_AFTER), reason: "system_busy" },
        10027 => Outcome::Retry { after: Some(BUSY_RETRY_AFTER), reason: "rate_limited" },
        10034 | 200_001 => Outcome::QuotaExhausted { until: None, reason: "daily_quota" },
        20301 if reason.contains("No valid targets") => {
            Outcome::InvalidToken { reason: "no_valid_targets", since: None }
        }
        20301 => Outcome::Retry { after: None, reason: "send_failed" },
        10008 | 10012 | 10016 | 10017 | 21305 | 65011 => Outcome::Fatal { reason: "bad_parameter" },
        65009 | 65014 | 65015 => Outcome::Fatal { reason: "payload_too_long" },
        65036..=65038 => Outcome::Fatal { reason: "bad_callback" },
        21301 | 21302 => Outcome::Fatal { reason: "auth_failed" },
        21303 | 10036 | 10031 => Outcome::Fatal { reason: "app_forbidden" },
        22000 | 22006 | 22007 | 22022 => Outcome::Fatal { reason: "bad_app_config" },
        26006 => Outcome::Fatal { reason: "needs_review" },
        27001 => Outcome::Fatal { reason: "channel_mismatch" },
        // Usually an offline device: not a dead token.
        65003 => Outcome::Retry { after: None, reason: "device_not_found" },
        10029 => Outcome::InvalidToken { reason: "illegal_device", since: None },
        10030 | 10032 | 10033 | 10035 => Outcome::Fatal { reason: "feedback_error" },
        65006..=65008 | 65010 | 65012 | 65013 | 65016 | 65017 | 65035 => Outcome::Fatal { reason: "target_error" },
        _ => Outcome::Fatal { reason: "unknown_code" },
    }
}

impl Vendor for Xiaomi {
    fn kind(&self) -> VendorKind {
        VendorKind::Xiaomi
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// The hash of every form field but `registration_id`: Xiaomi has no badge field, so pushes
    /// differing only in the per-user badge batch together.
    fn batch_key(&self, push: &VendorPush) -> Option<u64> {
        let fields = self.content_fields(push).ok()?;
        Some(super::batch_key_of(&fields))
    }

    /// The secret travels in every request's header: nothing to fetch or cache.
    fn auth_plan(&self, _now: Timestamp) -> AuthPlan {
        AuthPlan::None
    }

    fn payload_limit(&self, _push: &VendorPush) -> usize {
        DESCRIPTION_MAX_CHARS
    }

    /// Chars of the body (the description); the title is cut to its own limit when sent. A
    /// payload over [`PAYLOAD_MAX_BYTES`] cannot be shortened: `usize::MAX`.
    fn payload_size(&self, push: &VendorPush) -> usize {
        let payload = serde_json::to_string(&push.data).map_or(usize::MAX, |p| p.len());
        if payload > PAYLOAD_MAX_BYTES {
            return usize::MAX;
        }
        push.body.chars().count()
    }

    fn request(
        &self,
        push: &VendorPush,
        tokens: &[Token],
        _auth: Option<&AuthToken>,
        _now: Timestamp,
    ) -> Result<VendorRequest, BuildError> {
        let ids = form::token_list(tokens, MAX_BATCH, &TEXTS)?;
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        body.append_pair("registration_id", &ids);
        for (name, value) in self.content_fields(push)? {
            body.append_pair(name, &value);
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        Ok(VendorRequest {
            method: Method::POST,
            url: self.send_url.clone(),
            headers,
            body: Bytes::from(body.finish()),
        })
    }

    /// `code` 0 delivers every regId except those in `data.bad_regids`; any other code applies
    /// to the whole request (xiaomi.md §5). A token with a comma was never sent: invalid.
    fn classify(&self, tokens: &[Token], status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> Vec<Outcome> {
        form::outcomes(tokens, status, body, BUSY_RETRY_AFTER, |body| {
            let answer = serde_json::from_slice::<Answer>(body).ok()?;
            Some(match answer.code? {
                0 => {
                    let bad = bad_regids(answer.data.as_ref());
                    tokens
                        .iter()
                        .map(|t| {
                            if bad.iter().any(|b| b == t.as_str()) {
                                Outcome::InvalidToken { reason: "bad_regid", since: None }
                            } else {
                                Outcome::Delivered
                            }
                        })
                        .collect()
                }
                code => vec![code_outcome(code, &answer.reason); tokens.len()],
            })
        })
    }
}

/// The `[credentials.<name>]` fields of a Xiaomi credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XiaomiCredential {
    /// Base URL; default [`DEFAULT_ENDPOINT`].
    endpoint: Option<String>,
    /// AppSecret (the only server credential).
    app_secret: String,
    /// Android package (`restricted_package_name`).
    package_name: String,
    /// The approved private-message channel (`extra.channel_id`). Required: without it Xiaomi
    /// files IM under the default class, 1 message per device per day.
    channel_id: String,
}

/// Builds a Xiaomi vendor from its credential table.
pub fn from_config(
    table: &toml::Table,
    ctx: &super::credential::CredentialContext<'_>,
) -> Result<super::credential::VendorBuild, Vec<super::credential::Problem>> {
    use super::credential::{fields, Problem, VendorBuild};
    let c: XiaomiCredential = fields(table)?;
    let mut problems = Vec::new();
    let endpoint = ctx.url("endpoint", c.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)).map_err(|p| problems.push(p));
    for (field, value) in
        [("app_secret", &c.app_secret), ("package_name", &c.package_name), ("channel_id", &c.channel_id)]
    {
        if value.trim().is_empty() {
            problems.push(Problem::new(field, "must not be empty"));
        }
    }
    let endpoint = match endpoint {
        Ok(endpoint) if problems.is_empty() => endpoint,
        _ => return Err(problems),
    };
    let cfg =
        XiaomiConfig { endpoint, app_secret: c.app_secret, package_name: c.package_name, channel_id: c.channel_id };
    let xiaomi = Xiaomi::new(cfg).map_err(|e| {
        let field = if matches!(e, BuildError::Signing(_)) { "app_secret" } else { "endpoint" };
        vec![Problem::new(field, e.to_string())]
    })?;
    Ok(VendorBuild::https(xiaomi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures::{self, at, form, push, table, token, tokens};

    /// The two made-up regIds of xiaomi.md §3 (Base64, with `=` padding).
    const REG_A: &str = "Qm9ndXNSZWdJZEFBQUFBQUFBQUFBQUFBQUFBQUFBQT0=";
    const REG_B: &str = "Qm9ndXNSZWdJZEJCQkJCQkJCQkJCQkJCQkJCQkJCQj0=";
    const SECRET: &str = "dGVzdC1zZWNyZXQtMDE=";

    fn xiaomi_at(endpoint: &str) -> Xiaomi {
        Xiaomi::new(XiaomiConfig {
            endpoint: url::Url::parse(endpoint).expect("url"),
            app_secret: SECRET.into(),
            package_name: "com.example.im".into(),
            channel_id: "im_private_01".into(),
        })
        .expect("valid config")
    }

    fn xiaomi() -> Xiaomi {
        xiaomi_at(DEFAULT_ENDPOINT)
    }

    fn send(x: &Xiaomi, p: &VendorPush, ids: &[&str]) -> VendorRequest {
        x.request(p, &tokens(ids), None, at(0)).expect("request")
    }

    #[test]
    fn a_batch_is_one_form_post_with_the_secret_header_and_the_private_channel() {
        let req = send(&xiaomi(), &push(PushType::Alert), &[REG_A, REG_B]);
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.url.as_str(), "https://api.xmpush.xiaomi.com/v3/message/regid");
        let auth = req.headers.get("authorization").expect("auth");
        assert_eq!(auth, "key=dGVzdC1zZWNyZXQtMDE=");
        assert!(auth.is_sensitive());
        assert_eq!(req.headers.get("content-type").expect("ct"), "application/x-www-form-urlencoded;charset=UTF-8");
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            "registration_id=Qm9ndXNSZWdJZEFBQUFBQUFBQUFBQUFBQUFBQUFBQT0%3D%2CQm9ndXNSZWdJZEJCQkJCQkJCQkJCQkJCQkJCQkJCQj0%3D\
             &restricted_package_name=com.example.im&pass_through=0&title=Alice\
             &description=See+you+at+8%3F\
             &payload=%7B%22conv%22%3A%22c42%22%2C%22msg%22%3A%22m9%22%2C%22sender%22%3A%22alice%22%7D\
             &notify_type=-1&notify_id=854779872&time_to_live=86400000\
             &extra.channel_id=im_private_01&extra.notify_effect=1"
        );
    }

    #[test]
    fn regids_with_plus_slash_and_equals_survive_the_form_encoding() {
        let odd = "ab+cd/ef==";
        let req = send(&xiaomi(), &push(PushType::Alert), &[odd, REG_A]);
        assert_eq!(form(&req)["registration_id"], format!("{odd},{REG_A}"));
        assert!(req.body.starts_with(b"registration_id=ab%2Bcd%2Fef%3D%3D%2C"));
    }

    #[test]
    fn a_silent_push_is_pass_through_with_only_the_payload() {
        let mut p = push(PushType::Silent);
        p.title.clear();
        p.body.clear();
        let f = form(&send(&xiaomi(), &p, &[REG_A]));
        assert_eq!(f["pass_through"], "1");
        assert_eq!(f["payload"], r#"{"conv":"c42","msg":"m9","sender":"alice"}"#);
        assert_eq!(f["extra.channel_id"], "im_private_01");
        for absent in ["title", "description", "notify_type", "notify_id", "extra.notify_effect"] {
            assert!(!f.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn a_voip_push_is_a_notification_on_the_private_channel() {
        let mut p = push(PushType::Voip);
        p.sound = None;
        let f = form(&send(&xiaomi(), &p, &[REG_A]));
        assert_eq!((f["pass_through"].as_str(), f["title"].as_str()), ("0", "Alice"));
        assert_eq!(f["extra.channel_id"], "im_private_01");
    }

    #[test]
    fn title_and_description_are_cut_to_xiaomis_char_limits() {
        let mut p = push(PushType::Alert);
        p.title = "群".repeat(60);
        p.body = "字".repeat(200);
        let f = form(&send(&xiaomi(), &p, &[REG_A]));
        assert_eq!(f["title"].chars().count(), 49);
        assert!(f["title"].ends_with('…'));
        assert_eq!(f["description"].chars().count(), 127);
        p.title = "t".repeat(49);
        assert_eq!(form(&send(&xiaomi(), &p, &[REG_A]))["title"], "t".repeat(49));
    }

    #[test]
    fn an_empty_title_or_description_borrows_the_other_text() {
        let mut p = push(PushType::Alert);
        p.body = "  ".into();
        let f = form(&send(&xiaomi(), &p, &[REG_A]));
        assert_eq!((f["title"].as_str(), f["description"].as_str()), ("Alice", "Alice"));
        p.title.clear();
        assert!(matches!(xiaomi().request(&p, &[token(REG_A)], None, at(0)), Err(BuildError::Payload(_))));
    }

    #[test]
    fn ttl_is_sent_in_milliseconds_capped_at_ten_days_and_left_out_when_unset() {
        let mut p = push(PushType::Alert);
        p.ttl = Some(Duration::from_secs(30 * 86_400));
        assert_eq!(form(&send(&xiaomi(), &p, &[REG_A]))["time_to_live"], "864000000");
        p.ttl = None;
        assert!(!form(&send(&xiaomi(), &p, &[REG_A])).contains_key("time_to_live"));
    }

    #[test]
    fn notify_id_is_stable_per_conversation_and_the_collapse_id_wins() {
        let mut p = push(PushType::Alert);
        let by_conv = form(&send(&xiaomi(), &p, &[REG_A]))["notify_id"].clone();
        p.body = "another message".into();
        assert_eq!(form(&send(&xiaomi(), &p, &[REG_A]))["notify_id"], by_conv);
        p.collapse_id = Some("call-7".into());
        let by_collapse: u64 = form(&send(&xiaomi(), &p, &[REG_A]))["notify_id"].parse().expect("number");
        assert_ne!(by_collapse.to_string(), by_conv);
        assert!(by_collapse <= u64::from(NOTIFY_ID_MAX));
        p.collapse_id = None;
        p.thread_id = None;
        assert!(!form(&send(&xiaomi(), &p, &[REG_A])).contains_key("notify_id"));
    }

    #[test]
    fn a_custom_sound_points_at_the_apps_raw_resource() {
        let mut p = push(PushType::Alert);
        p.sound = Some("ping".into());
        assert_eq!(
            form(&send(&xiaomi(), &p, &[REG_A]))["extra.sound_uri"],
            "android.resource://com.example.im/raw/ping"
        );
    }

    #[test]
    fn the_endpoint_path_prefix_is_kept() {
        let req = send(&xiaomi_at("https://127.0.0.1:9000/xm/"), &push(PushType::Alert), &[REG_A]);
        assert_eq!(req.url.as_str(), "https://127.0.0.1:9000/xm/v3/message/regid");
    }

    #[test]
    fn a_request_takes_one_to_a_thousand_regids() {
        let x = xiaomi();
        let p = push(PushType::Alert);
        assert_eq!(x.max_batch(), 1000);
        assert!(x.request(&p, &[], None, at(0)).is_err());
        let many: Vec<Token> = (0..1001).map(|i| token(&format!("r{i}"))).collect();
        assert!(x.request(&p, &many[..1000], None, at(0)).is_ok());
        assert!(x.request(&p, &many, None, at(0)).is_err());
    }

    #[test]
    fn a_regid_with_a_comma_is_left_out_and_invalid_without_failing_its_batch() {
        let x = xiaomi();
        let p = push(PushType::Alert);
        let tokens = [token(REG_A), token("a,b"), token(REG_B)];
        let req = x.request(&p, &tokens, None, at(0)).expect("the others still go");
        assert_eq!(form(&req)["registration_id"], format!("{REG_A},{REG_B}"));
        let ok = r#"{"result":"ok","code":0,"data":{"id":"alm1"}}"#;
        let got = x.classify(&tokens, StatusCode::OK, &HeaderMap::new(), ok.as_bytes());
        let malformed = Outcome::InvalidToken { reason: "malformed_token", since: None };
        assert_eq!(got, vec![Outcome::Delivered, malformed, Outcome::Delivered]);
        assert!(x.request(&p, &[token("a,b")], None, at(0)).is_err());
    }

    #[test]
    fn pushes_differing_only_in_badge_share_a_batch_key_and_other_content_does_not() {
        let x = xiaomi();
        let a = push(PushType::Alert);
        let mut b = push(PushType::Alert);
        b.badge = Some(99);
        b.created_at = at(1_767_225_601);
        assert_eq!(x.batch_key(&a), x.batch_key(&b));
        assert!(x.batch_key(&a).is_some());
        let mut c = push(PushType::Alert);
        c.body = "something else".into();
        assert_ne!(x.batch_key(&a), x.batch_key(&c));
        let mut d = push(PushType::Alert);
        d.data.insert("route".into(), "/x".into());
        assert_ne!(x.batch_key(&a), x.batch_key(&d));
    }

    #[test]
    fn the_size_budget_is_the_description_in_chars_and_custom_data_cannot_be_cut() {
        let x = xiaomi();
        let mut p = push(PushType::Alert);
        p.body = "你好".into();
        assert_eq!((x.payload_size(&p), x.payload_limit(&p)), (2, 127));
        p.data.insert("big".into(), "x".repeat(PAYLOAD_MAX_BYTES));
        assert_eq!(x.payload_size(&p), usize::MAX);
        assert!(matches!(x.request(&p, &[token(REG_A)], None, at(0)), Err(BuildError::Payload(_))));
    }

    #[test]
    fn auth_is_per_request_material() {
        assert!(matches!(xiaomi().auth_plan(at(0)), AuthPlan::None));
    }

    fn classify(ids: &[&str], status: u16, body: &str) -> Vec<Outcome> {
        fixtures::classify(&xiaomi(), &tokens(ids), status, &HeaderMap::new(), body)
    }

    fn error_body(code: i64, reason: &str) -> String {
        serde_json::json!({
            "result": "error", "reason": reason, "trace_id": "Xcm01b00000000000000cc",
            "code": code, "description": "发送消息失败"
        })
        .to_string()
    }

    #[test]
    fn every_row_of_the_xiaomi_answer_table_maps_to_its_outcome() {
        use Outcome::*;
        let retry = Retry { after: None, reason: "server_error" };
        let rows: Vec<(i64, &str, Outcome)> = vec![
            (-1, "", retry.clone()),
            (1, "", retry.clone()),
            (10001, "", retry.clone()),
            (10003, "", retry.clone()),
            (22102, "", retry.clone()),
            (26003, "", retry.clone()),
            (65029, "", retry),
            (10002, "system busy", Retry { after: Some(Duration::from_secs(1)), reason: "system_busy" }),
            (10027, "too often", Retry { after: Some(Duration::from_secs(1)), reason: "rate_limited" }),
            (10034, "", QuotaExhausted { until: None, reason: "daily_quota" }),
            (
                200_001,
                "exceed quota, quota: 20000, have acked: 20000",
                QuotaExhausted { until: None, reason: "daily_quota" },
            ),
            (20301, "No valid targets!", InvalidToken { reason: "no_valid_targets", since: None }),
            (20301, "send failed", Retry { after: None, reason: "send_failed" }),
            (10017, "title is required", Fatal { reason: "bad_parameter" }),
            (10008, "", Fatal { reason: "bad_parameter" }),
            (10012, "", Fatal { reason: "bad_parameter" }),
            (10016, "", Fatal { reason: "bad_parameter" }),
            (21305, "", Fatal { reason: "bad_parameter" }),
            (65011, "", Fatal { reason: "bad_parameter" }),
            (65009, "payload too long", Fatal { reason: "payload_too_long" }),
            (65014, "", Fatal { reason: "payload_too_long" }),
            (65015, "", Fatal { reason: "payload_too_long" }),
            (65036, "", Fatal { reason: "bad_callback" }),
            (65038, "", Fatal { reason: "bad_callback" }),
            (21301, "Invalid application secret.", Fatal { reason: "auth_failed" }),
            (21302, "", Fatal { reason: "auth_failed" }),
            (21303, "", Fatal { reason: "app_forbidden" }),
            (10036, "", Fatal { reason: "app_forbidden" }),
            (10031, "", Fatal { reason: "app_forbidden" }),
            (22000, "", Fatal { reason: "bad_app_config" }),
            (22006, "", Fatal { reason: "bad_app_config" }),
            (22007, "", Fatal { reason: "bad_app_config" }),
            (22022, "", Fatal { reason: "bad_app_config" }),
            (26006, "", Fatal { reason: "needs_review" }),
            (27001, "channel相关信息不匹配", Fatal { reason: "channel_mismatch" }),
            (65003, "", Retry { after: None, reason: "device_not_found" }),
            (10029, "", InvalidToken { reason: "illegal_device", since: None }),
            (10030, "", Fatal { reason: "feedback_error" }),
            (10035, "", Fatal { reason: "feedback_error" }),
            (65006, "", Fatal { reason: "target_error" }),
            (65035, "", Fatal { reason: "target_error" }),
            (99999, "", Fatal { reason: "unknown_code" }),
        ];
        for (code, reason, expected) in rows {
            let got = classify(&[REG_A, REG_B], 200, &error_body(code, reason));
            assert_eq!(got, vec![expected.clone(), expected], "{code} {reason}");
        }
    }

    #[test]
    fn a_recorded_success_delivers_every_regid() {
        let body = r#"{"result":"ok","trace_id":"Xlm01b00000000000000aa","code":0,
            "data":{"id":"alm01b00000000000000bb"},"description":"成功",
            "info":"Received push messages for 2 REGID"}"#;
        assert_eq!(classify(&[REG_A, REG_B], 200, body), vec![Outcome::Delivered, Outcome::Delivered]);
    }

    #[test]
    fn bad_regids_of_an_accepted_batch_are_invalid_and_only_those() {
        let body = serde_json::json!({
            "result": "ok", "code": 0, "trace_id": "Xlm1",
            "data": { "id": "alm1", "bad_regids": format!("{REG_B}, other") }
        })
        .to_string();
        let invalid = Outcome::InvalidToken { reason: "bad_regid", since: None };
        assert_eq!(
            classify(&[REG_A, REG_B, "c"], 200, &body),
            vec![Outcome::Delivered, invalid.clone(), Outcome::Delivered]
        );
        let as_array = serde_json::json!({ "code": 0, "data": { "bad_regids": [REG_A] } }).to_string();
        assert_eq!(classify(&[REG_A, REG_B], 200, &as_array), vec![invalid, Outcome::Delivered]);
    }

    #[test]
    fn transport_statuses_and_unreadable_answers() {
        let unreadable = Outcome::Retry { after: None, reason: "unreadable_answer" };
        assert_eq!(classify(&[REG_A], 200, "<html>"), vec![unreadable.clone()]);
        assert_eq!(classify(&[REG_A], 200, r#"{"result":"ok"}"#), vec![unreadable]);
        assert_eq!(classify(&[REG_A], 500, ""), vec![Outcome::Retry { after: None, reason: "server_error" }]);
        assert_eq!(classify(&[REG_A], 503, "busy"), vec![Outcome::Retry { after: None, reason: "server_error" }]);
        assert_eq!(
            classify(&[REG_A], 429, ""),
            vec![Outcome::Retry { after: Some(BUSY_RETRY_AFTER), reason: "rate_limited" }]
        );
        assert_eq!(classify(&[REG_A], 404, "{}"), vec![Outcome::Fatal { reason: "http_status" }]);
    }

    fn ctx() -> super::super::credential::CredentialContext<'static> {
        fixtures::credential_ctx("xm")
    }

    #[test]
    fn config_needs_secret_package_and_private_channel_and_never_shows_the_secret() {
        let ok = table(
            r#"app_secret = "s3cret=="
               package_name = "com.example.im"
               channel_id = "im_private_01"
               endpoint = "https://127.0.0.1:9/""#,
        );
        let build = from_config(&ok, &ctx()).expect("builds");
        assert_eq!(build.vendor.kind(), VendorKind::Xiaomi);
        assert!(!build.http2_only);

        let no_channel = table("app_secret = \"s3cret==\"\npackage_name = \"com.example.im\"");
        let problems = from_config(&no_channel, &ctx()).err().expect("channel required");
        assert_eq!(problems[0].field, "channel_id");

        let empty = table("app_secret = \"\"\npackage_name = \"p\"\nchannel_id = \" \"");
        let problems = from_config(&empty, &ctx()).err().expect("empty fields");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["app_secret", "channel_id"]);

        let unknown = table("app_secret = \"s\"\npackage_name = \"p\"\nchannel_id = \"c\"\napp_key = \"k\"");
        assert_eq!(from_config(&unknown, &ctx()).err().expect("unknown")[0].field, "app_key");

        let cfg = XiaomiConfig {
            endpoint: url::Url::parse(DEFAULT_ENDPOINT).expect("url"),
            app_secret: "s3cret==".into(),
            package_name: "p".into(),
            channel_id: "c".into(),
        };
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(!format!("{:?}", Xiaomi::new(cfg).expect("builds")).contains("s3cret"));
    }
}
