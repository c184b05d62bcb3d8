//! The device registry over REST (docs/architecture.md, "Device registry"):
//!
//! - `GET/PUT/PATCH/DELETE /api/v1/devices/{id}`: a device; `PUT` replaces its profile (201
//!   when it creates the device), `PATCH` is a JSON merge patch of it, `DELETE` removes the
//!   device and its shadows (refused with 409 while it is connected).
//! - `GET /api/v1/devices?group=&type=&limit=&after=`: a page in id order, `next` for the one
//!   after.
//! - `GET /api/v1/groups`, `GET/PUT/DELETE /api/v1/groups/{name}`: static groups (members
//!   listed) and dynamic ones (`where`: a SQL predicate over `iot.devices`);
//!   `PUT/DELETE /api/v1/groups/{name}/devices/{id}`: one static membership.
//! - `POST /api/v1/shadows/desired`: one partial desired document for many devices (a list, a
//!   group, a predicate), applied per device by the shadow rules, as `Source::Fleet`.
//!
//! Registry calls block (metadata reads, waits for commits) and run on blocking threads.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mast_devices::profile::{
    self, DeviceProfile, Group, GroupBody, Patch, RegistryError, Replace, check_device_id,
    check_group_name,
};
use mast_devices::shadow::Source;
use mast_devices::shadow::topic::{self, Op as ShadowOp};
use mast_meta::Op;
use mast_meta::tables::{DEVICE_PROFILES, DEVICES, SHADOWS};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::http::{Api, json_response};
use crate::registry::{Device, Registry, rfc3339};

/// Devices in one page, at most.
const MAX_PAGE: usize = 1000;
/// Devices one fleet-wide desired change may target.
const MAX_FLEET_TARGETS: usize = 100_000;
/// Fleet-wide changes in flight to the shadow service at once.
const FLEET_CONCURRENCY: usize = 256;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code, e.message)
    }
}

fn ok(status: StatusCode, v: &Value) -> Response {
    json_response(status, v.to_string())
}

fn registry(api: &Api) -> Result<Arc<Registry>, ApiError> {
    api.registry.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the device registry is not running",
        )
    })
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let reg = registry(api)?;
    crate::api_error::blocking("registry", move || f(&reg)).await
}

pub(crate) fn body_json<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    let bad = |e: String| ApiError::bad_request(format!("the body must be {shape}: {e}"));
    // An object only: serde would also read a struct from an array of its fields.
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

fn into_response(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Checks that `predicate` is one SQL expression over `iot.devices` that runs, and returns
/// it as SQL text to embed in `WHERE (...)`.
pub(crate) async fn check_predicate(api: &Api, predicate: &str) -> Result<String, ApiError> {
    let text = parse_predicate(predicate)?;
    ids_where(api, &text, None, Some(0)).await?;
    Ok(text)
}

/// `predicate` as one SQL expression, printed back (so nothing can follow it).
pub(crate) fn parse_predicate(predicate: &str) -> Result<String, ApiError> {
    use mast_query::datafusion::sql::sqlparser::dialect::GenericDialect;
    use mast_query::datafusion::sql::sqlparser::parser::Parser;
    use mast_query::datafusion::sql::sqlparser::tokenizer::Token;
    let bad = |e: String| ApiError::bad_request(format!("where: {e}"));
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(predicate)
        .map_err(|e| bad(e.to_string()))?;
    let expr = parser.parse_expr().map_err(|e| bad(e.to_string()))?;
    if parser.peek_token().token != Token::EOF {
        return Err(bad(
            "one SQL predicate over iot.devices, with nothing after it".into(),
        ));
    }
    Ok(expr.to_string())
}

/// The ids of the devices of `iot.devices` that `predicate` holds for (and that are `id`,
/// when given), in id order.
pub(crate) async fn ids_where(
    api: &Api,
    predicate: &str,
    id: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<String>, ApiError> {
    let mut sql = format!("SELECT device_id FROM iot.devices WHERE ({predicate})");
    if let Some(id) = id {
        sql.push_str(&format!(" AND device_id = {}", quote(id)));
    }
    sql.push_str(" ORDER BY device_id");
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    let where_error = |e: &mast_query::QueryError| {
        let mut a = ApiError::from(e);
        a.message = format!("where: {}", a.message);
        a
    };
    let mut stream = api.engine.run(&sql).await.map_err(|e| where_error(&e))?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| where_error(&e))?;
        let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(s) = col.as_any().downcast_ref::<arrow::array::StringArray>() {
            out.extend(s.iter().flatten().map(str::to_owned));
        }
    }
    Ok(out)
}

/// The members of group `name` (which exists), in id order.
pub(crate) async fn members(api: &Api, name: &str, group: &Group) -> Result<Vec<String>, ApiError> {
    match &group.predicate {
        Some(p) => ids_where(api, p, None, None).await,
        None => {
            let name = name.to_owned();
            blocking(api, move |reg| {
                Ok(reg
                    .all(false)?
                    .into_iter()
                    .filter(|d| d.profile.as_ref().is_some_and(|p| p.in_group(&name)))
                    .map(|d| d.id)
                    .collect())
            })
            .await
        }
    }
}

/// A device as the API shows it, with the dynamic groups it is in.
async fn device_json(api: &Api, d: &Device) -> Result<Value, ApiError> {
    let groups = blocking(api, Registry::groups).await?;
    let mut dynamic = Vec::new();
    for (name, g) in groups {
        if let Some(p) = &g.predicate {
            // A group whose predicate no longer runs (a column renamed) is not a member.
            if ids_where(api, p, Some(&d.id), None)
                .await
                .is_ok_and(|ids| !ids.is_empty())
            {
                dynamic.push(name);
            }
        }
    }
    let mut v = d.json();
    v["dynamic_groups"] = json!(dynamic);
    Ok(v)
}

async fn find(api: &Api, id: &str) -> Result<Device, ApiError> {
    let key = id.to_owned();
    blocking(api, move |reg| reg.device(&key, true))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))
}

/// Checks that every static group named exists and is static.
fn check_groups(reg: &Registry, groups: &[String]) -> Result<(), RegistryError> {
    for g in groups {
        match reg.group(g)? {
            None => {
                return Err(RegistryError::not_found(format!(
                    "no group {g:?} (create it with PUT /api/v1/groups/{g})"
                )));
            }
            Some(x) if x.is_dynamic() => {
                return Err(RegistryError::conflict(format!(
                    "group {g:?} is dynamic: its members are those its predicate holds for"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub(crate) async fn get_device(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    into_response(
        async {
            let d = find(&api, &id).await?;
            Ok(ok(StatusCode::OK, &device_json(&api, &d).await?))
        }
        .await,
    )
}

/// Writes the profile `make` builds from the stored one; 201 when that creates the device.
async fn write_profile(
    api: &Api,
    id: String,
    make: impl FnOnce(Option<DeviceProfile>, i64) -> Result<DeviceProfile, RegistryError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    check_device_id(&id)?;
    let key = id.clone();
    let created = blocking(api, move |reg| {
        reg.change(|reg| {
            let old = reg.profile(&key)?;
            let existed = old.is_some() || reg.device(&key, false)?.is_some();
            let new = make(old, mast_broker::message::now_ns())?;
            check_groups(reg, &new.groups)?;
            Ok((vec![new.put(&key)], !existed))
        })
    })
    .await?;
    let d = find(api, &id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ok(status, &device_json(api, &d).await?))
}

pub(crate) async fn put_device(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    into_response(
        async {
            let body: Replace = body_json(
                &body,
                r#"{"device_type"?, "hardware_revision"?, "tags"?: {...}, "groups"?: [...]}"#,
            )?;
            write_profile(&api, id, move |old, now| body.apply(old.as_ref(), now)).await
        }
        .await,
    )
}

pub(crate) async fn patch_device(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    into_response(
        async {
            let patch: Patch = body_json(
                &body,
                r#"a JSON merge patch of {"device_type", "hardware_revision", "tags", "groups"}"#,
            )?;
            write_profile(&api, id, move |old, now| patch.apply(old, now)).await
        }
        .await,
    )
}

pub(crate) async fn delete_device(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    into_response(
        async {
            let d = find(&api, &id).await?;
            if d.connected() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("device {id:?} is connected; it would be created again at once"),
                ));
            }
            // Its shadows first, by the shadow rules (each leaves a tombstone and a history row).
            let key = id.clone();
            let names = blocking(&api, move |reg| {
                let rows = reg
                    .meta()
                    .scan_prefix(SHADOWS, &topic::key(&key, ""))
                    .map_err(|e| RegistryError::internal(e.to_string()))?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let (_, name) = topic::split_key(&k)?;
                        crate::shadows::decode_or_report(reg.meta(), &k, &v)
                            .is_some_and(|s| s.exists())
                            .then(|| name.to_owned())
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
            if let Some(shadows) = &api.shadows {
                for name in names {
                    let named = (!name.is_empty()).then_some(name.as_str());
                    if let Err(r) = shadows
                        .request(&id, named, ShadowOp::Delete, Vec::new(), Source::Operator)
                        .await
                        && r.error.code != 404
                    {
                        return Err(ApiError::internal(format!(
                            "deleting shadow {name:?} of {id:?}: {}",
                            r.error.message
                        )));
                    }
                }
            }
            let key = id.clone();
            blocking(&api, move |reg| {
                reg.change(|_| {
                    let k = key.as_bytes().to_vec();
                    let ops = vec![
                        Op::Del {
                            table: DEVICES,
                            key: k.clone(),
                        },
                        Op::Del {
                            table: DEVICE_PROFILES,
                            key: k,
                        },
                    ];
                    Ok((ops, ()))
                })
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    group: Option<String>,
    #[serde(rename = "type")]
    device_type: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

pub(crate) async fn list_devices(
    State(api): State<Arc<Api>>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    into_response(
        async {
            let Query(p) = params.map_err(|e| {
                ApiError::bad_request(format!(
                    "{e}; the parameters are group, type, limit (1 to {MAX_PAGE}) and after"
                ))
            })?;
            let limit = p.limit.unwrap_or(100);
            if !(1..=MAX_PAGE).contains(&limit) {
                return Err(ApiError::bad_request(format!("limit is 1 to {MAX_PAGE}")));
            }
            // A dynamic group's members come from SQL; a static group's from the profiles.
            let mut only: Option<BTreeSet<String>> = None;
            let mut static_group = None;
            if let Some(g) = &p.group {
                let name = g.clone();
                let group = blocking(&api, move |reg| reg.group(&name))
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("no group {g:?}")))?;
                match &group.predicate {
                    Some(pred) => {
                        only = Some(
                            ids_where(&api, pred, None, None)
                                .await?
                                .into_iter()
                                .collect(),
                        )
                    }
                    None => static_group = Some(g.clone()),
                }
            }
            let device_type = p.device_type.clone();
            let after = p.after.clone();
            let (devices, next) = blocking(&api, move |reg| {
                reg.page(after.as_deref(), limit, |d| {
                    only.as_ref().is_none_or(|o| o.contains(&d.id))
                        && static_group
                            .as_ref()
                            .is_none_or(|g| d.profile.as_ref().is_some_and(|p| p.in_group(g)))
                        && device_type
                            .as_ref()
                            .is_none_or(|t| d.device_type() == Some(t.as_str()))
                })
            })
            .await?;
            let list: Vec<Value> = devices.iter().map(Device::json).collect();
            Ok(ok(
                StatusCode::OK,
                &json!({ "devices": list, "next": next }),
            ))
        }
        .await,
    )
}

fn group_json(name: &str, g: &Group, members: Option<usize>) -> Value {
    let mut v = json!({
        "name": name,
        "kind": if g.is_dynamic() { "dynamic" } else { "static" },
        "description": g.description,
        "where": g.predicate,
        "created_at": rfc3339(g.created_at),
    });
    if let Some(n) = members {
        v["device_count"] = json!(n);
    }
    v
}

pub(crate) async fn list_groups(State(api): State<Arc<Api>>) -> Response {
    into_response(
        async {
            let groups = blocking(&api, Registry::groups).await?;
            let list: Vec<Value> = groups.iter().map(|(n, g)| group_json(n, g, None)).collect();
            Ok(ok(StatusCode::OK, &json!({ "groups": list })))
        }
        .await,
    )
}

async fn find_group(api: &Api, name: &str) -> Result<Group, ApiError> {
    let key = name.to_owned();
    blocking(api, move |reg| reg.group(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {name:?}")))
}

pub(crate) async fn get_group(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    into_response(
        async {
            let g = find_group(&api, &name).await?;
            let n = members(&api, &name, &g).await?.len();
            Ok(ok(StatusCode::OK, &group_json(&name, &g, Some(n))))
        }
        .await,
    )
}

pub(crate) async fn put_group(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    into_response(async {
        check_group_name(&name)?;
        let mut body: GroupBody = body_json(
            &body,
            r#"{"description"?, "where"?: "SQL predicate over iot.devices"} or {"description"?, "devices"?: [...]}"#,
        )?;
        if let Some(p) = &body.predicate {
            body.predicate = Some(check_predicate(&api, p).await?);
        }
        let key = name.clone();
        let created = blocking(&api, move |reg| {
            reg.change(|reg| {
                let old = reg.group(&key)?;
                let group = body.group(old.as_ref(), mast_broker::message::now_ns())?;
                let mut ops = vec![group.put(&key)];
                if let Some(list) = &body.devices {
                    ops.extend(set_members(reg, &key, list)?);
                }
                Ok((ops, old.is_none()))
            })
        })
        .await?;
        let g = find_group(&api, &name).await?;
        let n = members(&api, &name, &g).await?.len();
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(ok(status, &group_json(&name, &g, Some(n))))
    }
    .await)
}

/// The profile writes that make `list` exactly the members of static group `name`.
fn set_members(reg: &Registry, name: &str, list: &[String]) -> Result<Vec<Op>, RegistryError> {
    let wanted: BTreeSet<&str> = list.iter().map(String::as_str).collect();
    let mut ops = Vec::new();
    let mut seen = BTreeSet::new();
    let now = mast_broker::message::now_ns();
    for d in reg.all(false)? {
        let member = wanted.contains(d.id.as_str());
        if member {
            seen.insert(d.id.clone());
        }
        let mut p = d.profile_or_created(now);
        if profile::set_member(&mut p, name, member)? {
            ops.push(p.put(&d.id));
        }
    }
    let unknown: Vec<&&str> = wanted.iter().filter(|w| !seen.contains(**w)).collect();
    if !unknown.is_empty() {
        return Err(RegistryError::not_found(format!(
            "no such devices: {unknown:?}"
        )));
    }
    Ok(ops)
}

pub(crate) async fn delete_group(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Response {
    into_response(
        async {
            find_group(&api, &name).await?;
            blocking(&api, move |reg| {
                reg.change(|reg| {
                    let mut ops = match reg.group(&name)? {
                        Some(g) if !g.is_dynamic() => set_members(reg, &name, &[])?,
                        _ => Vec::new(),
                    };
                    ops.push(Op::Del {
                        table: mast_meta::tables::DEVICE_GROUPS,
                        key: name.into_bytes(),
                    });
                    Ok((ops, ()))
                })
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn membership(api: &Api, name: String, id: String, member: bool) -> Result<(), ApiError> {
    blocking(api, move |reg| {
        reg.change(|reg| {
            check_groups(reg, std::slice::from_ref(&name))?;
            let d = reg
                .device(&id, false)?
                .ok_or_else(|| RegistryError::not_found(format!("no device {id:?}")))?;
            let mut p = d.profile_or_created(mast_broker::message::now_ns());
            let changed = profile::set_member(&mut p, &name, member)?;
            Ok((
                if changed {
                    vec![p.put(&id)]
                } else {
                    Vec::new()
                },
                (),
            ))
        })
    })
    .await
}

pub(crate) async fn add_member(
    State(api): State<Arc<Api>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    into_response(
        async {
            membership(&api, name, id.clone(), true).await?;
            let d = find(&api, &id).await?;
            Ok(ok(StatusCode::OK, &device_json(&api, &d).await?))
        }
        .await,
    )
}

pub(crate) async fn remove_member(
    State(api): State<Arc<Api>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    into_response(
        async {
            membership(&api, name, id, false).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// The body of `POST /api/v1/shadows/desired`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetDesired {
    devices: Option<Vec<String>>,
    group: Option<String>,
    #[serde(rename = "where")]
    predicate: Option<String>,
    /// A named shadow; the classic one when absent.
    shadow: Option<String>,
    desired: Value,
    #[serde(rename = "clientToken")]
    client_token: Option<String>,
}

pub(crate) async fn fleet_desired(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    into_response(async {
        let b: FleetDesired = body_json(
            &body,
            r#"{"devices"?: [...], "group"?: "name", "where"?: "SQL predicate over iot.devices", "shadow"?: "name", "desired": {...}}"#,
        )?;
        if !b.desired.is_object() {
            return Err(ApiError::bad_request("desired must be a JSON object"));
        }
        if b.devices.is_none() && b.group.is_none() && b.predicate.is_none() {
            return Err(ApiError::bad_request(
                "name the targets: devices, group or where (any of them; their union is targeted)",
            ));
        }
        let Some(shadows) = api.shadows.clone() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the shadow service is not running",
            ));
        };
        let mut targets: BTreeSet<String> = BTreeSet::new();
        let mut unknown: Vec<String> = Vec::new();
        if let Some(list) = &b.devices {
            let list = list.clone();
            let found = blocking(&api, move |reg| {
                let mut out = Vec::new();
                for id in list {
                    let known = reg.device(&id, false)?.is_some();
                    out.push((id, known));
                }
                Ok(out)
            })
            .await?;
            for (id, known) in found {
                if known {
                    targets.insert(id);
                } else {
                    unknown.push(id);
                }
            }
        }
        if let Some(g) = &b.group {
            let group = find_group(&api, g).await?;
            targets.extend(members(&api, g, &group).await?);
        }
        if let Some(p) = &b.predicate {
            let p = check_predicate(&api, p).await?;
            targets.extend(ids_where(&api, &p, None, None).await?);
        }
        if targets.len() > MAX_FLEET_TARGETS {
            return Err(ApiError::bad_request(format!(
                "{} devices targeted; at most {MAX_FLEET_TARGETS} per request",
                targets.len()
            )));
        }
        let mut doc = json!({ "state": { "desired": b.desired } });
        if let Some(t) = &b.client_token {
            doc["clientToken"] = json!(t);
        }
        let payload = doc.to_string().into_bytes();
        let shadow = b.shadow.clone();
        let results: Vec<Value> = futures::stream::iter(targets)
            .map(|id| {
                let shadows = shadows.clone();
                let payload = payload.clone();
                let shadow = shadow.clone();
                async move {
                    let r = shadows
                        .request(&id, shadow.as_deref(), ShadowOp::Update, payload, Source::Fleet)
                        .await;
                    match r {
                        Ok(doc) => json!({"device_id": id, "version": doc["version"]}),
                        Err(r) => json!({
                            "device_id": id,
                            "status": r.error.code,
                            "error": r.error.message,
                        }),
                    }
                }
            })
            .buffered(FLEET_CONCURRENCY)
            .collect()
            .await;
        let accepted = results.iter().filter(|r| r.get("version").is_some()).count();
        let mut results = results;
        results.extend(unknown.iter().map(|id| {
            json!({"device_id": id, "status": 404, "error": format!("no device {id:?}")})
        }));
        let rejected = results.len() - accepted;
        Ok(ok(
            StatusCode::OK,
            &json!({
                "targeted": results.len(),
                "accepted": accepted,
                "rejected": rejected,
                "results": results,
            }),
        ))
    }
    .await)
}
