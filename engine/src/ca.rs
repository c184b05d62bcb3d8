//! The fleet CA's files, under `DATA/ca/`:
//!
//! - `ca.crt`: the CA certificate (PEM), what devices and the server's client verifier trust;
//! - `ca.key`: its key (PEM), mode 0600, the directory 0700;
//! - `issued/{fingerprint}.crt`: every certificate the CA issued, as `openssl ca` keeps
//!   `newcerts/`. The server reads them into the certificate registry, so a certificate issued
//!   while the server runs (the command line cannot open the metadata store then) is known
//!   before it is first used.
//!
//! Every file is written to a temporary name, fsynced, renamed into place, and the directory
//! fsynced: a crash leaves the old file or the new one, never half of one. The `mast ca`
//! commands use these functions with the server running or not.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mast_devices::certs::ca::{Ca, CertInfo, Issued, Leaf};
use time::OffsetDateTime;

/// The directory under the data directory.
pub const DIR: &str = "ca";

/// The fleet CA's directory.
#[derive(Debug, Clone)]
pub struct CaDir {
    dir: PathBuf,
}

impl CaDir {
    pub fn new(data_dir: &Path) -> CaDir {
        CaDir {
            dir: data_dir.join(DIR),
        }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The CAs enrolled for just-in-time registration whose enrolment is enabled, one PEM
    /// bundle the TLS listener trusts (written by the server).
    pub fn enrolled_path(&self) -> PathBuf {
        self.dir.join("enrolled.pem")
    }

    pub fn issued_dir(&self) -> PathBuf {
        self.dir.join("issued")
    }

    /// Whether a CA was made or imported here.
    pub fn exists(&self) -> bool {
        self.cert_path().exists()
    }

    /// Makes a CA named `name` valid for `days`, or imports the CA in `import` (certificate and
    /// key PEM files). Refused if the directory already has one.
    pub fn init(
        &self,
        name: &str,
        days: u32,
        import: Option<(&Path, &Path)>,
    ) -> anyhow::Result<CertInfo> {
        if self.exists() {
            bail!(
                "{} already exists; a fleet CA is made once (move it away to start over)",
                self.cert_path().display()
            );
        }
        let ca = match import {
            None => Ca::create(name, OffsetDateTime::now_utc(), days)?,
            Some((cert, key)) => {
                let cert_pem = fs::read_to_string(cert)
                    .with_context(|| format!("reading {}", cert.display()))?;
                let key_pem = fs::read_to_string(key)
                    .with_context(|| format!("reading {}", key.display()))?;
                Ca::import(&cert_pem, &key_pem).context("cannot import the CA")?
            }
        };
        private_dir(&self.dir)?;
        // The key first: a certificate without its key would look like a CA that cannot sign.
        write_file(&self.key_path(), ca.key_pem().as_bytes(), 0o600)?;
        write_file(&self.cert_path(), ca.cert_pem().as_bytes(), 0o644)?;
        Ok(mast_devices::certs::ca::info(ca.cert_pem())?)
    }

    /// The CA, to sign with.
    pub fn open(&self) -> anyhow::Result<Ca> {
        let cert = self.cert_path();
        if !cert.exists() {
            bail!(
                "no fleet CA in {} (run `mast ca init` first)",
                self.dir.display()
            );
        }
        let key = self.key_path();
        let mode = fs::metadata(&key)
            .with_context(|| format!("reading {}", key.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                key.display(),
                mode & 0o777
            );
        }
        let cert_pem =
            fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem =
            fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
        Ca::import(&cert_pem, &key_pem)
            .with_context(|| format!("the fleet CA in {}", self.dir.display()))
    }

    /// Issues `leaf` for `days` and records the certificate in `issued/`.
    pub fn issue(&self, leaf: &Leaf, days: u32) -> anyhow::Result<Issued> {
        let issued = self.open()?.issue(leaf, OffsetDateTime::now_utc(), days)?;
        self.record(&issued)?;
        Ok(issued)
    }

    /// Keeps an issued certificate in `issued/`.
    pub fn record(&self, issued: &Issued) -> anyhow::Result<()> {
        private_dir(&self.issued_dir())?;
        let path = self
            .issued_dir()
            .join(format!("{}.crt", issued.info.fingerprint));
        write_file(&path, issued.cert_pem.as_bytes(), 0o644)
    }

    /// Every certificate in `issued/`: (what it says, its PEM). A file that cannot be read is
    /// skipped with a warning, not fatal: one bad file must not keep the server from starting.
    pub fn issued(&self) -> anyhow::Result<Vec<(CertInfo, String)>> {
        let dir = self.issued_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e?.path();
            if path.extension().is_none_or(|x| x != "crt") {
                continue;
            }
            let read = fs::read_to_string(&path)
                .map_err(anyhow::Error::from)
                .and_then(|pem| Ok((mast_devices::certs::ca::info(&pem)?, pem)));
            match read {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    error = format!("{e:#}"),
                    "skipping an unreadable issued certificate"
                ),
            }
        }
        out.sort_by(|a, b| a.0.fingerprint.cmp(&b.0.fingerprint));
        Ok(out)
    }
}

/// Writes a certificate (`{stem}.crt`) and, when there is one, its key (`{stem}.key`, mode
/// 0600) into `out`, refusing to replace files that exist (a device's key is not overwritten
/// by mistake). Returns the paths written.
pub fn write_pair(out: &Path, stem: &str, issued: &Issued) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert = out.join(format!("{stem}.crt"));
    let key = out.join(format!("{stem}.key"));
    for p in [&cert, &key] {
        if p.exists() {
            bail!("{} exists; not replacing it", p.display());
        }
    }
    let mut written = Vec::new();
    if let Some(k) = &issued.key_pem {
        write_file(&key, k.as_bytes(), 0o600)?;
        written.push(key);
    }
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    written.insert(0, cert);
    Ok(written)
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// `bytes` into `path` with `mode`: temporary file, fsync, rename, fsync of the directory.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_issue_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let ca = CaDir::new(d.path());
        assert!(!ca.exists());
        let err = ca.open().unwrap_err().to_string();
        assert!(err.contains("mast ca init"), "{err}");
        let info = ca.init("Fleet", 3650, None).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.common_name.as_deref(), Some("Fleet"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca.key_path()), 0o600);
        assert_eq!(mode(&d.path().join(DIR)), 0o700);
        assert!(ca.init("Again", 1, None).is_err(), "made twice");

        let issued = ca.issue(&Leaf::Device("dev-1".into()), 30).unwrap();
        assert_eq!(issued.info.common_name.as_deref(), Some("dev-1"));
        let kept = ca.issued().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, issued.info);
        assert_eq!(kept[0].1, issued.cert_pem);

        let out = d.path().join("out");
        let files = write_pair(&out, "dev-1", &issued).unwrap();
        assert_eq!(files, vec![out.join("dev-1.crt"), out.join("dev-1.key")]);
        assert_eq!(mode(&out.join("dev-1.key")), 0o600);
        assert_eq!(
            fs::read_to_string(out.join("dev-1.key")).unwrap(),
            issued.key_pem.clone().unwrap()
        );
        let again = write_pair(&out, "dev-1", &issued).unwrap_err().to_string();
        assert!(again.contains("not replacing"), "{again}");

        fs::set_permissions(ca.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let open = ca.open().unwrap_err().to_string();
        assert!(open.contains("readable by others"), "{open}");
    }

    #[test]
    fn import_checks_the_pair() {
        let d = tempfile::tempdir().unwrap();
        let a = Ca::create("A", OffsetDateTime::now_utc(), 10).unwrap();
        let b = Ca::create("B", OffsetDateTime::now_utc(), 10).unwrap();
        let cert = d.path().join("a.crt");
        let key = d.path().join("b.key");
        fs::write(&cert, a.cert_pem()).unwrap();
        fs::write(&key, b.key_pem()).unwrap();
        let ca = CaDir::new(&d.path().join("data"));
        let e = format!("{:#}", ca.init("x", 1, Some((&cert, &key))).unwrap_err());
        assert!(e.contains("not the CA certificate's key"), "{e}");
        assert!(!ca.exists(), "nothing written for a refused import");
        fs::write(&key, a.key_pem()).unwrap();
        let info = ca.init("x", 1, Some((&cert, &key))).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("A"));
        assert_eq!(ca.open().unwrap().cert_pem(), a.cert_pem());
    }
}
