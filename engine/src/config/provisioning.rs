//! `[provisioning]`: fleet provisioning by claim — how long the certificates it issues live, and
//! templates defined in the file (beside those stored over REST).

use std::collections::BTreeMap;

use mast_devices::certs::check_template_name;
use mast_devices::certs::provision::Template;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// Fleet provisioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisioningConfig {
    /// Validity of the certificates provisioning and renewal issue, in days, unless the
    /// template says otherwise (AWS issues until 2049; short-lived certificates are renewed).
    pub certificate_days: u32,
    /// How long an ownership token is good for, seconds (AWS: one hour). A certificate not
    /// registered by then is removed.
    pub token_lifetime_secs: u32,
    /// Templates by name (`[provisioning.templates.factory]`, the fields of
    /// `PUT /api/v1/provisioning/templates/{name}`); the REST API cannot change these.
    pub templates: BTreeMap<String, Template>,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            certificate_days: 365,
            token_lifetime_secs: 3600,
            templates: BTreeMap::new(),
        }
    }
}

impl ProvisioningConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.certificate_days == 0 {
            return Err(Invalid::new(
                "provisioning.certificate_days",
                "provisioning.certificate_days must be at least 1",
            ));
        }
        if self.token_lifetime_secs == 0 {
            return Err(Invalid::new(
                "provisioning.token_lifetime_secs",
                "provisioning.token_lifetime_secs must be at least 1",
            ));
        }
        for (name, t) in &self.templates {
            let key = format!("provisioning.templates.{name}");
            check_template_name(name).map_err(|e| Invalid::new(&key, e.0))?;
            t.check()
                .map_err(|e| Invalid::new(&key, format!("{key}: {}", e.message)))?;
        }
        Ok(())
    }
}
