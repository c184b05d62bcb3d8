//! What operators say about a device, and device groups, sans IO.
//!
//! - A **profile** per device (`device_profiles` table): device type, hardware revision,
//!   free-form `tags` that only operators set (Azure IoT Hub's twin tags: `{"site": "plant-7",
//!   "line": 3}`), the static groups it is a member of, and when the device was created — by the
//!   API, or on its first connect (presence puts an empty profile if there is none).
//! - A **group** (`device_groups` table): static (members listed in their profiles) or dynamic
//!   (`where`: a SQL predicate over `iot.devices`, evaluated when asked, as AWS IoT dynamic thing
//!   groups and Azure's twin queries are).
//!
//! The firmware version is not set here: it is what the device reports in its classic shadow
//! ([`firmware_version`]).
//!
//! Writes are `PUT` (replace the profile), `PATCH` (JSON merge patch, RFC 7396: a member absent
//! is left as it is, `null` removes it; `tags` merge key by key, `groups` is replaced whole) and
//! delete; each is checked here ([`Patch::apply`], [`check_device_id`], [`check_group_name`],
//! [`check_tags`]) before anything is written.

use mast_meta::Op;
use mast_meta::tables::{DEVICE_GROUPS, DEVICE_PROFILES};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bytes of a device id (the MQTT client id it connects with).
pub const MAX_DEVICE_ID: usize = 128;
/// Bytes of a group name.
pub const MAX_GROUP_NAME: usize = 128;
/// Bytes of a device type or hardware revision.
pub const MAX_ATTRIBUTE: usize = 128;
/// Bytes of a device's tags as JSON text (Azure's limit for twin tags).
pub const MAX_TAGS_BYTES: usize = 8192;
/// Nesting levels of tags, the tags object itself being level 1.
pub const MAX_TAGS_DEPTH: usize = 5;
/// Static groups a device may be in (AWS: 10 per thing; Mast is more generous).
pub const MAX_GROUPS: usize = 64;
/// Bytes of a dynamic group's predicate.
pub const MAX_PREDICATE: usize = 4096;

/// A refusal of a registry request, with the HTTP status and code it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

impl RegistryError {
    pub fn bad(message: impl Into<String>) -> RegistryError {
        RegistryError {
            status: 400,
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> RegistryError {
        RegistryError {
            status: 404,
            code: "not_found",
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> RegistryError {
        RegistryError {
            status: 500,
            code: "internal",
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> RegistryError {
        RegistryError {
            status: 409,
            code: "conflict",
            message: message.into(),
        }
    }
}

/// A device's profile, as stored in `device_profiles`: JSON with `"v": 1`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_revision: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    /// Static groups, sorted, no duplicates.
    #[serde(default)]
    pub groups: Vec<String>,
    /// When the device was created (ns since the epoch).
    pub created_at: i64,
}

/// The record versions this build writes.
const PROFILE_VERSION: u64 = 1;
const GROUP_VERSION: u64 = 1;

pub(crate) fn encode_versioned<T: Serialize>(t: &T, version: u64) -> Vec<u8> {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("v".into(), Value::from(version));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

pub(crate) fn decode_versioned<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    version: u64,
    what: &str,
) -> Result<T, String> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not a {what}: {e}"))?;
    match v.as_object_mut().and_then(|m| m.remove("v")) {
        Some(n) if n.as_u64() == Some(version) => {}
        Some(n) => return Err(format!("{what} version {n} (this build reads {version})")),
        None => return Err(format!("a {what} without a version")),
    }
    serde_json::from_value(v).map_err(|e| format!("not a {what}: {e}"))
}

impl DeviceProfile {
    /// An empty profile of a device created at `now_ns`.
    pub fn created(now_ns: i64) -> DeviceProfile {
        DeviceProfile {
            created_at: now_ns,
            ..DeviceProfile::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, PROFILE_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<DeviceProfile, String> {
        decode_versioned(bytes, PROFILE_VERSION, "device profile")
    }

    /// The write that stores it for `device_id`.
    pub fn put(&self, device_id: &str) -> Op {
        Op::Put {
            table: DEVICE_PROFILES,
            key: device_id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    /// The write presence makes on every connect: an empty profile created at `now_ns`, if the
    /// device has none yet.
    pub fn first_seen(device_id: &str, now_ns: i64) -> Op {
        Op::PutIfAbsent {
            table: DEVICE_PROFILES,
            key: device_id.as_bytes().to_vec(),
            value: DeviceProfile::created(now_ns).encode(),
        }
    }

    /// Whether it is in static group `name`.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups
            .binary_search_by(|g| g.as_str().cmp(name))
            .is_ok()
    }
}

/// A group, as stored in `device_groups`: JSON with `"v": 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A dynamic group's predicate over `iot.devices`; `None` for a static group.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    pub created_at: i64,
}

impl Group {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, GROUP_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<Group, String> {
        decode_versioned(bytes, GROUP_VERSION, "device group")
    }

    pub fn put(&self, name: &str) -> Op {
        Op::Put {
            table: DEVICE_GROUPS,
            key: name.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    pub fn is_dynamic(&self) -> bool {
        self.predicate.is_some()
    }
}

/// A device id a device may be created with: 1 to 128 bytes, and usable as one level of an
/// MQTT topic (no `/`, `+`, `#`), without control characters.
pub fn check_device_id(id: &str) -> Result<(), RegistryError> {
    if id.is_empty() || id.len() > MAX_DEVICE_ID {
        return Err(RegistryError::bad(format!(
            "a device id has 1 to {MAX_DEVICE_ID} bytes"
        )));
    }
    if id
        .chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        return Err(RegistryError::bad(format!(
            "device id {id:?}: '/', '+', '#' and control characters are not allowed"
        )));
    }
    Ok(())
}

/// A group name: 1 to 128 bytes of letters, digits, `_`, `-`, `.`, `:`.
pub fn check_group_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::bad(format!(
            "group name {name:?}: 1 to {MAX_GROUP_NAME} letters, digits, '_', '-', '.' or ':'"
        )))
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Tags: an object of at most 8 KB of JSON, 5 levels deep, with non-empty keys.
pub fn check_tags(tags: &Map<String, Value>) -> Result<(), RegistryError> {
    if tags.keys().any(String::is_empty) {
        return Err(RegistryError::bad("a tag name is empty"));
    }
    let size = serde_json::to_vec(tags).map_or(usize::MAX, |v| v.len());
    if size > MAX_TAGS_BYTES {
        return Err(RegistryError {
            status: 413,
            code: "too_large",
            message: format!("tags are {size} bytes of JSON; at most {MAX_TAGS_BYTES}"),
        });
    }
    let d = 1 + tags.values().map(depth).max().unwrap_or(0);
    if d > MAX_TAGS_DEPTH {
        return Err(RegistryError::bad(format!(
            "tags nest {d} levels deep; at most {MAX_TAGS_DEPTH}"
        )));
    }
    Ok(())
}

fn check_attribute(name: &str, v: &str) -> Result<(), RegistryError> {
    if v.is_empty() || v.len() > MAX_ATTRIBUTE || v.chars().any(char::is_control) {
        return Err(RegistryError::bad(format!(
            "{name}: 1 to {MAX_ATTRIBUTE} bytes without control characters"
        )));
    }
    Ok(())
}

/// A sorted, deduplicated list of valid group names.
fn groups_of(v: Vec<String>) -> Result<Vec<String>, RegistryError> {
    let mut g = v;
    for name in &g {
        check_group_name(name)?;
    }
    g.sort_unstable();
    g.dedup();
    if g.len() > MAX_GROUPS {
        return Err(RegistryError::bad(format!(
            "a device is in at most {MAX_GROUPS} static groups"
        )));
    }
    Ok(g)
}

/// The body of `PUT /api/v1/devices/{id}`: the whole profile (what is left out is empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub device_type: Option<String>,
    pub hardware_revision: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Replace {
    /// The profile it stores over `old` (which keeps its creation time).
    pub fn apply(
        self,
        old: Option<&DeviceProfile>,
        now_ns: i64,
    ) -> Result<DeviceProfile, RegistryError> {
        if let Some(t) = &self.device_type {
            check_attribute("device_type", t)?;
        }
        if let Some(h) = &self.hardware_revision {
            check_attribute("hardware_revision", h)?;
        }
        check_tags(&self.tags)?;
        Ok(DeviceProfile {
            device_type: self.device_type,
            hardware_revision: self.hardware_revision,
            tags: self.tags,
            groups: groups_of(self.groups)?,
            created_at: old.map_or(now_ns, |o| o.created_at),
        })
    }
}

/// A member of a merge patch: absent (leave it), `null` (remove it) or a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Change<T> {
    #[default]
    Keep,
    Remove,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Change<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Change::Remove,
            Some(v) => Change::Set(v),
        })
    }
}

/// The body of `PATCH /api/v1/devices/{id}`: a JSON merge patch (RFC 7396) of the profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    #[serde(default)]
    pub device_type: Change<String>,
    #[serde(default)]
    pub hardware_revision: Change<String>,
    /// Merged key by key: `null` removes a tag, an object merges into an object.
    #[serde(default)]
    pub tags: Change<Map<String, Value>>,
    /// Replaces the static groups (`null` or `[]`: in none).
    #[serde(default)]
    pub groups: Change<Vec<String>>,
}

/// RFC 7396 merge of `patch` into `target`.
fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => {
                let slot = target.entry(k).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            v => {
                target.insert(k, v);
            }
        }
    }
}

fn attribute(
    name: &str,
    old: Option<String>,
    c: Change<String>,
) -> Result<Option<String>, RegistryError> {
    match c {
        Change::Keep => Ok(old),
        Change::Remove => Ok(None),
        Change::Set(v) => {
            check_attribute(name, &v)?;
            Ok(Some(v))
        }
    }
}

impl Patch {
    /// The profile after patching `old` (a device without one is created at `now_ns`).
    pub fn apply(
        self,
        old: Option<DeviceProfile>,
        now_ns: i64,
    ) -> Result<DeviceProfile, RegistryError> {
        let old = old.unwrap_or_else(|| DeviceProfile::created(now_ns));
        let mut tags = old.tags;
        match self.tags {
            Change::Keep => {}
            Change::Remove => tags.clear(),
            Change::Set(p) => merge_patch(&mut tags, p),
        }
        check_tags(&tags)?;
        let groups = match self.groups {
            Change::Keep => old.groups,
            Change::Remove => Vec::new(),
            Change::Set(g) => groups_of(g)?,
        };
        Ok(DeviceProfile {
            device_type: attribute("device_type", old.device_type, self.device_type)?,
            hardware_revision: attribute(
                "hardware_revision",
                old.hardware_revision,
                self.hardware_revision,
            )?,
            tags,
            groups,
            created_at: old.created_at,
        })
    }
}

/// The body of `PUT /api/v1/groups/{name}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    pub description: Option<String>,
    /// A dynamic group's predicate over `iot.devices`.
    #[serde(rename = "where")]
    pub predicate: Option<String>,
    /// A static group's members: replaces them (each must be a known device).
    pub devices: Option<Vec<String>>,
}

impl GroupBody {
    /// The group it stores over `old`. Whether the predicate is valid SQL is the caller's to
    /// check (it needs the query engine).
    pub fn group(&self, old: Option<&Group>, now_ns: i64) -> Result<Group, RegistryError> {
        if let Some(d) = &self.description
            && d.len() > 1024
        {
            return Err(RegistryError::bad("a description has at most 1024 bytes"));
        }
        if let Some(p) = &self.predicate {
            if p.trim().is_empty() || p.len() > MAX_PREDICATE {
                return Err(RegistryError::bad(format!(
                    "where: a SQL predicate over iot.devices of 1 to {MAX_PREDICATE} bytes"
                )));
            }
            if self.devices.is_some() {
                return Err(RegistryError::bad(
                    "a group is static (devices) or dynamic (where), not both",
                ));
            }
        }
        if let Some(o) = old
            && o.is_dynamic() != self.predicate.is_some()
        {
            return Err(RegistryError::conflict(
                "a group stays static or dynamic; delete it to change its kind",
            ));
        }
        Ok(Group {
            description: self.description.clone(),
            predicate: self.predicate.clone(),
            created_at: old.map_or(now_ns, |o| o.created_at),
        })
    }
}

/// Adds `group` to the profile's static groups, or removes it; whether that changed anything.
pub fn set_member(p: &mut DeviceProfile, group: &str, member: bool) -> Result<bool, RegistryError> {
    match (p.groups.binary_search_by(|g| g.as_str().cmp(group)), member) {
        (Ok(_), true) | (Err(_), false) => Ok(false),
        (Err(at), true) => {
            if p.groups.len() >= MAX_GROUPS {
                return Err(RegistryError::bad(format!(
                    "a device is in at most {MAX_GROUPS} static groups"
                )));
            }
            p.groups.insert(at, group.to_owned());
            Ok(true)
        }
        (Ok(at), false) => {
            p.groups.remove(at);
            Ok(true)
        }
    }
}

/// The firmware version a device reports in its classic shadow, under the names firmware
/// commonly uses: `firmware.version`, `fw.version`, `firmware_version`, `fw_version`,
/// `firmwareVersion`, or `firmware` / `fw` as a string.
pub fn firmware_version(reported: &Map<String, Value>) -> Option<String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    for key in ["firmware", "fw"] {
        match reported.get(key) {
            Some(Value::Object(o)) => {
                if let Some(v) = o.get("version").and_then(text) {
                    return Some(v);
                }
            }
            Some(v @ Value::String(_)) => return text(v),
            _ => {}
        }
    }
    ["firmware_version", "fw_version", "firmwareVersion"]
        .iter()
        .find_map(|k| reported.get(*k).and_then(text))
}

#[cfg(test)]
mod tests;
