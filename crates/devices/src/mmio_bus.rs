//! The MMIO bus: devices claim physical address windows (the local APIC, the IOAPIC,
//! pc-testdev's iomem); the PCI bus may sit behind as the fallback that decodes memory
//! BARs. Unclaimed reads float high, unclaimed writes vanish.

use std::sync::{Arc, Mutex};

use crate::bus::{lock, ones, Bus, Device, IoAccess};
use crate::clock::Nanos;

pub trait MmioDevice: Device {
    /// An access of `size` bytes (1, 2, 4 or 8) at `base + offset`, where `base` is the
    /// start of the claimed window it hit, at virtual time `now`.
    fn read(&mut self, base: u64, offset: u64, size: u8, now: Nanos) -> u64;
    fn write(&mut self, base: u64, offset: u64, size: u8, value: u64, now: Nanos) -> IoAccess;
}

impl<T: MmioDevice> MmioDevice for Arc<Mutex<T>> {
    fn read(&mut self, base: u64, offset: u64, size: u8, now: Nanos) -> u64 {
        lock(self).read(base, offset, size, now)
    }

    fn write(&mut self, base: u64, offset: u64, size: u8, value: u64, now: Nanos) -> IoAccess {
        lock(self).write(base, offset, size, value, now)
    }
}

pub type MmioBus = Bus<u64, dyn MmioDevice>;

impl Bus<u64, dyn MmioDevice> {
    pub fn read(&mut self, addr: u64, size: u8, now: Nanos) -> u64 {
        match self.route(addr, false) {
            Some((d, base, offset)) => d.read(base, offset, size, now) & ones(size),
            None => ones(size),
        }
    }

    pub fn write(&mut self, addr: u64, size: u8, value: u64, now: Nanos) -> IoAccess {
        match self.route(addr, true) {
            Some((d, base, offset)) => d.write(base, offset, size, value & ones(size), now),
            None => IoAccess::Done,
        }
    }
}

/// `size` bytes of `bytes` from `offset` as a little-endian value; bytes past the end
/// read as zero.
pub fn read_le(bytes: &[u8], offset: u64, size: u8) -> u64 {
    (0..size.min(8) as u64).fold(0, |v, i| {
        let b = offset
            .checked_add(i)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| bytes.get(o));
        v | (b.copied().unwrap_or(0) as u64) << (8 * i)
    })
}

/// Store `size` bytes of `value` little-endian at `offset`; bytes past the end are dropped.
pub fn write_le(bytes: &mut [u8], offset: u64, size: u8, value: u64) {
    for i in 0..size.min(8) as u64 {
        let slot = offset
            .checked_add(i)
            .and_then(|o| usize::try_from(o).ok())
            .and_then(|o| bytes.get_mut(o));
        if let Some(b) = slot {
            *b = (value >> (8 * i)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{AccessStats, BusError};

    struct Ram([u8; 16]);
    impl Device for Ram {
        fn name(&self) -> &'static str {
            "ram"
        }
    }
    impl MmioDevice for Ram {
        fn read(&mut self, _base: u64, offset: u64, size: u8, _now: Nanos) -> u64 {
            read_le(&self.0, offset, size)
        }
        fn write(
            &mut self,
            _base: u64,
            offset: u64,
            size: u8,
            value: u64,
            _now: Nanos,
        ) -> IoAccess {
            write_le(&mut self.0, offset, size, value);
            IoAccess::Done
        }
    }

    #[test]
    fn windows_dispatch_with_offsets_and_count_accesses() {
        let mut bus = MmioBus::new();
        bus.register(0xFEC0_0000, 16, Box::new(Ram([0; 16])))
            .unwrap();
        bus.write(0xFEC0_0004, 4, 0xDEAD_BEEF, Nanos::ZERO);
        assert_eq!(bus.read(0xFEC0_0004, 2, Nanos::ZERO), 0xBEEF);
        assert_eq!(bus.read(0xFEC0_0000, 8, Nanos::ZERO), 0xDEAD_BEEF_0000_0000);
        // The last byte of the window, read 8 wide: the device sees the rest as absent.
        assert_eq!(bus.read(0xFEC0_000F, 8, Nanos::ZERO), 0);
        assert_eq!(bus.read(0xFEC0_0010, 4, Nanos::ZERO), 0xFFFF_FFFF);
        assert_eq!(bus.write(0xFEC0_0010, 4, 1, Nanos::ZERO), IoAccess::Done);
        let s = bus.stats();
        assert_eq!(
            s[0],
            (
                "ram",
                AccessStats {
                    reads: 3,
                    writes: 1
                }
            )
        );
        assert_eq!(
            s[1],
            (
                "unclaimed",
                AccessStats {
                    reads: 1,
                    writes: 1
                }
            )
        );
        assert!(matches!(
            bus.register(0xFEC0_000F, 1, Box::new(Ram([0; 16]))),
            Err(BusError::Overlap { other: "ram", .. })
        ));
    }

    #[test]
    fn little_endian_helpers_stay_in_bounds() {
        let mut b = [0u8; 4];
        write_le(&mut b, 2, 8, 0x1122_3344_5566_7788);
        assert_eq!(b, [0, 0, 0x88, 0x77]);
        assert_eq!(read_le(&b, 2, 4), 0x7788);
        assert_eq!(read_le(&b, u64::MAX, 8), 0);
        write_le(&mut b, u64::MAX, 8, u64::MAX);
    }
}
