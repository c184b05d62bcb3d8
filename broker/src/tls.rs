//! TLS settings: the server certificate, and on mutual TLS the fleet CA bundle and CRLs.
//!
//! The built `rustls::ServerConfig` sits behind an `ArcSwap`; a watcher thread rebuilds it when
//! any of the files changes (certificate rotation, a new CRL) and new connections pick it up.
//! A broken file keeps the old configuration and logs why.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::TlsConfig;
use crate::credentials::{CertRefusal, Credentials, PeerCert};

/// The client verifier: the chain by webpki (trusted CAs, CRLs), then the credentials' word on
/// the certificate itself (a registry's revocations).
#[derive(Debug)]
struct Gated {
    inner: Arc<dyn ClientCertVerifier>,
    credentials: Arc<dyn Credentials>,
}

impl ClientCertVerifier for Gated {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match self
            .credentials
            .refuses_certificate(&PeerCert::new(end_entity))
        {
            None => Ok(ok),
            Some(CertRefusal::Revoked) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            Some(CertRefusal::UnknownIssuer) => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds a server configuration from the files `cfg` names; `credentials` may refuse a client
/// certificate whose chain verified.
pub(crate) fn build(
    cfg: &TlsConfig,
    credentials: &Arc<dyn Credentials>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("reading certificate {}", cfg.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificate {}", cfg.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {}",
        cfg.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .with_context(|| format!("reading private key {}", cfg.key.display()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let managed = cfg.managed_cas.iter().filter(|p| p.exists());
    let trusted: Vec<&PathBuf> = cfg.client_ca.iter().chain(managed).collect();
    let builder = if trusted.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in trusted {
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading client CA {}", ca.display()))?
            {
                roots
                    .add(c.with_context(|| format!("parsing client CA {}", ca.display()))?)
                    .with_context(|| format!("client CA {}", ca.display()))?;
            }
        }
        let mut crls = Vec::new();
        for path in &cfg.crl {
            for c in CertificateRevocationListDer::pem_file_iter(path)
                .with_context(|| format!("reading CRL {}", path.display()))?
            {
                crls.push(c.with_context(|| format!("parsing CRL {}", path.display()))?);
            }
        }
        let mut v =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).with_crls(crls);
        if !cfg.require_client_cert.unwrap_or(cfg.client_ca.is_some()) {
            v = v.allow_unauthenticated();
        }
        let inner = v.build().context("client certificate verifier")?;
        builder.with_client_cert_verifier(Arc::new(Gated {
            inner,
            credentials: Arc::clone(credentials),
        }))
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    sc.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(Arc::new(sc))
}

/// The current configuration, swapped when the files change.
pub(crate) type Shared = Arc<ArcSwap<ServerConfig>>;

/// Starts watching the files; stops when `stop` is set.
pub(crate) fn watch(
    cfg: TlsConfig,
    credentials: Arc<dyn Credentials>,
    shared: Shared,
    stop: Arc<AtomicBool>,
) {
    let files: Vec<PathBuf> = [cfg.cert.clone(), cfg.key.clone()]
        .into_iter()
        .chain(cfg.client_ca.clone())
        .chain(cfg.managed_cas.iter().cloned())
        .chain(cfg.crl.iter().cloned())
        .collect();
    let stamp = move || -> Vec<Option<SystemTime>> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    };
    let interval = Duration::from_secs(cfg.reload_interval_secs.max(1));
    let spawned = std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            let mut last = stamp();
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited < interval {
                    continue;
                }
                waited = Duration::ZERO;
                let now = stamp();
                if now == last {
                    continue;
                }
                last = now;
                match build(&cfg, &credentials) {
                    Ok(new) => {
                        shared.store(new);
                        tracing::info!("TLS certificates reloaded");
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "TLS reload failed; keeping the previous certificates"
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the TLS reload thread");
    }
}

/// One DER element: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let (lb, rest) = b.split_at_checked(n)?;
        (
            lb.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            rest,
        )
    };
    let (content, rest) = b.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// The subject common name of an X.509 certificate (DER), if it has one.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut items = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() && items.len() < 7 {
        let (tag, content, r) = tlv(rest)?;
        items.push((tag, content));
        rest = r;
    }
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject
    let skip = usize::from(items.first()?.0 == 0xA0);
    let (_, subject) = *items.get(skip + 4)?;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, r) = tlv(rdns)?;
        rdns = r;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, r2) = tlv(atvs)?;
            atvs = r2;
            let (tag, oid, value) = tlv(atv)?;
            if tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (_, s, _) = tlv(value)?;
                return std::str::from_utf8(s).ok().map(str::to_owned);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["dev-42.local".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Fleet");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dev-42");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), Some("dev-42".to_string()));
        assert_eq!(common_name(&cert.der()[..40]), None);
        assert_eq!(common_name(b""), None);
    }
}
