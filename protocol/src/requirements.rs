//! Requirement IDs of `docs/PROTOCOL.md`, generated from its `- **ID** (LEVEL) ...` bullets at
//! build time. Tests and reports cite these constants (e.g. [`DLV_1`]), so an ID that disappears
//! from the specification is a compile error where it is cited.

/// RFC 2119 level of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Absolute requirement.
    Must,
    /// Recommended; a conformance miss is a warning.
    Should,
    /// Optional.
    May,
}

impl Level {
    /// `MUST`, `SHOULD` or `MAY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// One normative rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Stable ID, e.g. `DLV-3`.
    pub id: &'static str,
    /// Its level.
    pub level: Level,
    /// Start of its text in the specification.
    pub summary: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/requirements.rs"));

/// Looks a requirement up by ID.
pub fn find(id: &str) -> Option<&'static Requirement> {
    ALL.iter().find(|r| r.id == id)
}
