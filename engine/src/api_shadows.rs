//! Shadows over REST: `GET/POST/DELETE /api/v1/devices/{id}/shadow[?name=]`. The same
//! documents, versions and error codes as the MQTT topics, through the same rules on the shadow
//! service's thread ([`crate::shadows::ShadowHandle`]): an operator's update may set `desired`
//! only (a device's `reported` comes from the device), and the answer comes once the change is
//! durable. An accepted change is also published on the MQTT reply topics, so the device gets
//! its delta. Errors are `{"error", "code"}` with the AWS code as the HTTP status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mast_devices::shadow::topic::Op as ShadowOp;
use mast_devices::shadow::{Rejected, Source};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::http::Api;

#[derive(Debug, Deserialize)]
pub(crate) struct ShadowParams {
    /// A named shadow; absent for the classic one.
    name: Option<String>,
}

pub(crate) async fn get_shadow(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<ShadowParams>,
) -> Response {
    run(&api, &id, p, ShadowOp::Get, Vec::new()).await
}

pub(crate) async fn update_shadow(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<ShadowParams>,
    body: Bytes,
) -> Response {
    run(&api, &id, p, ShadowOp::Update, body.to_vec()).await
}

pub(crate) async fn delete_shadow(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(p): Query<ShadowParams>,
) -> Response {
    run(&api, &id, p, ShadowOp::Delete, Vec::new()).await
}

async fn run(api: &Api, id: &str, p: ShadowParams, op: ShadowOp, payload: Vec<u8>) -> Response {
    let Some(shadows) = &api.shadows else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the shadow service is not running",
        )
        .into_response();
    };
    match shadows
        .request(id, p.name.as_deref(), op, payload, Source::Operator)
        .await
    {
        Ok(doc) => axum::Json(doc).into_response(),
        Err(r) => rejected(&r).into_response(),
    }
}

/// The AWS error as an API error: its code as the status, a stable name as the code.
fn rejected(r: &Rejected) -> ApiError {
    let (status, code) = match r.error.code {
        400 => (StatusCode::BAD_REQUEST, "bad_request"),
        401 => (StatusCode::UNAUTHORIZED, "unauthorized"),
        403 => (StatusCode::FORBIDDEN, "forbidden"),
        404 => (StatusCode::NOT_FOUND, "not_found"),
        409 => (StatusCode::CONFLICT, "version_conflict"),
        413 => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        415 => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError::new(status, code, r.error.message.clone())
}
