//! Device shadows, sans IO: the AWS IoT Device Shadow contract (classic and named shadows) as
//! functions from the stored shadow and a request payload to the new shadow and the reply
//! documents. One implementation for every transport: the MQTT service (`$aws/things/…/shadow/…`)
//! and the REST API call the same [`update_in`], [`get`] and [`delete`]; the caller stores the
//! new shadow and publishes the replies only once that write is durable.
//!
//! The rules are in [`merge`]; the contract, with AWS's sources, in
//! `docs/plans/aws-shadow-contract.md`. Where AWS leaves a choice open, Mast decides as follows:
//! - an update that changes nothing is still accepted and counts a version (as Greengrass does);
//! - a `version` in an update that would create the shadow is a conflict (409): there is no
//!   version to match yet;
//! - a deleted shadow keeps its version for 48 hours, so one created again continues from it;
//! - a shadow whose sections are all removed still exists: `get` answers `"state": {}`;
//! - get replies carry no `metadata.delta` (the SDKs ignore it);
//! - every error document carries a `timestamp`.

pub mod merge;
pub mod topic;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use merge::Object;

/// State bytes a shadow may hold: desired + reported of the merged document, metadata excluded.
pub const MAX_STATE_BYTES: usize = 8192;
/// Nesting levels in `desired` or `reported`, the section itself being level 1.
pub const MAX_DEPTH: usize = 6;
/// Bytes of a `clientToken`.
pub const MAX_TOKEN_BYTES: usize = 64;
/// Bytes of a thing name; of a shadow name.
pub const MAX_THING_NAME: usize = 128;
pub const MAX_SHADOW_NAME: usize = 64;
/// How long a deleted shadow's version is remembered.
pub const VERSION_MEMORY_SECS: u64 = 48 * 3600;

/// A refusal: the HTTP-style code and AWS's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowError {
    pub code: u16,
    pub message: String,
}

impl ShadowError {
    fn new(code: u16, message: impl Into<String>) -> ShadowError {
        ShadowError {
            code,
            message: message.into(),
        }
    }

    fn bad(message: &str) -> ShadowError {
        ShadowError::new(400, message)
    }

    /// 401: the caller is not who it must be.
    pub fn unauthorized() -> ShadowError {
        ShadowError::new(401, "Unauthorized")
    }

    /// 403: the caller may not touch this shadow (or this section of it).
    pub fn forbidden() -> ShadowError {
        ShadowError::new(403, "Forbidden")
    }

    /// 429: too many requests in flight on one connection.
    pub fn too_many_requests() -> ShadowError {
        ShadowError::new(429, "Too Many Requests")
    }

    /// 500: the change could not be made durable.
    pub fn internal() -> ShadowError {
        ShadowError::new(500, "Internal service failure")
    }
}

/// A refused request: the error and the request's `clientToken`, to echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub error: ShadowError,
    pub token: Option<String>,
}

impl Rejected {
    /// A refusal of a request whose payload was not read (a bad name, a rate limit).
    pub fn of(error: ShadowError, payload: &[u8]) -> Rejected {
        let token = parse(payload).ok().and_then(|o| token(&o).ok().flatten());
        Rejected { error, token }
    }

    /// The error document: `{code, message, timestamp, clientToken}`.
    pub fn document(&self, now: u64) -> Value {
        let mut d = json!({
            "code": self.error.code,
            "message": self.error.message,
            "timestamp": now,
        });
        with_token(&mut d, self.token.as_deref());
        d
    }
}

/// Who changes a shadow: the device itself (over MQTT), an operator (REST), a fleet-wide change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Device,
    Operator,
    Fleet,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Device => "device",
            Source::Operator => "operator",
            Source::Fleet => "fleet",
        }
    }
}

/// One shadow as stored. A deleted shadow is kept as a tombstone (`deleted_at`) so that its
/// version continues if it is created again soon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_metadata: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_metadata: Option<Object>,
    /// Epoch seconds of the last accepted change (or of the delete).
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<u64>,
}

impl Shadow {
    /// Whether it exists (not deleted).
    pub fn exists(&self) -> bool {
        self.deleted_at.is_none()
    }

    /// What of desired is not reported yet (empty when in sync).
    pub fn delta(&self) -> Object {
        self.desired
            .as_ref()
            .map(|d| merge::delta(d, self.reported.as_ref()))
            .unwrap_or_default()
    }

    /// `{"state": {desired, reported}, "metadata": {desired, reported}, "version"}`.
    pub fn snapshot(&self) -> Value {
        json!({
            "state": self.state(),
            "metadata": self.metadata(),
            "version": self.version,
        })
    }

    /// `{desired, reported}`, each only when present.
    pub fn state(&self) -> Value {
        sections(&self.desired, &self.reported)
    }

    /// The metadata of [`Shadow::state`].
    pub fn metadata(&self) -> Value {
        sections(&self.desired_metadata, &self.reported_metadata)
    }

    /// [`Shadow::state`] as JSON text, written from the shadow without copying it.
    pub fn state_json(&self) -> String {
        let s = SectionsRef {
            desired: self.desired.as_ref(),
            reported: self.reported.as_ref(),
        };
        serde_json::to_string(&s).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The stored form: versioned JSON, written from the shadow without copying it (`v`, then
    /// the shadow's fields in their order).
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Stored<'a> {
            v: u8,
            version: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            desired: Option<&'a Object>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reported: Option<&'a Object>,
            #[serde(skip_serializing_if = "Option::is_none")]
            desired_metadata: Option<&'a Object>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reported_metadata: Option<&'a Object>,
            updated_at: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            deleted_at: Option<u64>,
        }
        let Shadow {
            version,
            desired,
            reported,
            desired_metadata,
            reported_metadata,
            updated_at,
            deleted_at,
        } = self;
        let stored = Stored {
            v: 1,
            version: *version,
            desired: desired.as_ref(),
            reported: reported.as_ref(),
            desired_metadata: desired_metadata.as_ref(),
            reported_metadata: reported_metadata.as_ref(),
            updated_at: *updated_at,
            deleted_at: *deleted_at,
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads the stored form; `None` if it is not one this version can read.
    pub fn decode(bytes: &[u8]) -> Option<Shadow> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        if v.get("v").and_then(Value::as_u64) != Some(1) {
            return None;
        }
        serde_json::from_value(v).ok()
    }
}

fn sections(desired: &Option<Object>, reported: &Option<Object>) -> Value {
    let mut m = Object::new();
    if let Some(d) = desired {
        m.insert("desired".into(), Value::Object(d.clone()));
    }
    if let Some(r) = reported {
        m.insert("reported".into(), Value::Object(r.clone()));
    }
    Value::Object(m)
}

/// Checks a thing name and an optional shadow name as AWS allows them.
pub fn check_names(thing: &str, shadow: Option<&str>) -> Result<(), ShadowError> {
    let ok = |s: &str, max: usize, dollar: bool| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b':' | b'_' | b'-')
                    || (dollar && b == b'$')
            })
    };
    if !ok(thing, MAX_THING_NAME, false) {
        return Err(ShadowError::bad("Invalid thing name"));
    }
    if let Some(s) = shadow
        && !ok(s, MAX_SHADOW_NAME, true)
    {
        return Err(ShadowError::bad("Invalid shadow name"));
    }
    Ok(())
}

/// `{desired, reported}` of borrowed sections, each only when present.
#[derive(Serialize)]
struct SectionsRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    desired: Option<&'a Object>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported: Option<&'a Object>,
}

/// [`Shadow::snapshot`], borrowed (fields in the order of the map the value would be).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    metadata: SectionsRef<'a>,
    state: SectionsRef<'a>,
    version: u64,
}

impl<'a> SnapshotRef<'a> {
    fn of(s: &'a Shadow) -> SnapshotRef<'a> {
        SnapshotRef {
            metadata: SectionsRef {
                desired: s.desired_metadata.as_ref(),
                reported: s.reported_metadata.as_ref(),
            },
            state: SectionsRef {
                desired: s.desired.as_ref(),
                reported: s.reported.as_ref(),
            },
            version: s.version,
        }
    }
}

/// The `/update/documents` reply, borrowed.
#[derive(Serialize)]
struct DocumentsRef<'a> {
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    current: SnapshotRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<SnapshotRef<'a>>,
    timestamp: u64,
}

/// A section of an update request.
enum Patch<'a> {
    Absent,
    Clear,
    Merge(&'a Object),
}

/// An update applied in place: the replies as JSON text, written from borrowed state.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// For `/update/accepted`.
    pub accepted: Vec<u8>,
    /// For `/update/delta`, when desired and reported differ after the change.
    pub delta: Option<Vec<u8>>,
    /// For `/update/documents`, when asked for.
    pub documents: Option<Vec<u8>>,
    pub token: Option<String>,
    /// [`Shadow::state_json`] of the new shadow (the size limit is measured on it).
    pub state_json: String,
}

/// Applies an update request to `shadow` (the stored shadow or tombstone, if any): on success
/// `shadow` is the new shadow, on a refusal it is as it was. `documents`: write the
/// `/update/documents` reply too (nobody may be subscribed to it, and it is the costliest
/// reply to make). `state`: the caller's copy of the shadow's state text as
/// [`Shadow::state_json`] writes it (`{}` for none), if it keeps one, so its size is not measured
/// again. The previous shadow is not copied (only the top-level keys the request
/// changes are kept, to put back if the merged document is too large), so an update costs
/// what it changes, not what the shadow holds.
pub fn update_in(
    shadow: &mut Option<Shadow>,
    payload: &[u8],
    source: Source,
    now: u64,
    documents: bool,
    state: Option<&str>,
) -> Result<Applied, Rejected> {
    let request = parse(payload).map_err(|error| Rejected { error, token: None })?;
    let token = token(&request).map_err(|error| Rejected { error, token: None })?;
    let reject = |error| Rejected {
        error,
        token: token.clone(),
    };
    let (desired, reported) = patches(&request).map_err(reject)?;
    let version = match request.get("version") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| reject(ShadowError::bad("Invalid version")))?,
        ),
    };
    for p in [&desired, &reported] {
        if let Patch::Merge(o) = p
            && merge::depth(o) > MAX_DEPTH
        {
            return Err(reject(ShadowError::bad(
                "JSON contains too many levels of nesting; maximum is 6",
            )));
        }
    }
    if source != Source::Device && !matches!(reported, Patch::Absent) {
        return Err(reject(ShadowError::forbidden()));
    }
    let live = shadow.as_ref().is_some_and(Shadow::exists);
    if let Some(v) = version
        && !(live && shadow.as_ref().is_some_and(|s| s.version == v))
    {
        return Err(reject(ShadowError::new(409, "Version conflict")));
    }
    // `/update/documents` speaks of the previous document: copied only when asked for.
    let previous = if documents && live {
        shadow.clone()
    } else {
        None
    };
    // A tombstone (or nothing) is kept as it is, to put back on a refusal.
    let (mut new, dead) = match shadow.take() {
        Some(s) if live => (s, None),
        dead => {
            let version = dead
                .as_ref()
                .filter(|t| now.saturating_sub(t.updated_at) <= VERSION_MEMORY_SECS)
                .map_or(0, |t| t.version);
            let fresh = Shadow {
                version,
                ..Shadow::default()
            };
            (fresh, dead)
        }
    };
    // What the merge replaces is kept, to put back on a 413, only when the merged state could
    // exceed the limit: a merge adds at most the patch's own text to the state.
    let bound = [&desired, &reported]
        .into_iter()
        .map(|p| match p {
            Patch::Merge(o) => json_len(o),
            Patch::Absent | Patch::Clear => 0,
        })
        .sum::<usize>()
        + state.map_or_else(
            || merge::state_size(new.desired.as_ref(), new.reported.as_ref()),
            |t| state_size_of(t, &new),
        );
    let keep = bound > MAX_STATE_BYTES;
    let undo = [
        apply(
            &mut new.desired,
            &mut new.desired_metadata,
            &desired,
            now,
            keep,
        ),
        apply(
            &mut new.reported,
            &mut new.reported_metadata,
            &reported,
            now,
            keep,
        ),
    ];
    let state_json = new.state_json();
    if state_size_of(&state_json, &new) > MAX_STATE_BYTES {
        // Back to what it was: a refusal changes nothing (`keep` was set: see `bound`).
        if live {
            let [d, r] = undo;
            d.undo(&mut new.desired, &mut new.desired_metadata);
            r.undo(&mut new.reported, &mut new.reported_metadata);
            *shadow = Some(new);
        } else {
            *shadow = dead;
        }
        return Err(reject(ShadowError::new(
            413,
            "The payload exceeds the maximum size allowed",
        )));
    }
    drop(undo);
    new.version += 1;
    new.updated_at = now;
    new.deleted_at = None;

    let accepted = serde_json::to_vec(&AcceptedRef {
        client_token: token.as_deref(),
        metadata: EchoRef {
            desired: &desired,
            reported: &reported,
            now,
        },
        state: request.get("state").unwrap_or(&Value::Null),
        timestamp: now,
        version: new.version,
    })
    .unwrap_or_default();
    let d = new.delta();
    let delta = (!d.is_empty()).then(|| {
        let meta = new
            .desired_metadata
            .as_ref()
            .map(|m| merge::restrict(m, &d))
            .unwrap_or_default();
        serde_json::to_vec(&DeltaRef {
            client_token: token.as_deref(),
            metadata: &meta,
            state: &d,
            timestamp: now,
            version: new.version,
        })
        .unwrap_or_default()
    });
    let documents = documents.then(|| {
        serde_json::to_vec(&DocumentsRef {
            client_token: token.as_deref(),
            current: SnapshotRef::of(&new),
            previous: previous.as_ref().map(SnapshotRef::of),
            timestamp: now,
        })
        .unwrap_or_default()
    });
    *shadow = Some(new);
    Ok(Applied {
        accepted,
        delta,
        documents,
        token,
        state_json,
    })
}

/// The state bytes [`MAX_STATE_BYTES`] limits (desired and reported as JSON, each without the
/// other), from the shadow's [`Shadow::state_json`]: that text less its braces, names and comma.
fn state_size_of(state_json: &str, s: &Shadow) -> usize {
    let mut wrap = 2;
    if s.desired.is_some() {
        wrap += r#""desired":"#.len();
    }
    if s.reported.is_some() {
        wrap += r#""reported":"#.len();
    }
    if s.desired.is_some() && s.reported.is_some() {
        wrap += 1;
    }
    state_json.len().saturating_sub(wrap)
}

/// Bytes of a value's JSON text, counted as it is written.
fn json_len(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX / 4,
    }
}

/// `/update/accepted`, borrowed; fields in the order the map of a `Value` would have them.
#[derive(Serialize)]
struct AcceptedRef<'a> {
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    metadata: EchoRef<'a>,
    state: &'a Value,
    timestamp: u64,
    version: u64,
}

/// `/update/delta`, borrowed.
#[derive(Serialize)]
struct DeltaRef<'a> {
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    client_token: Option<&'a str>,
    metadata: &'a Object,
    state: &'a Object,
    timestamp: u64,
    version: u64,
}

/// The metadata of what an update set: its sections stamped `now` (a `null` too), written
/// from the request without building it.
struct EchoRef<'a> {
    desired: &'a Patch<'a>,
    reported: &'a Patch<'a>,
    now: u64,
}

impl Serialize for EchoRef<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(None)?;
        for (key, p) in [("desired", self.desired), ("reported", self.reported)] {
            match p {
                Patch::Absent => {}
                Patch::Clear => m.serialize_entry(key, &Stamp(&Value::Null, self.now))?,
                Patch::Merge(o) => m.serialize_entry(key, &StampObject(o, self.now))?,
            }
        }
        m.end()
    }
}

/// [`merge::stamp`] of a value, written as it is made.
struct Stamp<'a>(&'a Value, u64);

/// [`merge::stamp_object`], written as it is made.
struct StampObject<'a>(&'a Object, u64);

impl Serialize for Stamp<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(o) => StampObject(o, self.1).serialize(ser),
            Value::Array(a) => {
                let mut s = ser.serialize_seq(Some(a.len()))?;
                for v in a {
                    s.serialize_element(&Stamp(v, self.1))?;
                }
                s.end()
            }
            _ => {
                let mut m = ser.serialize_map(Some(1))?;
                m.serialize_entry("timestamp", &self.1)?;
                m.end()
            }
        }
    }
}

impl Serialize for StampObject<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &Stamp(v, self.1))?;
        }
        m.end()
    }
}

/// Answers a get request: the whole document with its delta.
pub fn get(
    current: Option<&Shadow>,
    payload: &[u8],
    name: &str,
    now: u64,
) -> Result<Value, Rejected> {
    let token = request_token(payload)?;
    let Some(s) = current.filter(|s| s.exists()) else {
        return Err(Rejected {
            error: not_found(name),
            token,
        });
    };
    let mut state = sections(&s.desired, &s.reported);
    let d = s.delta();
    if !d.is_empty() {
        state["delta"] = Value::Object(d);
    }
    let mut doc = json!({
        "state": state,
        "metadata": sections(&s.desired_metadata, &s.reported_metadata),
        "version": s.version,
        "timestamp": now,
    });
    with_token(&mut doc, token.as_deref());
    Ok(doc)
}

/// Answers a delete request: the tombstone to store and the `/delete/accepted` document.
pub fn delete(
    current: Option<&Shadow>,
    payload: &[u8],
    name: &str,
    now: u64,
) -> Result<(Shadow, Value), Rejected> {
    let token = request_token(payload)?;
    let Some(s) = current.filter(|s| s.exists()) else {
        return Err(Rejected {
            error: not_found(name),
            token,
        });
    };
    let tombstone = Shadow {
        version: s.version,
        updated_at: now,
        deleted_at: Some(now),
        ..Shadow::default()
    };
    let mut doc = json!({"version": s.version, "timestamp": now});
    with_token(&mut doc, token.as_deref());
    Ok((tombstone, doc))
}

fn not_found(name: &str) -> ShadowError {
    ShadowError::new(404, format!("No shadow exists with name: '{name}'"))
}

/// A request payload as a JSON object.
fn parse(payload: &[u8]) -> Result<Object, ShadowError> {
    let text = std::str::from_utf8(payload).map_err(|_| {
        ShadowError::new(
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        )
    })?;
    match serde_json::from_str(text) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ShadowError::bad("Invalid JSON")),
    }
}

fn token(request: &Object) -> Result<Option<String>, ShadowError> {
    match request.get("clientToken") {
        None => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_TOKEN_BYTES => Ok(Some(t.clone())),
        Some(_) => Err(ShadowError::bad("Invalid clientToken")),
    }
}

/// The token of a get or delete request: its payload may be empty, `{}` or `{"clientToken"}`.
fn request_token(payload: &[u8]) -> Result<Option<String>, Rejected> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let o = parse(payload).map_err(|error| Rejected { error, token: None })?;
    token(&o).map_err(|error| Rejected { error, token: None })
}

fn patches(request: &Object) -> Result<(Patch<'_>, Patch<'_>), ShadowError> {
    let state = match request.get("state") {
        None => return Err(ShadowError::bad("Missing required node: state")),
        Some(Value::Null) => return Ok((Patch::Clear, Patch::Clear)),
        Some(Value::Object(s)) => s,
        Some(_) => return Err(ShadowError::bad("State node must be an object")),
    };
    if state
        .keys()
        .any(|k| !matches!(k.as_str(), "desired" | "reported" | "delta"))
    {
        return Err(ShadowError::bad("State contains an invalid node"));
    }
    let section = |key: &str, what: &str| match state.get(key) {
        None => Ok(Patch::Absent),
        Some(Value::Null) => Ok(Patch::Clear),
        Some(Value::Object(o)) => Ok(Patch::Merge(o)),
        Some(_) => Err(ShadowError::bad(&format!("{what} node must be an object"))),
    };
    Ok((
        section("desired", "Desired")?,
        section("reported", "Reported")?,
    ))
}

/// How to put a section back as it was before [`apply`].
enum Undo {
    /// Nothing changed.
    None,
    /// The section and its metadata, as they were (a `null` cleared them).
    Whole(Option<Object>, Option<Object>),
    /// The top-level keys the merge touched, with their values and metadata before (`None`:
    /// absent). A merge changes nothing else.
    Keys(Vec<(String, Option<Value>, Option<Value>)>),
}

impl Undo {
    fn undo(self, section: &mut Option<Object>, meta: &mut Option<Object>) {
        match self {
            Undo::None => {}
            Undo::Whole(s, m) => {
                *section = s;
                *meta = m;
            }
            Undo::Keys(keys) => {
                let mut s = section.take().unwrap_or_default();
                let mut m = meta.take().unwrap_or_default();
                for (k, v, vm) in keys {
                    match v {
                        Some(v) => s.insert(k.clone(), v),
                        None => s.remove(&k),
                    };
                    match vm {
                        Some(vm) => m.insert(k, vm),
                        None => m.remove(&k),
                    };
                }
                if !s.is_empty() {
                    *section = Some(s);
                    *meta = Some(m);
                }
            }
        }
    }
}

/// Applies a section's patch; keeps what it replaces if `keep`.
fn apply(
    section: &mut Option<Object>,
    meta: &mut Option<Object>,
    patch: &Patch<'_>,
    now: u64,
    keep: bool,
) -> Undo {
    match patch {
        Patch::Absent => Undo::None,
        Patch::Clear => Undo::Whole(section.take(), meta.take()),
        Patch::Merge(p) => {
            let mut s = section.take().unwrap_or_default();
            let mut m = meta.take().unwrap_or_default();
            let undo = if keep {
                let keys = p.keys();
                Undo::Keys(
                    keys.map(|k| (k.clone(), s.get(k).cloned(), m.get(k).cloned()))
                        .collect(),
                )
            } else {
                Undo::None
            };
            merge::merge(&mut s, &mut m, p, now);
            if !s.is_empty() {
                *section = Some(s);
                *meta = Some(m);
            }
            undo
        }
    }
}

fn with_token(doc: &mut Value, token: Option<&str>) {
    if let (Some(t), Value::Object(m)) = (token, doc) {
        m.insert("clientToken".into(), json!(t));
    }
}

#[cfg(test)]
mod tests;
