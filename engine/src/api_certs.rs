//! The certificate registry over REST (docs/architecture.md, "Certificates"):
//!
//! - `GET /api/v1/certificates?device=&status=`: the certificates, newest first.
//! - `GET /api/v1/certificates/{id}`: one, by its SHA-256 fingerprint (64 hex digits).
//! - `POST /api/v1/certificates/{id}/revoke`: refused from then on, live connections with it
//!   ended; answered once the revocation is durable.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mast_devices::certs::registry::{CertRecord, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::certs::{Certificates, Filter};
use crate::http::{Api, json_response};
use crate::registry::rfc3339;

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
        let c = certs(&api)?;
        let rec = match tokio::task::spawn_blocking(move || c.revoke(&id)).await {
            Ok(r) => r.map_err(ApiError::from)?,
            Err(e) => return Err(ApiError::internal(format!("revocation failed: {e}"))),
        };
        Ok(json_response(StatusCode::OK, record_json(&rec).to_string()))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}
