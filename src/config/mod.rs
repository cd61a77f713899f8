//! Configuration: embedded defaults (`config/default.toml`) → config files → environment
//! (`PUSHD__SECTION__KEY=value`), then validation that collects **every** problem with its key
//! path before anything runs, and conversion into typed [`Settings`]. Runtime code only sees
//! `Settings`.

pub mod raw;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{CredentialName, MultiDevicePolicy, PushMode, TemplateName, VendorKind};
use crate::policy::PolicyConfig;
use crate::provider::actor::{GuardSettings, ProviderSettings, TransportSettings};
use crate::provider::credential::{self, CredentialContext};
use crate::provider::retry::RetryPolicy;
use crate::provider::Vendor;
use crate::render::{RenderTexts, TemplateConfig, Templates};
use raw::{RawConfig, RawCredential};

/// The embedded defaults; every key is documented there.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
/// The demo overlay: mock vendors on loopback.
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// Why the configuration was refused: every problem, each naming its key path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(p: impl Into<String>) -> Self {
        Self { problems: vec![p.into()] }
    }
}

/// Listener addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub gateway: SocketAddr,
    pub operator: SocketAddr,
}

/// Gateway API limits and keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub keys: Vec<String>,
    pub admin_keys: Vec<String>,
    pub max_body_bytes: usize,
    pub max_message_batch: usize,
    pub max_presence_batch: usize,
    pub max_recipients: usize,
}

/// Session behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub arbiters: usize,
    pub idle_passivate: Duration,
    pub mailbox_capacity: usize,
    pub trace_per_user: usize,
    pub ack_timeout: Duration,
    pub default_template: TemplateName,
    /// Accepted (message, recipient) pairs not yet done; beyond it the API answers 429.
    pub max_pending: usize,
}

/// One configured credential, ready to start.
#[derive(Clone)]
pub struct CredentialSettings {
    pub name: CredentialName,
    pub vendor: Arc<dyn Vendor>,
    pub provider: ProviderSettings,
}

impl std::fmt::Debug for CredentialSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSettings")
            .field("name", &self.name)
            .field("vendor", &self.vendor.kind())
            .finish_non_exhaustive()
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub log: String,
    /// On SIGTERM/SIGINT, how long in-flight work may take before pushd exits anyway (what is
    /// left stays in the journal and is replayed at the next start).
    pub shutdown_grace: Duration,
    pub listen: Listen,
    pub api: ApiSettings,
    pub policy: PolicyConfig,
    pub sessions: SessionSettings,
    pub render: RenderTexts,
    pub templates: BTreeMap<String, TemplateConfig>,
    pub credentials: Vec<CredentialSettings>,
    pub matrix: MatrixSettings,
    pub store: StoreSettings,
}

/// Where and how durably pushd keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Persist in `data_dir` (fjall); `false`: in memory only.
    pub embedded: bool,
    pub sync: crate::store::journal::SyncMode,
    pub sync_interval: Duration,
    pub retention: Duration,
    pub sweep_interval: Duration,
}

/// The Matrix push gateway endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSettings {
    pub enabled: bool,
    /// Own listener; `None`: served on the gateway listener.
    pub listen: Option<SocketAddr>,
    /// Allowed source networks as (address, prefix length); empty: any.
    pub allowed_networks: Vec<(std::net::IpAddr, u8)>,
    pub answer_timeout: Duration,
    /// Matrix app id → credential.
    pub apps: BTreeMap<String, CredentialName>,
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address (a host route).
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((ip, len))
}

/// Layers TOML documents and the environment into one raw config.
#[derive(Debug, Clone)]
pub struct Loader {
    doc: toml::Table,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// Starts from the embedded defaults.
    pub fn new() -> Self {
        // Invariant: the embedded defaults parse; a unit test checks it.
        let doc = toml::from_str(DEFAULT_TOML).expect("embedded default.toml parses");
        Self { doc }
    }

    /// Overlays one TOML document (`origin` names it in errors).
    pub fn layer_str(mut self, origin: &str, text: &str) -> Result<Self, ConfigError> {
        let layer: toml::Table = toml::from_str(text).map_err(|e| ConfigError::one(format!("{origin}: {e}")))?;
        merge(&mut self.doc, layer);
        Ok(self)
    }

    /// Overlays a TOML file.
    pub fn layer_file(self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::one(format!("{}: {e}", path.display())))?;
        self.layer_str(&path.display().to_string(), &text)
    }

    /// Overlays `PUSHD__A__B=value` variables from `env` (passed in, so tests never touch the
    /// process environment). Values are read as TOML (`5`, `true`, `["a"]`), else as strings.
    pub fn layer_env(mut self, env: &HashMap<String, String>) -> Self {
        let mut keys: Vec<_> = env.keys().filter(|k| k.starts_with("PUSHD__")).collect();
        keys.sort();
        for key in keys {
            let path: Vec<String> = key["PUSHD__".len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
            let raw = &env[key];
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            set_path(&mut self.doc, &path, value);
        }
        self
    }

    /// Sets one key path (used by CLI flags).
    pub fn set(mut self, path: &[&str], value: toml::Value) -> Self {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        set_path(&mut self.doc, &path, value);
        self
    }

    /// The merged raw config, before validation.
    pub fn raw(&self) -> Result<RawConfig, ConfigError> {
        toml::Value::Table(self.doc.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::one(e.to_string().trim().to_owned()))
    }

    /// Validates everything and builds [`Settings`].
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        validate(self.raw()?)
    }

    /// The merged document as TOML (defaults included), for a file that `pushd serve --config`
    /// reads back to the same config (`pushd mocks --config-out`).
    pub fn to_toml_string(&self) -> String {
        // Invariant: the document holds only TOML values (it was parsed from TOML or set from
        // `toml::Value`s), which always serialize.
        toml::to_string(&self.doc).expect("a TOML table serializes")
    }
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(doc: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut t = doc;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        // Invariant: made a table just above.
        t = entry.as_table_mut().expect("table");
    }
    t.insert(last.clone(), value);
}

/// Collects problems with their key paths.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: impl AsRef<str>, what: impl AsRef<str>) {
        self.0.push(format!("{}: {}", key.as_ref(), what.as_ref()));
    }
}

fn validate(raw: RawConfig) -> Result<Settings, ConfigError> {
    let mut p = Problems(Vec::new());
    let data_dir = PathBuf::from(&raw.data_dir);

    let addr = |key: &str, v: &str, p: &mut Problems| match SocketAddr::from_str(v) {
        Ok(a) => a,
        Err(_) => {
            p.add(key, format!("{v:?} is not an address like 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    let listen = Listen {
        gateway: addr("listen.gateway", &raw.listen.gateway, &mut p),
        operator: addr("listen.operator", &raw.listen.operator, &mut p),
    };

    if raw.api.keys.is_empty() {
        p.add("api.keys", "at least one gateway API key is required");
    }
    for (i, k) in raw.api.keys.iter().chain(&raw.api.admin_keys).enumerate() {
        if k.len() < 8 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.add(format!("api.keys[{i}]"), "keys are at least 8 printable characters without spaces");
        }
    }
    for (key, v) in [
        ("api.max_body_bytes", raw.api.max_body_bytes),
        ("api.max_message_batch", raw.api.max_message_batch),
        ("api.max_presence_batch", raw.api.max_presence_batch),
        ("api.max_recipients", raw.api.max_recipients),
        ("sessions.arbiters", raw.sessions.arbiters),
        ("sessions.mailbox_capacity", raw.sessions.mailbox_capacity),
        ("sessions.trace_per_user", raw.sessions.trace_per_user),
    ] {
        if v == 0 {
            p.add(key, "must be greater than 0");
        }
    }

    let multi_device = MultiDevicePolicy::from_str(&raw.policy.multi_device).unwrap_or_else(|_| {
        p.add("policy.multi_device", "expected \"all_offline\" or \"any_offline\"");
        MultiDevicePolicy::AllOffline
    });
    let default_push_mode = PushMode::from_str(&raw.policy.default_push_mode).unwrap_or_else(|_| {
        p.add("policy.default_push_mode", "expected \"all\", \"mentions\" or \"none\"");
        PushMode::All
    });
    let default_template = match TemplateName::parse(&raw.policy.default_template) {
        Ok(t) => t,
        Err(e) => {
            p.add("policy.default_template", e.to_string());
            TemplateName::parse("default").expect("valid literal")
        }
    };
    match Templates::new(raw.render.clone(), &raw.templates) {
        Ok(t) if !t.contains(&default_template) => {
            p.add("policy.default_template", format!("no template named {default_template:?}"))
        }
        Ok(_) => {}
        Err(errors) => {
            for e in errors {
                p.add("templates", e.to_string());
            }
        }
    }

    let d = &raw.delivery;
    if d.max_attempts == 0 {
        p.add("delivery.max_attempts", "must be at least 1");
    }
    if !(d.mass_invalidation_ratio > 0.0 && d.mass_invalidation_ratio <= 1.0) {
        p.add("delivery.mass_invalidation_ratio", "must be in (0, 1]");
    }
    if d.mass_invalidation_window == 0 {
        p.add("delivery.mass_invalidation_window", "must be greater than 0");
    }
    let retry = RetryPolicy {
        max_attempts: d.max_attempts.max(1),
        base: Duration::from_millis(d.backoff_base_ms),
        max_backoff: Duration::from_millis(d.backoff_max_ms),
        deadline: Duration::from_millis(d.deadline_ms),
    };

    let mut credentials = Vec::new();
    for (name, c) in &raw.credentials {
        if let Some(cred) = credential(name, c, &raw, retry, &data_dir, &mut p) {
            credentials.push(cred);
        }
    }

    let m = &raw.matrix;
    let matrix_listen = if m.listen.is_empty() { None } else { Some(addr("matrix.listen", &m.listen, &mut p)) };
    let mut allowed_networks = Vec::new();
    for (i, n) in m.allowed_networks.iter().enumerate() {
        match parse_cidr(n) {
            Some(net) => allowed_networks.push(net),
            None => p.add(format!("matrix.allowed_networks[{i}]"), format!("{n:?} is not a network like 10.0.0.0/8")),
        }
    }
    let mut apps = BTreeMap::new();
    for (app, cred) in &m.apps {
        match CredentialName::parse(cred) {
            Ok(c) if raw.credentials.contains_key(cred) => {
                apps.insert(app.clone(), c);
            }
            _ => p.add(format!("matrix.apps.{app}"), format!("no credential named {cred:?}")),
        }
    }
    if m.enabled && apps.is_empty() {
        p.add("matrix.apps", "map at least one Matrix app id to a credential");
    }
    let matrix = MatrixSettings {
        enabled: m.enabled,
        listen: matrix_listen,
        allowed_networks,
        answer_timeout: Duration::from_millis(m.answer_timeout_ms.max(1)),
        apps,
    };

    let st = &raw.store;
    let embedded = match st.kind.as_str() {
        "embedded" => true,
        "memory" => false,
        other => {
            p.add("store.kind", format!("{other:?}: expected \"embedded\" or \"memory\""));
            true
        }
    };
    let sync = match st.sync.as_str() {
        "commit" => crate::store::journal::SyncMode::Commit,
        "interval" => crate::store::journal::SyncMode::Interval,
        other => {
            p.add("store.sync", format!("{other:?}: expected \"commit\" or \"interval\""));
            crate::store::journal::SyncMode::Commit
        }
    };
    if st.retention_hours == 0 {
        p.add("store.retention_hours", "must be greater than 0");
    }
    let store = StoreSettings {
        embedded,
        sync,
        sync_interval: Duration::from_millis(st.sync_interval_ms.max(1)),
        retention: Duration::from_secs(st.retention_hours.saturating_mul(3600)),
        sweep_interval: Duration::from_millis(st.sweep_interval_ms.max(1000)),
    };

    if !p.0.is_empty() {
        return Err(ConfigError { problems: p.0 });
    }
    Ok(Settings {
        store,
        matrix,
        data_dir,
        log: raw.log,
        shutdown_grace: Duration::from_millis(raw.shutdown_grace_ms),
        listen,
        api: ApiSettings {
            keys: raw.api.keys,
            admin_keys: raw.api.admin_keys,
            max_body_bytes: raw.api.max_body_bytes,
            max_message_batch: raw.api.max_message_batch,
            max_presence_batch: raw.api.max_presence_batch,
            max_recipients: raw.api.max_recipients,
        },
        policy: PolicyConfig { multi_device, push_chatrooms: raw.policy.push_chatrooms, default_push_mode },
        sessions: SessionSettings {
            arbiters: raw.sessions.arbiters,
            idle_passivate: Duration::from_millis(raw.sessions.idle_passivate_ms),
            mailbox_capacity: raw.sessions.mailbox_capacity,
            trace_per_user: raw.sessions.trace_per_user,
            ack_timeout: Duration::from_millis(raw.policy.ack_timeout_ms),
            default_template,
            max_pending: raw.api.max_pending,
        },
        render: raw.render,
        templates: raw.templates,
        credentials,
    })
}

fn read_file(key: &str, path: &str, data_dir: &Path, p: &mut Problems) -> Option<String> {
    let ctx = CredentialContext { name: "", data_dir };
    ctx.read_file(key, path).map_err(|problem| p.add(problem.field, problem.what)).ok()
}

fn credential(
    name: &str,
    c: &RawCredential,
    raw: &RawConfig,
    retry: RetryPolicy,
    data_dir: &Path,
    p: &mut Problems,
) -> Option<CredentialSettings> {
    let key = |field: &str| {
        if field.is_empty() {
            format!("credentials.{name}")
        } else {
            format!("credentials.{name}.{field}")
        }
    };
    let before = p.0.len();
    let cred_name = CredentialName::parse(name).map_err(|e| p.add(key(""), e.to_string())).ok();
    let expected: Vec<&str> = VendorKind::ALL.iter().map(|v| v.as_str()).collect();
    let kind = VendorKind::from_str(&c.vendor)
        .map_err(|_| {
            p.add(key("vendor"), format!("unknown vendor {:?} (expected one of {})", c.vendor, expected.join(", ")))
        })
        .ok();
    let mut roots = Vec::new();
    for (i, r) in c.extra_roots.iter().enumerate() {
        if let Some(pem) = read_file(&key(&format!("extra_roots[{i}]")), r, data_dir, p) {
            roots.push(pem);
        }
    }
    let ctx = CredentialContext { name, data_dir };
    let build = kind.and_then(|kind| match credential::build(kind, &c.vendor_fields, &ctx) {
        Ok(b) => Some(b),
        Err(problems) => {
            for problem in problems {
                p.add(key(&problem.field), problem.what);
            }
            None
        }
    });

    let d = &raw.delivery;
    let nz = |field: &str, v: u32, p: &mut Problems| {
        NonZeroU32::new(v).or_else(|| {
            p.add(key(field), "must be greater than 0");
            None
        })
    };
    let rate = nz("rate_per_sec", c.rate_per_sec.unwrap_or(d.rate_per_sec), p);
    let burst = nz("burst", c.burst.unwrap_or(d.burst), p);
    if p.0.len() != before {
        return None;
    }
    let (Some(name), Some(build), Some(rate_per_sec), Some(burst)) = (cred_name, build, rate, burst) else {
        return None;
    };
    Some(CredentialSettings {
        provider: ProviderSettings {
            credential: name.clone(),
            rate_per_sec,
            burst,
            max_in_flight: c.max_in_flight.unwrap_or(d.max_in_flight).max(1),
            queue_capacity: c.queue_capacity.unwrap_or(d.queue_capacity).max(1),
            request_timeout: Duration::from_millis(d.request_timeout_ms),
            retry,
            batch_linger: Duration::from_millis(d.batch_linger_ms),
            quota_recheck: Duration::from_millis(d.quota_recheck_ms.max(1)),
            guard: GuardSettings {
                window: d.mass_invalidation_window,
                min_samples: d.mass_invalidation_min,
                ratio: d.mass_invalidation_ratio,
            },
            transport: TransportSettings {
                http2_only: build.http2_only,
                extra_roots_pem: roots,
                identity_pem: build.identity_pem,
            },
        },
        name,
        vendor: build.vendor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let s = Loader::new().settings().unwrap();
        assert_eq!(s.listen.gateway, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.sessions.ack_timeout, Duration::from_secs(10));
        assert!(s.credentials.is_empty());
    }

    #[test]
    fn a_loader_written_as_toml_reads_back_to_the_same_document() {
        let loader = Loader::new()
            .layer_str("config/demo.toml", DEMO_TOML)
            .unwrap()
            .set(&["data_dir"], toml::Value::String("/var/lib/pushd \"demo\"".into()))
            .set(&["credentials", "demo-apns", "endpoint"], toml::Value::String("https://127.0.0.1:1/".into()));

        let text = loader.to_toml_string();
        let again = Loader::new().layer_str("written", &text).unwrap();

        assert_eq!(again.doc, loader.doc);
        assert_eq!(again.to_toml_string(), text);
        assert_eq!(again.raw().unwrap().data_dir, "/var/lib/pushd \"demo\"");
        assert!(text.contains("[credentials.demo-apns]"), "{text}");
    }

    #[test]
    fn environment_overrides_win_and_are_typed() {
        let env = HashMap::from([
            ("PUSHD__POLICY__ACK_TIMEOUT_MS".to_string(), "0".to_string()),
            ("PUSHD__LISTEN__GATEWAY".to_string(), "127.0.0.1:18080".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let s = Loader::new().layer_env(&env).settings().unwrap();
        assert_eq!(s.sessions.ack_timeout, Duration::ZERO);
        assert_eq!(s.listen.gateway.port(), 18080);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let bad = r#"
            [listen]
            gateway = "nowhere"
            [policy]
            multi_device = "sometimes"
            [credentials.ios]
            vendor = "apns"
            endpoint = "ftp://x"
            [credentials.android]
            vendor = "fcm"
            topic = "com.x"
            [credentials.web]
            vendor = "fcm"
            [credentials.nokia]
            vendor = "symbian"
        "#;
        let err = Loader::new().layer_str("test", bad).unwrap().settings().unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "listen.gateway",
            "policy.multi_device",
            "credentials.ios.endpoint",
            "credentials.ios.topic",
            "credentials.ios.key_file",
            "credentials.android.topic: does not apply",
            "credentials.web.service_account_file: required",
            "credentials.nokia.vendor: unknown vendor",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Loader::new().layer_str("t", "[policy]\nack_timeout = 5").unwrap().settings().unwrap_err();
        assert!(err.problems[0].contains("ack_timeout"), "{err}");
    }
}
