//! Firmware artifacts on disk: content-addressed files under `DATA/firmware/` (the name is the
//! SHA-256 of the bytes), written as they arrive — hashed on the way, refused once they pass
//! the size limit, never held in memory whole — then fsync'd and renamed into place (and the
//! directory fsync'd), so an artifact either is there whole or not at all. And the HTTP byte
//! ranges a download asks for (`Range: bytes=…`, one range), for resuming after a dropped link.
//!
//! [`FirmwareRegistry`] keeps their records (`firmware` in the metadata store; the rules are
//! `mast_devices::ota::firmware`); REST is `engine/src/api_firmware.rs`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mast_broker::message::now_ns;
use mast_devices::ota::firmware::{Firmware, SigningKey, Upload};
use mast_devices::profile::RegistryError;
use mast_meta::tables::FIRMWARE;
use mast_meta::{MetaStore, Writer};

/// How long a write waits for its commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The firmware registry: records in the metadata store, artifacts on disk.
#[derive(Debug)]
pub struct FirmwareRegistry {
    meta: Arc<MetaStore>,
    writer: Arc<Writer>,
    pub artifacts: Artifacts,
    keys: Vec<SigningKey>,
    /// The largest artifact, bytes.
    pub limit: u64,
    require_signature: bool,
    write: Mutex<()>,
}

impl FirmwareRegistry {
    pub fn new(
        meta: Arc<MetaStore>,
        writer: Arc<Writer>,
        data_dir: &Path,
        cfg: &crate::config::OtaConfig,
    ) -> anyhow::Result<FirmwareRegistry> {
        let artifacts = Artifacts::new(data_dir);
        let n = artifacts.clean_partial()?;
        if n > 0 {
            tracing::info!(files = n, "removed unfinished firmware uploads");
        }
        Ok(FirmwareRegistry {
            meta,
            writer,
            artifacts,
            keys: cfg.keys().map_err(anyhow::Error::msg)?,
            limit: cfg.max_artifact_bytes,
            require_signature: cfg.require_signature,
            write: Mutex::new(()),
        })
    }

    /// Every record (deleted ones too), by name then version.
    pub fn list(&self) -> Result<Vec<Firmware>, RegistryError> {
        let rows = self
            .meta
            .scan_prefix(FIRMWARE, b"")
            .map_err(|e| RegistryError::internal(e.to_string()))?;
        let mut out: Vec<Firmware> = rows
            .into_iter()
            .filter_map(|(k, v)| match Firmware::decode(&v) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.meta.report_unreadable(FIRMWARE, &k, e);
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| a.version().cmp(&b.version()))
        });
        Ok(out)
    }

    pub fn get(&self, id: &str) -> Result<Option<Firmware>, RegistryError> {
        let v = self
            .meta
            .get(FIRMWARE, id.as_bytes())
            .map_err(|e| RegistryError::internal(e.to_string()))?;
        Ok(v.and_then(|v| Firmware::decode(&v).ok()))
    }

    /// Records an upload whose bytes are stored; refused (and, if no record uses them, the
    /// bytes removed) when the signature does not verify or the name and version exist.
    pub fn create(&self, upload: &Upload, stored: &Stored) -> Result<Firmware, RegistryError> {
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let made = (|| {
            if self.require_signature && upload.signature.is_none() {
                return Err(RegistryError::bad(
                    "this server takes signed artifacts only (ota.require_signature)",
                ));
            }
            let f = upload.record(stored.size, &stored.sha256, &self.keys, now_ns())?;
            if let Some(old) = self.get(&f.id)?
                && old.deleted_at.is_none()
            {
                return Err(RegistryError::conflict(format!(
                    "{} {} exists (id {}); a new build needs a new version",
                    f.name, f.version, f.id
                )));
            }
            Ok(f)
        })();
        let f = match made {
            Ok(f) => f,
            Err(e) => {
                self.forget_unused(&stored.sha256_hex);
                return Err(e);
            }
        };
        let seq = self.writer.submit(vec![f.put()]);
        if seq.is_none() || !self.writer.wait(seq, COMMIT_TIMEOUT) {
            return Err(RegistryError::internal(
                "the firmware record was not committed",
            ));
        }
        Ok(f)
    }

    /// Soft-deletes `id`: the record stays (the history of the jobs that used it), the
    /// artifact is no longer served.
    pub fn delete(&self, id: &str) -> Result<Firmware, RegistryError> {
        let _one = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut f) = self.get(id)?.filter(|f| f.deleted_at.is_none()) else {
            return Err(RegistryError::not_found(format!("no firmware {id}")));
        };
        f.deleted_at = Some(now_ns());
        let seq = self.writer.submit(vec![f.put()]);
        if seq.is_none() || !self.writer.wait(seq, COMMIT_TIMEOUT) {
            return Err(RegistryError::internal("the deletion was not committed"));
        }
        Ok(f)
    }

    /// Removes the bytes `sha256` unless a live record names them.
    fn forget_unused(&self, sha256: &str) {
        let used = self.list().is_ok_and(|all| {
            all.iter()
                .any(|f| f.sha256 == sha256 && f.deleted_at.is_none())
        });
        if !used {
            let _ = fs::remove_file(self.artifacts.path(sha256));
        }
    }
}

/// The directory under the data directory.
pub const DIR: &str = "firmware";

/// The artifacts of a data directory.
#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum WriteError {
    /// More bytes than the limit: nothing is kept.
    TooLarge {
        limit: u64,
    },
    Io(io::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::TooLarge { limit } => {
                write!(f, "the artifact is larger than {limit} bytes")
            }
            WriteError::Io(e) => write!(f, "writing the artifact: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl Artifacts {
    pub fn new(data_dir: &Path) -> Artifacts {
        Artifacts {
            dir: data_dir.join(DIR),
        }
    }

    /// Where the artifact with digest `sha256` (hex) is.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    pub fn exists(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// A new upload, refused past `limit` bytes.
    pub fn writer(&self, limit: u64) -> io::Result<ArtifactWriter> {
        let tmp_dir = self.dir.join("tmp");
        fs::create_dir_all(&tmp_dir)?;
        let mut name = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name)
            .map_err(|_| io::Error::other("no randomness"))?;
        let name = mast_devices::hex(&name);
        let tmp = tmp_dir.join(format!("{name}.part"));
        let file = File::create_new(&tmp)?;
        Ok(ArtifactWriter {
            file: Some(file),
            tmp,
            dir: self.dir.clone(),
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
            limit,
        })
    }

    /// Removes uploads a crash left unfinished (at start).
    pub fn clean_partial(&self) -> io::Result<usize> {
        let tmp_dir = self.dir.join("tmp");
        let entries = match fs::read_dir(&tmp_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for e in entries {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "part") {
                fs::remove_file(&p)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// An upload under way. Dropped unfinished, it leaves nothing behind.
pub struct ArtifactWriter {
    file: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    digest: ring::digest::Context,
    size: u64,
    limit: u64,
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Lower-case hex of `sha256` (the file's name).
    pub sha256_hex: String,
}

impl std::fmt::Debug for ArtifactWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactWriter")
            .field("tmp", &self.tmp)
            .field("size", &self.size)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl ArtifactWriter {
    /// Appends `chunk`: hashed and written, or refused once the total passes the limit.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        let size = self.size.saturating_add(chunk.len() as u64);
        if size > self.limit {
            self.discard();
            return Err(WriteError::TooLarge { limit: self.limit });
        }
        let Some(f) = self.file.as_mut() else {
            return Err(WriteError::TooLarge { limit: self.limit });
        };
        f.write_all(chunk)?;
        self.digest.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the artifact durable under its digest (one with the same bytes may be there
    /// already: then this copy is dropped).
    pub fn finish(mut self) -> Result<Stored, WriteError> {
        let Some(file) = self.file.take() else {
            return Err(WriteError::TooLarge { limit: self.limit });
        };
        file.sync_all()?;
        drop(file);
        let d = self.digest.clone().finish();
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(d.as_ref());
        let sha256_hex = mast_devices::hex(&sha256);
        let dest = self.dir.join(&sha256_hex);
        if dest.is_file() {
            let _ = fs::remove_file(&self.tmp);
        } else {
            fs::rename(&self.tmp, &dest)?;
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(Stored {
            size: self.size,
            sha256,
            sha256_hex,
        })
    }

    fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

/// A `Range` header that cannot be served (416, with `Content-Range: bytes */size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The one byte range (`first..=last`) a `Range` header asks of `size` bytes: `None` for the
/// whole (no header, a unit other than bytes, or several ranges, which Mast answers whole as
/// RFC 9110 allows). `bytes=a-b`, `bytes=a-`, `bytes=-n`.
pub fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (first, last) = match (a.trim(), b.trim()) {
        ("", "") => return Ok(None),
        ("", n) => {
            let n = num(n).ok_or(Unsatisfiable)?;
            if n == 0 || size == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (num(a).ok_or(Unsatisfiable)?, size.saturating_sub(1)),
        (a, b) => {
            let (a, b) = (num(a).ok_or(Unsatisfiable)?, num(b).ok_or(Unsatisfiable)?);
            if b < a {
                return Err(Unsatisfiable);
            }
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if first >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some((first, last)))
}

#[cfg(test)]
mod tests;
