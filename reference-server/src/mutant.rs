//! Deliberately broken behaviours, for proving that the conformance suite can fail.
//!
//! The enum always exists (checking it costs one comparison), but only a build with the
//! `mutants` cargo feature can set one: [`crate::Config::mutant`] exists only there and is
//! never read from files or the environment. The conformance crate's tests turn the feature on;
//! `relaykit serve` never can.

/// One way to break the protocol on purpose; each is caught by named conformance cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Deliver in seq order, ignoring priority (breaks DLV-17).
    IgnorePriority,
    /// Forget unacked entries when their connection ends (breaks at-least-once).
    DropInboxOnReconnect,
    /// Never expire entries; deliver them after their time to live.
    DeliverAfterExpiry,
    /// No cap on delivery attempts; never dead-letter.
    NoDeliveryCap,
    /// Name the recipient, not the sender, in `from`.
    WrongSender,
    /// Resolve device targets across users.
    CrossUserDelivery,
    /// Accept a spent refresh token again (no reuse detection).
    NoRefreshReuseDetection,
    /// Enqueue every resend again (no idempotency).
    NoResendDedupe,
    /// Re-serialize payloads instead of relaying their bytes.
    CorruptPayload,
    /// Keep acked entries: they are delivered again on the next connection.
    RedeliverAcked,
    /// Send no receipts to senders.
    NoReceipts,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: &'static [Mutant] = &[
        Mutant::IgnorePriority,
        Mutant::DropInboxOnReconnect,
        Mutant::DeliverAfterExpiry,
        Mutant::NoDeliveryCap,
        Mutant::WrongSender,
        Mutant::CrossUserDelivery,
        Mutant::NoRefreshReuseDetection,
        Mutant::NoResendDedupe,
        Mutant::CorruptPayload,
        Mutant::RedeliverAcked,
        Mutant::NoReceipts,
    ];
}
