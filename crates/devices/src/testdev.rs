//! QEMU's pc-testdev (hw/misc/pc-testdev.c), which kvm-unit-tests and other bare-metal
//! test kernels drive: a 32-bit scratch register at ports 0xE0–0xE3 (any access size,
//! any byte offset), the same register again at 0xE8–0xEB accessed a byte at a time, a
//! page-flush port at 0xE4 (a 32-bit guest-physical address), interrupt lines 0–23
//! raised and lowered by byte writes to ports 0x2000–0x2017, and 64 KiB of scratch
//! memory at 0xFF000000.
//!
//! The flush port exists for KVM, where it drops the host mapping of a guest page so
//! that the next access faults in again; trapeze keeps no host mappings to drop, so it
//! only accepts the write. Note that 0xE8–0xEB contain the 0xE9 debug console; a machine
//! with both registers the byte port range only if it leaves the console out.

use crate::bus::{ones, Device, IoAccess};
use crate::clock::Nanos;
use crate::irq::{IrqLines, LINES};
use crate::mmio_bus::{read_le, write_le, MmioDevice};
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const SCRATCH: u16 = 0xE0;
pub const FLUSH: u16 = 0xE4;
pub const SCRATCH_BYTES: u16 = 0xE8;
/// Each of the three ranges above is four ports long.
pub const PORTS: u16 = 4;
pub const IRQ_LINES: u16 = 0x2000;
pub const IRQ_LINES_LEN: u16 = LINES as u16;
pub const IOMEM: u64 = 0xFF00_0000;
pub const IOMEM_LEN: u64 = 0x1_0000;

pub struct PcTestdev {
    scratch: u32,
    iomem: Box<[u8]>,
    irqs: IrqLines,
}

impl PcTestdev {
    /// The device drives any of the platform's lines, as QEMU's drives the ISA IRQs.
    pub fn new(irqs: IrqLines) -> Self {
        PcTestdev {
            scratch: 0,
            iomem: vec![0; IOMEM_LEN as usize].into_boxed_slice(),
            irqs,
        }
    }

    fn read_scratch(&self, offset: u16, size: u8) -> u32 {
        ((self.scratch as u64 >> (8 * (offset & 3))) & ones(size)) as u32
    }

    fn write_scratch(&mut self, offset: u16, size: u8, value: u32) {
        let shift = 8 * (offset & 3);
        let mask = (ones(size) << shift) as u32;
        self.scratch = self.scratch & !mask | ((value as u64) << shift) as u32 & mask;
    }
}

impl Device for PcTestdev {
    fn name(&self) -> &'static str {
        "pc-testdev"
    }
}

impl PortDevice for PcTestdev {
    fn read(&mut self, base: u16, offset: u16, size: u8, _now: Nanos) -> u32 {
        match base {
            SCRATCH => self.read_scratch(offset, size),
            SCRATCH_BYTES => read_bytes(offset, size, |o| self.read_scratch(o, 1) as u8),
            _ => 0,
        }
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        match base {
            SCRATCH => self.write_scratch(offset, size, value),
            SCRATCH_BYTES => {
                write_bytes(offset, size, value, |o, b| {
                    self.write_scratch(o, 1, b as u32);
                    IoAccess::Done
                });
            }
            IRQ_LINES if size == 1 && offset < IRQ_LINES_LEN => {
                self.irqs.set(offset as u8, value != 0)
            }
            _ => {}
        }
        IoAccess::Done
    }
}

impl MmioDevice for PcTestdev {
    fn read(&mut self, _base: u64, offset: u64, size: u8, _now: Nanos) -> u64 {
        read_le(&self.iomem, offset, size)
    }

    fn write(&mut self, _base: u64, offset: u64, size: u8, value: u64, _now: Nanos) -> IoAccess {
        write_le(&mut self.iomem, offset, size, value);
        IoAccess::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (PcTestdev, IrqLines) {
        let lines = IrqLines::new();
        (PcTestdev::new(lines.clone()), lines)
    }

    #[test]
    fn scratch_register_keeps_bytes_by_offset() {
        let (mut d, _) = dev();
        let now = Nanos::ZERO;
        PortDevice::write(&mut d, SCRATCH, 0, 4, 0x1122_3344, now);
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 0, 4, now), 0x1122_3344);
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 2, 2, now), 0x1122);
        // A dword at offset 2 reaches only the two bytes that exist.
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 2, 4, now), 0x1122);
        PortDevice::write(&mut d, SCRATCH, 1, 1, 0xAB, now);
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 0, 4, now), 0x1122_AB44);
        PortDevice::write(&mut d, SCRATCH, 3, 4, 0xFFFF_FF99, now);
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 0, 4, now), 0x9922_AB44);
        // The byte-wise window is the same register.
        assert_eq!(
            PortDevice::read(&mut d, SCRATCH_BYTES, 0, 4, now),
            0x9922_AB44
        );
        PortDevice::write(&mut d, SCRATCH_BYTES, 2, 2, 0x7766, now);
        assert_eq!(PortDevice::read(&mut d, SCRATCH, 0, 4, now), 0x7766_AB44);
        PortDevice::write(&mut d, FLUSH, 0, 4, 0x1000, now);
        assert_eq!(PortDevice::read(&mut d, FLUSH, 0, 4, now), 0);
    }

    #[test]
    fn irq_ports_drive_lines() {
        let (mut d, lines) = dev();
        PortDevice::write(&mut d, IRQ_LINES, 14, 1, 1, Nanos::ZERO);
        assert!(lines.level(14));
        PortDevice::write(&mut d, IRQ_LINES, 14, 1, 0, Nanos::ZERO);
        assert!(!lines.level(14));
        assert_eq!(
            lines.take_changes().unwrap().steps(),
            vec![(14, false), (14, true), (14, false)]
        );
        PortDevice::write(&mut d, IRQ_LINES, 23, 1, 0x80, Nanos::ZERO);
        assert!(lines.level(23));
        PortDevice::write(&mut d, IRQ_LINES, 5, 2, 1, Nanos::ZERO);
        PortDevice::write(&mut d, IRQ_LINES, 24, 1, 1, Nanos::ZERO);
        assert!(!lines.level(5) && !lines.level(24));
        assert_eq!(PortDevice::read(&mut d, IRQ_LINES, 0, 1, Nanos::ZERO), 0);
    }

    #[test]
    fn iomem_is_scratch_memory() {
        let (mut d, _) = dev();
        MmioDevice::write(&mut d, IOMEM, 0x10, 8, 0x0102_0304_0506_0708, Nanos::ZERO);
        assert_eq!(
            MmioDevice::read(&mut d, IOMEM, 0x12, 2, Nanos::ZERO),
            0x0506
        );
        MmioDevice::write(&mut d, IOMEM, IOMEM_LEN - 2, 8, u64::MAX, Nanos::ZERO);
        assert_eq!(
            MmioDevice::read(&mut d, IOMEM, IOMEM_LEN - 4, 8, Nanos::ZERO),
            0xFFFF_0000
        );
        assert_eq!(MmioDevice::read(&mut d, IOMEM, u64::MAX, 8, Nanos::ZERO), 0);
    }
}
