//! Validation of any JSON text against the protocol's JSON Schemas (draft 2020-12), compiled
//! once per process. The schema files live in `schemas/` at the workspace root and are embedded
//! at build time, so a binary needs no files at run time.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

/// Base of every schema `$id`; a schema named `ws/client/hello` has `$id` `BASE_URI + ws/client/hello.json`.
pub const BASE_URI: &str = "https://relaykit.dev/schemas/v1/";

/// Union schema of every frame a client may send.
pub const CLIENT_FRAME: &str = "ws/client-frame";
/// Union schema of every frame a relay may send.
pub const SERVER_FRAME: &str = "ws/server-frame";

/// Why the schema set could not be built (a packaging bug, never caused by input).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A file is not JSON.
    #[error("schema {name} is not valid JSON: {source}")]
    NotJson {
        /// Schema name.
        name: String,
        /// Parser error.
        source: serde_json::Error,
    },
    /// The registry or a validator could not be built.
    #[error("schema {name} does not compile: {message}")]
    Compile {
        /// Schema name.
        name: String,
        /// Compiler message.
        message: String,
    },
    /// No schema of that name.
    #[error("no schema named {0}")]
    Unknown(String),
}

/// One way an instance breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the instance.
    pub instance_path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.instance_path.is_empty() { "/" } else { &self.instance_path };
        write!(f, "{path}: {}", self.message)
    }
}

/// Why a text failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON that breaks the schema.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Schema(Vec<Violation>),
}

/// Compiled validators, one per schema file.
#[derive(Debug)]
pub struct SchemaSet {
    validators: BTreeMap<&'static str, Validator>,
}

impl SchemaSet {
    /// Compiles every embedded schema (with all of them registered for `$ref`s, offline).
    pub fn compile() -> Result<Self, SchemaError> {
        let mut docs = Vec::with_capacity(SCHEMA_FILES.len());
        for (name, text) in SCHEMA_FILES {
            let value: Value = serde_json::from_str(text)
                .map_err(|source| SchemaError::NotJson { name: (*name).to_string(), source })?;
            docs.push((*name, value));
        }
        let compile_err = |name: &str, e: &dyn std::fmt::Display| SchemaError::Compile {
            name: name.to_string(),
            message: e.to_string(),
        };
        let mut builder = jsonschema::Registry::new();
        for (name, doc) in &docs {
            builder = builder
                .add(format!("{BASE_URI}{name}.json"), doc.clone())
                .map_err(|e| compile_err(name, &e))?;
        }
        let registry = builder.prepare().map_err(|e| compile_err("registry", &e))?;
        let mut validators = BTreeMap::new();
        for (name, _) in &docs {
            let root = serde_json::json!({ "$ref": format!("{BASE_URI}{name}.json") });
            let validator = jsonschema::options()
                .with_draft(Draft::Draft202012)
                .should_validate_formats(true)
                .with_registry(&registry)
                .build(&root)
                .map_err(|e| compile_err(name, &e))?;
            validators.insert(*name, validator);
        }
        Ok(SchemaSet { validators })
    }

    /// The process-wide set, compiled on first use.
    ///
    /// # Panics
    /// If the embedded schemas do not compile: a build defect caught by this crate's tests,
    /// never caused by input.
    pub fn global() -> &'static SchemaSet {
        static SET: OnceLock<SchemaSet> = OnceLock::new();
        SET.get_or_init(|| SchemaSet::compile().unwrap_or_else(|e| panic!("embedded schemas: {e}")))
    }

    /// Names of every schema, e.g. `ws/client/hello`, `rest/server_info`, `common`.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.validators.keys().copied()
    }

    /// Validates a value against the named schema.
    pub fn validate_value(&self, schema: &str, value: &Value) -> Result<Result<(), Invalid>, SchemaError> {
        let validator =
            self.validators.get(schema).ok_or_else(|| SchemaError::Unknown(schema.to_string()))?;
        let violations: Vec<Violation> = validator
            .iter_errors(value)
            .map(|e| Violation { instance_path: e.instance_path().to_string(), message: e.to_string() })
            .collect();
        Ok(if violations.is_empty() { Ok(()) } else { Err(Invalid::Schema(violations)) })
    }

    /// Validates JSON text against the named schema.
    pub fn validate_text(&self, schema: &str, text: &str) -> Result<Result<(), Invalid>, SchemaError> {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => self.validate_value(schema, &value),
            Err(e) => Ok(Err(Invalid::NotJson(e.to_string()))),
        }
    }

    /// Validates a frame a relay sent (what the conformance suite does with every frame).
    pub fn check_server_frame(&self, text: &str) -> Result<(), Invalid> {
        self.validate_text(SERVER_FRAME, text).unwrap_or_else(|e| Err(missing_schema(e)))
    }

    /// Validates a frame a client sent.
    pub fn check_client_frame(&self, text: &str) -> Result<(), Invalid> {
        self.validate_text(CLIENT_FRAME, text).unwrap_or_else(|e| Err(missing_schema(e)))
    }
}

/// The text of an embedded schema file.
pub fn schema_text(name: &str) -> Option<&'static str> {
    SCHEMA_FILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A union schema missing from the build is reported as a violation rather than a panic.
fn missing_schema(e: SchemaError) -> Invalid {
    Invalid::Schema(vec![Violation { instance_path: String::new(), message: e.to_string() }])
}
