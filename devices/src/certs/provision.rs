//! Fleet provisioning by claim, sans IO: the AWS IoT request and reply documents
//! (docs/plans/aws-provisioning-contract.md), provisioning templates and how they name and
//! describe a device, the pre-provisioning hook's answer, and ownership tokens.
//!
//! A template is the AWS template's Thing and Certificate resources without the policy
//! language:
//!
//! ```json
//! {"device_id": "sensor-{SerialNumber}", "device_type": "sensor",
//!  "tags": {"site": "{Site}"}, "groups": ["fleet-a"], "desired": {"interval": 60},
//!  "device_configuration": {"ingest": "devices/{ThingName}/telemetry"},
//!  "hook_url": "http://127.0.0.1:9000/allow"}
//! ```
//!
//! `{Name}` in the device id, in tag values and in the device configuration is a parameter:
//! one the device sent in RegisterThing, one the hook set, or one Mast supplies —
//! `AWS::IoT::Certificate::Id` (also `CertificateId`), `AWS::IoT::Certificate::CommonName`
//! (also `CommonName`: the CSR's, else the client id), `ClientId`, and, after the device id,
//! `ThingName`. A parameter the template uses and nobody gave refuses the request (400
//! `InvalidParameters`), as AWS refuses a template whose `Ref` has no value.

use std::collections::BTreeMap;

use mast_meta::Op;
use mast_meta::tables::{OWNERSHIP_TOKENS, PROVISIONING_TEMPLATES};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::profile::{
    RegistryError, check_device_id, check_group_name, check_tags, decode_versioned,
    encode_versioned,
};

/// The version of the template and token records this build writes.
const RECORD_VERSION: u64 = 1;

/// How long an ownership token is good for (AWS: one hour), ns.
pub const TOKEN_LIFETIME_NS: i64 = 3_600_000_000_000;

/// Limits on RegisterThing's parameters (AWS's HTTP RegisterThing: keys 2,048, values 4,096).
pub const MAX_PARAMETERS: usize = 100;
pub const MAX_PARAMETER_KEY: usize = 2048;
pub const MAX_PARAMETER_VALUE: usize = 4096;

/// The parameter names Mast supplies.
pub const CERTIFICATE_ID: &str = "AWS::IoT::Certificate::Id";
pub const COMMON_NAME: &str = "AWS::IoT::Certificate::CommonName";

/// The three operations and their topics (the JSON payload format; CBOR is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `$aws/certificates/create/json`: CreateKeysAndCertificate.
    CreateKeys,
    /// `$aws/certificates/create-from-csr/json`: CreateCertificateFromCsr.
    CreateFromCsr,
    /// `$aws/provisioning-templates/{name}/provision/json`: RegisterThing.
    Register { template: String },
}

/// The filters the provisioning service subscribes to (JSON and CBOR: a CBOR request is
/// answered with an error, not ignored).
pub const REQUEST_FILTERS: [&str; 3] = [
    "$aws/certificates/create/+",
    "$aws/certificates/create-from-csr/+",
    "$aws/provisioning-templates/+/provision/+",
];

/// What a request topic asks for, and whether its payload format is JSON (`false`: CBOR, which
/// Mast does not speak). `None`: not a request topic (a reply topic among them).
pub fn parse_topic(topic: &str) -> Option<(Request, bool)> {
    let format = |f: &str| match f {
        "json" => Some(true),
        "cbor" => Some(false),
        _ => None,
    };
    if let Some(f) = topic.strip_prefix("$aws/certificates/create/") {
        return Some((Request::CreateKeys, format(f)?));
    }
    if let Some(f) = topic.strip_prefix("$aws/certificates/create-from-csr/") {
        return Some((Request::CreateFromCsr, format(f)?));
    }
    let rest = topic.strip_prefix("$aws/provisioning-templates/")?;
    let (name, f) = rest.split_once("/provision/")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((
        Request::Register {
            template: name.to_owned(),
        },
        format(f)?,
    ))
}

/// Whether `topic` is one only the server publishes to: the provisioning replies and the
/// certificate events (a client's publish there could answer another device's request).
pub fn is_server_topic(topic: &str) -> bool {
    let provisioning = topic.starts_with("$aws/certificates/")
        || topic.starts_with("$aws/provisioning-templates/");
    (provisioning && parse_topic(topic).is_none()) || topic.starts_with("$aws/events/certificates/")
}

/// The topic filters a claim certificate of `template` may publish to (the requests) and
/// subscribe to (the requests and their replies): nothing else, as AWS's claim policy.
pub fn claim_topics(template: &str) -> (Vec<String>, Vec<String>) {
    let requests = [
        "$aws/certificates/create/json".to_owned(),
        "$aws/certificates/create-from-csr/json".to_owned(),
        format!("$aws/provisioning-templates/{template}/provision/json"),
    ];
    let replies = requests.iter().map(|r| format!("{r}/+")).collect();
    (requests.to_vec(), replies)
}

/// A refused request: the AWS error document `{statusCode, errorCode, errorMessage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        json!({
            "statusCode": self.status,
            "errorCode": self.code,
            "errorMessage": self.message,
        })
        .to_string()
        .into_bytes()
    }

    fn invalid_payload(message: impl Into<String>) -> Refused {
        Refused::new(400, "InvalidPayload", message)
    }
}

impl From<RegistryError> for Refused {
    fn from(e: RegistryError) -> Refused {
        let code = match e.status {
            400 => "InvalidParameters",
            404 => "ResourceNotFound",
            409 => "ConflictingResourceUpdate",
            _ => "InternalFailure",
        };
        Refused::new(e.status, code, e.message)
    }
}

/// A JSON object payload (an empty payload is `{}`, as AWS documents CreateKeysAndCertificate).
fn object(payload: &[u8]) -> Result<Map<String, Value>, Refused> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refused::invalid_payload(
            "the payload must be a JSON object",
        )),
        Err(e) => Err(Refused::invalid_payload(format!(
            "the payload is not JSON: {e}"
        ))),
    }
}

/// CreateKeysAndCertificate's request: `{}` or nothing.
pub fn parse_create_keys(payload: &[u8]) -> Result<(), Refused> {
    object(payload).map(|_| ())
}

/// CreateCertificateFromCsr's request: the CSR, PEM.
pub fn parse_create_from_csr(payload: &[u8]) -> Result<String, Refused> {
    match object(payload)?.remove("certificateSigningRequest") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(Refused::new(
            400,
            "InvalidCsr",
            "certificateSigningRequest must be the CSR as PEM text",
        )),
        None => Err(Refused::new(
            400,
            "InvalidCsr",
            "certificateSigningRequest is missing",
        )),
    }
}

/// RegisterThing's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub token: String,
    pub parameters: BTreeMap<String, String>,
}

pub fn parse_register(payload: &[u8]) -> Result<Register, Refused> {
    let mut m = object(payload)?;
    let token = match m.remove("certificateOwnershipToken") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) | None => {
            return Err(Refused::new(
                400,
                "InvalidCertificateOwnershipToken",
                "Certificate ownership token cannot be empty.",
            ));
        }
        Some(_) => {
            return Err(Refused::invalid_payload(
                "certificateOwnershipToken must be a string",
            ));
        }
    };
    let parameters = match m.remove("parameters") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(p)) => parameters(p)?,
        Some(_) => {
            return Err(Refused::invalid_payload(
                "parameters must be an object of strings",
            ));
        }
    };
    Ok(Register { token, parameters })
}

/// Parameters: string keys and values, within the limits.
fn parameters(p: Map<String, Value>) -> Result<BTreeMap<String, String>, Refused> {
    if p.len() > MAX_PARAMETERS {
        return Err(Refused::new(
            400,
            "InvalidParameters",
            format!("at most {MAX_PARAMETERS} parameters"),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in p {
        let Value::String(v) = v else {
            return Err(Refused::new(
                400,
                "InvalidParameters",
                format!("parameter {k:?} must be a string"),
            ));
        };
        if k.is_empty() || k.len() > MAX_PARAMETER_KEY || v.len() > MAX_PARAMETER_VALUE {
            return Err(Refused::new(
                400,
                "InvalidParameters",
                format!(
                    "parameter names have 1 to {MAX_PARAMETER_KEY} bytes, values at most {MAX_PARAMETER_VALUE}"
                ),
            ));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// CreateKeysAndCertificate's and CreateCertificateFromCsr's answer (the key only when Mast
/// made it).
pub fn created_payload(
    certificate_id: &str,
    certificate_pem: &str,
    private_key: Option<&str>,
    token: &str,
) -> Vec<u8> {
    let mut v = json!({
        "certificateId": certificate_id,
        "certificatePem": certificate_pem,
        "certificateOwnershipToken": token,
    });
    if let Some(k) = private_key {
        v["privateKey"] = Value::from(k);
    }
    v.to_string().into_bytes()
}

/// RegisterThing's answer.
pub fn registered_payload(thing_name: &str, device_configuration: &Map<String, Value>) -> Vec<u8> {
    json!({
        "thingName": thing_name,
        "deviceConfiguration": device_configuration,
    })
    .to_string()
    .into_bytes()
}

/// A provisioning template (`provisioning_templates`, REST `provisioning/templates/{name}`,
/// or `[[provisioning.templates]]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The device id: a pattern of parameters, such as `sensor-{SerialNumber}`.
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Tags set on the device; string values may use parameters.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    /// Static groups the device joins (created when missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The desired state its classic shadow starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Map<String, Value>>,
    /// Returned to the device in RegisterThing's `deviceConfiguration`; flat, string values
    /// may use parameters.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub device_configuration: Map<String, Value>,
    /// The pre-provisioning hook: POSTed every RegisterThing, 5 s to allow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_url: Option<String>,
    /// A disabled template refuses RegisterThing (404, as AWS's).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A device that already has an ACTIVE certificate in use may register again (a factory
    /// reset); otherwise RegisterThing for it is refused (409), so a claim certificate cannot
    /// take over a device in service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reprovision: bool,
    /// Validity of the certificates it issues (days); the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_days: Option<u32>,
    /// When it was stored over REST (ns); set by the server.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub updated_at: i64,
}

fn enabled() -> bool {
    true
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Param(&'a str),
}

/// `a{B}c` → text and parameter pieces; `{` without `}`, an empty or odd name is an error.
fn pieces(pattern: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("{pattern:?}: '}}' without '{{'"));
        }
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{pattern:?}: '{{' without '}}'"))?;
        let name = &after[..close];
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !ok {
            return Err(format!(
                "{pattern:?}: a parameter name has letters, digits, '_', '-', '.' or ':'"
            ));
        }
        out.push(Piece::Param(name));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Checks a pattern of `{Name}` parameters.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    pieces(pattern).map(|_| ())
}

/// `pattern` with its parameters substituted from `params`.
pub fn expand(pattern: &str, params: &BTreeMap<String, String>) -> Result<String, Refused> {
    let mut out = String::new();
    for p in pieces(pattern).map_err(|e| Refused::new(500, "InvalidTemplate", e))? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Param(name) => match params.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(Refused::new(
                        400,
                        "InvalidParameters",
                        format!("the template needs the parameter {name:?}"),
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// Strings inside `v` expanded (objects and arrays walked).
fn expand_value(v: &Value, params: &BTreeMap<String, String>) -> Result<Value, Refused> {
    Ok(match v {
        Value::String(s) => Value::String(expand(s, params)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| expand_value(x, params))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(expand_map(m, params)?),
        other => other.clone(),
    })
}

fn expand_map(
    m: &Map<String, Value>,
    params: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, Refused> {
    m.iter()
        .map(|(k, v)| Ok((k.clone(), expand_value(v, params)?)))
        .collect()
}

fn check_patterns(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) => pieces(s).map(|_| ()),
        Value::Array(a) => a.iter().try_for_each(check_patterns),
        Value::Object(m) => m.values().try_for_each(check_patterns),
        _ => Ok(()),
    }
}

/// What a template makes of one registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    pub device_id: String,
    pub device_type: Option<String>,
    pub tags: Map<String, Value>,
    pub groups: Vec<String>,
    pub desired: Option<Map<String, Value>>,
    pub device_configuration: Map<String, Value>,
}

impl Template {
    /// Parses and checks a template document (JSON).
    pub fn parse(body: &[u8]) -> Result<Template, RegistryError> {
        let t: Template = serde_json::from_slice(body)
            .map_err(|e| RegistryError::bad(format!("not a provisioning template: {e}")))?;
        t.check()?;
        Ok(t)
    }

    /// Checks what the server cannot know until a device registers: patterns, names, tags,
    /// the hook URL.
    pub fn check(&self) -> Result<(), RegistryError> {
        let bad = |e: String| RegistryError::bad(e);
        pieces(&self.device_id).map_err(bad)?;
        if self.device_id.is_empty() {
            return Err(RegistryError::bad(
                "device_id: a pattern such as sensor-{SerialNumber}",
            ));
        }
        check_tags(&self.tags)?;
        check_patterns(&Value::Object(self.tags.clone())).map_err(bad)?;
        for g in &self.groups {
            check_group_name(g)?;
        }
        for (k, v) in &self.device_configuration {
            if v.is_object() || v.is_array() {
                return Err(RegistryError::bad(format!(
                    "device_configuration.{k}: the device configuration is flat (AWS's rule)"
                )));
            }
        }
        check_patterns(&Value::Object(self.device_configuration.clone())).map_err(bad)?;
        if let Some(u) = &self.hook_url
            && !u.starts_with("http://")
        {
            return Err(RegistryError::bad(format!(
                "hook_url {u:?}: an http:// URL (put a TLS proxy in front for https)"
            )));
        }
        if self.certificate_days == Some(0) {
            return Err(RegistryError::bad("certificate_days: at least 1"));
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, RECORD_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<Template, String> {
        decode_versioned(bytes, RECORD_VERSION, "provisioning template")
    }

    pub fn put(&self, name: &str) -> Op {
        Op::Put {
            table: PROVISIONING_TEMPLATES,
            key: name.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    /// The device a registration with `params` (the device's, the hook's overrides, and Mast's
    /// own) describes.
    pub fn provision(&self, params: &BTreeMap<String, String>) -> Result<Provisioned, Refused> {
        let device_id = expand(&self.device_id, params)?;
        check_device_id(&device_id).map_err(|e| {
            Refused::new(
                400,
                "InvalidParameters",
                format!(
                    "the device id {device_id:?} the template made: {}",
                    e.message
                ),
            )
        })?;
        let mut params = params.clone();
        params.insert("ThingName".into(), device_id.clone());
        let tags = expand_map(&self.tags, &params)?;
        check_tags(&tags)?;
        Ok(Provisioned {
            device_type: self.device_type.clone(),
            tags,
            groups: self.groups.clone(),
            desired: self.desired.clone(),
            device_configuration: expand_map(&self.device_configuration, &params)?,
            device_id,
        })
    }
}

/// What the pre-provisioning hook is sent (AWS's Lambda input, with Mast's template name).
pub fn hook_request(
    claim_certificate_id: &str,
    certificate_id: &str,
    certificate_pem: &str,
    template: &str,
    client_id: &str,
    parameters: &BTreeMap<String, String>,
) -> Vec<u8> {
    json!({
        "claimCertificateId": claim_certificate_id,
        "certificateId": certificate_id,
        "certificatePem": certificate_pem,
        "templateArn": format!("mast:provisioningtemplate/{template}"),
        "templateName": template,
        "clientId": client_id,
        "parameters": parameters,
    })
    .to_string()
    .into_bytes()
}

/// The hook's answer: the overrides to add to the parameters when it allows provisioning.
/// Anything but `{"allowProvisioning": true, ...}` denies it (403 AccessDenied).
pub fn hook_answer(body: &[u8]) -> Result<BTreeMap<String, String>, Refused> {
    let denied = |why: &str| {
        Refused::new(
            403,
            "AccessDenied",
            format!("the pre-provisioning hook {why}"),
        )
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|_| denied("answered something other than JSON"))?;
    if v.get("allowProvisioning") != Some(&Value::Bool(true)) {
        return Err(denied("did not allow provisioning"));
    }
    match v.get("parameterOverrides") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => parameters(m.clone()).map_err(|e| denied(&e.message)),
        Some(_) => Err(denied("sent parameterOverrides that are not an object")),
    }
}

/// An ownership token, as stored (`ownership_tokens`, keyed by the SHA-256 of the token, so
/// the store never holds a usable token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The certificate it registers.
    pub certificate_id: String,
    /// The claim certificate that asked for it: only a connection with that claim registers.
    pub claim_id: String,
    /// The certificate, PEM (for the pre-provisioning hook).
    #[serde(default)]
    pub certificate_pem: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl TokenRecord {
    /// A token for `certificate_id`, asked for by `claim_id`, good for `lifetime_ns` (AWS:
    /// [`TOKEN_LIFETIME_NS`]).
    pub fn new(certificate_id: &str, claim_id: &str, now_ns: i64, lifetime_ns: i64) -> TokenRecord {
        TokenRecord {
            certificate_id: certificate_id.to_owned(),
            claim_id: claim_id.to_owned(),
            certificate_pem: String::new(),
            created_at: now_ns,
            expires_at: now_ns.saturating_add(lifetime_ns),
        }
    }

    pub fn expired(&self, now_ns: i64) -> bool {
        now_ns >= self.expires_at
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, RECORD_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<TokenRecord, String> {
        decode_versioned(bytes, RECORD_VERSION, "ownership token")
    }

    pub fn put(&self, key: &str) -> Op {
        Op::Put {
            table: OWNERSHIP_TOKENS,
            key: key.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    pub fn remove(key: &str) -> Op {
        Op::Del {
            table: OWNERSHIP_TOKENS,
            key: key.as_bytes().to_vec(),
        }
    }
}

/// The store key of a token: its SHA-256, lower-case hex.
pub fn token_key(token: &str) -> String {
    super::ca::fingerprint(token.as_bytes())
}

#[cfg(test)]
mod tests;
