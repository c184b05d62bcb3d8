//! Every table of the metadata store, named in one place. Each record's encoding is documented
//! byte by byte in `docs/formats/meta.md`; a new table is added here and there together.

/// A table of the metadata store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Table {
    name: &'static str,
    /// Who writes it and what a record is, for `system.*` rows and logs.
    about: &'static str,
}

impl Table {
    const fn new(name: &'static str, about: &'static str) -> Table {
        Table { name, about }
    }

    /// The redb table name (stable: it is on disk).
    pub const fn name(self) -> &'static str {
        self.name
    }

    pub const fn about(self) -> &'static str {
        self.about
    }

    #[cfg(test)]
    pub(crate) const fn test(name: &'static str) -> Table {
        Table::new(name, "test")
    }
}

/// Retained MQTT messages; key: the topic (UTF-8), value: a message record.
pub const MQTT_RETAINED: Table = Table::new("mqtt_retained", "broker: retained message");
/// Persistent MQTT sessions; key: the client id, value: a session record.
pub const MQTT_SESSIONS: Table = Table::new("mqtt_sessions", "broker: persistent session");
/// QoS 1/2 messages queued for persistent sessions; key: client id, 0x00, u64 BE sequence;
/// value: a queued-message record.
pub const MQTT_QUEUE: Table = Table::new("mqtt_queue", "broker: queued message");
/// Device records (presence and registry); key: the device id, value: a device record.
pub const DEVICES: Table = Table::new("devices", "devices: device record");

/// Device shadows; key: the thing name, 0x00, the shadow name (empty for the classic shadow);
/// value: a shadow record (live, or the tombstone of a deleted one).
pub const SHADOWS: Table = Table::new("shadows", "devices: shadow record");

/// What operators say about a device (type, hardware revision, tags, static groups) and when
/// it was created; key: the device id, value: a device profile record.
pub const DEVICE_PROFILES: Table = Table::new("device_profiles", "devices: device profile");

/// Device groups (static, or dynamic by a SQL predicate); key: the group name, value: a group
/// record.
pub const DEVICE_GROUPS: Table = Table::new("device_groups", "devices: device group");

/// Client certificates Mast knows (issued, provisioned, registered on first use, or seen);
/// key: the SHA-256 fingerprint, 64 lower-case hex digits; value: a certificate record.
pub const CERTIFICATES: Table = Table::new("certificates", "devices: certificate record");

/// Fleet provisioning templates; key: the template name; value: a template record.
pub const PROVISIONING_TEMPLATES: Table =
    Table::new("provisioning_templates", "devices: provisioning template");

/// Ownership tokens of certificates made by fleet provisioning and not yet registered; key:
/// the SHA-256 of the token, 64 lower-case hex digits; value: a token record.
pub const OWNERSHIP_TOKENS: Table = Table::new("ownership_tokens", "devices: ownership token");

/// CAs enrolled for just-in-time registration; key: the SHA-256 fingerprint of the CA
/// certificate, 64 lower-case hex digits; value: an enrolled-CA record.
pub const ENROLLED_CAS: Table = Table::new("enrolled_cas", "devices: enrolled CA");

/// The firmware registry; key: the firmware id (`fw-` and 16 hex digits); value: a firmware
/// record.
pub const FIRMWARE: Table = Table::new("firmware", "ota: firmware record");

/// Jobs; key: the job id; value: the job (definition and state).
pub const OTA_JOBS: Table = Table::new("ota_jobs", "ota: job");

/// Job executions, the latest attempt of each job on each device; key: `{job}\0{device}`;
/// value: the execution.
pub const OTA_EXECUTIONS: Table = Table::new("ota_executions", "ota: job execution");

/// Jobs' targets in release order; key: the job id; value: a JSON array of device ids (the
/// first `released` of them, as the job says, have executions).
pub const OTA_TARGETS: Table = Table::new("ota_targets", "ota: job targets");

/// All of them.
pub const ALL: [Table; 15] = [
    MQTT_RETAINED,
    MQTT_SESSIONS,
    MQTT_QUEUE,
    DEVICES,
    SHADOWS,
    DEVICE_PROFILES,
    DEVICE_GROUPS,
    CERTIFICATES,
    PROVISIONING_TEMPLATES,
    OWNERSHIP_TOKENS,
    ENROLLED_CAS,
    FIRMWARE,
    OTA_JOBS,
    OTA_EXECUTIONS,
    OTA_TARGETS,
];

/// The table of this name, if there is one.
pub fn by_name(name: &str) -> Option<Table> {
    ALL.into_iter().find(|t| t.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
