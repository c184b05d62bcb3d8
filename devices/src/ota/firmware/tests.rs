use proptest::prelude::*;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

use super::*;

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A signing key pair: the configured key and a signer of digests.
fn ed25519() -> (SigningKey, impl Fn(&[u8; 32]) -> Vec<u8>) {
    let kp = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let key = SigningKey::from_pem("release", &kp.public_key_pem()).unwrap();
    let signer = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&kp.serialize_der()).unwrap();
    (key, move |d: &[u8; 32]| signer.sign(d).as_ref().to_vec())
}

fn p256() -> (SigningKey, impl Fn(&[u8; 32]) -> Vec<u8>) {
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key = SigningKey::from_pem("ecdsa", &kp.public_key_pem()).unwrap();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &kp.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    (key, move |d: &[u8; 32]| {
        signer
            .sign(&SystemRandom::new(), d)
            .unwrap()
            .as_ref()
            .to_vec()
    })
}

fn upload(sig: Option<String>, key: Option<&str>) -> Upload {
    Upload {
        name: "sensor-fw".into(),
        version: "1.4.0".into(),
        device_type: Some("sensor".into()),
        signature: sig,
        key_id: key.map(str::to_owned),
        ..Upload::default()
    }
}

#[test]
fn a_signed_upload_is_verified_and_a_bad_one_refused() {
    let artifact = b"the firmware image";
    let d = digest(artifact);
    let (ed, sign_ed) = ed25519();
    let (ec, sign_ec) = p256();
    assert_eq!((ed.alg, ec.alg), (Alg::Ed25519, Alg::EcdsaP256));
    let keys = [ed, ec];
    for (key, sig) in [("release", sign_ed(&d)), ("ecdsa", sign_ec(&d))] {
        let f = upload(Some(b64(&sig)), Some(key))
            .record(artifact.len() as u64, &d, &keys, 5)
            .unwrap();
        assert_eq!(f.signature.as_ref().unwrap().key_id, key);
        assert_eq!(f.sha256.len(), 64);
        assert_eq!(f.id, firmware_id("sensor-fw", "1.4.0"));
        assert_eq!(Firmware::decode(&f.encode()), Ok(f.clone()));
        // Another artifact under the same signature: refused.
        let other = digest(b"a tampered image");
        let e = upload(Some(b64(&sig)), Some(key))
            .record(16, &other, &keys, 5)
            .unwrap_err();
        assert_eq!((e.status, e.code), (422, "bad_signature"));
    }
    let e = upload(Some(b64(&sign_ed(&d))), Some("unknown"))
        .record(1, &d, &keys, 5)
        .unwrap_err();
    assert_eq!(e.status, 400);
    let e = upload(Some("***".into()), Some("release"))
        .record(1, &d, &keys, 5)
        .unwrap_err();
    assert_eq!(e.status, 400);
    let e = upload(Some(b64(&sign_ed(&d))), None).check().unwrap_err();
    assert_eq!(e.status, 400, "a signature names its key");
    // Unsigned is allowed.
    let f = upload(None, None).record(1, &d, &keys, 5).unwrap();
    assert_eq!((f.signature, f.kind), (None, Kind::Firmware));
}

#[test]
fn uploads_are_checked_before_their_bytes() {
    let bad = [
        Upload {
            name: String::new(),
            ..upload(None, None)
        },
        Upload {
            version: "one".into(),
            ..upload(None, None)
        },
        Upload {
            kind: Some("kernel".into()),
            ..upload(None, None)
        },
        Upload {
            device_type: Some("a\nb".into()),
            ..upload(None, None)
        },
        Upload {
            release_notes: Some("x".repeat(MAX_NOTES + 1)),
            ..upload(None, None)
        },
    ];
    for u in bad {
        assert_eq!(u.check().unwrap_err().status, 400, "{u:?}");
    }
    assert!(SigningKey::from_pem("k", "not pem").is_err());
    let cert = KeyPair::generate().unwrap().serialize_pem();
    assert!(
        SigningKey::from_pem("k", &cert).is_err(),
        "a private key is not a public key"
    );
}

#[test]
fn versions_order_by_semver_precedence() {
    let v = |s| Version::parse(s).unwrap();
    assert!(v("1.10.0") > v("1.9.3"));
    assert!(v("2.0.0-rc.1") < v("2.0.0"));
    assert!(v("2.0.0-alpha") < v("2.0.0-alpha.1"));
    assert_eq!(v("v1.2.3"), v("1.2.3"), "a leading v is allowed");
    assert_eq!(
        v("1.0.0+b1").cmp(&v("1.0.0+b2")).reverse(),
        v("1.0.0+b2").cmp(&v("1.0.0+b1"))
    );
    assert!(Version::parse("1.2").is_err());
}

#[test]
fn compatibility_follows_what_the_firmware_names() {
    let f = upload(None, None).record(1, &digest(b""), &[], 0).unwrap();
    assert!(f.compatible(Some("sensor"), None));
    assert!(f.compatible(Some("sensor"), Some("rev-b")));
    assert!(!f.compatible(Some("gateway"), None));
    assert!(
        !f.compatible(None, None),
        "an untyped device is not a sensor"
    );
    let any = Upload {
        device_type: None,
        ..upload(None, None)
    }
    .record(1, &digest(b""), &[], 0)
    .unwrap();
    assert!(any.compatible(None, None));
}

proptest! {
    /// Base64 decodes what it encodes, for any bytes.
    #[test]
    fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(base64_decode(&b64(&bytes)), Some(bytes));
    }

    /// Any text decodes or is refused, never a panic.
    #[test]
    fn base64_of_anything(s in "\\PC{0,40}") {
        let _ = base64_decode(&s);
    }
}
