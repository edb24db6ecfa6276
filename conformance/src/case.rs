//! What a case is, what it can do (the [`Ctx`]), and how it fails.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use relaykit_protocol::client::{Ack, Heartbeat, Hello};
use relaykit_protocol::requirements::Level;
use relaykit_protocol::rest::{PairingCode, Registered, ServerInfo};
use relaykit_protocol::server::{ErrorFrame, Welcome};
use relaykit_protocol::{ClientFrame, DeviceType, Limits, PROTOCOL_V1, ServerFrame};
use serde_json::json;

use crate::conn::{Conn, Dir, Event, Evidence};
use crate::http;

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The server did something else: expected vs got.
    Fail {
        /// What the protocol requires.
        expected: String,
        /// What happened.
        got: String,
    },
    /// The server does not offer the capability the case needs.
    Skip(String),
}

/// Result of a case body.
pub type CaseResult = Result<(), Miss>;

/// A failure.
pub fn fail(expected: impl Into<String>, got: impl std::fmt::Debug) -> Miss {
    Miss::Fail { expected: expected.into(), got: format!("{got:?}") }
}

/// Fails unless `cond`.
pub fn ensure(cond: bool, expected: impl Into<String>, got: impl std::fmt::Debug) -> CaseResult {
    if cond { Ok(()) } else { Err(fail(expected, got)) }
}

/// A case body.
pub type Body = fn(Ctx) -> Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Stable id, e.g. `dlv-priority-order`.
    pub id: &'static str,
    /// Group, e.g. `delivery`.
    pub group: &'static str,
    /// MUST cases fail the run; SHOULD cases warn.
    pub level: Level,
    /// Requirement IDs of docs/PROTOCOL.md exercised.
    pub requirements: &'static [&'static str],
    /// One line.
    pub description: &'static str,
    /// The body.
    pub run: Body,
}

/// Declares a [`Case`] whose body is an async block over `ctx`.
#[macro_export]
macro_rules! case {
    ($id:literal, $group:literal, $level:ident, [$($req:literal),+], $desc:literal, |$ctx:ident| $body:block) => {
        $crate::case::Case {
            id: $id,
            group: $group,
            level: relaykit_protocol::requirements::Level::$level,
            requirements: &[$($req),+],
            description: $desc,
            run: |$ctx| Box::pin(async move $body),
        }
    };
}

/// Everything a case may use: the target, its advertised limits, the time scale, evidence.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Target address.
    pub addr: SocketAddr,
    /// `GET /v1/info` of the target.
    pub info: ServerInfo,
    /// Multiplier applied to every wait (slow targets, slow CI machines).
    pub time_scale: f64,
    /// Transcript and schema violations of this case.
    pub evidence: Evidence,
    /// External provisioning command (`--provision-cmd`); `None`: `POST /v1/devices`.
    pub provision_cmd: Option<String>,
}

/// Base wait for something that should happen promptly.
const PROMPT: Duration = Duration::from_secs(5);

impl Ctx {
    /// The limits the server advertises.
    pub fn limits(&self) -> &Limits {
        &self.info.limits
    }

    /// `d` times the time scale.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.time_scale.max(0.01))
    }

    /// The wait for something prompt.
    pub fn prompt(&self) -> Duration {
        self.scaled(PROMPT)
    }

    /// A REST request; the exchange is recorded.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<http::Response, Miss> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let text = body.map(|b| b.to_string());
        self.evidence.record("rest", Dir::Sent, format!("{method} {path} {}", text.as_deref().unwrap_or("")));
        let response = http::request(
            self.addr,
            method,
            path,
            &headers,
            text.as_deref().map(str::as_bytes),
            self.prompt(),
        )
        .await
        .map_err(|e| fail(format!("an answer to {method} {path}"), e))?;
        self.evidence.record("rest", Dir::Received, format!("{} {}", response.status, response.body));
        Ok(response)
    }

    /// Registers a device (with a pairing code to join an existing user).
    pub async fn register(
        &self,
        device_type: DeviceType,
        pairing_code: Option<&str>,
    ) -> Result<Registered, Miss> {
        let mut body = json!({
            "device_name": format!("conformance {}", device_type.as_str()),
            "device_type": device_type,
            "platform": "relaykit-check",
            "public_key": {"alg": "x25519", "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
        });
        if let Some(code) = pairing_code {
            body["pairing_code"] = json!(code);
        }
        let response = self.rest("POST", "/v1/devices", None, Some(&body)).await?;
        ensure(response.status == 201, "201 from POST /v1/devices", (response.status, &response.body))?;
        check_rest_schema("rest/register_device_response", &response.body)?;
        serde_json::from_str(&response.body).map_err(|e| fail("a registration body", e.to_string()))
    }

    /// A desktop and a phone of one user (the desktop shows the pairing code).
    pub async fn pair(&self) -> Result<(Registered, Registered), Miss> {
        if let Some(cmd) = &self.provision_cmd {
            let desktop = self.provision(cmd, DeviceType::Desktop, None).await?;
            let mobile = self.provision(cmd, DeviceType::Mobile, Some(&desktop.user_id)).await?;
            return Ok((desktop, mobile));
        }
        let desktop = self.register(DeviceType::Desktop, None).await?;
        let code = self.pairing_code(&desktop).await?;
        let mobile = self.register(DeviceType::Mobile, Some(&code)).await?;
        Ok((desktop, mobile))
    }

    /// Runs the provisioning command: `sh -c CMD` with `RELAYKIT_DEVICE_TYPE` (`mobile` or
    /// `desktop`) and `RELAYKIT_USER_ID` (empty: a new user); it must print one JSON object valid
    /// against `rest/register_device_response` (the `POST /v1/devices` answer) and exit 0.
    pub async fn provision(
        &self,
        cmd: &str,
        device_type: DeviceType,
        user_id: Option<&str>,
    ) -> Result<Registered, Miss> {
        self.evidence.record(
            "provision",
            Dir::Sent,
            format!("{cmd} ({} user={user_id:?})", device_type.as_str()),
        );
        let run = tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .env("RELAYKIT_DEVICE_TYPE", device_type.as_str())
            .env("RELAYKIT_USER_ID", user_id.unwrap_or(""))
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.prompt(), run)
            .await
            .map_err(|_| fail("the provisioning command to finish", "timeout"))?
            .map_err(|e| fail("the provisioning command to start", e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        self.evidence.record("provision", Dir::Received, format!("exit {:?} {stdout}", out.status.code()));
        ensure(
            out.status.success(),
            "the provisioning command to exit 0",
            (out.status.code(), String::from_utf8_lossy(&out.stderr)),
        )?;
        check_rest_schema("rest/register_device_response", stdout.trim())?;
        serde_json::from_str(stdout.trim()).map_err(|e| fail("provisioned credentials", e.to_string()))
    }

    /// `POST /v1/pairing-codes` as `device`.
    pub async fn pairing_code(&self, device: &Registered) -> Result<String, Miss> {
        let response =
            self.rest("POST", "/v1/pairing-codes", Some(&device.tokens.access_token), None).await?;
        ensure(response.status == 201, "201 from POST /v1/pairing-codes", (response.status, &response.body))?;
        check_rest_schema("rest/pairing_code_response", &response.body)?;
        let code: PairingCode =
            serde_json::from_str(&response.body).map_err(|e| fail("a pairing code", e.to_string()))?;
        Ok(code.code)
    }

    /// Opens a connection (before `hello`).
    pub async fn open(&self, label: &str, subprotocol: Option<&str>) -> Result<Conn, Miss> {
        self.open_at(self.addr, label, subprotocol).await
    }

    /// Opens a connection to `addr` (the target behind a fault proxy, say).
    pub async fn open_at(
        &self,
        addr: SocketAddr,
        label: &str,
        subprotocol: Option<&str>,
    ) -> Result<Conn, Miss> {
        Conn::open(addr, subprotocol, label, &self.evidence, self.prompt())
            .await
            .map_err(|r| fail("a WebSocket upgrade", (r.status, r.body)))
    }

    /// Connects `device` with `hello` and reads its `welcome`.
    pub async fn connect(&self, label: &str, device: &Registered) -> Result<Session, Miss> {
        self.connect_with(
            label,
            Hello {
                protocol: PROTOCOL_V1.into(),
                token: device.tokens.access_token.clone(),
                resume: None,
                client: None,
            },
        )
        .await
    }

    /// Connects with a given `hello`.
    pub async fn connect_with(&self, label: &str, hello: Hello) -> Result<Session, Miss> {
        self.connect_at(self.addr, label, hello).await
    }

    /// [`Ctx::connect_with`] through `addr`.
    pub async fn connect_at(&self, addr: SocketAddr, label: &str, hello: Hello) -> Result<Session, Miss> {
        let mut conn = self.open_at(addr, label, Some(PROTOCOL_V1)).await?;
        conn.send(&ClientFrame::Hello(hello)).await;
        let mut session = Session { conn, welcome: None, wait: self.prompt() };
        match session.next_frame().await? {
            ServerFrame::Welcome(w) => {
                session.welcome = Some(w);
                Ok(session)
            }
            other => Err(fail("welcome", other)),
        }
    }
}

/// Validates a REST body against its schema.
pub fn check_rest_schema(schema: &str, body: &str) -> CaseResult {
    match relaykit_protocol::schema::SchemaSet::global().validate_text(schema, body) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(format!("a body valid against {schema}"), format!("{e}: {body}"))),
        Err(e) => Err(fail("a known schema", e.to_string())),
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub conn: Conn,
    welcome: Option<Welcome>,
    wait: Duration,
}

impl Session {
    /// Its `welcome`.
    pub fn welcome(&self) -> &Welcome {
        self.welcome.as_ref().expect("sessions are built from a welcome")
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.conn.send(frame).await;
    }

    /// The next frame other than presence and relay pings (pings are answered).
    pub async fn next_frame(&mut self) -> Result<ServerFrame, Miss> {
        self.next_frame_within(self.wait).await
    }

    /// Like [`Session::next_frame`] with another wait.
    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<ServerFrame, Miss> {
        // Bounded: a relay that only sends presence and pings still ends the loop.
        for _ in 0..256 {
            match self.conn.next(wait).await {
                Event::Frame(ServerFrame::DeviceStatus(_)) => continue,
                Event::Frame(ServerFrame::Ping(p)) => {
                    self.conn.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await;
                    continue;
                }
                Event::Frame(f) => return Ok(f),
                other => return Err(fail("a relay frame", other)),
            }
        }
        Err(fail("a frame other than presence and pings", "256 of them"))
    }

    /// Asserts nothing but presence/pings arrives for `quiet` (then answers a ping to prove the
    /// connection is alive and nothing was queued).
    pub async fn expect_nothing(&mut self, quiet: Duration) -> CaseResult {
        match self.conn.next(quiet).await {
            Event::Timeout | Event::Frame(ServerFrame::DeviceStatus(_) | ServerFrame::Ping(_)) => Ok(()),
            other => Err(fail("no frame", other)),
        }
    }

    /// Reads until a close (an `error` frame with `fatal: true` may precede it); returns the
    /// close code, reason and that error frame.
    pub async fn expect_close(&mut self, wait: Duration) -> Result<(u16, String, Option<ErrorFrame>), Miss> {
        let mut error = None;
        for _ in 0..256 {
            match self.conn.next(wait).await {
                Event::Close(code, reason) => return Ok((code, reason, error)),
                Event::Frame(ServerFrame::Error(e)) if e.fatal => error = Some(e),
                Event::Frame(ServerFrame::Ping(p)) => {
                    self.conn.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
                }
                Event::Frame(_) => continue,
                other => return Err(fail("a close frame", other)),
            }
        }
        Err(fail("a close frame", "256 other frames"))
    }

    /// Acks `seq`.
    pub async fn ack(&mut self, seq: u64) {
        self.send(&ClientFrame::Ack(Ack { seq })).await;
    }
}
