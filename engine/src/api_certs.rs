//! The certificate registry over REST (docs/architecture.md, "Certificates"):
//!
//! - `GET /api/v1/certificates?device=&status=`: the certificates, newest first.
//! - `GET /api/v1/certificates/{id}`: one, by its SHA-256 fingerprint (64 hex digits).
//! - `POST /api/v1/certificates/{id}/revoke`: refused from then on, live connections with it
//!   ended; answered once the revocation is durable.
//! - `GET/POST /api/v1/cas`, `GET/PATCH/DELETE /api/v1/cas/{id}`: CAs enrolled for
//!   just-in-time registration (`{"certificate": PEM, "device_id"?: rule, "enrolment"?:
//!   "enabled"|"disabled"}`).
//! - `GET /api/v1/provisioning/templates`, `GET/PUT/DELETE /api/v1/provisioning/templates/{name}`:
//!   fleet provisioning templates (those of the config file are shown, not changed).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mast_devices::certs::registry::{CertRecord, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_devices::body_json;
use crate::api_error::ApiError;
use crate::certs::{Certificates, Filter};
use crate::http::{Api, json_response};
use crate::provisioning::{Origin, Templates};
use crate::registry::rfc3339;
use mast_devices::certs::enrolled::{Change, Enrol, EnrolledCa};
use mast_devices::certs::provision::Template;

/// A record as the API shows it (times RFC 3339).
pub(crate) fn record_json(r: &CertRecord) -> Value {
    json!({
        "id": r.id,
        "device_id": r.device_id,
        "template": r.template,
        "status": r.status.as_str(),
        "made": r.made.as_str(),
        "serial": r.serial,
        "common_name": r.common_name,
        "issuer": r.issuer,
        "not_before": rfc3339(r.not_before),
        "not_after": rfc3339(r.not_after),
        "created_at": rfc3339(r.created_at),
        "last_used_at": r.last_used_at.map(rfc3339),
        "revoked_at": r.revoked_at.map(rfc3339),
        "replaces": r.replaces,
        "replaced_by": r.replaced_by,
        "ca_id": r.ca,
    })
}

fn certs(api: &Api) -> Result<Arc<Certificates>, ApiError> {
    api.certs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the certificate registry is not running",
        )
    })
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a certificate id (its SHA-256 fingerprint, 64 hex digits)"
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    device: Option<String>,
    status: Option<String>,
}

pub(crate) async fn list(
    State(api): State<Arc<Api>>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| {
        let Query(p) = params.map_err(|e| {
            ApiError::bad_request(format!("{e}; the parameters are device and status"))
        })?;
        let status = match p.status.as_deref() {
            None => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status {s:?} is not one of PENDING_ACTIVATION, ACTIVE, INACTIVE, REVOKED"
                ))
            })?),
        };
        let filter = Filter {
            device: p.device,
            status,
        };
        let list: Vec<Value> = certs(&api)?.list(&filter).iter().map(record_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "certificates": list }).to_string(),
        ))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn get(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = (|| {
        check_id(&id)?;
        let rec = certs(&api)?
            .get(&id)
            .ok_or_else(|| ApiError::not_found(format!("no certificate {id}")))?;
        Ok(json_response(StatusCode::OK, record_json(&rec).to_string()))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn revoke(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async {
        check_id(&id)?;
        let rec = blocking(&api, move |c| c.revoke(&id)).await?;
        Ok(json_response(StatusCode::OK, record_json(&rec).to_string()))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

fn templates(api: &Api) -> Result<Arc<Templates>, ApiError> {
    api.templates.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "fleet provisioning is not running",
        )
    })
}

fn template_json(name: &str, t: &Template, origin: Origin) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    v["name"] = Value::from(name);
    v["origin"] = Value::from(origin.as_str());
    v["updated_at"] = match origin {
        Origin::Api => Value::from(rfc3339(t.updated_at)),
        Origin::Config => Value::Null,
    };
    v
}

pub(crate) async fn list_templates(State(api): State<Arc<Api>>) -> Response {
    let r = (|| {
        let list: Vec<Value> = templates(&api)?
            .list()
            .iter()
            .map(|(n, t, o)| template_json(n, t, *o))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "templates": list }).to_string(),
        ))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn get_template(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Response {
    let r = (|| {
        let (t, o) = templates(&api)?
            .get(&name)
            .ok_or_else(|| ApiError::not_found(format!("no provisioning template {name:?}")))?;
        Ok(json_response(
            StatusCode::OK,
            template_json(&name, &t, o).to_string(),
        ))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn put_template(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        let t = Template::parse(&body)?;
        let ts = templates(&api)?;
        let n = name.clone();
        let created = crate::api_error::blocking("template", move || ts.put(&n, t)).await?;
        let (t, o) = templates(&api)?
            .get(&name)
            .ok_or_else(|| ApiError::internal("the template vanished"))?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            template_json(&name, &t, o).to_string(),
        ))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn delete_template(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Response {
    let r = async {
        let ts = templates(&api)?;
        crate::api_error::blocking("template", move || ts.delete(&name)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

fn ca_json(c: &EnrolledCa) -> Value {
    json!({
        "id": c.id,
        "common_name": c.common_name,
        "enrolment": c.enrolment.as_str(),
        "device_id": c.device_id,
        "not_after": rfc3339(c.not_after),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
        "certificate": c.certificate_pem,
    })
}

/// Runs a blocking registry call.
async fn blocking<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&Certificates) -> Result<T, mast_devices::profile::RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    let c = certs(api)?;
    crate::api_error::blocking("certificate", move || f(&c)).await
}

pub(crate) async fn list_cas(State(api): State<Arc<Api>>) -> Response {
    let r = (|| {
        let list: Vec<Value> = certs(&api)?.cas().iter().map(ca_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "cas": list }).to_string(),
        ))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn enrol_ca(State(api): State<Arc<Api>>, b: Bytes) -> Response {
    let r = async {
        let req: Enrol = body_json(&b, r#"{"certificate": PEM, "device_id"?, "enrolment"?}"#)?;
        let rec = blocking(&api, move |c| c.enrol(&req)).await?;
        Ok(json_response(
            StatusCode::CREATED,
            ca_json(&rec).to_string(),
        ))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn get_ca(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = (|| {
        check_id(&id)?;
        let rec = certs(&api)?
            .enrolled_ca(&id)
            .ok_or_else(|| ApiError::not_found(format!("no enrolled CA {id}")))?;
        Ok(json_response(StatusCode::OK, ca_json(&rec).to_string()))
    })();
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn patch_ca(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    b: Bytes,
) -> Response {
    let r = async {
        check_id(&id)?;
        let change: Change =
            body_json(&b, r#"{"device_id"?, "enrolment"?: "enabled"|"disabled"}"#)?;
        let rec = blocking(&api, move |c| c.change_ca(&id, &change)).await?;
        Ok(json_response(StatusCode::OK, ca_json(&rec).to_string()))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn delete_ca(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async {
        check_id(&id)?;
        blocking(&api, move |c| c.remove_ca(&id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}
