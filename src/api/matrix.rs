//! The Matrix push gateway API (`POST /_matrix/push/v1/notify`, Matrix spec "Push Gateway API"
//! v1), so a homeserver (Synapse and others) can use pushd as its push gateway: pushd then
//! plays Sygnal's part, with its own vendors, retries, metrics and trace. Issue 7;
//! operator guide in `docs/matrix.md`.
//!
//! ```text
//! homeserver ─POST notify─▶ allowed_networks? ─▶ parse ─▶ each device, concurrently:
//!   app_id ─(matrix.apps)─▶ credential ─▶ Token::parse_for ─▶ already pushed / in flight?
//!   ─▶ VendorPush from the event ─▶ fit ─▶ ProviderHandle::deliver(reply: our sink)
//!   ─▶ wait for the final report (≤ answer_timeout)
//! ◀─ 200 {"rejected": [dead or unusable pushkeys]}  or  502 (the homeserver retries later)
//! ```
//!
//! Owns: the request shape (lenient: the spec lets homeservers add fields, and Synapse sends
//! `null`s and empty strings), the source-network check, the mapping of a Matrix event to a
//! [`VendorPush`], exactly-once delivery per (event, pushkey) across homeserver retries, the
//! answer, and `pushd_matrix_notifications_total{outcome}`.
//!
//! Deliberately not here: retries, rate limits, auth and vendor wire formats (the provider
//! layer does them before it reports), sessions and policy (a homeserver has already decided
//! to notify; pushd only delivers), and storing pushkeys (the homeserver keeps its pushers and
//! deletes those this endpoint lists as rejected).
//!
//! Dedup: a notification with an `event_id` is pushed once per (event, pushkey). The store's
//! dedup record uses a synthetic user per pushkey, `matrix:<32 hex of sha256(app_id NUL
//! pushkey)>`, and the app id as device; the same user holds the pushkey's trace (`GET
//! /v1/users/matrix:<hash>/pushes`). A pushkey is marked once its vendor accepted the push,
//! not before, so a homeserver's retry after a 502 still delivers; a retry that arrives while
//! the first push is still being delivered waits for that push's outcome instead of sending
//! another one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::{parse_json, ApiError};
use crate::clock::SharedClock;
use crate::config::MatrixSettings;
use crate::metrics as m;
use crate::model::{
    Conversation, ConversationId, ConversationKind, DeviceId, Message, MessageId, MessageKind, PushOptions, PushType,
    Sender, TemplateName, Timestamp, Token, UserId, VendorKind,
};
use crate::provider::actor::{DeliveryReport, PushJob, ReportSink, Target};
use crate::provider::{Outcome, Priority, VendorPush};
use crate::render::{fit, RenderContext, Templates, DEFAULT_TEMPLATE, DETAIL_TEMPLATE};
use crate::session::Registry;
use crate::store::Store;
use crate::trace::{AttemptTrace, DeviceTrace, PushTrace, TraceEntry};

/// Where a homeserver's pusher posts (`data.url` = `http(s)://<pushd><NOTIFY_PATH>`).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// Push data key carrying the Matrix event id.
pub const DATA_EVENT_ID: &str = "event_id";
/// Push data key carrying the Matrix room id.
pub const DATA_ROOM_ID: &str = "room_id";
/// Push data key carrying the unread count of a badge-only update on vendors without a badge.
pub const DATA_UNREAD: &str = "unread";

/// Devices one request may name. Synapse sends one per request; a bound keeps one request from
/// starting an unbounded number of pushes.
pub const MAX_DEVICES: usize = 100;

/// The message id of a badge-only update in reports (it has no event and is never deduplicated).
const BADGE_ONLY_ID: &str = "matrix-badge";

/// What the Matrix handlers share.
pub struct MatrixState {
    /// The daemon's sessions and shared services: store, clock, providers, templates.
    pub registry: Arc<Registry>,
    /// `[matrix]`: app ids, allowed networks, answer timeout.
    pub settings: MatrixSettings,
    /// Pushes in flight, so a homeserver's retry waits for the first attempt.
    flights: Arc<Flights>,
}

impl MatrixState {
    /// The state of one daemon's Matrix endpoint.
    pub fn new(registry: Arc<Registry>, settings: MatrixSettings) -> Self {
        Self { registry, settings, flights: Arc::new(Flights::default()) }
    }
}

/// Mounts `/_matrix/push/v1/notify` (other methods on it answer 405).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(NOTIFY_PATH).route(web::post().to(notify)));
}

// ---- request ----

/// The request body. Unknown fields are ignored rather than refused (no
/// `deny_unknown_fields`): the spec allows extra fields and Synapse sends some (`id`,
/// `membership`).
#[derive(Debug, Deserialize)]
struct NotifyBody {
    notification: Notification,
}

/// The notification. Only `devices` (each with `app_id` and `pushkey`) is required; an optional
/// field of the wrong type is treated as absent, because a 4xx makes the homeserver resend the
/// same request for hours while holding back that pusher's later notifications.
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(default, deserialize_with = "lenient")]
    event_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    room_id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    event_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    sender: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    sender_display_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    room_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    prio: Option<String>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    counts: Option<Counts>,
    devices: Vec<MatrixDevice>,
}

/// Unacknowledged counts; the spec omits a count that is zero.
#[derive(Debug, Default, Deserialize)]
struct Counts {
    #[serde(default, deserialize_with = "lenient")]
    unread: Option<u64>,
}

/// One pusher of the user.
#[derive(Debug, Deserialize)]
struct MatrixDevice {
    app_id: String,
    pushkey: String,
    /// When the pushkey was last updated (Unix seconds).
    #[serde(default, deserialize_with = "lenient")]
    pushkey_ts: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    data: Option<PusherData>,
    #[serde(default, deserialize_with = "lenient")]
    tweaks: Option<Tweaks>,
}

/// The pusher's `data` (minus `url`); only `format` means something to pushd.
#[derive(Debug, Default, Deserialize)]
struct PusherData {
    #[serde(default, deserialize_with = "lenient")]
    format: Option<String>,
}

/// Presentation tweaks set by push rules; pushd uses `sound`.
#[derive(Debug, Default, Deserialize)]
struct Tweaks {
    #[serde(default, deserialize_with = "lenient")]
    sound: Option<String>,
}

/// Reads any JSON value and keeps it only if it has the expected type.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// An empty string counts as absent (Synapse's badge-only updates send `"sender": ""`).
fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

// ---- errors and outcomes ----

/// Why a notify request is refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The peer is outside `matrix.allowed_networks`.
    #[error("source address {0} is not in matrix.allowed_networks")]
    Forbidden(String),
    /// The body could not be read (too large, cut short), with the status actix chose.
    #[error("request body could not be read: {message}")]
    Body {
        /// 413 for a body over `api.max_body_bytes`, else 400.
        status: StatusCode,
        /// What actix reported.
        message: String,
    },
    /// Bad input, answered exactly as the gateway API answers it.
    #[error(transparent)]
    Invalid(ApiError),
    /// Some device could not be delivered yet: the homeserver retries the request later.
    #[error("{0}")]
    NotDelivered(String),
}

impl MatrixError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            MatrixError::Forbidden(_) => "forbidden",
            MatrixError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            MatrixError::Body { .. } => "malformed_body",
            MatrixError::Invalid(e) => e.code(),
            MatrixError::NotDelivered(_) => "not_delivered",
        }
    }
}

impl ResponseError for MatrixError {
    fn status_code(&self) -> StatusCode {
        match self {
            MatrixError::Forbidden(_) => StatusCode::FORBIDDEN,
            MatrixError::Body { status, .. } => *status,
            MatrixError::Invalid(e) => e.status_code(),
            MatrixError::NotDelivered(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let MatrixError::Invalid(e) = self {
            return e.error_response();
        }
        metrics::counter!(m::API_ERRORS, "code" => self.code()).increment(1);
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

/// What became of one device of a request (`pushd_matrix_notifications_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceOutcome {
    /// The vendor accepted the push.
    Delivered,
    /// Already pushed for this event (a homeserver retry): nothing sent.
    Duplicate,
    /// The vendor says the pushkey is dead: rejected.
    InvalidToken,
    /// The vendor says dead, but pruning is paused for the credential (mass-invalidation
    /// guard): not rejected, so a misconfigured credential does not delete every pusher.
    TokenKept,
    /// No credential for the `app_id`: rejected.
    UnknownApp,
    /// Not a token of the credential's vendor: rejected.
    InvalidPushkey,
    /// Too large for the vendor even with empty texts: dropped (retrying cannot help).
    TooLarge,
    /// Retries gave up, or a fatal answer: 502.
    Failed,
    /// The credential's daily quota is spent; sent when the vendor's day turns: 502 until then.
    Parked,
    /// No final answer within `answer_timeout`: 502.
    Timeout,
    /// The provider's queue is full: 502.
    Busy,
}

impl DeviceOutcome {
    fn as_str(self) -> &'static str {
        match self {
            DeviceOutcome::Delivered => "delivered",
            DeviceOutcome::Duplicate => "duplicate",
            DeviceOutcome::InvalidToken => "invalid_token",
            DeviceOutcome::TokenKept => "token_kept",
            DeviceOutcome::UnknownApp => "unknown_app",
            DeviceOutcome::InvalidPushkey => "invalid_pushkey",
            DeviceOutcome::TooLarge => "too_large",
            DeviceOutcome::Failed => "failed",
            DeviceOutcome::Parked => "parked",
            DeviceOutcome::Timeout => "timeout",
            DeviceOutcome::Busy => "busy",
        }
    }

    /// The homeserver must delete this pusher: listed in `rejected`.
    fn rejects(self) -> bool {
        matches!(self, DeviceOutcome::InvalidToken | DeviceOutcome::UnknownApp | DeviceOutcome::InvalidPushkey)
    }

    /// Worth a later retry of the request: answered 502.
    fn retryable(self) -> bool {
        matches!(self, DeviceOutcome::Failed | DeviceOutcome::Parked | DeviceOutcome::Timeout | DeviceOutcome::Busy)
    }
}

fn count(outcome: &'static str) {
    metrics::counter!(m::MATRIX_NOTIFICATIONS, "outcome" => outcome).increment(1);
}

// ---- handler ----

async fn notify(
    req: HttpRequest,
    state: web::Data<MatrixState>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, MatrixError> {
    let started = Instant::now();
    let peer = req.peer_addr().map(|a| a.ip());
    if !allowed(&state.settings.allowed_networks, peer) {
        count("forbidden");
        let shown = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tracing::warn!(peer = %shown, "matrix notify refused: source not in matrix.allowed_networks");
        return Err(MatrixError::Forbidden(shown));
    }
    let body = body.map_err(|e| {
        count("bad_request");
        MatrixError::Body { status: e.as_response_error().status_code(), message: e.to_string() }
    })?;
    let request: NotifyBody = parse_json(&body).map_err(|e| {
        count("bad_request");
        MatrixError::Invalid(e)
    })?;
    let n = request.notification;
    if n.devices.is_empty() || n.devices.len() > MAX_DEVICES {
        count("bad_request");
        let e = if n.devices.is_empty() {
            ApiError::InvalidField("notification.devices: at least one device is required".to_owned())
        } else {
            ApiError::TooMany { what: "notification.devices", max: MAX_DEVICES }
        };
        return Err(MatrixError::Invalid(e));
    }

    let services = state.registry.services();
    let now = services.clock.now();
    let event = {
        let templates = services.templates();
        Event::new(&n, &templates, now)
    };
    let deadline = started + state.settings.answer_timeout;
    tracing::debug!(event_id = event.event_id.as_deref().unwrap_or(""), devices = n.devices.len(), "matrix notify");

    // The same pusher twice in one request is pushed once and answered once.
    let mut seen = std::collections::HashSet::new();
    let devices: Vec<&MatrixDevice> =
        n.devices.iter().filter(|d| seen.insert((d.app_id.as_str(), d.pushkey.as_str()))).collect();
    let outcomes = join_all(devices.iter().map(|d| deliver_to(&state, &event, d, now, deadline))).await;

    let mut rejected = Vec::new();
    for (device, outcome) in devices.iter().zip(&outcomes) {
        count(outcome.as_str());
        if outcome.rejects() {
            rejected.push(device.pushkey.clone());
        }
    }
    let pending: Vec<&str> = outcomes.iter().filter(|o| o.retryable()).map(|o| o.as_str()).collect();
    if !pending.is_empty() {
        tracing::warn!(devices = devices.len(), outcomes = ?pending, "matrix notify answered 502");
        return Err(MatrixError::NotDelivered(format!(
            "{} of {} devices not delivered yet ({}); retry later",
            pending.len(),
            devices.len(),
            pending.join(", ")
        )));
    }
    if !rejected.is_empty() {
        tracing::info!(devices = devices.len(), rejected = rejected.len(), "matrix notify: pushkeys rejected");
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rejected": rejected })))
}

/// Whether `peer` may call: any when the list is empty, else inside one of the networks. An
/// IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`, a dual-stack listener) is matched as IPv4.
fn allowed(networks: &[(IpAddr, u8)], peer: Option<IpAddr>) -> bool {
    if networks.is_empty() {
        return true;
    }
    let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
        return false;
    };
    networks.iter().any(|(net, len)| in_network(peer, net.to_canonical(), *len))
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

// ---- rendering ----

/// What one notification renders to, shared by its devices.
struct Event {
    event_id: Option<String>,
    /// The dedup and trace id: the event id, or its hash when it is no valid [`MessageId`].
    message_id: Option<MessageId>,
    room_id: Option<String>,
    title: String,
    body: String,
    unread: Option<u32>,
    priority: Priority,
    now: Timestamp,
}

impl Event {
    fn new(n: &Notification, templates: &Templates, now: Timestamp) -> Self {
        let event_id = present(&n.event_id).map(str::to_owned);
        let message_id = event_id.as_deref().map(|id| {
            MessageId::parse(id)
                .or_else(|_| MessageId::parse(&format!("sha256:{}", hex_digest(&[id.as_bytes()]))))
                // Cannot fail: "sha256:" and 32 hex digits are a valid message id.
                .unwrap_or_else(|_| placeholder_message_id())
        });
        let (title, body) = texts(n, templates, now);
        Self {
            event_id,
            message_id,
            room_id: present(&n.room_id).map(str::to_owned),
            title,
            body,
            unread: n.counts.as_ref().and_then(|c| c.unread).map(|u| u32::try_from(u).unwrap_or(u32::MAX)),
            priority: match n.prio.as_deref() {
                Some("low") => Priority::Normal,
                // The spec's default is high; an unknown word is treated as the default.
                _ => Priority::High,
            },
            now,
        }
    }

    /// The push for one device of the credential's `vendor`.
    fn push_for(&self, device: &MatrixDevice, vendor: VendorKind) -> VendorPush {
        let mut push = VendorPush {
            push_type: PushType::Alert,
            title: String::new(),
            body: String::new(),
            badge: None,
            sound: None,
            priority: self.priority,
            collapse_id: None,
            ttl: None,
            created_at: self.now,
            thread_id: None,
            data: BTreeMap::new(),
        };
        let event_id_only = device.data.as_ref().and_then(|d| d.format.as_deref()) == Some("event_id_only");
        let Some(event_id) = &self.event_id else {
            // Badge-only update. APNs sets the badge without an alert; the other vendors have no
            // badge outside a visible notification, so they get the count as data in a
            // data-only (silent) push the app applies itself.
            let unread = self.unread.unwrap_or(0);
            if vendor == VendorKind::Apns {
                push.badge = Some(unread);
            } else {
                push.push_type = PushType::Silent;
                push.priority = Priority::Normal;
                push.data.insert(DATA_UNREAD.to_owned(), unread.to_string());
            }
            return push;
        };
        push.data.insert(DATA_EVENT_ID.to_owned(), event_id.clone());
        if let Some(room) = &self.room_id {
            push.data.insert(DATA_ROOM_ID.to_owned(), room.clone());
        }
        if event_id_only {
            // Only the ids: the app fetches the event itself (and can decrypt it). The event's
            // priority stays: an Android app needs a high-priority data message to wake up
            // in Doze (APNs background pushes always go at priority 5, the vendor module
            // sees to that).
            push.push_type = PushType::Silent;
            return push;
        }
        push.title.clone_from(&self.title);
        push.body.clone_from(&self.body);
        push.badge = self.unread;
        push.sound = device.tweaks.as_ref().and_then(|t| t.sound.clone()).filter(|s| !s.is_empty());
        push.thread_id.clone_from(&self.room_id);
        push
    }
}

/// Title and body of a full-format notification: title = room name, else the sender's display
/// name (else their Matrix id, else the app name); body = the message text or its kind
/// ("[Image]"), prefixed with the sender in a named room. Kind labels, the preview length and
/// the text for an event pushd cannot show (encrypted, unknown type) come from the operator's
/// render settings, through the built-in templates.
fn texts(n: &Notification, templates: &Templates, now: Timestamp) -> (String, String) {
    let sender = present(&n.sender_display_name).or(present(&n.sender));
    let (kind, text) = kind_and_text(n, sender);
    let (app_name, generic, preview) = match render_builtins(templates, kind, text, now) {
        Some(r) => r,
        // Only if a built-in id or template name stopped parsing; English keeps it working.
        None => ("pushd".to_owned(), "You have a new message".to_owned(), "You have a new message".to_owned()),
    };
    let body = if kind.is_some() { preview } else { generic };
    match present(&n.room_name) {
        Some(room) => {
            let body = match present(&n.sender_display_name).filter(|s| *s != room) {
                Some(who) => format!("{who}: {body}"),
                None => body,
            };
            (room.to_owned(), body)
        }
        None => (sender.map_or(app_name, str::to_owned), body),
    }
}

/// The message kind and text of an event pushd can describe; `None` for any other event
/// (encrypted, state, unknown), which gets the operator's "new message" text.
fn kind_and_text(n: &Notification, sender: Option<&str>) -> (Option<MessageKind>, Option<String>) {
    let content = n.content.as_ref();
    let field = |k: &str| content.and_then(|c| c.get(k)).and_then(Value::as_str).filter(|s| !s.is_empty());
    let body = field("body").map(str::to_owned);
    match n.event_type.as_deref() {
        Some("m.room.message") => match field("msgtype") {
            Some("m.image") => (Some(MessageKind::Image), None),
            Some("m.audio") => (Some(MessageKind::Voice), None),
            Some("m.video") => (Some(MessageKind::Video), None),
            Some("m.file") => (Some(MessageKind::File), None),
            Some("m.location") => (Some(MessageKind::Location), None),
            Some("m.emote") => (Some(MessageKind::Text), body.map(|b| format!("* {} {b}", sender.unwrap_or("")))),
            // m.text, m.notice and unknown msgtypes with a body show the body.
            _ if body.is_some() => (Some(MessageKind::Text), body),
            _ => (None, None),
        },
        Some("m.sticker") => (Some(MessageKind::Image), None),
        Some("m.call.invite") => (Some(MessageKind::Call), None),
        _ => (None, None),
    }
}

/// Renders the built-in templates for a stand-in message: (app name, "new message" text,
/// preview of `kind`/`text`). `None` if the stand-in could not be built.
fn render_builtins(
    templates: &Templates,
    kind: Option<MessageKind>,
    text: Option<String>,
    now: Timestamp,
) -> Option<(String, String, String)> {
    let stand_in = UserId::parse("matrix").ok()?;
    let message = Message {
        id: placeholder_message_id(),
        from: Sender { id: stand_in.clone(), name: None },
        conversation: Conversation {
            id: ConversationId::parse("matrix").ok()?,
            kind: ConversationKind::Single,
            name: None,
        },
        to: Vec::new(),
        kind: kind.unwrap_or(MessageKind::Text),
        text,
        mentions: Vec::new(),
        mention_all: false,
        push: PushOptions::default(),
        accepted_at: now,
    };
    let ctx = RenderContext { message: &message, recipient: &stand_in, locale: None, badge: 0, count: 0 };
    let default = templates.render(&TemplateName::parse(DEFAULT_TEMPLATE).ok()?, &ctx);
    let detail = templates.render(&TemplateName::parse(DETAIL_TEMPLATE).ok()?, &ctx);
    Some((default.title, default.body, detail.body))
}

/// The message id of badge-only reports (and the fallback if an event id cannot be hashed).
fn placeholder_message_id() -> MessageId {
    // Invariant: a short ASCII literal satisfies MessageId's rules (1–128 bytes, no control
    // characters); a unit test parses it.
    MessageId::parse(BADGE_ONLY_ID).expect("BADGE_ONLY_ID is a valid message id")
}

/// The first 16 bytes of the SHA-256 of `parts` joined with NUL, as 32 hex digits.
fn hex_digest(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            ctx.update(&[0]);
        }
        ctx.update(part);
    }
    ctx.finish().as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The user whose trace (`GET /v1/users/{user}/pushes`) holds the pushes of one Matrix pusher.
pub fn trace_user(app_id: &str, pushkey: &str) -> Option<UserId> {
    pusher_ids(app_id, pushkey).map(|(user, _)| user)
}

/// The store identity of one pusher: user `matrix:<hash of app_id and pushkey>`, device =
/// the app id (readable in traces), or `matrix` if the app id is no valid device id.
fn pusher_ids(app_id: &str, pushkey: &str) -> Option<(UserId, DeviceId)> {
    let user = UserId::parse(&format!("matrix:{}", hex_digest(&[app_id.as_bytes(), pushkey.as_bytes()]))).ok()?;
    let device = DeviceId::parse(app_id).or_else(|_| DeviceId::parse("matrix")).ok()?;
    Some((user, device))
}

// ---- delivery ----

/// How far a push got, as the reply sink last heard.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    Sending,
    /// The credential's quota is spent; the final report comes when the vendor's day turns.
    Parked,
    Done(Final),
}

/// The final word on a push.
#[derive(Debug, Clone, PartialEq)]
enum Final {
    Delivered,
    /// Dead token; `since` is when the vendor saw it invalid, `prune` is false while the
    /// mass-invalidation guard holds.
    Invalid {
        since: Option<Timestamp>,
        prune: bool,
    },
    Failed,
}

/// Pushes of one daemon in flight, by (pusher user, event): a homeserver retry arriving while
/// the first push is still being delivered waits for it instead of pushing again.
#[derive(Default)]
struct Flights(Mutex<HashMap<FlightKey, watch::Receiver<Progress>>>);

/// A push in flight: (the pusher's synthetic user, the event).
type FlightKey = (UserId, MessageId);

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, watch::Receiver<Progress>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves the device's app, token and dedup state, sends the push, and waits for its end.
async fn deliver_to(
    state: &MatrixState,
    event: &Event,
    device: &MatrixDevice,
    now: Timestamp,
    deadline: Instant,
) -> DeviceOutcome {
    let services = state.registry.services();
    let Some((credential, provider)) =
        state.settings.apps.get(&device.app_id).and_then(|c| services.provider(c).map(|p| (c, p)))
    else {
        tracing::warn!(app_id = %device.app_id, "matrix notify for an app id not in matrix.apps: rejected");
        return DeviceOutcome::UnknownApp;
    };
    let vendor = provider.vendor().clone();
    let Ok(token) = Token::parse_for(vendor.kind(), &device.pushkey) else {
        tracing::warn!(app_id = %device.app_id, %credential, "matrix pushkey is not a token of its vendor: rejected");
        return DeviceOutcome::InvalidPushkey;
    };
    let Some((user, device_id)) = pusher_ids(&device.app_id, &device.pushkey) else {
        // Cannot happen: "matrix:" and 32 hex digits, and a fallback device id, are valid.
        return DeviceOutcome::Failed;
    };
    let mut push = event.push_for(device, vendor.kind());
    if !fit(&mut push, vendor.as_ref()) {
        tracing::warn!(app_id = %device.app_id, %credential, "matrix push too large for its vendor: dropped");
        return DeviceOutcome::TooLarge;
    }

    let Some(message_id) = event.message_id.clone() else {
        // Badge-only: idempotent, so neither deduplicated nor traced.
        let (tx, mut rx) = watch::channel(Progress::Sending);
        let target = Target { user, device: device_id, token, message_id: placeholder_message_id() };
        let sink: ReportSink = Arc::new(move |r: DeliveryReport| {
            tx.send_replace(progress_of(&r.outcome, r.prune));
        });
        let job = PushJob { push: Arc::new(push), targets: vec![target], accepted_at: now, reply: Some(sink) };
        if provider.deliver(job).is_err() {
            return DeviceOutcome::Busy;
        }
        return outcome_of(wait(&mut rx, deadline).await, device, true);
    };

    let flights = state.flights.clone();
    let key = (user.clone(), message_id.clone());
    // Either join the push already in flight for this (pusher, event), or claim it.
    let claim = {
        let mut table = flights.lock();
        match table.get(&key) {
            Some(rx) => Err(rx.clone()),
            None => {
                let (tx, rx) = watch::channel(Progress::Sending);
                table.insert(key.clone(), rx);
                Ok(tx)
            }
        }
    };
    let tx = match claim {
        Ok(tx) => tx,
        Err(mut rx) => {
            tracing::debug!(user = %user, "matrix push already in flight: waiting for it");
            return outcome_of(wait(&mut rx, deadline).await, device, false);
        }
    };
    // The claim is ours. The sink marks a delivered push before it releases the claim, so a
    // push that finished just before it is seen here.
    match services.store.was_pushed(&user, &message_id, &device_id) {
        Ok(false) => {}
        Ok(true) => {
            flights.lock().remove(&key);
            return DeviceOutcome::Duplicate;
        }
        Err(e) => {
            flights.lock().remove(&key);
            tracing::error!(error = %e, "matrix dedup record unreadable");
            return DeviceOutcome::Failed;
        }
    }

    let trace = PushTrace {
        vendor: vendor.kind().as_str().into(),
        credential: credential.to_string(),
        token: token.masked(),
        title: push.title.clone(),
        body: push.body.clone(),
        badge: push.badge,
        push_type: push.push_type.as_str().into(),
        attempts: Vec::new(),
        outcome: None,
        reason: None,
        note: None,
    };
    let entry = TraceEntry {
        message_id: message_id.clone(),
        conversation_id: event.room_id.clone().unwrap_or_default(),
        decided_at: now,
        fallbacks: Vec::new(),
        devices: vec![DeviceTrace { device: device_id.to_string(), decision: "push".into(), push: Some(trace) }],
        counted_in_badge: false,
    };
    let keep = services.sessions.trace_per_user;
    if let Err(e) = services.store.upsert_trace(&user, &entry, keep) {
        tracing::warn!(error = %e, "matrix push trace not stored");
    }
    let mut rx = tx.subscribe();
    let reply = EventReply {
        store: services.store.clone(),
        clock: services.clock.clone(),
        keep,
        entry,
        flights: flights.clone(),
        key: key.clone(),
        progress: tx,
    };
    let sink: ReportSink = Arc::new(move |r: DeliveryReport| reply.report(r));
    let target = Target { user, device: device_id, token, message_id };
    let job = PushJob { push: Arc::new(push), targets: vec![target], accepted_at: now, reply: Some(sink) };
    if let Err(busy) = provider.deliver(job) {
        // The job (and the sink with the claim) was dropped unsent.
        flights.lock().remove(&key);
        tracing::warn!(%credential, error = %busy, "matrix push not accepted by the provider");
        return DeviceOutcome::Busy;
    }
    outcome_of(wait(&mut rx, deadline).await, device, true)
}

/// The reply sink of one event push: called by the provider (on its arbiter) with the push's
/// reports, it records the dedup mark and the trace, publishes the progress to the waiting
/// requests, and releases the in-flight claim once the report is final.
struct EventReply {
    store: Arc<dyn Store>,
    clock: SharedClock,
    keep: usize,
    entry: TraceEntry,
    flights: Arc<Flights>,
    key: FlightKey,
    progress: watch::Sender<Progress>,
}

impl EventReply {
    fn report(&self, r: DeliveryReport) {
        let progress = progress_of(&r.outcome, r.prune);
        if progress == Progress::Done(Final::Delivered) {
            let at = r.attempts.last().map_or_else(|| self.clock.now(), |a| a.at);
            if let Err(e) = self.store.mark_pushed(&r.target.user, &r.target.message_id, &r.target.device, at) {
                // The push went out; a retry of this event may push it once more.
                tracing::error!(error = %e, "matrix dedup record not stored");
            }
        }
        let mut entry = self.entry.clone();
        if let Some(push) = entry.devices.first_mut().and_then(|d| d.push.as_mut()) {
            push.attempts = r.attempts.iter().map(AttemptTrace::from).collect();
            push.outcome = Some(r.outcome.class().into());
            push.reason = Some(r.outcome.reason().into());
            push.note = match &progress {
                Progress::Done(Final::Invalid { prune: true, .. }) => Some("pushkey rejected to the homeserver".into()),
                Progress::Done(Final::Invalid { prune: false, .. }) => {
                    Some("pruning paused for the credential: pushkey kept".into())
                }
                Progress::Parked => Some("daily quota spent: parked".into()),
                _ => None,
            };
        }
        if let Err(e) = self.store.upsert_trace(&r.target.user, &entry, self.keep) {
            tracing::warn!(error = %e, "matrix push trace not stored");
        }
        if matches!(progress, Progress::Done(_)) {
            // After the dedup mark: whoever claims this (pusher, event) next sees it. Before
            // waking the waiter: a homeserver retrying at once after a 502 must start a new
            // flight, not find this finished one and get its 502 again.
            self.flights.lock().remove(&self.key);
        }
        self.progress.send_replace(progress);
    }
}

/// What a report means for the homeserver.
fn progress_of(outcome: &Outcome, prune: bool) -> Progress {
    match outcome {
        Outcome::Delivered => Progress::Done(Final::Delivered),
        Outcome::InvalidToken { since, .. } => Progress::Done(Final::Invalid { since: *since, prune }),
        Outcome::QuotaExhausted { .. } => Progress::Parked,
        Outcome::Retry { .. } | Outcome::RefreshAuth { .. } | Outcome::Fatal { .. } => Progress::Done(Final::Failed),
    }
}

/// Waits until the push is parked or done, at most until `deadline`; `None` on timeout.
async fn wait(rx: &mut watch::Receiver<Progress>, deadline: Instant) -> Option<Progress> {
    match tokio::time::timeout_at(deadline, rx.wait_for(|p| *p != Progress::Sending)).await {
        Ok(Ok(progress)) => Some(progress.clone()),
        // The sink went away without a final report (shutdown): not delivered.
        Ok(Err(_)) => Some(Progress::Done(Final::Failed)),
        Err(_) => None,
    }
}

/// The device's outcome from how its push (or the push it waited for) ended. `own` is false
/// when this request waited for another request's push: a delivery then counts as duplicate.
fn outcome_of(progress: Option<Progress>, device: &MatrixDevice, own: bool) -> DeviceOutcome {
    match progress {
        None => DeviceOutcome::Timeout,
        Some(Progress::Sending) | Some(Progress::Done(Final::Failed)) => DeviceOutcome::Failed,
        Some(Progress::Parked) => DeviceOutcome::Parked,
        Some(Progress::Done(Final::Delivered)) if own => DeviceOutcome::Delivered,
        Some(Progress::Done(Final::Delivered)) => DeviceOutcome::Duplicate,
        Some(Progress::Done(Final::Invalid { prune: false, .. })) => DeviceOutcome::TokenKept,
        Some(Progress::Done(Final::Invalid { since, prune: true })) => {
            // The APNs 410 rule: a pushkey registered after the vendor last saw it invalid is
            // a new registration of the same token, and stays.
            let renewed = match (since, device.pushkey_ts) {
                (Some(since), Some(ts)) => ts > since.timestamp(),
                _ => false,
            };
            if renewed {
                DeviceOutcome::TokenKept
            } else {
                DeviceOutcome::InvalidToken
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> (IpAddr, u8) {
        crate::config::parse_cidr(s).unwrap_or_else(|| panic!("{s} is a network"))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap_or_else(|_| panic!("{s} is an address")))
    }

    #[test]
    fn an_empty_network_list_allows_everyone_and_a_list_only_its_members() {
        assert!(allowed(&[], ip("203.0.113.9")));
        assert!(allowed(&[], None));
        let nets = [net("10.0.0.0/8"), net("fd00::/8"), net("192.0.2.7")];
        for (peer, ok) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("127.0.0.1", false),
            ("::ffff:10.9.9.9", true),
            ("fd12::1", true),
            ("fe80::1", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
        ] {
            assert_eq!(allowed(&nets, ip(peer)), ok, "{peer}");
        }
        assert!(!allowed(&nets, None), "an unknown peer is refused when a list is set");
        assert!(allowed(&[net("0.0.0.0/0")], ip("8.8.8.8")));
    }

    fn notification(json: Value) -> Notification {
        serde_json::from_value::<Notification>(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn templates() -> Templates {
        match Templates::new(crate::render::RenderTexts::default(), &BTreeMap::new()) {
            Ok(t) => t,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn render(json: Value) -> (String, String) {
        texts(&notification(json), &templates(), chrono::Utc::now())
    }

    fn device() -> Value {
        serde_json::json!([{"app_id": "a", "pushkey": "k"}])
    }

    #[test]
    fn texts_come_from_the_room_the_sender_and_the_message() {
        let full = serde_json::json!({"type": "m.room.message", "sender": "@a:x", "sender_display_name": "Alice",
            "room_name": "Team", "content": {"msgtype": "m.text", "body": "hello"}, "devices": device()});
        assert_eq!(render(full), ("Team".to_owned(), "Alice: hello".to_owned()));
        let dm = serde_json::json!({"type": "m.room.message", "sender_display_name": "Alice", "room_name": "Alice",
            "content": {"msgtype": "m.text", "body": "hi"}, "devices": device()});
        assert_eq!(render(dm), ("Alice".to_owned(), "hi".to_owned()));
        let image = serde_json::json!({"type": "m.room.message", "sender": "@a:x",
            "content": {"msgtype": "m.image", "body": "cat.png"}, "devices": device()});
        assert_eq!(render(image), ("@a:x".to_owned(), "[Image]".to_owned()));
        let encrypted = serde_json::json!({"type": "m.room.encrypted", "sender_display_name": "Bob",
            "content": {"ciphertext": "..."}, "devices": device()});
        assert_eq!(render(encrypted), ("Bob".to_owned(), "You have a new message".to_owned()));
        let bare = serde_json::json!({"devices": device()});
        assert_eq!(render(bare), ("pushd".to_owned(), "You have a new message".to_owned()));
    }

    #[test]
    fn a_long_body_is_previewed_on_a_character_boundary() {
        let body = "é".repeat(500);
        let long = serde_json::json!({"type": "m.room.message", "sender_display_name": "A",
            "content": {"msgtype": "m.text", "body": body}, "devices": device()});
        let (_, text) = render(long);
        assert_eq!(text.chars().count(), 100);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn optional_fields_of_the_wrong_type_or_empty_count_as_absent() {
        // Synapse's badge-only update: empty id and sender, null type, extra fields.
        let n = notification(serde_json::json!({"id": "", "type": null, "sender": "", "event_id": "",
            "prio": 7, "counts": {"unread": -1}, "devices": [{"app_id": "a", "pushkey": "k", "data": null,
            "tweaks": {"sound": true, "highlight": false}, "pushkey_ts": "soon"}]}));
        let event = Event::new(&n, &templates(), chrono::Utc::now());
        assert_eq!(event.event_id, None);
        assert_eq!(event.unread, None);
        assert_eq!(event.priority, Priority::High);
        assert!(n.devices[0].tweaks.as_ref().is_some_and(|t| t.sound.is_none()));
        assert_eq!(n.devices[0].pushkey_ts, None);
    }

    #[test]
    fn a_device_without_app_id_or_pushkey_is_bad_input() {
        for body in [
            r#"{"notification": {"devices": [{"pushkey": "k"}]}}"#,
            r#"{"notification": {"devices": [{"app_id": "a", "pushkey": 5}]}}"#,
            r#"{"notification": {}}"#,
            r#"{"devices": []}"#,
        ] {
            let e = parse_json::<NotifyBody>(body.as_bytes()).err();
            assert_eq!(e.map(|e| e.code()), Some("invalid_field"), "{body}");
        }
        assert_eq!(parse_json::<NotifyBody>(b"{nope").err().map(|e| e.code()), Some("malformed_json"));
    }

    fn event(json: Value) -> (Event, Notification) {
        let n = notification(json);
        (Event::new(&n, &templates(), chrono::Utc::now()), n)
    }

    #[test]
    fn the_push_follows_format_prio_sound_and_counts() {
        let (e, n) = event(serde_json::json!({"event_id": "$e", "room_id": "!r:x", "type": "m.room.message",
            "sender_display_name": "Alice", "prio": "low", "content": {"msgtype": "m.text", "body": "hi"},
            "counts": {"unread": 3}, "devices": [
                {"app_id": "a", "pushkey": "k", "tweaks": {"sound": "bing"}},
                {"app_id": "a", "pushkey": "k2", "data": {"format": "event_id_only"}}]}));
        let full = e.push_for(&n.devices[0], VendorKind::Fcm);
        assert_eq!((full.push_type, full.priority), (PushType::Alert, Priority::Normal));
        assert_eq!((full.title.as_str(), full.body.as_str()), ("Alice", "hi"));
        assert_eq!((full.badge, full.sound.as_deref()), (Some(3), Some("bing")));
        assert_eq!(full.thread_id.as_deref(), Some("!r:x"));
        let ids = BTreeMap::from([("event_id".to_owned(), "$e".to_owned()), ("room_id".to_owned(), "!r:x".to_owned())]);
        assert_eq!(full.data, ids);

        let silent = e.push_for(&n.devices[1], VendorKind::Apns);
        assert_eq!(silent.push_type, PushType::Silent);
        assert_eq!((silent.title.as_str(), silent.body.as_str(), silent.badge, silent.sound), ("", "", None, None));
        assert_eq!(silent.data, ids);
    }

    #[test]
    fn a_badge_only_update_sets_the_apns_badge_and_sends_the_count_as_data_elsewhere() {
        let (e, n) = event(serde_json::json!({"counts": {"unread": 4}, "devices": device()}));
        let apns = e.push_for(&n.devices[0], VendorKind::Apns);
        assert_eq!((apns.push_type, apns.badge), (PushType::Alert, Some(4)));
        assert_eq!((apns.title.as_str(), apns.body.as_str(), apns.sound), ("", "", None));
        assert!(apns.data.is_empty());
        let fcm = e.push_for(&n.devices[0], VendorKind::Fcm);
        assert_eq!(fcm.push_type, PushType::Silent);
        assert_eq!(fcm.data, BTreeMap::from([("unread".to_owned(), "4".to_owned())]));
    }

    #[test]
    fn pusher_ids_are_stable_distinct_and_valid() {
        let (u1, d1) = pusher_ids("com.example.ios", "k1").unwrap_or_else(|| panic!("ids"));
        let (u2, _) = pusher_ids("com.example.ios", "k2").unwrap_or_else(|| panic!("ids"));
        let (u3, _) = pusher_ids("com.example.iosk", "1").unwrap_or_else(|| panic!("ids"));
        assert_eq!(Some((u1.clone(), d1.clone())), pusher_ids("com.example.ios", "k1"));
        assert!(u1 != u2 && u1 != u3, "app id and pushkey are separated");
        assert_eq!(u1.as_str().len(), "matrix:".len() + 32);
        assert_eq!(d1.as_str(), "com.example.ios");
        assert_eq!(placeholder_message_id().as_str(), BADGE_ONLY_ID);
    }

    #[test]
    fn a_long_event_id_becomes_a_hashed_message_id() {
        let long = format!("${}", "x".repeat(200));
        let (e, _) = event(serde_json::json!({"event_id": long, "devices": device()}));
        let id = e.message_id.unwrap_or_else(placeholder_message_id);
        assert!(id.as_str().starts_with("sha256:"), "{id}");
        let (short, _) = event(serde_json::json!({"event_id": "$abc", "devices": device()}));
        assert_eq!(short.message_id.map(|m| m.as_str().to_owned()).as_deref(), Some("$abc"));
    }

    #[test]
    fn a_dead_pushkey_is_rejected_unless_renewed_after_the_vendor_saw_it_dead_or_pruning_is_paused() {
        let since = chrono::DateTime::from_timestamp(1_000, 0);
        let dev = |ts: Option<i64>| MatrixDevice {
            app_id: "a".into(),
            pushkey: "k".into(),
            pushkey_ts: ts,
            data: None,
            tweaks: None,
        };
        let invalid = |prune| Some(Progress::Done(Final::Invalid { since, prune }));
        assert_eq!(outcome_of(invalid(true), &dev(Some(999)), true), DeviceOutcome::InvalidToken);
        assert_eq!(outcome_of(invalid(true), &dev(None), true), DeviceOutcome::InvalidToken);
        assert_eq!(outcome_of(invalid(true), &dev(Some(1_001)), true), DeviceOutcome::TokenKept);
        assert_eq!(outcome_of(invalid(false), &dev(None), true), DeviceOutcome::TokenKept);
        assert_eq!(outcome_of(None, &dev(None), true), DeviceOutcome::Timeout);
        let delivered = Some(Progress::Done(Final::Delivered));
        assert_eq!(outcome_of(delivered.clone(), &dev(None), false), DeviceOutcome::Duplicate);
        assert_eq!(outcome_of(delivered, &dev(None), true), DeviceOutcome::Delivered);
    }
}
