//! The HTTP API (axum on its own tokio runtime, `http.listen`, default 127.0.0.1:8080):
//!
//! - `POST /api/v1/sql`: JSON `{"sql": "...", "format": "csv"}` or the SQL itself as the body
//!   (any other content type); `GET /api/v1/sql?q=...&format=...`. The format comes from
//!   `format`, else from `Accept`, else JSON. Results stream batch by batch.
//! - `GET /health`: liveness (never needs a token).
//! - `GET /metrics`: Prometheus text.
//!
//! Every error is `{"error": "...", "code": "..."}` with its status: 400 bad SQL or request,
//! 401 missing or wrong token, 403 a statement that would write, 404 unknown table or route,
//! 405 wrong method, 406 unknown format, 408 timeout, 413 body or query memory too large, 429
//! too many queries. An error after the first rows were sent cuts the response short (the
//! status line is gone by then), so a client sees a truncated body, never a wrong one.
//!
//! Queries run on this runtime's threads (`query.threads`), apart from the MQTT reactors and
//! shard writers, so a heavy query competes for CPU but never holds up an acknowledgement.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::api_devices;
use axum::serve::ListenerExt;
use futures::StreamExt;
use mast_query::{Encoder, Format, QueryEngine, QueryError};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::config::HttpConfig;
use crate::mqtt::Broker;

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    /// SQL.
    pub engine: QueryEngine,
    /// The broker (counters, connections).
    pub broker: Arc<Broker>,
    /// The telemetry path's counters.
    pub ingest: Arc<crate::ingest::IngestCounters>,
    /// Telemetry storage (its figures in `/metrics`).
    pub store: Arc<mast_storage::Store>,
    /// The shadow service, for `/api/v1/devices/{id}/shadow`.
    pub shadows: Option<crate::shadows::ShadowHandle>,
    /// The device registry, for `/api/v1/devices` and `/api/v1/groups`.
    pub registry: Option<Arc<crate::registry::Registry>>,
    /// The certificate registry, for `/api/v1/certificates`.
    pub certs: Option<Arc<crate::certs::Certificates>>,
    /// The firmware registry, for `/api/v1/firmware`.
    pub firmware: Option<Arc<crate::firmware::FirmwareRegistry>>,
    /// The jobs service, for `/api/v1/jobs`.
    pub jobs: Option<crate::jobs::JobsHandle>,
    /// Checks the download tokens of firmware URLs in job documents.
    pub downloads: Option<Arc<crate::jobs::DownloadUrls>>,
    /// Fleet provisioning templates, for `/api/v1/provisioning/templates`.
    pub templates: Option<Arc<crate::provisioning::Templates>>,
    tokens: Vec<String>,
    read_tokens: Vec<String>,
    max_body: usize,
}

impl Api {
    /// The API over `engine`, answering as `cfg` says.
    pub fn new(
        cfg: &HttpConfig,
        engine: QueryEngine,
        broker: Arc<Broker>,
        ingest: Arc<crate::ingest::IngestCounters>,
        store: Arc<mast_storage::Store>,
    ) -> Api {
        Api {
            engine,
            broker,
            ingest,
            store,
            shadows: None,
            registry: None,
            certs: None,
            templates: None,
            firmware: None,
            jobs: None,
            downloads: None,
            tokens: cfg.tokens.clone(),
            read_tokens: cfg.read_tokens.clone(),
            max_body: cfg.max_body_bytes,
        }
    }
}

/// A running HTTP listener.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpServer {
    /// Binds `listen` (failing at once if it is taken) and serves on a runtime of `threads`
    /// threads (and its blocking pool, where scans decode) at nice value `nice`.
    pub fn start(
        listen: SocketAddr,
        threads: usize,
        nice: i32,
        api: Api,
    ) -> anyhow::Result<HttpServer> {
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen for HTTP on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("query")
            .on_thread_start(move || crate::priority::lower_current_thread(nice))
            .enable_all()
            .build()
            .context("starting the query runtime")?;
        let listener = {
            let _guard = runtime.enter();
            // No Nagle: a streamed response ends in small writes that must not wait for the
            // client's delayed ACK (40 ms on Linux).
            tokio::net::TcpListener::from_std(std_listener)?.tap_io(|s| {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on an HTTP connection");
                }
            })
        };
        let api = Arc::new(api);
        if api.jobs.is_some() {
            runtime.spawn(crate::api_jobs::follow_continuous(Arc::clone(&api)));
        }
        let app = router(api);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tracing::info!(%addr, "HTTP listening");
        Ok(HttpServer {
            addr,
            runtime: Some(runtime),
            stop: Some(tx),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, gives running requests a moment, then drops them.
    pub fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn router(api: Arc<Api>) -> Router {
    let guarded = Router::new()
        .route("/api/v1/sql", get(sql_get).post(sql_post))
        .route("/metrics", get(metrics))
        .route("/api/v1/devices", get(api_devices::list_devices))
        .route(
            "/api/v1/devices/{id}",
            get(api_devices::get_device)
                .put(api_devices::put_device)
                .patch(api_devices::patch_device)
                .delete(api_devices::delete_device),
        )
        .route("/api/v1/groups", get(api_devices::list_groups))
        .route(
            "/api/v1/groups/{name}",
            get(api_devices::get_group)
                .put(api_devices::put_group)
                .delete(api_devices::delete_group),
        )
        .route(
            "/api/v1/groups/{name}/devices/{id}",
            put(api_devices::add_member).delete(api_devices::remove_member),
        )
        .route("/api/v1/shadows/desired", post(api_devices::fleet_desired))
        .route("/api/v1/certificates", get(crate::api_certs::list))
        .route("/api/v1/certificates/{id}", get(crate::api_certs::get))
        .route(
            "/api/v1/certificates/{id}/revoke",
            post(crate::api_certs::revoke),
        )
        .route(
            "/api/v1/firmware",
            get(crate::api_firmware::list).post(crate::api_firmware::upload),
        )
        .route(
            "/api/v1/firmware/{id}",
            get(crate::api_firmware::get).delete(crate::api_firmware::delete),
        )
        .route(
            "/api/v1/firmware/{id}/artifact",
            get(crate::api_firmware::artifact),
        )
        .route(
            "/api/v1/jobs",
            get(crate::api_jobs::list).post(crate::api_jobs::create),
        )
        .route("/api/v1/jobs/{id}", get(crate::api_jobs::get))
        .route(
            "/api/v1/jobs/{id}/executions",
            get(crate::api_jobs::executions),
        )
        .route("/api/v1/jobs/{id}/cancel", post(crate::api_jobs::cancel))
        .route("/api/v1/jobs/{id}/approve", post(crate::api_jobs::approve))
        .route(
            "/api/v1/devices/{id}/jobs",
            get(crate::api_jobs::device_jobs),
        )
        .route(
            "/api/v1/cas",
            get(crate::api_certs::list_cas).post(crate::api_certs::enrol_ca),
        )
        .route(
            "/api/v1/cas/{id}",
            get(crate::api_certs::get_ca)
                .patch(crate::api_certs::patch_ca)
                .delete(crate::api_certs::delete_ca),
        )
        .route(
            "/api/v1/provisioning/templates",
            get(crate::api_certs::list_templates),
        )
        .route(
            "/api/v1/provisioning/templates/{name}",
            get(crate::api_certs::get_template)
                .put(crate::api_certs::put_template)
                .delete(crate::api_certs::delete_template),
        )
        .route(
            "/api/v1/devices/{id}/shadow",
            get(crate::api_shadows::get_shadow)
                .post(crate::api_shadows::update_shadow)
                .delete(crate::api_shadows::delete_shadow),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            authenticate,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

fn query_error(e: &QueryError) -> Response {
    ApiError::from(e).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::method_not_allowed(format!("{method} is not allowed on {}", uri.path()))
        .into_response()
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "mqtt_connections": api.broker.counters.connections.load(std::sync::atomic::Ordering::Relaxed),
    });
    json_response(StatusCode::OK, body.to_string())
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let text = crate::metrics::render(&api.broker, &api.ingest, &api.store, &api.engine);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Checks `Authorization: Bearer <token>` when tokens are configured: an admin token
/// (`http.tokens`) may do everything; a read-only one (`http.read_tokens`) may read — `GET`,
/// and SQL, which never writes — and gets 403 on anything else.
async fn authenticate(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    // A device downloading an artifact with the URL of its job document: the token in the
    // URL alone decides (a wrong or expired one is refused even on an open server).
    if let Some(fw) = artifact_of(req.uri().path())
        && crate::jobs::DownloadUrls::has_token(req.uri().query())
        && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        let now = u64::try_from(mast_broker::message::now_ns() / 1_000_000_000).unwrap_or(0);
        let verdict = match &api.downloads {
            Some(d) => d.check(fw, req.uri().query().unwrap_or(""), now),
            None => Err("download tokens are not served here".into()),
        };
        return match verdict {
            Ok(_) => next.run(req).await,
            Err(msg) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg).into_response(),
        };
    }
    if api.tokens.is_empty() && api.read_tokens.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let known = |list: &[String], t: &str| list.iter().any(|k| same(k.as_bytes(), t.as_bytes()));
    let verdict = match given {
        None => Err("a bearer token is required (Authorization: Bearer <token>)"),
        Some(t) if known(&api.tokens, t) => Ok(true),
        Some(t) if known(&api.read_tokens, t) => Ok(false),
        Some(_) => Err("the bearer token is not valid"),
    };
    match verdict {
        Ok(true) => next.run(req).await,
        Ok(false) if reads_only(req.method(), req.uri().path()) => next.run(req).await,
        Ok(false) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token is read-only: {} {} needs an admin token (http.tokens)",
                req.method(),
                req.uri().path()
            ),
        )
        .into_response(),
        Err(msg) => {
            let mut r = ApiError::unauthorized(msg).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mast\""),
            );
            r
        }
    }
}

/// What a read-only token may do.
/// The firmware id of `/api/v1/firmware/{id}/artifact`.
fn artifact_of(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/v1/firmware/")?
        .strip_suffix("/artifact")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn reads_only(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) || path == "/api/v1/sql"
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct SqlParams {
    q: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    format: Option<String>,
}

async fn sql_get(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    params: Result<Query<SqlParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ApiError::bad_request("unreadable query string").into_response();
    };
    let Some(sql) = params.q.filter(|q| !q.trim().is_empty()) else {
        return ApiError::bad_request("missing SQL: GET /api/v1/sql?q=SELECT...").into_response();
    };
    run_sql(&api, &headers, &sql, params.format.as_deref()).await
}

async fn sql_post(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    params: Result<Query<SqlParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Response {
    let format_param = params.ok().and_then(|Query(p)| p.format);
    let bytes: Bytes = match axum::body::to_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::too_large(format!(
                "request body larger than {} bytes (http.max_body_bytes)",
                api.max_body
            ))
            .into_response();
        }
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let (sql, format) = if is_json {
        match serde_json::from_slice::<SqlBody>(&bytes) {
            Ok(b) => (b.sql, b.format.or(format_param)),
            Err(e) => {
                return ApiError::bad_request(format!(
                    "the body must be {{\"sql\": \"...\", \"format\": \"json\"}}: {e}"
                ))
                .into_response();
            }
        }
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(s) => (s, format_param),
            Err(_) => {
                return ApiError::bad_request("the SQL is not UTF-8").into_response();
            }
        }
    };
    if sql.trim().is_empty() {
        return ApiError::bad_request("missing SQL").into_response();
    }
    run_sql(&api, &headers, &sql, format.as_deref()).await
}

fn pick_format(headers: &HeaderMap, param: Option<&str>) -> Result<Format, Box<Response>> {
    if let Some(name) = param {
        return Format::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            Box::new(
                ApiError::bad_format(format!(
                    "unknown format {name:?}; use one of {}",
                    names.join(", ")
                ))
                .into_response(),
            )
        });
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.is_empty() || accept.contains("*/*") || accept.contains("application/*") {
        return Ok(Format::from_accept(accept).unwrap_or(Format::Json));
    }
    Format::from_accept(accept).ok_or_else(|| {
        Box::new(
            ApiError::not_acceptable(format!(
                "cannot answer with {accept:?}; Mast returns application/json, \
                 application/x-ndjson, text/csv, application/vnd.apache.arrow.stream or \
                 application/vnd.apache.parquet"
            ))
            .into_response(),
        )
    })
}

async fn run_sql(api: &Api, headers: &HeaderMap, sql: &str, format: Option<&str>) -> Response {
    let format = match pick_format(headers, format) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut stream = match api.engine.run(sql).await {
        Ok(s) => s,
        Err(e) => return query_error(&e),
    };
    // The first batch decides the status: most errors (memory, timeout, bad data) show up
    // before any row does.
    let first = match stream.next().await {
        Some(Err(e)) => return query_error(&e),
        other => other,
    };
    if let Some(why) = format.unsupported(&stream.schema()) {
        stream.fail(&why);
        return ApiError::bad_format(why).into_response();
    }
    let (mut encoder, head) = match Encoder::new(format, stream.schema()) {
        Ok(x) => x,
        Err(e) => {
            stream.fail(&e.to_string());
            return ApiError::internal(format!("cannot encode the result: {e}")).into_response();
        }
    };
    let id = stream.id();
    let mut out = head;
    if let Some(Ok(batch)) = first.as_ref() {
        match encoder.batch(batch) {
            Ok(b) => out.extend(b),
            Err(e) => {
                stream.fail(&e.to_string());
                return ApiError::internal(format!("cannot encode the result: {e}"))
                    .into_response();
            }
        }
    }
    // A finished QueryStream keeps answering None, so an empty result reaches `finish` below.
    let body = futures::stream::unfold(
        (Some(out), stream, encoder, false),
        |(pending, mut stream, mut encoder, done)| async move {
            if let Some(bytes) = pending {
                return Some((Ok(Bytes::from(bytes)), (None, stream, encoder, done)));
            }
            if done {
                return None;
            }
            loop {
                match stream.next().await {
                    Some(Ok(batch)) => match encoder.batch(&batch) {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => return Some((Ok(Bytes::from(b)), (None, stream, encoder, false))),
                        Err(e) => {
                            stream.fail(&e.to_string());
                            let err = std::io::Error::other(e.to_string());
                            return Some((Err(err), (None, stream, encoder, true)));
                        }
                    },
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "query failed after its first rows");
                        let err = std::io::Error::other(e.message);
                        return Some((Err(err), (None, stream, encoder, true)));
                    }
                    None => {
                        return match encoder.finish() {
                            Ok(b) => Some((Ok(Bytes::from(b)), (None, stream, encoder, true))),
                            Err(e) => Some((
                                Err(std::io::Error::other(e.to_string())),
                                (None, stream, encoder, true),
                            )),
                        };
                    }
                }
            }
        },
    );
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        r.headers_mut().insert("x-mast-query-id", v);
    }
    r
}
