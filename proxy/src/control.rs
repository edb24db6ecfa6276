//! The HTTP control API: the [`FaultHandle`] over JSON, for tests and scripts outside the
//! process. Bodies are parsed here rather than by axum's extractors so that every bad input
//! gets the same `400 {"error", "message"}` answer.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::fault::{FaultSpec, Selector};
use crate::handle::FaultHandle;

/// An error answer: status and `{"error": code, "message": text}`.
#[derive(Debug)]
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "message": self.2}))).into_response()
    }
}

fn bad(code: &'static str, message: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, code, message.to_string())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad("invalid_json", e))
}

/// The control API's routes, with `faults` as their state; can be mounted in another router.
pub fn router(faults: FaultHandle) -> Router {
    Router::new()
        .route("/faults", get(list).post(add).delete(clear))
        .route("/faults/{id}", delete(remove))
        .route("/stats", get(stats))
        .route("/connections/reset", post(reset))
        .route("/upstream", put(upstream))
        .with_state(faults)
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    faults: FaultHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(faults)).with_graceful_shutdown(shutdown).await {
        tracing::error!("control API stopped: {e}");
    }
}

async fn list(State(faults): State<FaultHandle>) -> Response {
    Json(faults.list()).into_response()
}

async fn add(State(faults): State<FaultHandle>, body: Bytes) -> Result<Response, ApiError> {
    let spec: FaultSpec = parse(&body)?;
    let id = faults.try_add(spec).map_err(|e| bad("invalid_fault", e))?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn clear(State(faults): State<FaultHandle>) -> StatusCode {
    faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove(State(faults): State<FaultHandle>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id: u64 = id.parse().map_err(|_| bad("invalid_id", format!("fault id {id:?} is not a number")))?;
    if faults.remove(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "not_found", format!("no fault with id {id}")))
    }
}

async fn stats(State(faults): State<FaultHandle>) -> Response {
    Json(faults.stats()).into_response()
}

async fn reset(State(faults): State<FaultHandle>, body: Bytes) -> Result<Response, ApiError> {
    let select: Selector = parse(&body)?;
    select.validate().map_err(|e| bad("invalid_selector", e))?;
    Ok(Json(json!({"reset": faults.reset_connections(&select)})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Upstream {
    upstream: String,
}

async fn upstream(State(faults): State<FaultHandle>, body: Bytes) -> Result<Response, ApiError> {
    let Upstream { upstream } = parse(&body)?;
    let addr = crate::parse_upstream(&upstream).map_err(|e| bad("invalid_upstream", e))?;
    faults.set_upstream(addr);
    Ok(Json(json!({"upstream": addr.to_string()})).into_response())
}
