//! What a load-generator body carries: the command id and the sender's intended send time (the
//! `lg` object), in plain `payload` or as the "ciphertext" of an `e2e` envelope.

use relaykit_protocol::{E2eEnvelope, RawJson};

use crate::record::Micros;

/// The `lg` object a load-generator payload carries: command id and the sender's intended time.
pub(super) fn stamp(cid: u64, t: Micros, pad: usize) -> RawJson {
    let text = if pad == 0 {
        format!(r#"{{"lg":{{"c":{cid},"t":{t}}}}}"#)
    } else {
        format!(r#"{{"lg":{{"c":{cid},"t":{t}}},"pad":"{}"}}"#, "x".repeat(pad))
    };
    RawJson::from_text(text).expect("stamps are JSON")
}

/// Reads `(cid, t)` back from a payload.
fn read_stamp(payload: Option<&RawJson>) -> Option<(u64, Micros)> {
    stamp_of(payload?.get())
}

fn stamp_of(text: &str) -> Option<(u64, Micros)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some((value["lg"]["c"].as_u64()?, value["lg"]["t"].as_u64()?))
}

/// A body: plain `payload`, or the same text as the "ciphertext" of an `e2e` envelope.
pub(super) fn body(stamp: RawJson, e2e: bool) -> (Option<RawJson>, Option<E2eEnvelope>) {
    if !e2e {
        return (Some(stamp), None);
    }
    use base64::Engine as _;
    let ciphertext = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(stamp.get());
    let envelope = E2eEnvelope {
        alg: "relaykit-load-plain".into(),
        kid: "load".into(),
        nonce: "AAAA".into(),
        ciphertext,
    };
    (None, Some(envelope))
}

/// Reads `(cid, t)` back from either kind of body.
pub(super) fn read_body(payload: Option<&RawJson>, e2e: Option<&E2eEnvelope>) -> Option<(u64, Micros)> {
    if let Some(e) = e2e {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&e.ciphertext).ok()?;
        return stamp_of(std::str::from_utf8(&bytes).ok()?);
    }
    read_stamp(payload)
}
