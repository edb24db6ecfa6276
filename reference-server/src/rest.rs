//! The HTTP surface: REST under `/v1/` (PROTOCOL.md sections 5 and 6), the WebSocket upgrade
//! (section 4), and the operational endpoints `/health`, `/ready`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::rest::{
    AccessClaims, ErrorResponse, RefreshRequest, RegisterDevice, RestError, ServerInfo, ServerSoftware,
    TestTokenRequest, TestTokenResponse,
};
use relaykit_protocol::{PROTOCOL_V1, RestErrorCode};
use serde::de::DeserializeOwned;

use crate::session::{self, Inbound, Outgoing};
use crate::state::{DirectoryError, RegistrationInput, Relay, now_ms};

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The relay.
    pub relay: Arc<Relay>,
    /// Origins allowed to open WebSockets (empty: all).
    pub allowed_origins: Arc<Vec<String>>,
    /// False once shutdown began (`/ready` answers 503).
    pub ready: Arc<AtomicBool>,
}

/// The router of the whole server.
pub fn router(state: AppState) -> Router {
    let not_found = || async { rest_error(RestErrorCode::NotFound, "no such endpoint", None) };
    let mut router = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/info", get(info))
        .route("/v1/jwks", get(jwks))
        .route("/v1/devices", post(register).get(list_devices))
        .route("/v1/devices/{device_id}", axum::routing::delete(revoke))
        .route("/v1/pairing-codes", post(pairing_code))
        .route("/v1/tokens/refresh", post(refresh))
        .route("/v1/ws", get(websocket));
    // A disabled hook is an unknown path: 404 before any other check (TEST-2, ERR-10 step 1).
    if state.relay.policy().test_tokens {
        router = router.route("/v1/test/tokens", post(test_token));
    }
    router
        // Known path and method only (ERR-10 step 1), then the body size (step 3).
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limit_body))
        .method_not_allowed_fallback(not_found)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// `relaykit_rest_requests_total{class}`: every HTTP answer by status class.
async fn count_requests(
    State(state): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    let class = crate::metrics::status_class(response.status().as_u16());
    state.relay.metrics().rest_requests_total.inc(class);
    response
}

/// Most bytes of an oversize body read (and dropped) before answering 413, so the client can
/// read the answer instead of a connection reset.
const DRAIN_CAP: usize = 1 << 20;

/// TRN-6 for every endpoint, before authentication (ERR-10 step 3): a declared body larger than
/// `max_frame_bytes` gets 413. Bodies without `Content-Length` are measured by [`Body`].
async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.relay.limits().max_frame_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        let _ = axum::body::to_bytes(request.into_body(), DRAIN_CAP).await;
        return rest_error(RestErrorCode::PayloadTooLarge, "body larger than max_frame_bytes", None);
    }
    next.run(request).await
}

/// A REST error response: status from the code, JSON body.
pub fn rest_error(code: RestErrorCode, message: &str, field: Option<String>) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorResponse {
        error: RestError { code, message: message.to_string(), field, retry_after_ms: None },
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for DirectoryError {
    fn into_response(self) -> Response {
        rest_error(self.code, &self.message, self.field)
    }
}

/// A JSON body with the protocol's errors: 413 above `max_frame_bytes`, 400 naming the field.
struct Body<T>(T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let limit = state.relay.limits().max_frame_bytes as usize;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| rest_error(RestErrorCode::InvalidRequest, "could not read the body", None))?;
        if bytes.len() > limit {
            return Err(rest_error(RestErrorCode::PayloadTooLarge, "body larger than max_frame_bytes", None));
        }
        parse_body(&bytes).map(Body).map_err(IntoResponse::into_response)
    }
}

/// A JSON body, or 400 `invalid_request` naming the offending member (PROTOCOL.md 2.5: a
/// missing member by its own path, not its parent's).
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DirectoryError> {
    // serde would build a struct from a JSON array too; bodies are objects only (ERR-8).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let message = "the body must be a JSON object".to_string();
        return Err(DirectoryError { code: RestErrorCode::InvalidRequest, message, field: None });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string().replace('[', ".").replace(']', "");
        let message = e.into_inner().to_string();
        let named = ["missing field `", "duplicate field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        let field = match (named, path.as_str()) {
            (Some(member), ".") => Some(member.to_string()),
            (Some(member), parent) => Some(format!("{parent}.{member}")),
            (None, ".") => None,
            (None, path) => Some(path.to_string()),
        };
        DirectoryError { code: RestErrorCode::InvalidRequest, message, field }
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AccessClaims, DirectoryError> {
    let missing = || DirectoryError {
        code: RestErrorCode::Unauthorized,
        message: "bearer token required".into(),
        field: None,
    };
    state.relay.authenticate(bearer(headers).ok_or_else(missing)?)
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.relay.metrics().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/info`.
pub fn server_info(relay: &Relay) -> ServerInfo {
    let mut capabilities = vec!["e2e".to_string()];
    if relay.policy().test_tokens {
        capabilities.push("test_tokens".into());
    }
    ServerInfo {
        protocol_versions: vec![PROTOCOL_V1.into()],
        server: ServerSoftware { name: "relaykit-server".into(), version: env!("CARGO_PKG_VERSION").into() },
        issuer: relay.issuer().issuer().to_string(),
        audience: relay.issuer().audience().to_string(),
        jwks_uri: "/v1/jwks".into(),
        registration_open: relay.policy().registration_open,
        capabilities,
        limits: relay.limits().clone(),
    }
}

async fn info(State(state): State<AppState>) -> Response {
    Json(server_info(&state.relay)).into_response()
}

async fn jwks(State(state): State<AppState>) -> Response {
    Json(state.relay.issuer().jwks()).into_response()
}

async fn register(State(state): State<AppState>, Body(body): Body<RegisterDevice>) -> Response {
    let input = RegistrationInput {
        device_name: body.device_name,
        device_type: body.device_type,
        platform: body.platform,
        capabilities: body.capabilities,
        public_key: body.public_key,
        pairing_code: body.pairing_code,
    };
    match state.relay.register(input).await {
        Ok(registered) => (StatusCode::CREATED, Json(registered)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_devices(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match authenticate(&state, &headers) {
        Ok(claims) => Json(state.relay.list_devices(&claims)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
) -> Response {
    let claims = match authenticate(&state, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match state.relay.revoke(&claims, &device_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pairing_code(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let claims = match authenticate(&state, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match state.relay.create_pairing_code(&claims).await {
        Ok(code) => (StatusCode::CREATED, Json(code)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn refresh(State(state): State<AppState>, Body(body): Body<RefreshRequest>) -> Response {
    if body.refresh_token.is_empty() {
        let field = Some("refresh_token".to_string());
        return rest_error(RestErrorCode::InvalidRequest, "refresh_token must not be empty", field);
    }
    match state.relay.refresh(&body.refresh_token).await {
        Ok(pair) => Json(pair).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn test_token(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    if !state.relay.policy().test_tokens {
        return rest_error(RestErrorCode::NotFound, "no such endpoint", None);
    }
    // ERR-10: size, then the bearer token, then the body.
    let limit = state.relay.limits().max_frame_bytes as usize;
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), limit).await else {
        return rest_error(RestErrorCode::PayloadTooLarge, "body larger than max_frame_bytes", None);
    };
    let claims = match authenticate(&state, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let body: TestTokenRequest = match parse_body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let issuer = state.relay.issuer();
    let base = issuer.claims(&claims.sub, &claims.did, claims.dty, &claims.fam, now_ms() / 1000);
    let token =
        issuer.mint_with_overrides(&base, &body.header.unwrap_or_default(), &body.claims.unwrap_or_default());
    Json(TestTokenResponse { token }).into_response()
}

/// `GET /v1/ws`: origin allow-list, subprotocol negotiation (VER rules), small buffers.
async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return rest_error(RestErrorCode::InvalidRequest, "expected a WebSocket upgrade", None);
    };
    if !state.allowed_origins.is_empty()
        && let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !state.allowed_origins.iter().any(|a| a == origin)
    {
        return rest_error(RestErrorCode::Forbidden, "origin not allowed", None);
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .filter(|p| !p.is_empty())
        .collect();
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL_V1) {
        return rest_error(RestErrorCode::UnsupportedVersion, "supported subprotocols: relay.v1", None);
    }
    let negotiated = (!offered.is_empty()).then(|| PROTOCOL_V1.to_string());
    let max = state.relay.limits().max_frame_bytes as usize;
    let relay = state.relay.clone();
    upgrade
        .protocols([PROTOCOL_V1])
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            session::run(relay, adapt(socket), negotiated).await;
        })
}

/// axum's socket as the session's transport.
fn adapt(
    socket: WebSocket,
) -> impl futures_util::Stream<Item = Inbound> + futures_util::Sink<Outgoing> + Unpin {
    let (sink, stream) = socket.split();
    let sink = sink.with(|out: Outgoing| async move {
        Ok::<_, axum::Error>(match out {
            Outgoing::Text(t) => Message::Text(t.into()),
            Outgoing::Close(code, reason) => {
                Message::Close(Some(axum::extract::ws::CloseFrame { code, reason: reason.into() }))
            }
        })
    });
    let stream = stream.filter_map(|msg| async move {
        match msg {
            Ok(Message::Text(t)) => Some(Inbound::Text(t.to_string())),
            Ok(Message::Binary(_)) => Some(Inbound::Binary),
            Ok(Message::Ping(_) | Message::Pong(_)) => None,
            Ok(Message::Close(_)) => Some(Inbound::Closed),
            Err(e) if is_too_big(&e) => Some(Inbound::TooBig),
            Err(_) => Some(Inbound::Closed),
        }
    });
    session::Duplex::new(sink, stream)
}

fn is_too_big(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Message too long") || text.contains("Message too big") || text.contains("too long")
}
