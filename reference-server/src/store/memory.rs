//! In-memory [`Store`] for `--ephemeral` runs and tests: same contract, nothing survives the
//! process.

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::{Commit, Mutation, Snapshot, Store, StoreError};

/// Tables in a mutex; commits resolve immediately.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // One lock is enough: batches are applied whole, in call order.
    snapshot: Mutex<Snapshot>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn submit(&self, batch: Vec<Mutation>) -> Commit {
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        for m in batch {
            match m {
                Mutation::Put { table, key, value } => {
                    snap.tables.entry(table).or_default().insert(key, value);
                }
                Mutation::Delete { table, key } => {
                    if let Some(rows) = snap.tables.get_mut(&table) {
                        rows.remove(&key);
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        rx
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn applies_batches_in_order() {
        contract::applies_batches_in_order(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn concurrent_submitters_lose_nothing() {
        contract::concurrent_submitters_lose_nothing(Arc::new(MemoryStore::new())).await;
    }
}
