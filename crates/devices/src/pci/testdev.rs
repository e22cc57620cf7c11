//! QEMU's pci-testdev (hw/misc/pci-testdev.c, 1b36:0005), which kvm-unit-tests uses
//! to test I/O exits: BAR0 is 4 KiB of memory and BAR1 256 I/O ports, both showing the
//! header of the current test:
//!
//! | offset | field  | meaning                                              |
//! |--------|--------|------------------------------------------------------|
//! | 0      | test   | write n to start test n (of this BAR's kind)         |
//! | 1      | width  | access width of the test, 1                          |
//! | 4      | offset | the offset the test counts writes to (LE32)          |
//! | 8      | data   | the byte a matching write must carry                 |
//! | 12     | count  | matching writes so far (LE32)                        |
//! | 16     | name   | NUL-terminated test name                             |
//!
//! Tests 0–2 of the memory BAR and 3–5 of the I/O BAR are "no-eventfd",
//! "wildcard-eventfd" (any byte counts) and "datamatch-eventfd" (only 0xFA counts); the
//! eventfds are KVM's business, the counting is the same. As in QEMU, the device
//! handles accesses one byte at a time, and has no interrupt pin.

use super::config::{BarKind, ConfigSpace, Identity};
use super::PciDevice;
use crate::bus::IoAccess;
use crate::clock::Nanos;

pub const VENDOR: u16 = 0x1B36;
pub const DEVICE: u16 = 0x0005;
/// PCI_CLASS_OTHERS.
const CLASS: u32 = 0x00_FF_00;
pub const MEMORY_BAR: usize = 0;
pub const MEMORY_BAR_SIZE: u64 = 2 * 2048;
pub const IO_BAR: usize = 1;
pub const IO_BAR_SIZE: u64 = 2 * 128;

/// Header fields.
const TEST: u64 = 0;
const WIDTH: usize = 1;
const OFFSET: usize = 4;
const DATA: usize = 8;
const COUNT: usize = 12;
const NAME: usize = 16;

const DATAMATCH: u8 = 0xFA;
const NOMATCH: u8 = 0xCE;
const KINDS: [&str; 3] = ["no-eventfd", "wildcard-eventfd", "datamatch-eventfd"];
/// Per BAR: the name prefix and the first offset its tests count at.
const BARS: [(&str, u32); 2] = [("mmio", 2048), ("portio", 128)];

struct Test {
    header: Vec<u8>,
    offset: u64,
    match_data: bool,
}

impl Test {
    fn new(index: usize) -> Test {
        let (bar, kind) = (BARS[index / KINDS.len()], KINDS[index % KINDS.len()]);
        let name = format!("{}-{}", bar.0, kind);
        let offset = bar.1 + index as u32;
        let match_data = kind != "wildcard-eventfd";
        let mut header = vec![0u8; NAME + name.len() + 1];
        header[TEST as usize] = index as u8;
        header[WIDTH] = 1;
        header[OFFSET..OFFSET + 4].copy_from_slice(&offset.to_le_bytes());
        header[DATA] = if match_data { DATAMATCH } else { NOMATCH };
        header[NAME..NAME + name.len()].copy_from_slice(name.as_bytes());
        Test {
            header,
            offset: offset as u64,
            match_data,
        }
    }

    fn count(&mut self, f: impl FnOnce(u32) -> u32) {
        let c = u32::from_le_bytes([
            self.header[COUNT],
            self.header[COUNT + 1],
            self.header[COUNT + 2],
            self.header[COUNT + 3],
        ]);
        self.header[COUNT..COUNT + 4].copy_from_slice(&f(c).to_le_bytes());
    }
}

pub struct PciTestdev {
    config: ConfigSpace,
    tests: Vec<Test>,
    current: Option<usize>,
}

impl Default for PciTestdev {
    fn default() -> Self {
        Self::new()
    }
}

impl PciTestdev {
    pub fn new() -> Self {
        let mut config = ConfigSpace::new(Identity {
            vendor: VENDOR,
            device: DEVICE,
            revision: 0,
            class: CLASS,
            header_type: 0,
            interrupt_pin: 0,
        });
        // Fixed, valid sizes: these cannot fail.
        let bars = [
            (
                MEMORY_BAR,
                BarKind::Memory32 {
                    prefetchable: false,
                },
                MEMORY_BAR_SIZE,
            ),
            (IO_BAR, BarKind::Io, IO_BAR_SIZE),
        ];
        for (index, kind, size) in bars {
            let _ = config.add_bar(index, kind, size);
        }
        PciTestdev {
            config,
            tests: (0..BARS.len() * KINDS.len()).map(Test::new).collect(),
            current: None,
        }
    }

    fn read_byte(&self, offset: u64) -> u8 {
        let Some(t) = self.current.map(|c| &self.tests[c]) else {
            return 0;
        };
        // QEMU reads as zero the header's last byte (the NUL) and everything after.
        match usize::try_from(offset) {
            Ok(o) if o + 1 < t.header.len() => t.header[o],
            _ => 0,
        }
    }

    fn write_byte(&mut self, bar: usize, offset: u64, value: u8) {
        if offset == TEST {
            self.current = None;
            if (value as usize) < KINDS.len() {
                let index = bar * KINDS.len() + value as usize;
                self.tests[index].count(|_| 0);
                self.current = Some(index);
            }
            return;
        }
        let Some(t) = self.current.map(|c| &mut self.tests[c]) else {
            return;
        };
        if offset == t.offset && (!t.match_data || value == t.header[DATA]) {
            t.count(|c| c.wrapping_add(1));
        }
    }
}

impl PciDevice for PciTestdev {
    fn name(&self) -> &'static str {
        "pci-testdev"
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn bar_read(&mut self, _bar: usize, offset: u64, size: u8, _now: Nanos) -> u64 {
        (0..size.min(8) as u64).fold(0, |v, i| {
            v | (self.read_byte(offset.wrapping_add(i)) as u64) << (8 * i)
        })
    }

    fn bar_write(
        &mut self,
        bar: usize,
        offset: u64,
        size: u8,
        value: u64,
        _now: Nanos,
    ) -> IoAccess {
        let kind = if bar == IO_BAR { 1 } else { 0 };
        for i in 0..size.min(8) as u64 {
            self.write_byte(kind, offset.wrapping_add(i), (value >> (8 * i)) as u8);
        }
        IoAccess::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(d: &mut PciTestdev) -> u64 {
        d.bar_read(MEMORY_BAR, COUNT as u64, 4, Nanos::ZERO)
    }

    #[test]
    fn tests_count_matching_writes() {
        let mut d = PciTestdev::new();
        assert_eq!(
            d.bar_read(MEMORY_BAR, 0, 4, Nanos::ZERO),
            0,
            "no test selected"
        );
        // kvm-unit-tests: select mmio-datamatch-eventfd (2) and write at its offset.
        d.bar_write(MEMORY_BAR, TEST, 1, 2, Nanos::ZERO);
        assert_eq!(
            d.bar_read(IO_BAR, 0, 2, Nanos::ZERO),
            0x0102,
            "test 2, width 1"
        );
        let offset = d.bar_read(MEMORY_BAR, OFFSET as u64, 4, Nanos::ZERO);
        assert_eq!(offset, 2048 + 2);
        assert_eq!(d.bar_read(MEMORY_BAR, DATA as u64, 1, Nanos::ZERO), 0xFA);
        d.bar_write(MEMORY_BAR, offset, 1, 0xFA, Nanos::ZERO);
        d.bar_write(MEMORY_BAR, offset, 1, 0x11, Nanos::ZERO);
        d.bar_write(MEMORY_BAR, offset + 1, 1, 0xFA, Nanos::ZERO);
        assert_eq!(count(&mut d), 1);
        // Wide writes split into bytes: only the low byte lands on the offset.
        d.bar_write(MEMORY_BAR, offset, 4, 0xFFFF_FFFA, Nanos::ZERO);
        assert_eq!(count(&mut d), 2);
        // The wildcard test of the I/O BAR counts any byte.
        d.bar_write(IO_BAR, TEST, 1, 1, Nanos::ZERO);
        assert_eq!(d.bar_read(IO_BAR, OFFSET as u64, 4, Nanos::ZERO), 128 + 4);
        assert_eq!(d.bar_read(IO_BAR, DATA as u64, 1, Nanos::ZERO), 0xCE);
        d.bar_write(IO_BAR, 132, 1, 0x42, Nanos::ZERO);
        assert_eq!(count(&mut d), 1);
        let name: Vec<u8> = (0..24)
            .map(|i| d.bar_read(IO_BAR, NAME as u64 + i, 1, Nanos::ZERO) as u8)
            .collect();
        assert_eq!(&name, b"portio-wildcard-eventfd\0");
        // Selecting a test that does not exist stops testing.
        d.bar_write(IO_BAR, TEST, 1, 3, Nanos::ZERO);
        assert_eq!(d.bar_read(IO_BAR, 0, 4, Nanos::ZERO), 0);
        d.bar_write(IO_BAR, 132, 1, 0x42, Nanos::ZERO);
        assert_eq!(d.bar_read(IO_BAR, u64::MAX, 8, Nanos::ZERO), 0);
    }

    #[test]
    fn bars_and_header() {
        let d = PciTestdev::new();
        let c = d.config();
        assert_eq!(c.read(0, 4), 0x0005_1B36);
        assert_eq!(c.read(0x08, 4), 0x00FF_0000);
        assert_eq!(c.read(0x3D, 1), 0, "no interrupt pin");
        assert_eq!(c.read(0x14, 4), 0x1, "BAR1 is I/O");
    }
}
