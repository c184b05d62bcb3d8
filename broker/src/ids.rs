//! The broker's identifiers, each its own type: a connection, a metadata-store commit, and a
//! held acknowledgement. None of them has a "0 means none" value; absence is an `Option`.

use std::num::NonZeroU64;

/// One connection: the reactor that owns it, its slot there, and the slot's generation (slots
/// are reused, generations never), so a stale reference never reaches a newer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    reactor: u16,
    slot: u32,
    generation: NonZeroU64,
}

impl ConnRef {
    pub(crate) fn new(reactor: usize, slot: usize, generation: NonZeroU64) -> ConnRef {
        ConnRef {
            reactor: u16::try_from(reactor).unwrap_or(u16::MAX),
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            generation,
        }
    }

    /// The owning reactor's index.
    pub(crate) fn reactor(self) -> usize {
        usize::from(self.reactor)
    }

    /// The connection's slot on its reactor.
    pub(crate) fn slot(self) -> usize {
        self.slot as usize
    }
}

/// A metadata-store submission's number; commits are in number order, so one number being
/// durable means every smaller one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(NonZeroU64);

impl Seq {
    pub(crate) fn new(n: u64) -> Option<Seq> {
        NonZeroU64::new(n).map(Seq)
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// How far the durable prefix of metadata-store submissions reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Committed(pub(crate) u64);

impl Committed {
    /// Is the state that `seq` wrote durable (nothing to wait for is)?
    pub(crate) fn covers(self, seq: Option<Seq>) -> bool {
        seq.is_none_or(|s| s.get() <= self.0)
    }
}

/// An acknowledgement held until another system (the telemetry store) reports its message
/// done; unique per reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AckToken(NonZeroU64);

/// Hands out a reactor's [`AckToken`]s.
#[derive(Debug, Default)]
pub(crate) struct AckTokens(u64);

impl AckTokens {
    pub(crate) fn next(&mut self) -> AckToken {
        self.0 += 1;
        AckToken(NonZeroU64::MIN.saturating_add(self.0 - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_costs_no_space() {
        assert_eq!(size_of::<Option<ConnRef>>(), 16);
        assert_eq!(size_of::<Option<Seq>>(), 8);
        assert_eq!(size_of::<Option<AckToken>>(), 8);
    }

    #[test]
    fn nothing_to_wait_for_is_durable_and_order_is_by_number() {
        assert!(Committed(0).covers(None));
        assert!(!Committed(0).covers(Seq::new(1)));
        assert!(Committed(3).covers(Seq::new(3)));
        assert!(None < Seq::new(1) && Seq::new(1) < Seq::new(2));
        let mut t = AckTokens::default();
        assert_ne!(t.next(), t.next());
    }
}
