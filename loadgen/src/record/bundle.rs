//! Result bundles: what one worker process of a sharded run hands to the process that merges.
//! A bundle carries exact counts and full histograms (HdrHistogram V2 + DEFLATE, base64), so the
//! merged report has the same ledger and the same percentiles (within histogram precision) as a
//! single process simulating the whole population.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::{Aggregator, Ledger, SecondAcc};

/// Why a bundle could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("result bundle: {0}")]
pub struct BundleError(String);

/// One second of a worker's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BundleSecond {
    sent: u64,
    delivered: u64,
    routing: String,
    update: String,
}

/// A worker's closed aggregate plus its own health figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// `relaykit load bundle v1`.
    pub format: String,
    /// This worker's shard (index, count).
    pub shard: (u32, u32),
    /// CPU seconds the worker used.
    pub cpu_s: f64,
    /// Worker wall time, ms.
    pub wall_ms: u64,
    /// Worker resident memory, KiB.
    pub rss_kib: u64,
    ledger: Ledger,
    errors: std::collections::BTreeMap<String, u64>,
    histograms: std::collections::BTreeMap<String, String>,
    seconds: Vec<BundleSecond>,
}

const FORMAT: &str = "relaykit load bundle v1";

fn encode(h: &Histogram<u64>) -> Result<String, BundleError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).map_err(|e| BundleError(format!("{e:?}")))?;
    Ok(STANDARD.encode(bytes))
}

fn decode(text: &str) -> Result<Histogram<u64>, BundleError> {
    let bytes = STANDARD.decode(text).map_err(|e| BundleError(e.to_string()))?;
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| BundleError(format!("{e:?}")))
}

impl Aggregator {
    fn named(&self) -> [(&'static str, &Histogram<u64>); 8] {
        [
            ("routing", &self.routing),
            ("update", &self.update),
            ("accept", &self.accept),
            ("end_to_end", &self.end_to_end),
            ("connect", &self.connect),
            ("send_lag", &self.send_lag),
            ("reconnect", &self.reconnect),
            ("backlog", &self.backlog),
        ]
    }

    fn named_mut(&mut self) -> [(&'static str, &mut Histogram<u64>); 8] {
        [
            ("routing", &mut self.routing),
            ("update", &mut self.update),
            ("accept", &mut self.accept),
            ("end_to_end", &mut self.end_to_end),
            ("connect", &mut self.connect),
            ("send_lag", &mut self.send_lag),
            ("reconnect", &mut self.reconnect),
            ("backlog", &mut self.backlog),
        ]
    }

    /// Closes the ledger and packs everything into a bundle.
    pub fn into_bundle(
        mut self,
        shard: (u32, u32),
        cpu_s: f64,
        wall_ms: u64,
        rss_kib: u64,
    ) -> Result<Bundle, BundleError> {
        self.close_ledger();
        let histograms = self
            .named()
            .into_iter()
            .map(|(n, h)| Ok((n.to_string(), encode(h)?)))
            .collect::<Result<_, _>>()?;
        let seconds = self
            .seconds
            .iter()
            .map(|s| {
                Ok(BundleSecond {
                    sent: s.sent,
                    delivered: s.delivered,
                    routing: encode(&s.routing)?,
                    update: encode(&s.update)?,
                })
            })
            .collect::<Result<_, BundleError>>()?;
        Ok(Bundle {
            format: FORMAT.into(),
            shard,
            cpu_s,
            wall_ms,
            rss_kib,
            ledger: self.ledger,
            errors: self.errors,
            histograms,
            seconds,
        })
    }

    /// Adds a worker's bundle: histograms added, counts summed, seconds aligned by index (every
    /// worker starts its schedule at the same wall-clock instant).
    pub fn merge(&mut self, bundle: &Bundle) -> Result<(), BundleError> {
        if bundle.format != FORMAT {
            return Err(BundleError(format!("unknown format {:?}", bundle.format)));
        }
        self.close_ledger();
        for (name, h) in self.named_mut() {
            let text =
                bundle.histograms.get(name).ok_or_else(|| BundleError(format!("no histogram {name}")))?;
            h.add(decode(text)?).map_err(|e| BundleError(format!("{name}: {e:?}")))?;
        }
        let l = &bundle.ledger;
        let m = &mut self.ledger;
        m.sent += l.sent;
        m.accepted += l.accepted;
        m.delivered += l.delivered;
        m.lost += l.lost;
        m.duplicated += l.duplicated;
        m.unacknowledged += l.unacknowledged;
        m.delivered_after_reconnect += l.delivered_after_reconnect;
        m.delivered_after_expiry += l.delivered_after_expiry;
        m.completed += l.completed;
        m.updates += l.updates;
        m.out_of_order += l.out_of_order;
        m.resent += l.resent;
        for (code, n) in &bundle.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        for (i, s) in bundle.seconds.iter().enumerate() {
            while self.seconds.len() <= i {
                self.seconds.push(SecondAcc::new());
            }
            let mine = &mut self.seconds[i];
            mine.sent += s.sent;
            mine.delivered += s.delivered;
            mine.routing.add(decode(&s.routing)?).map_err(|e| BundleError(format!("{e:?}")))?;
            mine.update.add(decode(&s.update)?).map_err(|e| BundleError(format!("{e:?}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Event;

    fn worker(offset: u64) -> Aggregator {
        let mut a = Aggregator::default();
        for cid in offset..offset + 50 {
            a.record(Event::Sent { cid, intended: cid * 1000, actual: cid * 1000 + 5, held: false });
            a.record(Event::Accepted { cid, at: cid * 1000 + 700 });
            if cid % 10 != 0 {
                a.record(Event::Delivered { cid, intended: cid * 1000, at: cid * 1000 + 900 + cid });
            }
        }
        a.record(Event::Error { code: "x".into() });
        a
    }

    /// Two workers merged through bundles give exactly what one process seeing all events gives.
    #[test]
    fn merged_bundles_equal_a_single_process() {
        let mut single = worker(0);
        for cid in 1000..1050 {
            single.record(Event::Sent { cid, intended: cid * 1000, actual: cid * 1000 + 5, held: false });
            single.record(Event::Accepted { cid, at: cid * 1000 + 700 });
            if cid % 10 != 0 {
                single.record(Event::Delivered { cid, intended: cid * 1000, at: cid * 1000 + 900 + cid });
            }
        }
        single.record(Event::Error { code: "x".into() });
        let a = worker(0).into_bundle((0, 2), 1.0, 10, 1).unwrap();
        let b = worker(1000).into_bundle((1, 2), 1.0, 10, 1).unwrap();
        // Through JSON, as between processes.
        let a: Bundle = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let b: Bundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        let mut merged = Aggregator::default();
        merged.merge(&a).unwrap();
        merged.merge(&b).unwrap();
        let (m, s) = (merged.finish(), single.finish());
        assert_eq!(m.ledger, s.ledger);
        assert_eq!((m.ledger.sent, m.ledger.lost), (100, 10));
        assert_eq!(m.command_routing, s.command_routing);
        assert_eq!(m.accept, s.accept);
        assert_eq!(m.errors.get("x"), Some(&2));
        assert_eq!(m.timeseries, s.timeseries);
    }

    #[test]
    fn a_foreign_bundle_is_refused() {
        let mut bundle = worker(0).into_bundle((0, 1), 0.0, 0, 0).unwrap();
        bundle.format = "something else".into();
        assert!(Aggregator::default().merge(&bundle).is_err());
    }
}
