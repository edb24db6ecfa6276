//! Configuration of `relaykit serve`: defaults, a TOML file, `RELAYKIT_*` environment overrides.
//!
//! Precedence, lowest first: [`Config::default`] <- TOML file (`--config`) <- environment <- CLI
//! flags. [`Config::load`] applies the first three and validates; the binary applies flags by
//! setting fields afterwards and calls [`Config::validate`] again.
//!
//! Environment variables: `RELAYKIT_` + the key in upper case, `__` between a table and its key:
//! `RELAYKIT_LISTEN=0.0.0.0:9000`, `RELAYKIT_LIMITS__MAX_PAYLOAD_BYTES=1024`,
//! `RELAYKIT_ALLOWED_ORIGINS=https://a.example,https://b.example` (lists are comma separated, or
//! a TOML array such as `["https://a.example"]`). Values are read according to the type of the key
//! they set. [`ENV_CONFIG_PATH`] is reserved for the path of the file and is not a key.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use relaykit_protocol::{Limits, MAX_SAFE_INTEGER};
use serde::{Deserialize, Deserializer, Serialize};

/// Prefix of every environment variable that sets a configuration key.
pub const ENV_PREFIX: &str = "RELAYKIT_";

/// Variable the binary may use for the config file path; [`Config::load`] skips it.
pub const ENV_CONFIG_PATH: &str = "RELAYKIT_CONFIG";

/// Top-level keys that are absent from a serialized default config (they are `Option`s).
const OPTIONAL_KEYS: &[&str] = &["data_dir"];

/// Largest access-token lifetime (AUTH-1: `exp - iat` <= 3600).
pub const MAX_ACCESS_TTL_S: u64 = 3600;
/// Largest JWT clock leeway (AUTH-2).
pub const MAX_LEEWAY_S: u64 = 60;
/// Largest pairing-code lifetime (PAIR-3: at most 600000 ms).
pub const MAX_PAIRING_CODE_TTL_S: u64 = 600;
/// Largest refresh-token lifetime: half the safe-integer range in ms, so `now + ttl` stays exact.
pub const MAX_REFRESH_TTL_S: u64 = MAX_SAFE_INTEGER / 2 / 1000;

/// Everything `relaykit serve` can set. Built from defaults <- TOML file (--config) <- env
/// (RELAYKIT_* , e.g. RELAYKIT_LISTEN, RELAYKIT_LIMITS__MAX_PAYLOAD_BYTES) <- CLI flags (the
/// binary applies flags by setting fields after load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Where the database and signing key live; `None` means the platform data dir, so a plain
    /// `relaykit serve` works without flags. Ignored when `ephemeral`.
    pub data_dir: Option<PathBuf>,
    /// In-memory store and a fresh signing key each start: for tests and demos, nothing on disk.
    pub ephemeral: bool,
    /// The limits enforced and announced (DISC-2); unknown keys in `[limits]` are rejected.
    #[serde(deserialize_with = "deserialize_limits")]
    pub limits: Limits,
    /// Token issuing parameters, grouped because they are announced and checked together.
    pub auth: AuthConfig,
    /// Whether registration without a pairing code creates a new user (REG-2, DISC-1).
    pub registration_open: bool,
    /// Pairing-code lifetime in seconds; PAIR-3 caps it at 600.
    pub pairing_code_ttl_s: u64,
    /// WebSocket `Origin` allow-list (TRN-10); empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// Enables `POST /v1/test/tokens` and the `test_tokens` capability (DISC-4); never in
    /// production because it mints arbitrary tokens.
    pub test_tokens: bool,
    /// Most writes one store transaction groups: bounds commit latency under load.
    pub group_commit_max_batch: usize,
    /// JSON log lines instead of human-readable ones, for log collectors.
    pub log_json: bool,
    /// How long shutdown waits for connections to drain after sending `server_restarting`.
    pub shutdown_grace_ms: u64,
    /// `retry_after_ms` sent with `server_restarting` before close 4000 (SES-16).
    pub retry_after_restart_ms: u64,
    /// A deliberate protocol violation (conformance self-test only; never from files or env).
    #[cfg(feature = "mutants")]
    #[serde(skip)]
    pub mutant: Option<crate::mutant::Mutant>,
}

/// Access- and refresh-token settings (PROTOCOL.md section 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `iss` of access tokens and `issuer` in `GET /v1/info`; checked exactly.
    pub issuer: String,
    /// `aud` of access tokens and `audience` in `GET /v1/info`; checked exactly.
    pub audience: String,
    /// Access-token lifetime in seconds; AUTH-1 caps `exp - iat` at 3600.
    pub access_ttl_s: u64,
    /// Refresh-token lifetime in seconds; also how long spent tokens are remembered (TOK-3).
    pub refresh_ttl_s: u64,
    /// Clock leeway applied to `nbf`, `iat`, `exp`; AUTH-2 caps it at 60.
    pub leeway_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "relaykit".to_owned(),
            audience: "relay".to_owned(),
            access_ttl_s: 900,
            refresh_ttl_s: 2_592_000,
            leeway_s: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8787)),
            data_dir: None,
            ephemeral: false,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            registration_open: true,
            pairing_code_ttl_s: 300,
            allowed_origins: Vec::new(),
            test_tokens: false,
            group_commit_max_batch: 256,
            log_json: false,
            shutdown_grace_ms: 5000,
            retry_after_restart_ms: 1000,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// Why a configuration could not be built or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file given with `--config`.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong value type in the file.
    #[error("invalid config file{}: {message}", location(*line, *column))]
    Toml {
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the error, when known.
        column: Option<usize>,
        /// What is wrong, naming the key where it can.
        message: String,
    },
    /// A `RELAYKIT_*` variable that does not name a configuration key.
    #[error("environment variable {var} does not name a configuration key")]
    UnknownEnv {
        /// The variable name as given.
        var: String,
    },
    /// A `RELAYKIT_*` variable whose value does not fit its key.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable name as given.
        var: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A value out of range or inconsistent with another.
    #[error("invalid config: `{key}` {message}")]
    Invalid {
        /// Dotted key path, e.g. `limits.max_frame_bytes`.
        key: String,
        /// The rule it breaks.
        message: String,
    },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        _ => String::new(),
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

fn ensure(ok: bool, key: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(invalid(key, message)) }
}

impl Config {
    /// Parses a TOML document; missing keys keep their defaults. Errors carry line and column.
    /// Does not validate (see [`Config::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let (line, column) = match err.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            ConfigError::Toml { line, column, message: err.message().to_owned() }
        })
    }

    /// Builds the configuration from defaults, the TOML file at `path` (if any) and the
    /// `RELAYKIT_*` pairs of `env` (other names are ignored), then validates it. The binary passes
    /// [`Config::process_env`]; tests pass their own pairs.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                Config::from_toml_str(&text)?
            }
            None => Config::default(),
        };
        let config = apply_env(config, env)?;
        config.validate()?;
        Ok(config)
    }

    /// The `RELAYKIT_*` variables of this process, for [`Config::load`]. Unlike
    /// `std::env::vars` it does not panic on non-UTF-8 entries: names are skipped, values are
    /// converted lossily.
    pub fn process_env() -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(ENV_PREFIX).then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect()
    }

    /// Rejects inconsistent values with a message naming the key (PROTOCOL.md LIM-1: every
    /// limit >= 1, max_frame_bytes >= max_payload_bytes + 4096, ttl_min <= ttl_default <= ttl_max,
    /// max_attempts_default <= max_attempts_max; AUTH-1/2: access_ttl_s <= 3600, leeway_s <= 60;
    /// PAIR-3: pairing_code_ttl_s <= 600; allowed_origins entries must be origins).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_limits()?;
        let (auth, safe) = (&self.auth, MAX_SAFE_INTEGER);
        ensure(!auth.issuer.is_empty(), "auth.issuer", "must not be empty")?;
        ensure(!auth.audience.is_empty(), "auth.audience", "must not be empty")?;
        let access_ttl = format!("must be between 1 and {MAX_ACCESS_TTL_S} (AUTH-1)");
        ensure((1..=MAX_ACCESS_TTL_S).contains(&auth.access_ttl_s), "auth.access_ttl_s", access_ttl)?;
        let refresh_ttl = format!("must be between 1 and {MAX_REFRESH_TTL_S}");
        ensure((1..=MAX_REFRESH_TTL_S).contains(&auth.refresh_ttl_s), "auth.refresh_ttl_s", refresh_ttl)?;
        let leeway = format!("must be at most {MAX_LEEWAY_S} (AUTH-2)");
        ensure(auth.leeway_s <= MAX_LEEWAY_S, "auth.leeway_s", leeway)?;
        let pairing = format!("must be between 1 and {MAX_PAIRING_CODE_TTL_S} (PAIR-3)");
        ensure(
            (1..=MAX_PAIRING_CODE_TTL_S).contains(&self.pairing_code_ttl_s),
            "pairing_code_ttl_s",
            pairing,
        )?;
        ensure(self.group_commit_max_batch >= 1, "group_commit_max_batch", "must be at least 1")?;
        let retry = format!("must be at most {safe}");
        ensure(self.retry_after_restart_ms <= safe, "retry_after_restart_ms", retry)?;
        let empty_dir = self.data_dir.as_ref().is_some_and(|dir| dir.as_os_str().is_empty());
        ensure(!empty_dir, "data_dir", "must not be empty")?;
        self.allowed_origins.iter().try_for_each(|origin| check_origin(origin))
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        // Generic over every member, so a limit added to the protocol crate is checked too.
        let Ok(serde_json::Value::Object(members)) = serde_json::to_value(&self.limits) else {
            return Err(invalid("limits", "cannot be inspected"));
        };
        for (name, value) in &members {
            let n = value.as_u64().unwrap_or(u64::MAX);
            ensure(n >= 1, &format!("limits.{name}"), "must be at least 1 (LIM-1)")?;
            let too_big = format!("must be at most {MAX_SAFE_INTEGER} (section 2.3)");
            ensure(n <= MAX_SAFE_INTEGER, &format!("limits.{name}"), too_big)?;
        }
        let l = &self.limits;
        let frame =
            format!("({}) must be at least limits.max_payload_bytes + 4096 (LIM-1)", l.max_frame_bytes);
        ensure(
            l.max_frame_bytes >= l.max_payload_bytes.saturating_add(4096),
            "limits.max_frame_bytes",
            frame,
        )?;
        let ttl_min = format!("({}) must not exceed limits.ttl_max_ms (LIM-1)", l.ttl_min_ms);
        ensure(l.ttl_min_ms <= l.ttl_max_ms, "limits.ttl_min_ms", ttl_min)?;
        let ttl_default =
            format!("({}) must be between limits.ttl_min_ms and limits.ttl_max_ms (LIM-1)", l.ttl_default_ms);
        ensure(
            (l.ttl_min_ms..=l.ttl_max_ms).contains(&l.ttl_default_ms),
            "limits.ttl_default_ms",
            ttl_default,
        )?;
        let attempts =
            format!("({}) must not exceed limits.max_attempts_max (LIM-1)", l.max_attempts_default);
        ensure(l.max_attempts_default <= l.max_attempts_max, "limits.max_attempts_default", attempts)
    }

    /// Directory for the database and signing key: `data_dir`, else `$XDG_DATA_HOME/relaykit`,
    /// else `$HOME/.local/share/relaykit`, else `./relaykit-data`. `None` when ephemeral.
    pub fn resolved_data_dir(&self) -> Option<PathBuf> {
        if self.ephemeral {
            return None;
        }
        if let Some(dir) = &self.data_dir {
            return Some(dir.clone());
        }
        Some(platform_data_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")))
    }
}

/// The platform data dir from the values of `XDG_DATA_HOME` and `HOME`. A relative
/// `XDG_DATA_HOME` is ignored, as the XDG base directory specification requires.
fn platform_data_dir(xdg_data_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    if let Some(xdg) = xdg_data_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return xdg.join("relaykit");
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/relaykit"),
        None => PathBuf::from("./relaykit-data"),
    }
}

/// An allow-list entry must be a serialized origin (`scheme://host[:port]`) or browsers' `Origin`
/// headers can never match it.
fn check_origin(origin: &str) -> Result<(), ConfigError> {
    let well_formed = origin.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && !rest.is_empty()
            && !rest.contains(['/', ','])
            && !origin.contains(char::is_whitespace)
    });
    ensure(
        well_formed,
        "allowed_origins",
        format!("entry {origin:?} is not an origin like https://app.example"),
    )
}

/// 1-based line and column (in characters) of a byte offset, clamped to the text.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// `Limits` itself accepts unknown members; the config must not, and it must take defaults for
/// missing ones whatever attributes `Limits` carries.
fn deserialize_limits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Limits, D::Error> {
    use serde::de::Error as _;
    let given = toml::Table::deserialize(deserializer)?;
    let mut merged = toml::Table::try_from(Limits::default()).map_err(D::Error::custom)?;
    for (key, value) in given {
        if !merged.contains_key(&key) {
            let known: Vec<&str> = merged.keys().map(String::as_str).collect();
            let message = format!("unknown field `{key}` in `limits`, expected one of {}", known.join(", "));
            return Err(D::Error::custom(message));
        }
        merged.insert(key, value);
    }
    merged.try_into::<Limits>().map_err(|err| {
        let detail = err.to_string().trim().replace('\n', " ");
        D::Error::custom(format!("limits: {detail}"))
    })
}

/// Applies the `RELAYKIT_*` pairs of `env` (sorted by name, so the result is deterministic).
fn apply_env(config: Config, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let mut vars: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX) && name != ENV_CONFIG_PATH).collect();
    if vars.is_empty() {
        return Ok(config);
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut table = toml::Table::try_from(&config).map_err(|err| ConfigError::Env {
        var: vars[0].0.clone(),
        message: format!("cannot apply overrides: {err}"),
    })?;
    let mut result = config;
    for (var, value) in &vars {
        set_override(&mut table, var, value)?;
        // Deserialize after each variable so a bad value is blamed on its own variable.
        result = table
            .clone()
            .try_into::<Config>()
            .map_err(|err| ConfigError::Env { var: var.clone(), message: err.message().to_owned() })?;
    }
    Ok(result)
}

fn set_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownEnv { var: var.to_owned() };
    let name = var[ENV_PREFIX.len()..].to_ascii_lowercase();
    let parts: Vec<&str> = name.split("__").collect();
    let (slot, key) = match parts.as_slice() {
        [key] => (&mut *table, *key),
        [section, key] => match table.get_mut(*section) {
            Some(toml::Value::Table(inner)) => (inner, *key),
            _ => return Err(unknown()),
        },
        _ => return Err(unknown()),
    };
    let new = match slot.get(key) {
        None if parts.len() == 1 && OPTIONAL_KEYS.contains(&key) => toml::Value::String(value.to_owned()),
        None => return Err(unknown()),
        Some(toml::Value::Table(_)) => {
            let message = format!("`{key}` is a table; set its keys with {var}__<KEY>");
            return Err(ConfigError::Env { var: var.to_owned(), message });
        }
        Some(current) => {
            convert(current, value).map_err(|message| ConfigError::Env { var: var.to_owned(), message })?
        }
    };
    slot.insert(key.to_owned(), new);
    Ok(())
}

/// Reads an environment value as the TOML type of the value it replaces.
fn convert(current: &toml::Value, value: &str) -> Result<toml::Value, String> {
    let trimmed = value.trim();
    match current {
        toml::Value::String(_) => Ok(toml::Value::String(value.to_owned())),
        toml::Value::Integer(_) => trimmed
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {value:?}")),
        toml::Value::Boolean(_) => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {value:?}")),
        },
        toml::Value::Array(_) if trimmed.starts_with('[') => match trimmed.parse::<toml::Value>() {
            Ok(array @ toml::Value::Array(_)) => Ok(array),
            _ => Err(format!("expected a TOML array or a comma-separated list, got {value:?}")),
        },
        toml::Value::Array(_) => Ok(toml::Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        )),
        _ => Ok(trimmed.parse::<toml::Value>().unwrap_or_else(|_| toml::Value::String(value.to_owned()))),
    }
}

#[cfg(test)]
mod tests;
