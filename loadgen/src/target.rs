//! A relay under test that relaykit starts itself (scenario `[target]`), so that fault steps can
//! restart it, kill it with SIGKILL, or freeze it with SIGSTOP. Any implementation can be managed:
//! the scenario gives its command line with `{port}` and `{data_dir}` placeholders; the port is
//! chosen once and kept across restarts (clients reconnect to the same address), the data
//! directory too (what the relay persisted must survive a kill).
//!
//! Readiness is `GET ready_path` answering 200. The process's stdout and stderr go to
//! `target.log` in the data directory (appended across restarts) so a crash can be read after
//! the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::time::{Duration, Instant};

/// How to start the relay under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Program and arguments. `{port}` and `{data_dir}` are replaced in every argument and
    /// environment value; a program named `relaykit` is this relaykit binary.
    pub command: Vec<String>,
    /// Extra environment variables (e.g. `RELAYKIT_LIMITS__HEARTBEAT_MS = "2000"`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// HTTP path that answers 200 once the relay serves.
    #[serde(default = "ready_path")]
    pub ready_path: String,
    /// Longest wait for readiness after a start, seconds.
    #[serde(default = "ready_timeout_s")]
    pub ready_timeout_s: f64,
}

fn ready_path() -> String {
    "/ready".into()
}

fn ready_timeout_s() -> f64 {
    30.0
}

/// A managed target that could not be started or signalled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// The command could not be run.
    #[error("starting the target ({program}): {message}")]
    Spawn {
        /// Program.
        program: String,
        /// Why.
        message: String,
    },
    /// The target did not become ready.
    #[error("the target was not ready within {timeout_s} s ({why}); see {log}")]
    NotReady {
        /// The configured timeout.
        timeout_s: f64,
        /// Last observation (exit status, HTTP status, connection error).
        why: String,
        /// Its log file.
        log: String,
    },
    /// A signal could not be delivered (no such process, ...).
    #[error("signal {signal} to the target: {message}")]
    Signal {
        /// Signal name.
        signal: String,
        /// Why.
        message: String,
    },
    /// No free port or no data directory.
    #[error("preparing the target: {0}")]
    Setup(String),
}

/// The running (or stopped) relay under test.
#[derive(Debug)]
pub struct ManagedTarget {
    spec: TargetSpec,
    /// This relaykit binary, for a `relaykit` command.
    relaykit: PathBuf,
    /// Chosen once: a restarted relay must come back where its clients reconnect.
    port: u16,
    /// Kept across restarts and removed by [`ManagedTarget::stop`] when we created it.
    data_dir: PathBuf,
    /// None while it is down (between a kill and the next start).
    child: Option<Child>,
}

impl ManagedTarget {
    /// Picks a free loopback port and a fresh data directory, starts the target and waits until
    /// it is ready.
    pub async fn start(spec: &TargetSpec, relaykit: &Path) -> Result<ManagedTarget, TargetError> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| TargetError::Setup(format!("no free loopback port: {e}")))?
            .port();
        let data_dir = std::env::temp_dir().join(format!("relaykit-target-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| TargetError::Setup(format!("{}: {e}", data_dir.display())))?;
        let mut target = ManagedTarget {
            spec: spec.clone(),
            relaykit: relaykit.to_path_buf(),
            port,
            data_dir,
            child: None,
        };
        target.launch().await?;
        Ok(target)
    }

    /// Where clients reach it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The log file of the target's output.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("target.log")
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{port}", &self.port.to_string())
            .replace("{data_dir}", &self.data_dir.display().to_string())
    }

    /// Starts the process and waits for readiness; returns how long that took.
    pub async fn launch(&mut self) -> Result<Duration, TargetError> {
        let began = Instant::now();
        let (program, args) = self.spec.command.split_first().ok_or_else(|| TargetError::Spawn {
            program: String::new(),
            message: "target.command is empty".into(),
        })?;
        let program = if program == "relaykit" { self.relaykit.clone() } else { PathBuf::from(program) };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| TargetError::Setup(format!("{}: {e}", self.log_path().display())))?;
        let log_err = log.try_clone().map_err(|e| TargetError::Setup(e.to_string()))?;
        let mut command = Command::new(&program);
        command
            .args(args.iter().map(|a| self.expand(a)))
            .envs(self.spec.env.iter().map(|(k, v)| (k, self.expand(v))))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| TargetError::Spawn {
            program: program.display().to_string(),
            message: e.to_string(),
        })?;
        self.child = Some(child);
        self.wait_ready().await?;
        Ok(began.elapsed())
    }

    async fn wait_ready(&mut self) -> Result<(), TargetError> {
        let timeout = Duration::from_secs_f64(self.spec.ready_timeout_s);
        let deadline = Instant::now() + timeout;
        let mut why = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                why = format!("it exited with {status}");
                break;
            }
            let probe = relaykit_client::http::request(
                self.addr(),
                "GET",
                &self.spec.ready_path,
                &[],
                None,
                Duration::from_secs(1),
            )
            .await;
            match probe {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => why = format!("{} answered {}", self.spec.ready_path, r.status),
                Err(e) => why = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TargetError::NotReady {
            timeout_s: self.spec.ready_timeout_s,
            why,
            log: self.log_path().display().to_string(),
        })
    }

    fn signal(&self, signal: Signal) -> Result<(), TargetError> {
        let pid = self.child.as_ref().and_then(Child::id).ok_or_else(|| TargetError::Signal {
            signal: signal.as_str().into(),
            message: "the target is not running".into(),
        })?;
        let pid = i32::try_from(pid)
            .map_err(|e| TargetError::Signal { signal: signal.as_str().into(), message: e.to_string() })?;
        nix::sys::signal::kill(Pid::from_raw(pid), signal)
            .map_err(|e| TargetError::Signal { signal: signal.as_str().into(), message: e.to_string() })
    }

    /// SIGKILL (`kill -9`): no chance to flush or close anything. Waits for the exit.
    pub async fn kill(&mut self) -> Result<(), TargetError> {
        self.signal(Signal::SIGKILL)?;
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`: a graceful restart's first half.
    pub async fn terminate(&mut self, grace: Duration) -> Result<(), TargetError> {
        // A paused process cannot act on SIGTERM.
        let _ = self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM)?;
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(grace, child.wait()).await.is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes with its sockets open (clients see silence, not a close).
    pub fn pause(&self) -> Result<(), TargetError> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after [`ManagedTarget::pause`].
    pub fn resume(&self) -> Result<(), TargetError> {
        self.signal(Signal::SIGCONT)
    }

    /// Stops the target for good (SIGTERM, 5 s grace) and removes its data directory.
    pub async fn stop(mut self) {
        let _ = self.terminate(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &[&str]) -> TargetSpec {
        TargetSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            ready_path: ready_path(),
            ready_timeout_s: 2.0,
        }
    }

    #[tokio::test]
    async fn a_target_that_exits_is_reported_with_its_status_and_log() {
        let err =
            ManagedTarget::start(&spec(&["sh", "-c", "echo broken {port} >&2; exit 3"]), Path::new("x"))
                .await
                .unwrap_err();
        let TargetError::NotReady { why, log, .. } = &err else { panic!("{err}") };
        assert!(why.contains("exit") && why.contains('3'), "{why}");
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.starts_with("broken ") && !text.contains("{port}"), "placeholders expanded: {text}");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = ManagedTarget::start(&spec(&["/nonexistent/relay"]), Path::new("x")).await.unwrap_err();
        assert!(matches!(err, TargetError::Spawn { .. }), "{err}");
    }
}
