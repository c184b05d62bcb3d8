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
    pub fn reactor(self) -> usize {
        usize::from(self.reactor)
    }

    /// The connection's slot on its reactor.
    pub(crate) fn slot(self) -> usize {
        self.slot as usize
    }
}

pub use mast_meta::{Committed, Seq};

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
    fn tokens_are_unique() {
        let mut t = AckTokens::default();
        assert_ne!(t.next(), t.next());
    }
}
