//! What the port bus and the MMIO bus share: a table of claimed address ranges with
//! overlap checks, one optional fallback device for addresses nobody claims (PCI BAR
//! decode), per-device access counts for the exit statistics, and `IoAccess`, the
//! answer a device gives the machine after a write.

use std::fmt::LowerHex;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use thiserror::Error;

use crate::irq::{ApicMessage, CpuSignal};

/// Every device on a bus has a name, for errors and statistics.
pub trait Device {
    fn name(&self) -> &'static str;
}

/// A device the machine keeps a typed handle to while a bus also owns it (Firecracker's
/// `Arc<Mutex<dyn BusDevice>>`): the PIC, the PIT, the APICs, the PCI bus.
pub type Shared<T> = Arc<Mutex<T>>;

pub fn shared<T>(device: T) -> Shared<T> {
    Arc::new(Mutex::new(device))
}

/// Lock a shared device. A panic elsewhere while the lock was held leaves the device in
/// a state its own methods produced, which is still a state the guest may see.
pub fn lock<T: ?Sized>(device: &Mutex<T>) -> MutexGuard<'_, T> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Device + ?Sized> Device for Arc<Mutex<T>> {
    fn name(&self) -> &'static str {
        lock(self).name()
    }
}

/// What a device wants from the machine after an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoAccess {
    Done,
    /// End the run (debug-exit).
    Stop,
    /// The A20 gate changed (port 0x92, i8042 output port).
    A20(bool),
    /// Reset the machine (port 0x92 bit 0, i8042 pulse, PIIX reset control 0xCF9).
    Reset,
    /// Turn the machine off (ACPI PM1_CNT.SLP_EN with the S5 sleep type).
    PowerOff,
    /// An interrupt message for the local APIC (an IOAPIC entry unmasked while its line
    /// was asserted).
    Interrupt(ApicMessage),
    /// The local APIC ended a level-triggered interrupt: the IOAPIC must clear the
    /// remote IRR of the entries with this vector.
    EoiBroadcast(u8),
    /// The CPU itself must act: a self-IPI of INIT, SIPI, NMI or SMI.
    Signal(CpuSignal),
}

impl IoAccess {
    /// The first answer that asks for something, for devices that split one access
    /// into several.
    pub fn or(self, other: IoAccess) -> IoAccess {
        if self == IoAccess::Done {
            other
        } else {
            self
        }
    }
}

/// Accesses per device, for the exit statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessStats {
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("{name} at {base:#x}+{len:#x} overlaps {other}")]
    Overlap {
        name: &'static str,
        base: u64,
        len: u64,
        other: &'static str,
    },
    #[error("empty or wrapping range {base:#x}+{len:#x} for {name}")]
    BadRange {
        name: &'static str,
        base: u64,
        len: u64,
    },
    #[error("the bus has no device #{0}")]
    NoDevice(usize),
    #[error("the bus already has {0} as its fallback device")]
    FallbackTaken(&'static str),
}

/// A device's place on one bus, for adding further ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceId(usize);

/// An address type a bus can be built over: ports (u16) or physical addresses (u64).
pub trait Address: Copy + Ord + LowerHex + Into<u64> {
    const ZERO: Self;
    const MAX: Self;
    /// `self - base` for `base <= self`.
    fn offset_from(self, base: Self) -> Self;
    /// `self + n` if it fits.
    fn checked_add(self, n: Self) -> Option<Self>;
    fn minus_one(self) -> Self;
}

macro_rules! address {
    ($t:ty) => {
        impl Address for $t {
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            fn offset_from(self, base: Self) -> Self {
                self.wrapping_sub(base)
            }
            fn checked_add(self, n: Self) -> Option<Self> {
                <$t>::checked_add(self, n)
            }
            fn minus_one(self) -> Self {
                self.wrapping_sub(1)
            }
        }
    };
}
address!(u16);
address!(u64);

struct Entry<D: ?Sized> {
    device: Box<D>,
    name: &'static str,
    stats: AccessStats,
}

/// `base..=last`, inclusive so that a range may end at the top of the space.
struct Claim<A> {
    base: A,
    last: A,
    device: usize,
}

/// A bus over address type `A` whose devices are `D` (a trait object). Accesses
/// nobody claims go to the fallback device if there is one, else they float high.
pub struct Bus<A, D: ?Sized> {
    entries: Vec<Entry<D>>,
    /// Sorted by base; never overlapping.
    claims: Vec<Claim<A>>,
    fallback: Option<usize>,
    unclaimed: AccessStats,
}

impl<A, D: ?Sized> Default for Bus<A, D> {
    fn default() -> Self {
        Bus {
            entries: Vec::new(),
            claims: Vec::new(),
            fallback: None,
            unclaimed: AccessStats::default(),
        }
    }
}

impl<A: Address, D: ?Sized + Device> Bus<A, D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a device that answers no addresses yet (see `add_range`, `set_fallback`).
    pub fn add(&mut self, device: Box<D>) -> DeviceId {
        let name = device.name();
        self.entries.push(Entry {
            device,
            name,
            stats: AccessStats::default(),
        });
        DeviceId(self.entries.len() - 1)
    }

    /// Add a device that answers `base..base + len`.
    pub fn register(&mut self, base: A, len: A, device: Box<D>) -> Result<DeviceId, BusError> {
        let last = self.check(device.name(), base, len)?;
        let id = self.add(device);
        self.insert(base, last, id.0);
        Ok(id)
    }

    /// Let a device answer `base..base + len` as well (the PIC at 0x20, 0xA0 and
    /// 0x4D0). The device learns which range an access hit from the base it is given.
    pub fn add_range(&mut self, id: DeviceId, base: A, len: A) -> Result<(), BusError> {
        let name = self.entries.get(id.0).ok_or(BusError::NoDevice(id.0))?.name;
        let last = self.check(name, base, len)?;
        self.insert(base, last, id.0);
        Ok(())
    }

    /// Let a device answer every address nobody claims, with base 0 and the address as
    /// its offset: PCI BAR decode behind the fixed devices.
    pub fn set_fallback(&mut self, id: DeviceId) -> Result<(), BusError> {
        if id.0 >= self.entries.len() {
            return Err(BusError::NoDevice(id.0));
        }
        if let Some(f) = self.fallback {
            return Err(BusError::FallbackTaken(self.entries[f].name));
        }
        self.fallback = Some(id.0);
        Ok(())
    }

    fn check(&self, name: &'static str, base: A, len: A) -> Result<A, BusError> {
        let bad = || BusError::BadRange {
            name,
            base: base.into(),
            len: len.into(),
        };
        if len == A::ZERO {
            return Err(bad());
        }
        let last = match base.checked_add(len.minus_one()) {
            Some(last) => last,
            None => return Err(bad()),
        };
        if let Some(c) = self
            .claims
            .iter()
            .find(|c| base <= c.last && c.base <= last)
        {
            return Err(BusError::Overlap {
                name,
                base: base.into(),
                len: len.into(),
                other: self.entries[c.device].name,
            });
        }
        Ok(last)
    }

    fn insert(&mut self, base: A, last: A, device: usize) {
        let at = self.claims.partition_point(|c| c.base < base);
        self.claims.insert(at, Claim { base, last, device });
    }

    /// The device answering `addr`, the base of the range it hit and the offset into
    /// it; counts the access.
    pub(crate) fn route(&mut self, addr: A, write: bool) -> Option<(&mut D, A, A)> {
        let i = self.claims.partition_point(|c| c.base <= addr);
        let hit = i
            .checked_sub(1)
            .map(|i| &self.claims[i])
            .filter(|c| addr <= c.last)
            .map(|c| (c.device, c.base));
        let (device, base) = match (hit, self.fallback) {
            (Some(hit), _) => hit,
            (None, Some(f)) => (f, A::ZERO),
            (None, None) => {
                count(&mut self.unclaimed, write);
                return None;
            }
        };
        let entry = &mut self.entries[device];
        count(&mut entry.stats, write);
        Some((entry.device.as_mut(), base, addr.offset_from(base)))
    }

    /// (device name, first address, last address) of every claimed range, by address.
    pub fn ranges(&self) -> Vec<(&'static str, u64, u64)> {
        self.claims
            .iter()
            .map(|c| (self.entries[c.device].name, c.base.into(), c.last.into()))
            .collect()
    }

    /// The device that answers unclaimed addresses, if any.
    pub fn fallback_name(&self) -> Option<&'static str> {
        self.fallback.map(|f| self.entries[f].name)
    }

    /// (device name, accesses) for every device, then "unclaimed".
    pub fn stats(&self) -> Vec<(&'static str, AccessStats)> {
        let mut v: Vec<_> = self.entries.iter().map(|e| (e.name, e.stats)).collect();
        v.push(("unclaimed", self.unclaimed));
        v
    }
}

fn count(stats: &mut AccessStats, write: bool) {
    if write {
        stats.writes += 1;
    } else {
        stats.reads += 1;
    }
}

/// All ones in an access of `size` bytes: what a bus with nothing listening returns.
pub fn ones(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);
    impl Device for Named {
        fn name(&self) -> &'static str {
            self.0
        }
    }

    fn bus() -> Bus<u64, Named> {
        Bus::new()
    }

    #[test]
    fn ranges_route_with_base_and_offset() {
        let mut b = bus();
        let pic = b.register(0x20, 2, Box::new(Named("pic"))).unwrap();
        b.add_range(pic, 0xA0, 2).unwrap();
        b.register(0x40, 4, Box::new(Named("pit"))).unwrap();
        let (d, base, off) = b.route(0xA1, false).unwrap();
        assert_eq!((d.0, base, off), ("pic", 0xA0, 1));
        let (d, base, off) = b.route(0x43, true).unwrap();
        assert_eq!((d.0, base, off), ("pit", 0x40, 3));
        assert!(b.route(0x44, false).is_none());
        assert!(b.route(0x1F, false).is_none());
        let s = b.stats();
        assert_eq!(
            s[0],
            (
                "pic",
                AccessStats {
                    reads: 1,
                    writes: 0
                }
            )
        );
        assert_eq!(
            s[1],
            (
                "pit",
                AccessStats {
                    reads: 0,
                    writes: 1
                }
            )
        );
        assert_eq!(
            s[2],
            (
                "unclaimed",
                AccessStats {
                    reads: 2,
                    writes: 0
                }
            )
        );
    }

    #[test]
    fn overlaps_and_bad_ranges_are_rejected() {
        let mut b = bus();
        b.register(0x1000, 0x100, Box::new(Named("a"))).unwrap();
        let overlap = b.register(0x10FF, 1, Box::new(Named("b")));
        assert_eq!(
            overlap,
            Err(BusError::Overlap {
                name: "b",
                base: 0x10FF,
                len: 1,
                other: "a"
            })
        );
        assert!(matches!(
            b.register(0xFFF, 2, Box::new(Named("c"))),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            b.register(0, 0, Box::new(Named("d"))),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            b.register(u64::MAX, 2, Box::new(Named("e"))),
            Err(BusError::BadRange { .. })
        ));
        assert_eq!(b.add_range(DeviceId(9), 0, 1), Err(BusError::NoDevice(9)));
        // A range may end at the very top of the space, and ranges may touch.
        b.register(u64::MAX - 0xF, 0x10, Box::new(Named("top")))
            .unwrap();
        b.register(0x1100, 1, Box::new(Named("next"))).unwrap();
        assert_eq!(b.route(u64::MAX, false).unwrap().2, 0xF);
    }

    #[test]
    fn fallback_sees_unclaimed_addresses_whole() {
        let mut b = bus();
        let pci = b.register(0xCF8, 8, Box::new(Named("pci"))).unwrap();
        b.set_fallback(pci).unwrap();
        assert_eq!(b.set_fallback(pci), Err(BusError::FallbackTaken("pci")));
        assert_eq!(b.set_fallback(DeviceId(7)), Err(BusError::NoDevice(7)));
        let (d, base, off) = b.route(0xC000, false).unwrap();
        assert_eq!((d.0, base, off), ("pci", 0, 0xC000));
        let (d, base, off) = b.route(0xCFC, true).unwrap();
        assert_eq!((d.0, base, off), ("pci", 0xCF8, 4));
        let s = b.stats();
        assert_eq!(
            s,
            [
                (
                    "pci",
                    AccessStats {
                        reads: 1,
                        writes: 1
                    }
                ),
                ("unclaimed", AccessStats::default())
            ]
        );
        // A device without ranges answers nothing until it is given some.
        let mut b = bus();
        let id = b.add(Box::new(Named("late")));
        assert!(b.route(0x10, false).is_none());
        b.add_range(id, 0x10, 1).unwrap();
        assert_eq!(b.route(0x10, false).unwrap().0 .0, "late");
    }

    #[test]
    fn first_request_wins_when_accesses_are_split() {
        assert_eq!(IoAccess::Done.or(IoAccess::Reset), IoAccess::Reset);
        assert_eq!(IoAccess::A20(true).or(IoAccess::Reset), IoAccess::A20(true));
        assert_eq!(ones(1), 0xFF);
        assert_eq!(ones(4), 0xFFFF_FFFF);
        assert_eq!(ones(8), u64::MAX);
    }
}
