use super::*;

fn urls(dir: &Path) -> DownloadUrls {
    DownloadUrls::open(dir, "http://127.0.0.1:8080/", 600).unwrap()
}

fn exec() -> Execution {
    Execution::queued("job-1", "dev:a&b=c%", 2, 0)
}

fn query(url: &str) -> &str {
    url.split_once('?').unwrap().1
}

#[test]
fn download_urls_name_the_execution_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let u = urls(dir.path());
    let url = u.url("fw-1", &exec(), 1_000);
    assert!(url.starts_with("http://127.0.0.1:8080/api/v1/firmware/fw-1/artifact?"));
    let q = query(&url);
    assert!(DownloadUrls::has_token(Some(q)));
    assert_eq!(u.check("fw-1", q, 1_000).unwrap(), "dev:a&b=c%");
    assert_eq!(u.check("fw-1", q, 1_600).unwrap(), "dev:a&b=c%");
    // Expired, for another artifact, or with any part changed: refused.
    assert!(u.check("fw-1", q, 1_601).unwrap_err().contains("expired"));
    assert!(u.check("fw-2", q, 1_000).is_err());
    let later = q.replace("expires=1600", "expires=9999");
    assert!(u.check("fw-1", &later, 1_000).is_err());
    let other = q.replace("execution=2", "execution=3");
    assert!(u.check("fw-1", &other, 1_000).is_err());
    assert!(u.check("fw-1", "token=00", 1_000).is_err());
    assert!(u.check("fw-1", "device=%zz&token=00", 1_000).is_err());
}

#[test]
fn the_url_key_survives_a_restart_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = urls(dir.path()).url("fw-1", &exec(), 1_000);
    let again = urls(dir.path());
    assert!(again.check("fw-1", query(&url), 1_000).is_ok());
    let mode = std::fs::metadata(dir.path().join("ota/url.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let other = tempfile::tempdir().unwrap();
    assert!(
        urls(other.path())
            .check("fw-1", query(&url), 1_000)
            .is_err()
    );
}

#[test]
fn percent_coding_round_trips() {
    for s in ["plain-id_1", "a b&c=d%e/f", "ünï", ""] {
        assert_eq!(unpct(&crate::cli_devices::enc(s)).as_deref(), Some(s));
    }
    assert_eq!(unpct("%4"), None);
}
