//! The firmware registry over REST (docs/architecture.md, "Firmware"):
//!
//! - `POST /api/v1/firmware?name=&version=&kind=&device_type=&hardware_revision=&signature=&key_id=&release_notes=`:
//!   the artifact's bytes as the body, streamed to disk with its SHA-256 computed on the way
//!   (413 past `ota.max_artifact_bytes`, nothing kept); 201 with the record (`id`, `sha256`,
//!   `size`, …); 422 for a signature that does not verify; 409 for a name and version that exist.
//! - `GET /api/v1/firmware`, `GET /api/v1/firmware/{id}`, `DELETE /api/v1/firmware/{id}` (soft;
//!   409 while a job in progress uses it).
//! - `GET /api/v1/firmware/{id}/artifact`: the bytes, with `Range` (one range: 206) and
//!   `If-Range` (the ETag, `"{sha256}"`), `Accept-Ranges: bytes`.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mast_devices::ota::firmware::{Firmware, Upload};
use serde_json::{Value, json};

use crate::api_error::{ApiError, blocking};
use crate::firmware::{FirmwareRegistry, Unsatisfiable, WriteError, byte_range};
use crate::http::{Api, json_response};
use crate::registry::rfc3339;

/// Bytes read from disk per chunk of a download.
const CHUNK: usize = 256 * 1024;

fn registry(api: &Api) -> Result<Arc<FirmwareRegistry>, ApiError> {
    api.firmware.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the firmware registry is not running",
        )
    })
}

pub(crate) fn firmware_json(f: &Firmware) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "version": f.version,
        "kind": f.kind.as_str(),
        "device_type": f.device_type,
        "hardware_revision": f.hardware_revision,
        "size": f.size,
        "sha256": f.sha256,
        "signature": f.signature.as_ref().map(|s| json!({
            "alg": s.alg.as_str(), "key_id": s.key_id, "value": s.value,
        })),
        "release_notes": f.release_notes,
        "created_at": rfc3339(f.created_at),
        "deleted_at": f.deleted_at.map(rfc3339),
    })
}

pub(crate) async fn upload(
    State(api): State<Arc<Api>>,
    params: Result<Query<Upload>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let r = async {
        let Query(up) = params.map_err(|e| {
            ApiError::bad_request(format!(
                "{e}; the parameters are name, version, kind, device_type, hardware_revision, \
                 signature, key_id, release_notes"
            ))
        })?;
        up.check()?;
        let reg = registry(&api)?;
        // The bytes go to a blocking thread that writes and hashes them as they come.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let limit = reg.limit;
        let writer = reg
            .artifacts
            .writer(limit)
            .map_err(|e| ApiError::internal(format!("storing the artifact: {e}")))?;
        let task = tokio::task::spawn_blocking(move || {
            let mut w = writer;
            while let Some(chunk) = rx.blocking_recv() {
                w.write(&chunk)?;
            }
            w.finish()
        });
        let mut stream = body.into_data_stream();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if tx.send(c).await.is_err() {
                        break; // the writer stopped: its error says why
                    }
                }
                Err(e) => {
                    failed = Some(ApiError::bad_request(format!("reading the body: {e}")));
                    break;
                }
            }
        }
        drop(tx);
        let stored = match task.await {
            Ok(Ok(s)) if failed.is_none() => s,
            Ok(Ok(_)) => return Err(failed.unwrap_or_else(|| ApiError::internal("upload"))),
            Ok(Err(WriteError::TooLarge { limit })) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the artifact is larger than {limit} bytes (ota.max_artifact_bytes)"),
                ));
            }
            Ok(Err(WriteError::Io(e))) => {
                return Err(ApiError::internal(format!("storing the artifact: {e}")));
            }
            Err(e) => return Err(ApiError::internal(format!("upload task failed: {e}"))),
        };
        let f = blocking("firmware", move || reg.create(&up, &stored)).await?;
        tracing::info!(id = %f.id, name = %f.name, version = %f.version, size = f.size, "firmware uploaded");
        Ok(json_response(StatusCode::CREATED, firmware_json(&f).to_string()))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn list(State(api): State<Arc<Api>>) -> Response {
    let r = async {
        let reg = registry(&api)?;
        let all = blocking("firmware", move || reg.list()).await?;
        let list: Vec<Value> = all.iter().map(firmware_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "firmware": list }).to_string(),
        ))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn find(api: &Api, id: String) -> Result<Firmware, ApiError> {
    let reg = registry(api)?;
    let shown = id.clone();
    blocking("firmware", move || reg.get(&id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no firmware {shown:?}")))
}

pub(crate) async fn get(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async {
        let f = find(&api, id).await?;
        Ok(json_response(StatusCode::OK, firmware_json(&f).to_string()))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn delete(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async {
        let reg = registry(&api)?;
        let using = crate::api_jobs::jobs_using(&api, &id).await?;
        if !using.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("firmware {id} is used by jobs in progress: {using:?}; cancel them first"),
            ));
        }
        blocking("firmware", move || reg.delete(&id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

pub(crate) async fn artifact(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let f = find(&api, id).await?;
        if f.deleted_at.is_some() {
            return Err(ApiError::new(
                StatusCode::GONE,
                "gone",
                format!("firmware {} was deleted", f.id),
            ));
        }
        let etag = format!("\"{}\"", f.sha256);
        let text = |h| headers.get(h).and_then(|v| v.to_str().ok());
        // If-Range: the range only if the client's copy is this artifact.
        let range_header = match text(header::IF_RANGE) {
            Some(tag) if tag.trim() != etag => None,
            _ => text(header::RANGE),
        };
        let range = match byte_range(range_header, f.size) {
            Ok(r) => r,
            Err(Unsatisfiable) => {
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the artifact has {} bytes", f.size),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", f.size)) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        };
        let (first, last) = range.unwrap_or((0, f.size.saturating_sub(1)));
        let len = if f.size == 0 { 0 } else { last - first + 1 };
        let path = registry(&api)?.artifacts.path(&f.sha256);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("the artifact is not readable: {e}")))?;
        file.seek(SeekFrom::Start(first))
            .map_err(|e| ApiError::internal(format!("reading the artifact: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        tokio::task::spawn_blocking(move || {
            let mut left = len;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                match file.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        left -= n as u64;
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let mut resp = Response::new(Body::from_stream(stream));
        *resp.status_mut() = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            h.insert(header::CONTENT_LENGTH, v);
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        if range.is_some()
            && let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{}", f.size))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        Ok(resp)
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}
