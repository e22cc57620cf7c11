//! The port-I/O bus: devices claim port ranges; accesses nobody claims read as all
//! ones and writes to them vanish, as on an ISA bus with nothing listening.

use thiserror::Error;

/// What a device wants after a port write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoAccess {
    Done,
    /// End the run (debug-exit).
    Stop,
    /// The A20 gate changed (port 0x92, i8042 output port).
    A20(bool),
}

pub trait PortDevice {
    fn name(&self) -> &'static str;
    /// `offset` is relative to the start of the claimed range; `size` is 1, 2 or 4.
    fn read(&mut self, offset: u16, size: u8) -> u32;
    fn write(&mut self, offset: u16, size: u8, value: u32) -> IoAccess;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortError {
    #[error("ports {base:#x}..{end:#x} of {name} overlap {other}", end = *base as u32 + *len as u32)]
    Overlap {
        name: &'static str,
        base: u16,
        len: u16,
        other: &'static str,
    },
    #[error("empty or wrapping port range {base:#x}+{len} for {name}")]
    BadRange { name: &'static str, base: u16, len: u16 },
}

struct Claim {
    base: u16,
    len: u16,
    device: usize,
}

/// Accesses per device, for the exit statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub reads: u64,
    pub writes: u64,
}

#[derive(Default)]
pub struct PortBus {
    devices: Vec<Box<dyn PortDevice>>,
    claims: Vec<Claim>,
    stats: Vec<PortStats>,
    unclaimed: PortStats,
}

impl PortBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a device that answers ports `base..base + len`.
    pub fn register(&mut self, base: u16, len: u16, device: Box<dyn PortDevice>) -> Result<(), PortError> {
        let name = device.name();
        if len == 0 || base.checked_add(len - 1).is_none() {
            return Err(PortError::BadRange { name, base, len });
        }
        let end = |b: u16, l: u16| b as u32 + l as u32;
        if let Some(c) = self.claims.iter().find(|c| (base as u32) < end(c.base, c.len) && (c.base as u32) < end(base, len)) {
            return Err(PortError::Overlap {
                name,
                base,
                len,
                other: self.devices[c.device].name(),
            });
        }
        self.devices.push(device);
        self.stats.push(PortStats::default());
        self.claims.push(Claim {
            base,
            len,
            device: self.devices.len() - 1,
        });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(usize, u16)> {
        self.claims
            .iter()
            .find(|c| port >= c.base && port - c.base < c.len)
            .map(|c| (c.device, port - c.base))
    }

    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        match self.find(port) {
            Some((d, off)) => {
                self.stats[d].reads += 1;
                self.devices[d].read(off, size)
            }
            None => {
                self.unclaimed.reads += 1;
                (u64::MAX >> (64 - 8 * size as u32)) as u32
            }
        }
    }

    pub fn write(&mut self, port: u16, size: u8, value: u32) -> IoAccess {
        match self.find(port) {
            Some((d, off)) => {
                self.stats[d].writes += 1;
                self.devices[d].write(off, size, value)
            }
            None => {
                self.unclaimed.writes += 1;
                IoAccess::Done
            }
        }
    }

    /// (device name, accesses) for every device, then "unclaimed".
    pub fn stats(&self) -> Vec<(&'static str, PortStats)> {
        let mut v: Vec<_> = self.devices.iter().map(|d| d.name()).zip(self.stats.iter().cloned()).collect();
        v.push(("unclaimed", self.unclaimed.clone()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Latch(u32);
    impl PortDevice for Latch {
        fn name(&self) -> &'static str {
            "latch"
        }
        fn read(&mut self, offset: u16, _size: u8) -> u32 {
            self.0 + offset as u32
        }
        fn write(&mut self, _offset: u16, _size: u8, value: u32) -> IoAccess {
            self.0 = value;
            IoAccess::Done
        }
    }

    #[test]
    fn dispatch_by_range_with_offsets() {
        let mut bus = PortBus::new();
        bus.register(0x60, 4, Box::new(Latch(0x10))).unwrap();
        assert_eq!(bus.read(0x62, 1), 0x12);
        bus.write(0x60, 1, 0x40);
        assert_eq!(bus.read(0x63, 1), 0x43);
        assert_eq!(bus.read(0x64, 1), 0xFF);
        assert_eq!(bus.read(0x64, 2), 0xFFFF);
        assert_eq!(bus.read(0x64, 4), 0xFFFF_FFFF);
        let s = bus.stats();
        assert_eq!(s[0].1, PortStats { reads: 2, writes: 1 });
        assert_eq!(s[1].1.reads, 3);
    }

    #[test]
    fn overlapping_and_bad_ranges_are_rejected() {
        let mut bus = PortBus::new();
        bus.register(0xFFF0, 16, Box::new(Latch(0))).unwrap();
        assert!(matches!(bus.register(0xFFFF, 1, Box::new(Latch(0))), Err(PortError::Overlap { .. })));
        assert!(matches!(bus.register(0xFFFF, 2, Box::new(Latch(0))), Err(PortError::BadRange { .. })));
        assert!(matches!(bus.register(0x10, 0, Box::new(Latch(0))), Err(PortError::BadRange { .. })));
        bus.register(0xFFE0, 16, Box::new(Latch(0))).unwrap();
    }
}
