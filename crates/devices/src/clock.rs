//! Virtual time as devices see it (DESIGN.md §6). No device reads the host clock: the
//! machine passes the current virtual time into every access and into `Timed::advance`,
//! and asks each timed device when it next needs to run. Device clocks (the PIT's
//! 1.193182 MHz, the RTC's 32.768 kHz, the APIC timer's bus clock) are all counted from
//! time zero, as if they came from one crystal.

use std::sync::{Arc, Mutex};

use crate::bus::lock;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Nanoseconds of virtual time since the machine powered on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(u64::MAX);

    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s.saturating_mul(NANOS_PER_SEC))
    }

    pub const fn from_micros(us: u64) -> Nanos {
        Nanos(us.saturating_mul(1_000))
    }

    pub const fn saturating_add(self, ns: u64) -> Nanos {
        Nanos(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub const fn since(self, earlier: Nanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole periods of an `hz` clock that have elapsed at this time.
    pub fn ticks(self, hz: u64) -> u64 {
        let t = self.0 as u128 * hz as u128 / NANOS_PER_SEC as u128;
        t.min(u64::MAX as u128) as u64
    }

    /// The first instant at which an `hz` clock has counted at least `tick` periods, if
    /// that is representable (exactly `tick` for clocks up to 1 GHz).
    pub fn at_tick(tick: u64, hz: u64) -> Option<Nanos> {
        if hz == 0 {
            return None;
        }
        let t = (tick as u128 * NANOS_PER_SEC as u128).div_ceil(hz as u128);
        u64::try_from(t).ok().map(Nanos)
    }
}

/// A device whose outputs change with time alone (a timer reaching zero, a clock
/// ticking over), not only on accesses.
///
/// Contract: times passed to a device never decrease. After `advance(now)`,
/// `next_deadline()` is `None` or later than `now`, so a machine that advances each
/// device to its deadline always makes progress. A deadline may be early (a device may
/// find nothing to do at it); it is never late.
pub trait Timed {
    /// When the device next changes an output (an interrupt line, an IRR bit) by itself.
    fn next_deadline(&self) -> Option<Nanos>;
    /// Run the device's time forward to `now`, raising or lowering its lines as the
    /// datasheet says they would have moved meanwhile.
    fn advance(&mut self, now: Nanos);
}

impl<T: Timed + ?Sized> Timed for Arc<Mutex<T>> {
    fn next_deadline(&self) -> Option<Nanos> {
        lock(self).next_deadline()
    }

    fn advance(&mut self, now: Nanos) {
        lock(self).advance(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_their_first_instants_agree() {
        const PIT_HZ: u64 = 1_193_182;
        for k in [0, 1, 2, 1_193_181, 1_193_182, 1 << 40] {
            let t = Nanos::at_tick(k, PIT_HZ).unwrap();
            assert_eq!(t.ticks(PIT_HZ), k);
            if k > 0 {
                assert_eq!(
                    Nanos(t.0 - 1).ticks(PIT_HZ),
                    k - 1,
                    "first instant of tick {k}"
                );
            }
        }
        assert_eq!(Nanos::from_secs(1).ticks(PIT_HZ), PIT_HZ);
        // A 3 GHz clock counts 3 periods a nanosecond: the 7th falls in the 3rd ns.
        let ghz3 = 3_000_000_000;
        assert_eq!(Nanos::at_tick(7, ghz3), Some(Nanos(3)));
        assert_eq!(Nanos::at_tick(1, 0), None);
        assert_eq!(Nanos::at_tick(u64::MAX, 1), None);
        assert_eq!(Nanos::MAX.ticks(u64::MAX), u64::MAX);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Nanos(5).since(Nanos(7)), 0);
        assert_eq!(Nanos::MAX.saturating_add(1), Nanos::MAX);
        assert_eq!(Nanos::from_secs(u64::MAX), Nanos::MAX);
        assert_eq!(Nanos::from_micros(3), Nanos(3000));
    }
}
