//! From a `[credentials.<name>]` table to a ready [`Vendor`]. The config module reads the
//! fields every credential shares (vendor, limits, trust roots) and hands the rest of the
//! table to the vendor's own parser, so adding a vendor never touches the config module: the
//! vendor module declares its fields (a serde struct with `deny_unknown_fields`), reads its key
//! files through [`CredentialContext`], and returns the built vendor.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::Vendor;
use crate::model::VendorKind;

/// A problem with one field of a credential: `field` is relative to the credential's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub field: String,
    pub what: String,
}

impl Problem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, what: impl Into<String>) -> Self {
        Self { field: field.into(), what: what.into() }
    }
}

/// What a vendor parser may use while building.
pub struct CredentialContext<'a> {
    /// The credential's name.
    pub name: &'a str,
    /// The data folder `{data_dir}` expands to.
    pub data_dir: &'a Path,
}

impl CredentialContext<'_> {
    /// Reads a file named by `field` (`{data_dir}` expanded); the problem names the path.
    pub fn read_file(&self, field: &str, path: &str) -> Result<String, Problem> {
        let full = path.replace("{data_dir}", &self.data_dir.display().to_string());
        std::fs::read_to_string(&full).map_err(|e| Problem::new(field, format!("{full}: {e}")))
    }

    /// Parses an http(s) base URL.
    pub fn url(&self, field: &str, s: &str) -> Result<url::Url, Problem> {
        url::Url::parse(s)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && !u.cannot_be_a_base())
            .ok_or_else(|| Problem::new(field, format!("{s:?} is not an http(s) URL")))
    }
}

/// A vendor built from config, with what its transport needs.
pub struct VendorBuild {
    pub vendor: Arc<dyn Vendor>,
    /// Speak HTTP/2 only (ALPN `h2`), as APNs requires.
    pub http2_only: bool,
    /// Client certificate and key (PEM), for APNs certificate auth.
    pub identity_pem: Option<String>,
}

impl VendorBuild {
    /// A vendor on a plain HTTPS transport (HTTP/2 when the server offers it).
    pub fn https(vendor: impl Vendor) -> Self {
        Self { vendor: Arc::new(vendor), http2_only: false, identity_pem: None }
    }
}

/// Deserializes a vendor's own fields; serde's message names the bad or unknown field.
pub fn fields<T: DeserializeOwned>(table: &toml::Table) -> Result<T, Vec<Problem>> {
    toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| {
        let msg = e.message().trim().to_owned();
        // serde names the field between backticks: point the key path at it.
        let named = |prefix: &str| msg.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_owned);
        let problem = if let Some(field) = named("unknown field `") {
            let expected = msg.split_once(", expected").map_or(String::new(), |(_, e)| format!(" (expected{e})"));
            Problem::new(field, format!("does not apply to this vendor{expected}"))
        } else if let Some(field) = named("missing field `") {
            Problem::new(field, "required for this vendor")
        } else {
            Problem::new("", msg)
        };
        vec![problem]
    })
}

/// Builds the vendor of `kind` from the vendor-specific part of its credential table.
pub fn build(kind: VendorKind, table: &toml::Table, ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    match kind {
        VendorKind::Apns => super::apns::from_config(table, ctx),
        VendorKind::Fcm => super::fcm::from_config(table, ctx),
        VendorKind::Huawei => super::huawei::from_config(table, ctx),
        VendorKind::Honor => super::honor::from_config(table, ctx),
        VendorKind::Xiaomi => super::xiaomi::from_config(table, ctx),
        VendorKind::Oppo => super::oppo::from_config(table, ctx),
        VendorKind::Vivo => super::vivo::from_config(table, ctx),
        VendorKind::Meizu => super::meizu::from_config(table, ctx),
    }
}
