//! The gateway API under `/v1` (product.md §5): parse and validate input into typed commands,
//! check the API key, hand the commands to sessions, map failures to JSON 4xx. No business
//! rules here. A request is validated whole before anything changes.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::auth::GatewayKey;
use super::error::{parse_json, ApiError};
use crate::config::ApiSettings;
use crate::metrics as m;
use crate::model::{
    ChatSettings, Conversation, ConversationId, ConversationKind, CredentialName, DeviceId, DndWindow, Force, Message,
    MessageId, MessageKind, Presence, PushMode, PushOptions, PushType, Sender, TemplateName, Timestamp, Token, UserId,
};
use crate::session::messages::*;
use crate::session::Registry;
use crate::store::Intake;
use crate::trace::TraceEntry;

/// What the handlers share.
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub api: ApiSettings,
}

/// Mounts the `/v1` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/users/{user}/devices/{device}", web::put().to(put_device))
            .route("/users/{user}/devices/{device}", web::delete().to(delete_device))
            .route("/users/{user}/devices", web::get().to(list_devices))
            .route("/presence", web::post().to(post_presence))
            .route("/messages", web::post().to(post_messages))
            .route("/acks", web::post().to(post_acks))
            .route("/users/{user}/settings", web::put().to(put_user_settings))
            .route("/users/{user}/settings", web::get().to(get_user_settings))
            .route("/users/{user}/conversations/{conv}/settings", web::put().to(put_conv_settings))
            .route("/users/{user}/conversations/{conv}/settings", web::get().to(get_conv_settings))
            .route("/users/{user}/conversations/{conv}/settings", web::delete().to(delete_conv_settings))
            .route("/users/{user}/pushes", web::get().to(get_pushes))
            // Anything else under /v1 (unknown path, or a known path with another method)
            // answers in the API's error shape rather than actix's empty 404.
            .default_service(web::to(no_route)),
    );
}

async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

type Body = Result<web::Bytes, actix_web::Error>;

fn body(b: Body, state: &ApiState) -> Result<web::Bytes, ApiError> {
    b.map_err(|_| ApiError::BodyTooLarge(state.api.max_body_bytes))
}

fn user(s: &str) -> Result<UserId, ApiError> {
    UserId::parse(s).map_err(|e| ApiError::InvalidField(format!("user: {e}")))
}

fn timezone(s: &str) -> Result<chrono_tz::Tz, ApiError> {
    chrono_tz::Tz::from_str(s).map_err(|_| ApiError::InvalidTimezone(s.to_owned()))
}

fn enum_field<T: FromStr>(field: &str, v: &str, expected: &str) -> Result<T, ApiError> {
    T::from_str(v).map_err(|_| ApiError::InvalidField(format!("{field}: {v:?} is not one of {expected}")))
}

fn timestamp(field: &str, s: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::InvalidField(format!("{field}: {s:?} is not an RFC 3339 time")))
}

/// Reads `null` as `Some(None)` and absence (via `default`) as `None`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---- devices ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    credential: String,
    token: String,
    timezone: Option<String>,
    locale: Option<String>,
}

fn device_json(user: &UserId, d: &crate::model::Device, presence: Option<Presence>) -> serde_json::Value {
    json!({
        "user": user.as_str(),
        "device": d.id.as_str(),
        "credential": d.credential.as_str(),
        "token": d.token.as_ref().map(Token::masked),
        "timezone": d.timezone.map(|t| t.name()),
        "locale": d.locale,
        "registered_at": d.token_registered_at,
        "presence": presence.map(Presence::as_str),
    })
}

async fn put_device(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    b: Body,
) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let user = user(&path.0)?;
    let device = DeviceId::parse(&path.1).map_err(|e| ApiError::InvalidField(format!("device: {e}")))?;
    let req: DeviceBody = parse_json(&b)?;
    let credential =
        CredentialName::parse(&req.credential).map_err(|_| ApiError::UnknownCredential(req.credential.clone()))?;
    let services = state.registry.services();
    let provider = services.provider(&credential).ok_or_else(|| ApiError::UnknownCredential(req.credential.clone()))?;
    let token = Token::parse_for(provider.vendor().kind(), &req.token)
        .map_err(|e| ApiError::InvalidTokenFormat(e.to_string()))?;
    let timezone = req.timezone.as_deref().map(timezone).transpose()?;
    let locale = match req.locale {
        Some(l)
            if l.is_empty()
                || l.len() > 35
                || !l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') =>
        {
            return Err(ApiError::InvalidField(format!("locale: {l:?} is not a language tag like zh-CN")))
        }
        other => other,
    };
    let cmd = RegisterDevice { device, credential, token, timezone, locale };
    let d = state.registry.call(&user, cmd).await??;
    durable(&state).await?;
    Ok(HttpResponse::Ok().json(device_json(&user, &d, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    unbind_token: Option<String>,
}

async fn delete_device(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    query: Result<web::Query<DeleteQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&path.0)?;
    let device = DeviceId::parse(&path.1).map_err(|e| ApiError::InvalidField(format!("device: {e}")))?;
    let query = query.map_err(|e| ApiError::InvalidField(format!("query: {e}")))?;
    let unbind = match query.unbind_token.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(ApiError::InvalidField(format!("unbind_token: {other:?} is not true or false"))),
    };
    let removed = state.registry.call(&user, RemoveDevice { device, unbind }).await??;
    durable(&state).await?;
    if removed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no such device".into()))
    }
}

async fn list_devices(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&path)?;
    let devices = state.registry.call(&user, ListDevices).await??;
    let list: Vec<_> = devices.iter().map(|d| device_json(&user, &d.device, Some(d.presence))).collect();
    Ok(HttpResponse::Ok().json(json!({ "devices": list })))
}

// ---- presence ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    events: Vec<PresenceEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceEvent {
    user: String,
    device: String,
    state: String,
    at: Option<String>,
}

/// How far ahead of pushd's clock a presence event's `at` may be (gateway clock skew).
const MAX_PRESENCE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

async fn post_presence(_k: GatewayKey, state: web::Data<ApiState>, b: Body) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let req: PresenceBody = parse_json(&b)?;
    let max = state.api.max_presence_batch;
    if req.events.len() > max {
        return Err(ApiError::TooMany { what: "events", max });
    }
    let now = state.registry.services().clock.now();
    let mut events = Vec::with_capacity(req.events.len());
    for (i, e) in req.events.iter().enumerate() {
        // Formatted only for an error: a batch holds up to 5000 events (load harness, issue 6).
        let here = || format!("events[{i}]");
        let u = user(&e.user).map_err(|err| err.at(&here()))?;
        let device =
            DeviceId::parse(&e.device).map_err(|err| ApiError::InvalidField(format!("{}.device: {err}", here())))?;
        let presence: Presence =
            enum_field("state", &e.state, "online, offline, kicked").map_err(|err: ApiError| err.at(&here()))?;
        let t = match &e.at {
            Some(s) => timestamp("at", s).map_err(|err| err.at(&here()))?,
            None => now,
        };
        // An event stamped far ahead would make every later event of the device look stale
        // and freeze its presence: allow clock skew, refuse the rest.
        if t > now + MAX_PRESENCE_SKEW {
            return Err(ApiError::InvalidField(format!("{}.at: more than 5 minutes in the future", here())));
        }
        events.push((u, PresenceChanged { device, presence, at: t }));
    }
    // Events of one user stay in order; users proceed concurrently.
    let mut by_user: BTreeMap<UserId, Vec<PresenceChanged>> = BTreeMap::new();
    for (u, e) in events {
        by_user.entry(u).or_default().push(e);
    }
    let registry = &state.registry;
    // One deadline for the batch, not a timer per event (see `Registry::call_untimed`).
    let (applied, ignored) = Registry::deadline(async {
        let results = join_all(by_user.into_iter().map(|(u, evs)| async move {
            let mut applied = 0usize;
            let mut ignored = 0usize;
            for e in evs {
                if registry.call_untimed(&u, e).await?? {
                    applied += 1;
                } else {
                    ignored += 1;
                }
            }
            Ok::<_, ApiError>((applied, ignored))
        }))
        .await;
        let (mut applied, mut ignored) = (0, 0);
        for r in results {
            let (a, i) = r?;
            applied += a;
            ignored += i;
        }
        Ok::<_, ApiError>((applied, ignored))
    })
    .await?;
    durable(&state).await?;
    Ok(HttpResponse::Accepted().json(json!({ "applied": applied, "ignored_stale": ignored })))
}

// ---- messages ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    id: String,
    from: SenderBody,
    conversation: ConversationBody,
    to: Vec<String>,
    kind: String,
    text: Option<String>,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    mention_all: bool,
    push: Option<PushBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderBody {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationBody {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ForceBody {
    All(bool),
    Users(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    force: Option<ForceBody>,
    title: Option<String>,
    body: Option<String>,
    template: Option<String>,
    #[serde(rename = "type")]
    push_type: Option<String>,
    collapse_id: Option<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    messages: Vec<serde_json::Value>,
}

/// Longest TTL any vendor stores a push: FCM's 28 days.
const MAX_TTL_SECONDS: u64 = 28 * 24 * 3600;
/// Data keys a vendor reserves (FCM: `from`, `message_type`, `google.*`, `gcm*`; APNs: `aps`)
/// and those pushd sets itself for deep links.
fn reserved_data_key(k: &str) -> bool {
    matches!(k, "from" | "message_type" | "aps" | "msg" | "conv" | "sender")
        || k.starts_with("google")
        || k.starts_with("gcm")
}

fn validate_message(v: serde_json::Value, state: &ApiState, now: Timestamp) -> Result<Message, ApiError> {
    let b: MessageBody = serde_json::from_value(v).map_err(|e| ApiError::InvalidField(e.to_string()))?;
    fn field(name: &'static str) -> impl Fn(crate::model::IdError) -> ApiError {
        move |e| ApiError::InvalidField(format!("{name}: {e}"))
    }
    let id = MessageId::parse(&b.id).map_err(field("id"))?;
    let from = Sender { id: UserId::parse(&b.from.id).map_err(field("from.id"))?, name: b.from.name };
    let conversation = Conversation {
        id: ConversationId::parse(&b.conversation.id).map_err(field("conversation.id"))?,
        kind: enum_field::<ConversationKind>("conversation.type", &b.conversation.kind, "single, group, chatroom")?,
        name: b.conversation.name,
    };
    if b.to.is_empty() {
        return Err(ApiError::InvalidField("to: at least one recipient is required".into()));
    }
    let max = state.api.max_recipients;
    if b.to.len() > max {
        return Err(ApiError::TooMany { what: "to", max });
    }
    let mut seen = BTreeSet::new();
    let mut to = Vec::with_capacity(b.to.len());
    for (i, u) in b.to.iter().enumerate() {
        let u = UserId::parse(u).map_err(|e| ApiError::InvalidField(format!("to[{i}]: {e}")))?;
        if seen.insert(u.clone()) {
            to.push(u);
        }
    }
    let kind = enum_field::<MessageKind>("kind", &b.kind, "text, image, voice, video, file, location, custom, call")?;
    let mentions = b
        .mentions
        .iter()
        .enumerate()
        .map(|(i, u)| UserId::parse(u).map_err(|e| ApiError::InvalidField(format!("mentions[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut push = PushOptions::default();
    if let Some(p) = b.push {
        push.force = match p.force {
            None | Some(ForceBody::All(false)) => Force::Nobody,
            Some(ForceBody::All(true)) => Force::Everyone,
            Some(ForceBody::Users(users)) => Force::Users(
                users
                    .iter()
                    .enumerate()
                    .map(|(i, u)| UserId::parse(u).map_err(|e| ApiError::InvalidField(format!("push.force[{i}]: {e}"))))
                    .collect::<Result<_, _>>()?,
            ),
        };
        if let Some(t) = p.template {
            let name = TemplateName::parse(&t).map_err(|_| ApiError::UnknownTemplate(t.clone()))?;
            if !state.registry.services().templates().contains(&name) {
                return Err(ApiError::UnknownTemplate(t));
            }
            push.template = Some(name);
        }
        push.push_type =
            p.push_type.map(|t| enum_field::<PushType>("push.type", &t, "alert, silent, voip")).transpose()?;
        if let Some(c) = &p.collapse_id {
            if c.is_empty() || c.len() > 64 {
                return Err(ApiError::InvalidField("push.collapse_id: 1 to 64 bytes".into()));
            }
        }
        push.collapse_id = p.collapse_id;
        if let Some(ttl) = p.ttl_seconds {
            if ttl > MAX_TTL_SECONDS {
                return Err(ApiError::InvalidField(format!("push.ttl_seconds: at most {MAX_TTL_SECONDS}")));
            }
            push.ttl = Some(Duration::from_secs(ttl));
        }
        if let Some(k) = p.data.keys().find(|k| reserved_data_key(k)) {
            return Err(ApiError::InvalidField(format!("push.data: key {k:?} is reserved")));
        }
        push.title = p.title;
        push.body = p.body;
        push.data = p.data;
    }
    Ok(Message {
        id,
        from,
        conversation,
        to,
        kind,
        text: b.text,
        mentions,
        mention_all: b.mention_all,
        push,
        accepted_at: now,
    })
}

async fn post_messages(_k: GatewayKey, state: web::Data<ApiState>, b: Body) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let value: serde_json::Value = parse_json(&b)?;
    let now = state.registry.services().clock.now();
    let batch = value.as_object().is_some_and(|o| o.contains_key("messages"));
    let raw = if batch {
        let batch: BatchBody = serde_json::from_value(value).map_err(|e| ApiError::InvalidField(e.to_string()))?;
        let max = state.api.max_message_batch;
        if batch.messages.len() > max {
            return Err(ApiError::TooMany { what: "messages", max });
        }
        if batch.messages.is_empty() {
            return Err(ApiError::InvalidField("messages: at least one message is required".into()));
        }
        batch.messages
    } else {
        vec![value]
    };
    // Validate the whole batch before accepting any of it.
    let mut messages = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let m = validate_message(v, &state, now);
        messages.push(if batch { m.map_err(|e| e.at(&format!("messages[{i}]")))? } else { m? });
    }
    let services = state.registry.services();
    let store = services.store.clone();
    // Back-pressure: the messages accepted and not yet done (per recipient) are bounded, so a
    // burst gets 429 instead of growing memory; nothing of a refused batch is accepted.
    let recipients: usize = messages.iter().map(|m| m.to.len()).sum();
    if !services.reserve_pending(recipients) {
        return Err(ApiError::TooBusy);
    }
    let (mut accepted, mut duplicates) = (Vec::new(), Vec::new());
    let mut deliveries = Vec::new();
    let mut failure = None;
    for m in messages {
        match store.accept_message(&m) {
            Ok(Intake::Duplicate) => duplicates.push(m.id.to_string()),
            Ok(Intake::New) => {
                metrics::counter!(m::MESSAGES_ACCEPTED).increment(1);
                accepted.push(m.id.to_string());
                let m = Arc::new(m);
                for u in &m.to {
                    deliveries.push((u.clone(), MessageArrived(m.clone(), Arrival::Accepted)));
                }
            }
            Err(e) => {
                failure = Some(ApiError::from(e));
                break;
            }
        }
    }
    services.release_pending(recipients - deliveries.len());
    // 202 only once the journal entries are durable (group commit: concurrent requests share
    // one flush).
    if failure.is_none() {
        if let Err(e) = store.sync().await {
            failure = Some(ApiError::from(e));
        }
    }
    let registry = &state.registry;
    join_all(deliveries.into_iter().map(|(u, cmd)| async move {
        if registry.call(&u, cmd.clone()).await.is_err() {
            // Accepted already: keep trying in the background rather than lose it (the
            // journal replays it after a restart in any case).
            registry.notify(&u, cmd);
        }
    }))
    .await;
    if let Some(e) = failure {
        // What was accepted before the failure is in the journal and being delivered; the
        // gateway's retry finds those ids as duplicates.
        return Err(e);
    }
    Ok(HttpResponse::Accepted().json(json!({ "accepted": accepted, "duplicates": duplicates })))
}

/// Waits until the writes of a handled request are durable before it is answered.
async fn durable(state: &ApiState) -> Result<(), ApiError> {
    state.registry.services().store.sync().await.map_err(ApiError::from)
}

// ---- acks ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    user: String,
    device: String,
    message_ids: Vec<String>,
}

async fn post_acks(_k: GatewayKey, state: web::Data<ApiState>, b: Body) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let req: AckBody = parse_json(&b)?;
    let u = user(&req.user)?;
    let device = DeviceId::parse(&req.device).map_err(|e| ApiError::InvalidField(format!("device: {e}")))?;
    let messages = req
        .message_ids
        .iter()
        .enumerate()
        .map(|(i, id)| MessageId::parse(id).map_err(|e| ApiError::InvalidField(format!("message_ids[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    state.registry.call(&u, Acked { device, messages }).await?;
    Ok(HttpResponse::Accepted().json(json!({})))
}

// ---- settings ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DndBody {
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default, deserialize_with = "nullable")]
    push_mode: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    dnd: Option<Option<DndBody>>,
    dnd_minutes: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    dnd_until: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    template: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    display_name: Option<Option<String>>,
}

/// One year: the longest "mute for" a client can ask.
const MAX_DND_MINUTES: u32 = 366 * 24 * 60;

fn settings_patch(b: &[u8], state: &ApiState) -> Result<SettingsPatch, ApiError> {
    let req: SettingsBody = parse_json(b)?;
    let mut p = SettingsPatch::default();
    if let Some(mode) = req.push_mode {
        p.push_mode = Some(mode.map(|m| enum_field::<PushMode>("push_mode", &m, "all, mentions, none")).transpose()?);
    }
    if let Some(dnd) = req.dnd {
        p.dnd = Some(
            dnd.map(|d| DndWindow::parse(&d.from, &d.to).map_err(|e| ApiError::InvalidField(format!("dnd: {e}"))))
                .transpose()?,
        );
    }
    if let Some(m) = req.dnd_minutes {
        if m == 0 || m > MAX_DND_MINUTES {
            return Err(ApiError::InvalidField(format!("dnd_minutes: 1 to {MAX_DND_MINUTES}")));
        }
        p.dnd_minutes = Some(m);
    }
    if let Some(until) = req.dnd_until {
        p.dnd_until = Some(until.map(|s| timestamp("dnd_until", &s)).transpose()?);
    }
    if let Some(tz) = req.timezone {
        p.timezone = Some(tz.map(|s| timezone(&s)).transpose()?);
    }
    if let Some(t) = req.template {
        p.template = Some(
            t.map(|t| {
                TemplateName::parse(&t)
                    .ok()
                    .filter(|n| state.registry.services().templates().contains(n))
                    .ok_or(ApiError::UnknownTemplate(t))
            })
            .transpose()?,
        );
    }
    if let Some(name) = req.display_name {
        if name.as_ref().is_some_and(|n| n.len() > 256) {
            return Err(ApiError::InvalidField("display_name: at most 256 bytes".into()));
        }
        p.display_name = Some(name);
    }
    Ok(p)
}

fn settings_json(s: &ChatSettings) -> serde_json::Value {
    json!({
        "push_mode": s.push_mode.map(PushMode::as_str),
        "dnd": s.dnd.map(|w| json!({"from": DndWindow::fmt_minute(w.from), "to": DndWindow::fmt_minute(w.to)})),
        "dnd_until": s.dnd_until,
        "timezone": s.timezone.map(|t| t.name()),
        "template": s.template.as_ref().map(TemplateName::as_str),
        "display_name": s.display_name,
    })
}

fn conv(s: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(s).map_err(|e| ApiError::InvalidField(format!("conversation: {e}")))
}

async fn put_user_settings(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    b: Body,
) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let u = user(&path)?;
    let patch = settings_patch(&b, &state)?;
    let s = state.registry.call(&u, UpdateSettings { conversation: None, patch }).await??;
    durable(&state).await?;
    Ok(HttpResponse::Ok().json(settings_json(&s)))
}

async fn get_user_settings(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let s = state.registry.call(&u, GetSettings { conversation: None }).await??.unwrap_or_default();
    Ok(HttpResponse::Ok().json(settings_json(&s)))
}

async fn put_conv_settings(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    b: Body,
) -> Result<HttpResponse, ApiError> {
    let b = body(b, &state)?;
    let (u, c) = (user(&path.0)?, conv(&path.1)?);
    let patch = settings_patch(&b, &state)?;
    if patch.timezone.is_some() {
        return Err(ApiError::InvalidField("timezone: set it in the user's settings".into()));
    }
    let s = state.registry.call(&u, UpdateSettings { conversation: Some(c), patch }).await??;
    durable(&state).await?;
    Ok(HttpResponse::Ok().json(settings_json(&s)))
}

async fn get_conv_settings(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (u, c) = (user(&path.0)?, conv(&path.1)?);
    match state.registry.call(&u, GetSettings { conversation: Some(c) }).await?? {
        Some(s) => Ok(HttpResponse::Ok().json(settings_json(&s))),
        None => Err(ApiError::NotFound("no settings for this conversation; the user's apply".into())),
    }
}

async fn delete_conv_settings(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (u, c) = (user(&path.0)?, conv(&path.1)?);
    let existed = state.registry.call(&u, DeleteConversationSettings(c)).await??;
    durable(&state).await?;
    if existed {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("no settings for this conversation".into()))
    }
}

// ---- trace ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushesQuery {
    limit: Option<usize>,
}

async fn get_pushes(
    _k: GatewayKey,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: Result<web::Query<PushesQuery>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let u = user(&path)?;
    let query = query.map_err(|e| ApiError::InvalidField(format!("query: {e}")))?;
    let limit = query.limit.unwrap_or(50).min(1000);
    // A running session holds the traces of the messages it still works on (stored when each
    // completes): ask it before reading the store, so a message completing in between is in
    // one of the two.
    let open = state.registry.ask_running(&u, OpenTraces).await?.unwrap_or_default();
    let stored: Vec<TraceEntry> = state.registry.services().store.traces(&u, limit)?;
    let open_ids: std::collections::HashSet<MessageId> = open.iter().map(|t| t.message_id.clone()).collect();
    let mut entries: Vec<TraceEntry> = open;
    entries.extend(stored.into_iter().filter(|t| !open_ids.contains(&t.message_id)));
    entries.truncate(limit);
    Ok(HttpResponse::Ok().json(json!({ "user": u.as_str(), "pushes": entries })))
}
