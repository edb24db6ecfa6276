//! The catalogue: case modules by responsibility (a large group spans consecutive modules), and
//! `common`/`tokens` for the helpers several of them share. Every case registers its own users
//! and devices, so cases run concurrently without seeing each other.

use crate::case::Case;

mod auth;
mod badinput;
mod badmembers;
mod common;
mod content;
mod delivery;
mod directory;
mod live;
mod minted;
mod network;
mod refresh;
mod registration;
mod session;
mod settlement;
mod targets;
mod tokens;

/// Every case, in report order.
pub fn catalogue() -> Vec<Case> {
    [
        session::CASES,
        delivery::CASES,
        settlement::CASES,
        network::CASES,
        content::CASES,
        live::CASES,
        targets::CASES,
        badinput::CASES,
        badmembers::CASES,
        registration::CASES,
        directory::CASES,
        auth::CASES,
        minted::CASES,
        refresh::CASES,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use relaykit_protocol::requirements;

    use super::*;

    #[test]
    fn ids_are_unique_and_cite_real_requirements() {
        let mut ids = BTreeSet::new();
        for case in catalogue() {
            assert!(ids.insert(case.id), "{} defined twice", case.id);
            assert!(!case.requirements.is_empty(), "{} cites no requirement", case.id);
            for r in case.requirements {
                assert!(requirements::find(r).is_some(), "{} cites unknown requirement {r}", case.id);
            }
            assert!(
                case.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                case.id
            );
        }
    }
}
