//! The port-I/O bus: devices claim port ranges; accesses nobody claims read as all
//! ones and writes to them vanish, as on an ISA bus with nothing listening.

use std::sync::{Arc, Mutex};

use crate::bus::{lock, ones, Bus, BusError, Device};
use crate::clock::Nanos;

pub use crate::bus::{AccessStats, IoAccess};

/// The port bus's registration error (one type for every bus).
pub type PortError = BusError;

pub trait PortDevice: Device {
    /// An access of `size` bytes (1, 2 or 4) at port `base + offset`, where `base` is
    /// the start of the claimed range it hit, at virtual time `now`.
    fn read(&mut self, base: u16, offset: u16, size: u8, now: Nanos) -> u32;
    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess;
}

impl<T: PortDevice> PortDevice for Arc<Mutex<T>> {
    fn read(&mut self, base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        lock(self).read(base, offset, size, now)
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        lock(self).write(base, offset, size, value, now)
    }
}

pub type PortBus = Bus<u16, dyn PortDevice>;

impl Bus<u16, dyn PortDevice> {
    pub fn read(&mut self, port: u16, size: u8, now: Nanos) -> u32 {
        match self.route(port, false) {
            Some((d, base, offset)) => d.read(base, offset, size, now) & ones(size) as u32,
            None => ones(size) as u32,
        }
    }

    pub fn write(&mut self, port: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        match self.route(port, true) {
            Some((d, base, offset)) => d.write(base, offset, size, value & ones(size) as u32, now),
            None => IoAccess::Done,
        }
    }
}

/// A wide access to an 8-bit ISA device as the bus cycles it becomes: one byte access
/// per byte, at consecutive offsets, least significant first.
pub fn read_bytes(offset: u16, size: u8, mut read: impl FnMut(u16) -> u8) -> u32 {
    (0..size.min(4)).fold(0, |v, i| {
        v | (read(offset.wrapping_add(i as u16)) as u32) << (8 * i)
    })
}

/// See `read_bytes`; the first byte write that asks the machine for something wins.
pub fn write_bytes(
    offset: u16,
    size: u8,
    value: u32,
    mut write: impl FnMut(u16, u8) -> IoAccess,
) -> IoAccess {
    (0..size.min(4)).fold(IoAccess::Done, |acc, i| {
        acc.or(write(
            offset.wrapping_add(i as u16),
            (value >> (8 * i)) as u8,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Latch(u32);
    impl Device for Latch {
        fn name(&self) -> &'static str {
            "latch"
        }
    }
    impl PortDevice for Latch {
        fn read(&mut self, base: u16, offset: u16, _size: u8, _now: Nanos) -> u32 {
            self.0 + base as u32 + offset as u32
        }
        fn write(
            &mut self,
            _base: u16,
            _offset: u16,
            _size: u8,
            value: u32,
            _now: Nanos,
        ) -> IoAccess {
            self.0 = value;
            IoAccess::Done
        }
    }

    #[test]
    fn dispatch_by_range_with_offsets() {
        let mut bus = PortBus::new();
        bus.register(0x60, 4, Box::new(Latch(0x10))).unwrap();
        assert_eq!(bus.read(0x62, 1, Nanos::ZERO), 0x72);
        bus.write(0x60, 1, 0x40, Nanos::ZERO);
        assert_eq!(bus.read(0x63, 1, Nanos::ZERO), 0xA3);
        assert_eq!(bus.read(0x64, 1, Nanos::ZERO), 0xFF);
        assert_eq!(bus.read(0x64, 2, Nanos::ZERO), 0xFFFF);
        assert_eq!(bus.read(0x64, 4, Nanos::ZERO), 0xFFFF_FFFF);
        let s = bus.stats();
        assert_eq!(
            s[0].1,
            AccessStats {
                reads: 2,
                writes: 1
            }
        );
        assert_eq!(s[1].1.reads, 3);
    }

    #[test]
    fn device_results_are_cut_to_the_access_size() {
        let mut bus = PortBus::new();
        bus.register(0x80, 1, Box::new(Latch(0x1234_5600))).unwrap();
        assert_eq!(bus.read(0x80, 1, Nanos::ZERO), 0x80);
        assert_eq!(bus.read(0x80, 2, Nanos::ZERO), 0x5680);
    }

    #[test]
    fn shared_devices_answer_through_their_handle() {
        let latch = crate::bus::shared(Latch(0));
        let mut bus = PortBus::new();
        bus.register(0x70, 2, Box::new(latch.clone())).unwrap();
        bus.write(0x70, 1, 7, Nanos::ZERO);
        assert_eq!(lock(&latch).0, 7);
        assert_eq!(bus.stats()[0].0, "latch");
    }

    #[test]
    fn wide_accesses_split_into_bytes() {
        let mut seen = Vec::new();
        assert_eq!(read_bytes(2, 2, |o| o as u8 + 0x10), 0x1312);
        let r = write_bytes(0, 4, 0x0403_0201, |o, b| {
            seen.push((o, b));
            if o == 2 {
                IoAccess::Reset
            } else {
                IoAccess::Done
            }
        });
        assert_eq!(r, IoAccess::Reset);
        assert_eq!(seen, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
    }
}
