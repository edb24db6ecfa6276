//! Shared by the root integration tests: running the `relaykit` binary and the processes it
//! starts (each killed by its pid when dropped). Not every test binary uses every helper.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// Runs `relaykit ARGS` in the repository root: exit code and stdout + stderr.
pub(crate) fn relaykit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run relaykit");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A `relaykit` process we started; killed (by its pid) when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `relaykit ARGS` and returns it with the addresses of its first `lines` stdout lines,
/// each `NAME http://ADDR`.
pub(crate) fn start(args: &[&str], lines: usize) -> (Process, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relaykit");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let process = Process(child);
    let mut out = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("stdout line");
        let (name, url) = line.trim().split_once(" http://").unwrap_or_else(|| panic!("odd line {line:?}"));
        out.push((name.to_string(), url.to_string()));
    }
    (process, out)
}

/// Starts `relaykit serve --ephemeral` on a free loopback port; returns it and its URL.
pub(crate) fn serve(extra: &[&str]) -> (Process, String) {
    let mut args = vec!["serve", "--ephemeral", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (process, lines) = start(&args, 1);
    assert_eq!(lines[0].0, "listening", "{lines:?}");
    (process, format!("http://{}", lines[0].1))
}
