//! The config file as written: serde structs mirroring `config/default.toml`, with
//! `deny_unknown_fields` so a typo is an error, not a silently ignored key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::render::{RenderTexts, TemplateConfig};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: String,
    pub log: String,
    pub shutdown_grace_ms: u64,
    pub listen: RawListen,
    pub api: RawApi,
    pub policy: RawPolicy,
    pub sessions: RawSessions,
    pub delivery: RawDelivery,
    #[serde(default)]
    pub render: RenderTexts,
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateConfig>,
    #[serde(default)]
    pub credentials: BTreeMap<String, RawCredential>,
    pub matrix: RawMatrix,
    pub store: RawStore,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `embedded` (fjall in data_dir) or `memory` (nothing survives a restart).
    pub kind: String,
    /// `commit` or `interval` (see docs/durability.md).
    pub sync: String,
    pub sync_interval_ms: u64,
    /// Dedup records, accepted message ids and traces older than this are removed.
    pub retention_hours: u64,
    pub sweep_interval_ms: u64,
}

/// `[matrix]`: the Matrix push gateway API (`POST /_matrix/push/v1/notify`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    pub enabled: bool,
    /// Own listener for homeservers; empty: served on the gateway listener.
    pub listen: String,
    /// Source networks allowed to call it (CIDR); empty: any.
    pub allowed_networks: Vec<String>,
    /// Upper bound on answering a notify request (vendor answer or retries given up).
    pub answer_timeout_ms: u64,
    /// Matrix app id → pushd credential name.
    #[serde(default)]
    pub apps: BTreeMap<String, String>,
}

/// `[listen]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub gateway: String,
    pub operator: String,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub keys: Vec<String>,
    pub admin_keys: Vec<String>,
    pub max_body_bytes: usize,
    pub max_message_batch: usize,
    pub max_presence_batch: usize,
    pub max_recipients: usize,
    pub max_pending: usize,
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub multi_device: String,
    pub push_chatrooms: bool,
    pub ack_timeout_ms: u64,
    pub default_push_mode: String,
    pub default_template: String,
}

/// `[sessions]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub arbiters: usize,
    pub idle_passivate_ms: u64,
    pub mailbox_capacity: usize,
    pub trace_per_user: usize,
}

/// `[delivery]`: defaults for every credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub deadline_ms: u64,
    pub request_timeout_ms: u64,
    pub rate_per_sec: u32,
    pub burst: u32,
    pub max_in_flight: usize,
    pub queue_capacity: usize,
    pub batch_linger_ms: u64,
    pub quota_recheck_ms: u64,
    pub mass_invalidation_window: usize,
    pub mass_invalidation_min: usize,
    pub mass_invalidation_ratio: f64,
}

/// `[credentials.<name>]`: the fields every credential shares; the rest of the table belongs to
/// the vendor and is parsed by its module (`provider::credential::build`), which rejects
/// unknown fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawCredential {
    pub vendor: String,
    /// PEM files of extra trust roots (e.g. the mock vendors' CA). `{data_dir}` is expanded.
    #[serde(default)]
    pub extra_roots: Vec<String>,
    pub rate_per_sec: Option<u32>,
    pub burst: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub queue_capacity: Option<usize>,
    /// The vendor's own fields.
    #[serde(flatten)]
    pub vendor_fields: toml::Table,
}
