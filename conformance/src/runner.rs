//! Running cases: concurrently, each isolated (its own users and devices), each bounded in
//! time, results in catalogue order.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use relaykit_protocol::requirements::Level;
use relaykit_protocol::rest::ServerInfo;

use crate::case::{Case, Ctx, Miss, check_rest_schema};
use crate::conn::Evidence;
use crate::http;
use crate::report::{CaseReport, Report, Status, level_name};

/// What `relaykit check` runs against and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// `http://host:port` of the target.
    pub target: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Multiplier for every wait.
    pub time_scale: f64,
    /// Cases run at once.
    pub concurrency: usize,
    /// External provisioning command for `Ctx::pair` (see [`crate::case::Ctx::provision`]).
    pub provision_cmd: Option<String>,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The URL is not `http://host:port`.
    #[error("target must look like http://host:port, got {0}")]
    Target(String),
    /// `GET /v1/info` failed or is not valid.
    #[error("GET /v1/info: {0}")]
    Info(String),
}

impl CheckConfig {
    /// Parses `http://host:port[/]`.
    pub fn new(target: &str, time_scale: f64, concurrency: usize) -> Result<CheckConfig, CheckError> {
        let rest = target.strip_prefix("http://").ok_or_else(|| CheckError::Target(target.into()))?;
        let host_port = rest.trim_end_matches('/');
        let addr = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| CheckError::Target(target.into()))?;
        Ok(CheckConfig {
            target: target.trim_end_matches('/').to_string(),
            addr,
            time_scale,
            concurrency: concurrency.max(1),
            provision_cmd: None,
        })
    }
}

/// Reads and validates `GET /v1/info`.
pub async fn fetch_info(config: &CheckConfig) -> Result<ServerInfo, CheckError> {
    let wait = Duration::from_secs(5).mul_f64(config.time_scale.max(0.01));
    let response = http::request(config.addr, "GET", "/v1/info", &[], None, wait)
        .await
        .map_err(|e| CheckError::Info(e.to_string()))?;
    if response.status != 200 {
        return Err(CheckError::Info(format!("status {}: {}", response.status, response.body)));
    }
    check_rest_schema("rest/server_info", &response.body).map_err(|m| CheckError::Info(format!("{m:?}")))?;
    serde_json::from_str(&response.body).map_err(|e| CheckError::Info(e.to_string()))
}

/// Runs `cases` against the target.
pub async fn run(config: &CheckConfig, cases: &[Case]) -> Result<Report, CheckError> {
    let info = fetch_info(config).await?;
    let started = Instant::now();
    let started_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let limit = Duration::from_secs(30).mul_f64(config.time_scale.max(0.01));
    let mut results: Vec<(usize, CaseReport)> = futures_util::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| {
            let ctx = Ctx {
                addr: config.addr,
                info: info.clone(),
                time_scale: config.time_scale,
                evidence: Evidence::default(),
                provision_cmd: config.provision_cmd.clone(),
            };
            async move { (i, run_case(case, ctx, limit).await) }
        })
        .buffer_unordered(config.concurrency)
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let cases = results.into_iter().map(|(_, r)| r).collect();
    Ok(Report::new(
        config.target.clone(),
        started_at_ms,
        started.elapsed().as_millis() as u64,
        config.time_scale,
        cases,
    ))
}

async fn run_case(case: &Case, ctx: Ctx, limit: Duration) -> CaseReport {
    let evidence = ctx.evidence.clone();
    let started = Instant::now();
    // Each case in its own task: a panic in a case body is a failed case, not a dead run.
    let outcome = match tokio::time::timeout(limit, tokio::spawn((case.run)(ctx))).await {
        Err(_) => Err(Miss::Fail {
            expected: format!("the case to finish within {limit:?}"),
            got: "timeout".into(),
        }),
        Ok(Err(join)) => {
            Err(Miss::Fail { expected: "the case to run".into(), got: format!("case panicked: {join}") })
        }
        Ok(Ok(result)) => result,
    };
    let violations = evidence.violations();
    let (mut status, expected, got) = match outcome {
        Ok(()) => (Status::Pass, None, None),
        Err(Miss::Fail { expected, got }) => (Status::Fail, Some(expected), Some(got)),
        Err(Miss::Skip(reason)) => (Status::Skip, None, Some(reason)),
    };
    if !violations.is_empty() && status != Status::Skip {
        status = Status::Fail;
    }
    if status == Status::Fail && case.level != Level::Must && violations.is_empty() {
        status = Status::Warn;
    }
    let transcript = if status == Status::Pass { Vec::new() } else { evidence.lines() };
    CaseReport {
        id: case.id.into(),
        group: case.group.into(),
        level: level_name(case.level).into(),
        requirements: case.requirements.iter().map(|r| r.to_string()).collect(),
        description: case.description.into(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        expected,
        got,
        schema_violations: violations,
        transcript,
    }
}
