//! The device registry over the metadata store: a device as the REST API and `iot.devices`
//! show it — its presence record (`devices`), its profile (`device_profiles`: type, hardware
//! revision, tags, static groups, creation time) and the firmware version its classic shadow
//! reports — pages of devices in id order, groups, and the writes operators make.
//!
//! Reads take no lock. Writes go one at a time (a mutex around read, decide, submit, wait), so
//! two operators patching one device never lose an update, and each returns once its commit
//! is durable. Presence writes the other table (and a profile only if there is none), so it
//! never races an operator. Every call blocks: the API runs them on blocking threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mast_devices::profile::{DeviceProfile, Group, RegistryError, firmware_version};
use mast_devices::registry::DeviceRecord;
use mast_devices::shadow::{Shadow, topic};
use mast_meta::tables::{DEVICE_GROUPS, DEVICE_PROFILES, DEVICES, SHADOWS};
use mast_meta::{MetaError, MetaStore, Op, Seq, Table, Writer};
use serde_json::{Value, json};

/// How long a write waits for its commit before answering 500.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// One device, from the tables that describe it.
#[derive(Debug, Clone, Default)]
pub struct Device {
    pub id: String,
    /// Presence: absent for a device created by the API that never connected.
    pub record: Option<DeviceRecord>,
    /// Absent only for a device last seen before profiles existed.
    pub profile: Option<DeviceProfile>,
    /// What its classic shadow reports (when it was read).
    pub firmware: Option<String>,
}

impl Device {
    /// When it was created: by the API, or on its first connect.
    pub fn created_at(&self) -> Option<i64> {
        self.profile
            .as_ref()
            .map(|p| p.created_at)
            .or(self.record.as_ref().map(|r| r.connected_at))
    }

    /// Its last connect or disconnect (a connected device is being seen now).
    pub fn last_seen(&self) -> Option<i64> {
        self.record.as_ref().map(|r| {
            r.disconnected_at
                .unwrap_or(r.connected_at)
                .max(r.connected_at)
        })
    }

    /// Its profile to change: the stored one, or an empty one created when the device was.
    pub fn profile_or_created(&self, now_ns: i64) -> DeviceProfile {
        self.profile
            .clone()
            .unwrap_or_else(|| DeviceProfile::created(self.created_at().unwrap_or(now_ns)))
    }

    pub fn connected(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.connected)
    }

    pub fn device_type(&self) -> Option<&str> {
        self.profile.as_ref()?.device_type.as_deref()
    }

    pub fn groups(&self) -> &[String] {
        self.profile.as_ref().map_or(&[], |p| &p.groups)
    }

    pub fn tags(&self) -> Value {
        Value::Object(
            self.profile
                .as_ref()
                .map(|p| p.tags.clone())
                .unwrap_or_default(),
        )
    }

    /// As the REST API shows it; times are RFC 3339 (UTC).
    pub fn json(&self) -> Value {
        let r = self.record.as_ref();
        let p = self.profile.as_ref();
        json!({
            "device_id": self.id,
            "device_type": self.device_type(),
            "hardware_revision": p.and_then(|p| p.hardware_revision.as_deref()),
            "firmware_version": self.firmware,
            "tags": self.tags(),
            "groups": self.groups(),
            "connected": self.connected(),
            "address": r.map(|r| r.address.as_str()),
            "protocol": r.map(|r| r.protocol.as_str()),
            "username": r.and_then(|r| r.username.as_deref()),
            "created_at": self.created_at().map(rfc3339),
            "last_seen": self.last_seen().map(rfc3339),
            "connected_at": r.map(|r| rfc3339(r.connected_at)),
            "disconnected_at": r.and_then(|r| r.disconnected_at).map(rfc3339),
            "disconnect_reason": r.and_then(|r| r.disconnect_reason.as_deref()),
        })
    }
}

/// `ns` since the epoch as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn internal(e: MetaError) -> RegistryError {
    RegistryError::internal(format!("metadata store: {e}"))
}

/// The registry's view of the metadata store.
#[derive(Debug)]
pub struct Registry {
    meta: Arc<MetaStore>,
    writer: Option<Arc<Writer>>,
    write: Mutex<()>,
}

impl Registry {
    /// Reads `meta`, writes through `writer` (`None`: read-only, for SQL alone).
    pub fn new(meta: Arc<MetaStore>, writer: Option<Arc<Writer>>) -> Registry {
        Registry {
            meta,
            writer,
            write: Mutex::new(()),
        }
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    fn decode<T>(
        &self,
        table: Table,
        key: &[u8],
        bytes: &[u8],
        f: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Option<T> {
        f(bytes)
            .map_err(|e| self.meta.report_unreadable(table, key, e))
            .ok()
    }

    fn classic_firmware(&self, id: &str) -> Result<Option<String>, MetaError> {
        let key = topic::key(id, "");
        let Some(v) = self.meta.get(SHADOWS, &key)? else {
            return Ok(None);
        };
        Ok(
            crate::shadows::decode_or_report(&self.meta, &key, &v)
                .and_then(|s| shadow_firmware(&s)),
        )
    }

    /// The device `id`, if any table knows it; `firmware`: read its classic shadow too.
    pub fn device(&self, id: &str, firmware: bool) -> Result<Option<Device>, RegistryError> {
        let k = id.as_bytes();
        let record = crate::presence::record(&self.meta, id).map_err(internal)?;
        let profile = match self.meta.get(DEVICE_PROFILES, k).map_err(internal)? {
            Some(v) => self.decode(DEVICE_PROFILES, k, &v, DeviceProfile::decode),
            None => None,
        };
        if record.is_none() && profile.is_none() {
            return Ok(None);
        }
        let firmware = if firmware {
            self.classic_firmware(id).map_err(internal)?
        } else {
            None
        };
        Ok(Some(Device {
            id: id.to_owned(),
            record,
            profile,
            firmware,
        }))
    }

    /// Every device, in id order (`firmware`: with what their classic shadows report).
    pub fn all(&self, firmware: bool) -> Result<Vec<Device>, RegistryError> {
        let mut by_id: BTreeMap<String, Device> = BTreeMap::new();
        fn slot(m: &mut BTreeMap<String, Device>, id: String) -> &mut Device {
            m.entry(id.clone()).or_insert_with(|| Device {
                id,
                ..Device::default()
            })
        }
        for rec in crate::presence::records(&self.meta).map_err(internal)? {
            let id = rec.device_id.clone();
            slot(&mut by_id, id).record = Some(rec);
        }
        for (k, v) in self
            .meta
            .scan_prefix(DEVICE_PROFILES, b"")
            .map_err(internal)?
        {
            if let Some(p) = self.decode(DEVICE_PROFILES, &k, &v, DeviceProfile::decode)
                && let Ok(id) = String::from_utf8(k)
            {
                slot(&mut by_id, id).profile = Some(p);
            }
        }
        if firmware {
            for (k, v) in self.meta.scan_prefix(SHADOWS, b"").map_err(internal)? {
                let Some((thing, "")) = topic::split_key(&k) else {
                    continue;
                };
                if let Some(d) = by_id.get_mut(thing) {
                    d.firmware = crate::shadows::decode_or_report(&self.meta, &k, &v)
                        .and_then(|s| shadow_firmware(&s));
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// Up to `limit` devices after `after` in id order that `keep` keeps, and the id to ask
    /// after for the next page (`None` at the end).
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Device) -> bool,
    ) -> Result<(Vec<Device>, Option<String>), RegistryError> {
        let chunk = limit.clamp(64, 1024);
        let mut out = Vec::new();
        let mut cursor: Option<String> = after.map(str::to_owned);
        loop {
            let c = cursor.as_deref().map(str::as_bytes);
            let mut ids: Vec<Vec<u8>> = Vec::new();
            let a = self.meta.scan_after(DEVICES, c, chunk).map_err(internal)?;
            let b = self
                .meta
                .scan_after(DEVICE_PROFILES, c, chunk)
                .map_err(internal)?;
            let full = a.len() == chunk || b.len() == chunk;
            ids.extend(a.into_iter().map(|(k, _)| k));
            ids.extend(b.into_iter().map(|(k, _)| k));
            ids.sort_unstable();
            ids.dedup();
            // Only the first `chunk` ids of the union are surely complete.
            ids.truncate(chunk);
            if ids.is_empty() {
                return Ok((out, None));
            }
            for k in &ids {
                let Ok(id) = std::str::from_utf8(k) else {
                    continue;
                };
                // The shadow is read only for the devices kept.
                if let Some(mut d) = self.device(id, false)?
                    && keep(&d)
                {
                    d.firmware = self.classic_firmware(id).map_err(internal)?;
                    out.push(d);
                    if out.len() == limit {
                        return Ok((out, Some(id.to_owned())));
                    }
                }
            }
            if !full && ids.len() < chunk {
                return Ok((out, None));
            }
            cursor = ids
                .last()
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_owned);
        }
    }

    /// The record under `key`, for a write to start from: an unreadable one is reported and
    /// refuses the write (it is not overwritten).
    fn read_for_write<T>(
        &self,
        table: Table,
        key: &str,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, RegistryError> {
        let k = key.as_bytes();
        match self.meta.get(table, k).map_err(internal)? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|e| {
                self.meta.report_unreadable(table, k, e.clone());
                RegistryError::internal(format!("{} {key:?} is unreadable: {e}", table.about()))
            }),
        }
    }

    /// The profile of `id` as stored (for a write to start from).
    pub fn profile(&self, id: &str) -> Result<Option<DeviceProfile>, RegistryError> {
        self.read_for_write(DEVICE_PROFILES, id, DeviceProfile::decode)
    }

    pub fn group(&self, name: &str) -> Result<Option<Group>, RegistryError> {
        self.read_for_write(DEVICE_GROUPS, name, Group::decode)
    }

    /// Every readable group, by name.
    pub fn groups(&self) -> Result<Vec<(String, Group)>, RegistryError> {
        let rows = self
            .meta
            .scan_prefix(DEVICE_GROUPS, b"")
            .map_err(internal)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let g = self.decode(DEVICE_GROUPS, &k, &v, Group::decode)?;
                Some((String::from_utf8(k).ok()?, g))
            })
            .collect())
    }

    /// One operator write: `decide` reads what it needs (no other registry write runs
    /// meanwhile) and returns the writes and its answer; the answer comes once they are
    /// durable.
    pub fn change<T>(
        &self,
        decide: impl FnOnce(&Registry) -> Result<(Vec<Op>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let Some(writer) = self.writer.clone() else {
            return Err(RegistryError::internal("the registry is read-only here"));
        };
        self.change_via(decide, |ops| Ok(writer.submit(ops)))
    }

    /// As [`Registry::change`], with the writes submitted by `submit` (another service that
    /// adds its own to the same commit); it returns the commit to wait for.
    pub fn change_via<T>(
        &self,
        decide: impl FnOnce(&Registry) -> Result<(Vec<Op>, T), RegistryError>,
        submit: impl FnOnce(Vec<Op>) -> Result<Option<Seq>, RegistryError>,
    ) -> Result<T, RegistryError> {
        let Some(writer) = &self.writer else {
            return Err(RegistryError::internal("the registry is read-only here"));
        };
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let (ops, answer) = decide(self)?;
        if ops.is_empty() {
            return Ok(answer);
        }
        let seq = submit(ops)?;
        if seq.is_none() || !writer.wait(seq, COMMIT_TIMEOUT) {
            return Err(RegistryError::internal(
                "the change was not committed (the metadata store is stopping or failing)",
            ));
        }
        Ok(answer)
    }
}

/// The firmware version a classic shadow reports.
fn shadow_firmware(s: &Shadow) -> Option<String> {
    s.reported.as_ref().and_then(firmware_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1_000_000), "1969-12-31T23:59:59.999Z");
    }
}
