use proptest::prelude::*;

use super::*;

fn sha_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_upload_is_hashed_on_the_way_and_kept_under_its_digest() {
    let d = tempfile::tempdir().unwrap();
    let a = Artifacts::new(d.path());
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = a.writer(1 << 20).unwrap();
    for chunk in body.chunks(8192) {
        w.write(chunk).unwrap();
    }
    assert_eq!(w.size(), body.len() as u64);
    let s = w.finish().unwrap();
    assert_eq!(s.sha256_hex, sha_hex(&body));
    assert_eq!(s.size, body.len() as u64);
    assert_eq!(fs::read(a.path(&s.sha256_hex)).unwrap(), body);
    assert_eq!(
        fs::read_dir(d.path().join(DIR).join("tmp"))
            .unwrap()
            .count(),
        0,
        "no partial file left"
    );
    // The same bytes again: one file.
    let mut w = a.writer(1 << 20).unwrap();
    w.write(&body).unwrap();
    assert_eq!(w.finish().unwrap(), s);
    assert_eq!(
        fs::read_dir(d.path().join(DIR))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count(),
        1
    );
}

#[test]
fn past_the_limit_nothing_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let a = Artifacts::new(d.path());
    let mut w = a.writer(10_000).unwrap();
    w.write(&[1; 6_000]).unwrap();
    match w.write(&[1; 6_000]) {
        Err(WriteError::TooLarge { limit }) => assert_eq!(limit, 10_000),
        other => panic!("{other:?}"),
    }
    assert!(w.write(&[1]).is_err(), "stays refused");
    assert!(w.finish().is_err());
    assert_eq!(
        fs::read_dir(d.path().join(DIR).join("tmp"))
            .unwrap()
            .count(),
        0
    );
    // Dropped unfinished: nothing either.
    let mut w = a.writer(10).unwrap();
    w.write(b"abc").unwrap();
    drop(w);
    assert_eq!(
        fs::read_dir(d.path().join(DIR).join("tmp"))
            .unwrap()
            .count(),
        0
    );
    // A crash's leftovers are removed at start.
    fs::write(d.path().join(DIR).join("tmp").join("x.part"), b"half").unwrap();
    assert_eq!(a.clean_partial().unwrap(), 1);
}

#[test]
fn byte_ranges_as_rfc_9110_reads_them() {
    let r = |h: &str| byte_range(Some(h), 1000);
    assert_eq!(byte_range(None, 1000), Ok(None));
    assert_eq!(r("bytes=0-99"), Ok(Some((0, 99))));
    assert_eq!(r("bytes=500-"), Ok(Some((500, 999))));
    assert_eq!(r("bytes=-100"), Ok(Some((900, 999))));
    assert_eq!(
        r("bytes=-5000"),
        Ok(Some((0, 999))),
        "more than there is: all"
    );
    assert_eq!(r("bytes=990-2000"), Ok(Some((990, 999))), "clipped");
    assert_eq!(r("bytes=0-1,5-9"), Ok(None), "several: the whole");
    assert_eq!(r("items=0-1"), Ok(None));
    assert_eq!(r("bytes=1000-"), Err(Unsatisfiable));
    assert_eq!(r("bytes=9-3"), Err(Unsatisfiable));
    assert_eq!(r("bytes=-0"), Err(Unsatisfiable));
    assert_eq!(r("bytes=a-b"), Err(Unsatisfiable));
    assert_eq!(byte_range(Some("bytes=0-"), 0), Err(Unsatisfiable));
}

proptest! {
    /// A satisfiable range lies within the artifact and is not empty.
    #[test]
    fn ranges_stay_inside(h in "bytes=[0-9]{0,5}-[0-9]{0,5}", size in 0u64..100_000) {
        if let Ok(Some((a, b))) = byte_range(Some(&h), size) {
            prop_assert!(a <= b && b < size);
        }
    }
}
