use proptest::prelude::*;

use super::*;

fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn topics_name_their_operation_and_format() {
    assert_eq!(
        parse_topic("$aws/certificates/create/json"),
        Some((Request::CreateKeys, true))
    );
    assert_eq!(
        parse_topic("$aws/certificates/create-from-csr/cbor"),
        Some((Request::CreateFromCsr, false))
    );
    assert_eq!(
        parse_topic("$aws/provisioning-templates/factory/provision/json"),
        Some((
            Request::Register {
                template: "factory".into()
            },
            true
        ))
    );
    for t in [
        "$aws/certificates/create/json/accepted",
        "$aws/certificates/create/xml",
        "$aws/provisioning-templates//provision/json",
        "$aws/provisioning-templates/a/b/provision/json",
        "$aws/things/x/shadow/get",
    ] {
        assert_eq!(parse_topic(t), None, "{t}");
    }
    assert!(is_server_topic("$aws/certificates/create/json/accepted"));
    assert!(is_server_topic(
        "$aws/provisioning-templates/f/provision/json/rejected"
    ));
    assert!(is_server_topic("$aws/events/certificates/registered/ab"));
    assert!(!is_server_topic("$aws/certificates/create/json"));
    assert!(!is_server_topic("$aws/things/x/shadow/update"));
    assert!(!is_server_topic("devices/x/telemetry"));
    let (publish, subscribe) = claim_topics("factory");
    assert_eq!(
        publish,
        vec![
            "$aws/certificates/create/json",
            "$aws/certificates/create-from-csr/json",
            "$aws/provisioning-templates/factory/provision/json",
        ]
    );
    assert_eq!(
        subscribe[2],
        "$aws/provisioning-templates/factory/provision/json/+"
    );
}

#[test]
fn requests_parse_as_the_sdk_sends_them() {
    // AWS documents an empty payload; the Python SDK sends {}.
    assert_eq!(parse_create_keys(b""), Ok(()));
    assert_eq!(parse_create_keys(b"{}"), Ok(()));
    assert_eq!(parse_create_keys(b"[]").unwrap_err().code, "InvalidPayload");
    assert_eq!(parse_create_keys(b"{").unwrap_err().status, 400);

    let csr = parse_create_from_csr(br#"{"certificateSigningRequest": "-----BEGIN"}"#).unwrap();
    assert_eq!(csr, "-----BEGIN");
    assert_eq!(parse_create_from_csr(b"{}").unwrap_err().code, "InvalidCsr");
    assert_eq!(
        parse_create_from_csr(br#"{"certificateSigningRequest": 1}"#)
            .unwrap_err()
            .code,
        "InvalidCsr"
    );

    let r = parse_register(
        br#"{"certificateOwnershipToken": "t0k", "parameters": {"SerialNumber": "42"}}"#,
    )
    .unwrap();
    assert_eq!(r.token, "t0k");
    assert_eq!(r.parameters, params(&[("SerialNumber", "42")]));
    // AWS's own answer to a missing token, as observed.
    let e = parse_register(b"{}").unwrap_err();
    assert_eq!(
        (e.status, e.code, e.message.as_str()),
        (
            400,
            "InvalidCertificateOwnershipToken",
            "Certificate ownership token cannot be empty."
        )
    );
    let e = parse_register(br#"{"certificateOwnershipToken": "t", "parameters": {"a": 1}}"#)
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameters");
    let long = format!(
        r#"{{"certificateOwnershipToken": "t", "parameters": {{"a": "{}"}}}}"#,
        "x".repeat(MAX_PARAMETER_VALUE + 1)
    );
    assert_eq!(
        parse_register(long.as_bytes()).unwrap_err().code,
        "InvalidParameters"
    );
}

#[test]
fn replies_are_aws_documents() {
    let v: Value =
        serde_json::from_slice(&created_payload("ab", "PEM", Some("KEY"), "tok")).unwrap();
    assert_eq!(
        v,
        json!({"certificateId": "ab", "certificatePem": "PEM", "privateKey": "KEY",
               "certificateOwnershipToken": "tok"})
    );
    let v: Value = serde_json::from_slice(&created_payload("ab", "PEM", None, "tok")).unwrap();
    assert!(v.get("privateKey").is_none());
    let mut cfg = Map::new();
    cfg.insert("a".into(), Value::from("b"));
    let v: Value = serde_json::from_slice(&registered_payload("dev-1", &cfg)).unwrap();
    assert_eq!(
        v,
        json!({"thingName": "dev-1", "deviceConfiguration": {"a": "b"}})
    );
    let v: Value =
        serde_json::from_slice(&Refused::new(404, "ResourceNotFound", "no template").payload())
            .unwrap();
    assert_eq!(
        v,
        json!({"statusCode": 404, "errorCode": "ResourceNotFound", "errorMessage": "no template"})
    );
}

fn template() -> Template {
    Template::parse(
        br#"{"device_id": "sensor-{SerialNumber}", "device_type": "sensor",
             "tags": {"site": "{Site}", "fixed": 3, "nested": {"by": "{ClientId}"}},
             "groups": ["fleet-a"], "desired": {"interval": 60},
             "device_configuration": {"topic": "devices/{ThingName}/telemetry", "n": 1}}"#,
    )
    .unwrap()
}

#[test]
fn a_template_names_and_describes_the_device() {
    let t = template();
    assert!(t.enabled, "enabled unless it says otherwise");
    let p = t
        .provision(&params(&[
            ("SerialNumber", "0042"),
            ("Site", "north"),
            ("ClientId", "c-1"),
        ]))
        .unwrap();
    assert_eq!(p.device_id, "sensor-0042");
    assert_eq!(p.device_type.as_deref(), Some("sensor"));
    assert_eq!(
        Value::Object(p.tags),
        json!({"site": "north", "fixed": 3, "nested": {"by": "c-1"}})
    );
    assert_eq!(p.groups, vec!["fleet-a"]);
    assert_eq!(
        Value::Object(p.device_configuration),
        json!({"topic": "devices/sensor-0042/telemetry", "n": 1})
    );
    let missing = t
        .provision(&params(&[("SerialNumber", "1"), ("ClientId", "c")]))
        .unwrap_err();
    assert_eq!((missing.status, missing.code), (400, "InvalidParameters"));
    assert!(missing.message.contains("\"Site\""), "{}", missing.message);
    let bad_id = t
        .provision(&params(&[
            ("SerialNumber", "a/b"),
            ("Site", "x"),
            ("ClientId", "c"),
        ]))
        .unwrap_err();
    assert_eq!(bad_id.code, "InvalidParameters");

    let round = Template::decode(&t.encode()).unwrap();
    assert_eq!(round, t);
}

#[test]
fn bad_templates_are_refused() {
    for body in [
        r#"{}"#,
        r#"{"device_id": ""}"#,
        r#"{"device_id": "a-{"}"#,
        r#"{"device_id": "a-}"}"#,
        r#"{"device_id": "a-{}"}"#,
        r#"{"device_id": "a-{b c}"}"#,
        r#"{"device_id": "x", "groups": ["a/b"]}"#,
        r#"{"device_id": "x", "device_configuration": {"a": {"b": 1}}}"#,
        r#"{"device_id": "x", "hook_url": "https://hook.example"}"#,
        r#"{"device_id": "x", "certificate_days": 0}"#,
        r#"{"device_id": "x", "tags": {"": 1}}"#,
        r#"{"device_id": "x", "owner": "me"}"#,
    ] {
        let e = Template::parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, 400, "{body}");
    }
}

#[test]
fn the_hook_allows_or_denies() {
    assert_eq!(
        hook_answer(br#"{"allowProvisioning": true}"#),
        Ok(BTreeMap::new())
    );
    assert_eq!(
        hook_answer(br#"{"allowProvisioning": true, "parameterOverrides": {"Site": "south"}}"#),
        Ok(params(&[("Site", "south")]))
    );
    for body in [
        &br#"{"allowProvisioning": false}"#[..],
        br#"{"allowProvisioning": "true"}"#,
        br#"{}"#,
        b"not json",
        br#"{"allowProvisioning": true, "parameterOverrides": {"a": 1}}"#,
    ] {
        let e = hook_answer(body).unwrap_err();
        assert_eq!((e.status, e.code), (403, "AccessDenied"));
    }
    let req: Value = serde_json::from_slice(&hook_request(
        "claim",
        "cert",
        "PEM",
        "factory",
        "c-1",
        &params(&[("SerialNumber", "1")]),
    ))
    .unwrap();
    assert_eq!(req["claimCertificateId"], "claim");
    assert_eq!(req["parameters"]["SerialNumber"], "1");
    assert_eq!(req["clientId"], "c-1");
}

#[test]
fn tokens_expire_after_an_hour_and_are_stored_by_hash() {
    let t = TokenRecord::new("cert", "claim", 1_000, TOKEN_LIFETIME_NS);
    assert!(!t.expired(1_000 + TOKEN_LIFETIME_NS - 1));
    assert!(t.expired(1_000 + TOKEN_LIFETIME_NS));
    assert_eq!(TokenRecord::decode(&t.encode()), Ok(t));
    let k = token_key("secret");
    assert_eq!(k.len(), 64);
    assert!(!k.contains("secret"));
    assert_ne!(token_key("secret"), token_key("secret2"));
}

proptest! {
    /// A pattern of text and parameters expands to the text with each parameter's value, and
    /// parses back into the same pieces.
    #[test]
    fn patterns_expand_to_their_parameters(
        parts in prop::collection::vec(("[a-z0-9-]{0,6}", "[A-Za-z][A-Za-z0-9_]{0,8}"), 1..5),
        value in "[a-z0-9]{1,8}",
    ) {
        let mut pattern = String::new();
        let mut expected = String::new();
        let mut ps = BTreeMap::new();
        for (text, name) in &parts {
            pattern.push_str(text);
            pattern.push('{');
            pattern.push_str(name);
            pattern.push('}');
            expected.push_str(text);
            let v = format!("{value}{}", name.len());
            expected.push_str(&v);
            ps.insert(name.clone(), v);
        }
        prop_assert_eq!(expand(&pattern, &ps).unwrap(), expected);
        let names: Vec<&str> = pieces(&pattern).unwrap().into_iter().filter_map(|p| match p {
            Piece::Param(n) => Some(n),
            Piece::Text(_) => None,
        }).collect();
        prop_assert_eq!(names, parts.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>());
    }

    /// Any text either parses as a pattern or is refused; never a panic.
    #[test]
    fn any_pattern_parses_or_is_refused(s in "\\PC{0,40}") {
        let _ = pieces(&s);
        let _ = expand(&s, &BTreeMap::new());
    }
}
