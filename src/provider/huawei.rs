//! Huawei push: vendor module (issue 4, in progress).

use super::credential::{CredentialContext, Problem, VendorBuild};

/// Builds the Huawei vendor from its credential table.
pub fn from_config(_table: &toml::Table, _ctx: &CredentialContext<'_>) -> Result<VendorBuild, Vec<Problem>> {
    Err(vec![Problem::new("vendor", "vendor huawei is not supported yet")])
}
