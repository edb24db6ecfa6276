//! Durable storage behind one small trait: tables of `key -> JSON text`, changed by ordered
//! batches of mutations. A batch is durable (fsync'd) when its commit resolves; the relay says
//! `accepted` only after that. All relay logic lives in memory (`crate::state`); the store is
//! what survives a crash and is read once at start.
//!
//! Two implementations: [`sqlite::SqliteStore`] (default; WAL, `synchronous=FULL`, one writer
//! thread with group commit) and [`memory::MemoryStore`] (`--ephemeral`, tests).

pub mod memory;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;

/// The tables of the relay. Each is `key TEXT PRIMARY KEY, value TEXT` in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Store-wide values: `inbox_epoch`.
    Meta,
    /// Users by id.
    Users,
    /// Devices by id (including revoked ones: ids are never reused).
    Devices,
    /// Pairing codes by code.
    PairingCodes,
    /// Refresh-token families by id.
    Families,
    /// Refresh tokens by SHA-256 of the token.
    RefreshTokens,
    /// Inbox entries by `<device_id>/<seq as 20 digits>`.
    Entries,
    /// Next sequence number per inbox, by device id (seqs are never reused).
    InboxSeqs,
    /// Idempotency records by `<sender device>/<message id>`.
    Idempotency,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Users,
        Table::Devices,
        Table::PairingCodes,
        Table::Families,
        Table::RefreshTokens,
        Table::Entries,
        Table::InboxSeqs,
        Table::Idempotency,
    ];

    /// SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Users => "users",
            Table::Devices => "devices",
            Table::PairingCodes => "pairing_codes",
            Table::Families => "families",
            Table::RefreshTokens => "refresh_tokens",
            Table::Entries => "entries",
            Table::InboxSeqs => "inbox_seqs",
            Table::Idempotency => "idempotency",
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Insert or replace a row.
    Put {
        /// Table.
        table: Table,
        /// Row key.
        key: String,
        /// JSON text.
        value: String,
    },
    /// Delete a row (no error if absent).
    Delete {
        /// Table.
        table: Table,
        /// Row key.
        key: String,
    },
}

impl Mutation {
    /// A put of a serializable record.
    pub fn put<T: serde::Serialize>(table: Table, key: impl Into<String>, value: &T) -> Mutation {
        Mutation::Put { table, key: key.into(), value: relaykit_protocol::encode(value) }
    }

    /// A delete.
    pub fn delete(table: Table, key: impl Into<String>) -> Mutation {
        Mutation::Delete { table, key: key.into() }
    }
}

/// Every row of every table, read at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Rows per table, ordered by key.
    pub tables: BTreeMap<Table, BTreeMap<String, String>>,
}

impl Snapshot {
    /// Rows of one table.
    pub fn rows(&self, table: Table) -> impl Iterator<Item = (&String, &String)> {
        self.tables.get(&table).into_iter().flatten()
    }
}

/// Storage failures. Any of them makes the outcome of the affected sends indefinite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// The writer thread is gone (shutting down or crashed).
    #[error("store writer stopped")]
    Stopped,
    /// Could not create the data directory or open the file.
    #[error("opening store: {0}")]
    Open(String),
}

/// Resolves once the batch is durable (or failed).
pub type Commit = oneshot::Receiver<Result<(), StoreError>>;

/// Observer of each durable commit: its duration and how many batches it carried.
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send + Sync>;

/// Durable storage of the relay.
pub trait Store: Send + Sync + 'static {
    /// Reads everything (once, at start).
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Queues a batch. Batches are applied atomically and in submission order; the returned
    /// receiver resolves after the batch is durable. Dropping the receiver does not cancel it.
    fn submit(&self, batch: Vec<Mutation>) -> Commit;

    /// Waits until everything submitted so far is durable (graceful shutdown).
    fn flush(&self) -> Commit {
        self.submit(Vec::new())
    }
}

/// Key of an inbox entry: zero-padded so keys sort by seq within a device.
pub fn entry_key(device_id: &str, seq: u64) -> String {
    format!("{device_id}/{seq:020}")
}

/// Key of an idempotency record.
pub fn idempotency_key(sender: &str, id: &str) -> String {
    format!("{sender}/{id}")
}

#[cfg(test)]
pub(crate) mod contract {
    //! Behaviour every [`Store`] must have; run by each implementation's tests.
    use super::*;

    fn put(table: Table, key: &str, value: &str) -> Mutation {
        Mutation::Put { table, key: key.into(), value: value.into() }
    }

    /// Puts, overwrites and deletes apply in order and are visible to `load`.
    pub(crate) async fn applies_batches_in_order(store: &dyn Store) {
        let first = store.submit(vec![put(Table::Users, "u1", "1"), put(Table::Entries, "d/1", "a")]);
        let second =
            store.submit(vec![put(Table::Users, "u1", "2"), Mutation::delete(Table::Entries, "d/1")]);
        let third = store.submit(vec![put(Table::Entries, "d/2", "b")]);
        for commit in [first, second, third] {
            commit.await.expect("resolved").expect("committed");
        }
        let snap = store.load().unwrap();
        let users: Vec<_> = snap.rows(Table::Users).collect();
        assert_eq!(users, vec![(&"u1".to_string(), &"2".to_string())]);
        let entries: Vec<_> = snap.rows(Table::Entries).map(|(k, _)| k.clone()).collect();
        assert_eq!(entries, vec!["d/2".to_string()]);
        store.flush().await.unwrap().unwrap();
    }

    /// Many concurrent submitters all get durable commits and nothing is lost.
    pub(crate) async fn concurrent_submitters_lose_nothing(store: std::sync::Arc<dyn Store>) {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let key = entry_key(&format!("dev{t}"), i);
                    store.submit(vec![put(Table::Entries, &key, "x")]).await.unwrap().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.load().unwrap().rows(Table::Entries).count(), 400);
    }
}
