//! A PCI function's 256-byte configuration space (PCI Local Bus Specification 3.0,
//! chapter 6): the type 0 header, per-byte write masks so read-only fields stay
//! read-only, and base address registers whose masks implement the sizing protocol
//! (write all ones, read back the size as the zeroed low address bits).

use super::PciError;

pub const VENDOR_ID: u8 = 0x00;
pub const DEVICE_ID: u8 = 0x02;
pub const COMMAND: u8 = 0x04;
pub const STATUS: u8 = 0x06;
pub const REVISION_ID: u8 = 0x08;
/// Programming interface, subclass, base class (0x09, 0x0A, 0x0B).
pub const CLASS_CODE: u8 = 0x09;
pub const CACHE_LINE_SIZE: u8 = 0x0C;
pub const LATENCY_TIMER: u8 = 0x0D;
pub const HEADER_TYPE: u8 = 0x0E;
pub const BAR0: u8 = 0x10;
pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2C;
pub const SUBSYSTEM_ID: u8 = 0x2E;
pub const INTERRUPT_LINE: u8 = 0x3C;
pub const INTERRUPT_PIN: u8 = 0x3D;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_PARITY: u16 = 1 << 6;
const COMMAND_SERR: u16 = 1 << 8;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const COMMAND_WRITABLE: u16 = COMMAND_IO
    | COMMAND_MEMORY
    | COMMAND_BUS_MASTER
    | COMMAND_PARITY
    | COMMAND_SERR
    | COMMAND_INTX_DISABLE;
/// Header type bit 7: the device has functions beyond 0.
pub const HEADER_MULTIFUNCTION: u8 = 0x80;

pub const BARS: usize = 6;
const BAR_IO: u32 = 1 << 0;
const BAR_MEM_64: u32 = 2 << 1;
const BAR_PREFETCHABLE: u32 = 1 << 3;
const BAR_IO_ADDRESS: u32 = !0x3;
const BAR_MEM_ADDRESS: u32 = !0xF;
/// I/O BARs decode at most 256 ports; memory BARs at least 16 bytes.
const BAR_IO_MAX: u64 = 256;
const BAR_IO_MIN: u64 = 4;
const BAR_MEM_MIN: u64 = 16;
const BAR_MEM32_MAX: u64 = 1 << 31;
const IO_SPACE_END: u64 = 0x1_0000;
const MEM32_SPACE_END: u64 = 1 << 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32 {
        prefetchable: bool,
    },
    /// Takes this BAR slot and the next.
    Memory64 {
        prefetchable: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Io,
    Memory,
}

/// What identifies a function in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub vendor: u16,
    pub device: u16,
    pub revision: u8,
    /// Base class << 16 | subclass << 8 | programming interface.
    pub class: u32,
    pub header_type: u8,
    /// INTA#–INTD# as 1–4, 0 for none.
    pub interrupt_pin: u8,
}

#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    writable: [u8; 256],
    bars: [Option<(BarKind, u64)>; BARS],
}

impl ConfigSpace {
    pub fn new(id: Identity) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; 256],
            writable: [0; 256],
            bars: [None; BARS],
        };
        c.set(VENDOR_ID, &id.vendor.to_le_bytes(), &[0; 2]);
        c.set(DEVICE_ID, &id.device.to_le_bytes(), &[0; 2]);
        c.set(COMMAND, &[0; 2], &COMMAND_WRITABLE.to_le_bytes());
        c.set(REVISION_ID, &[id.revision], &[0]);
        c.set(CLASS_CODE, &id.class.to_le_bytes()[..3], &[0; 3]);
        c.set(CACHE_LINE_SIZE, &[0; 2], &[0xFF; 2]);
        c.set(HEADER_TYPE, &[id.header_type], &[0]);
        c.set(INTERRUPT_LINE, &[0], &[0xFF]);
        c.set(INTERRUPT_PIN, &[id.interrupt_pin], &[0]);
        c
    }

    /// Give the registers at `offset` their reset value and write mask (for device
    /// specific registers); bytes past the end of the space are ignored.
    pub fn set(&mut self, offset: u8, value: &[u8], writable: &[u8]) {
        for (i, (v, w)) in value.iter().zip(writable).enumerate() {
            if let Some(at) = (offset as usize).checked_add(i).filter(|&a| a < 256) {
                self.bytes[at] = *v;
                self.writable[at] = *w;
            }
        }
    }

    /// Declare BAR `index` (0–5) of `size` bytes, a power of two within the limits of
    /// its kind.
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) -> Result<(), PciError> {
        let bad = PciError::BadBar { index, size };
        let slots = if matches!(kind, BarKind::Memory64 { .. }) {
            2
        } else {
            1
        };
        let (min, max) = match kind {
            BarKind::Io => (BAR_IO_MIN, BAR_IO_MAX),
            BarKind::Memory32 { .. } => (BAR_MEM_MIN, BAR_MEM32_MAX),
            BarKind::Memory64 { .. } => (BAR_MEM_MIN, 1 << 63),
        };
        if !size.is_power_of_two() || size < min || size > max || index + slots > BARS {
            return Err(bad);
        }
        if self.bars[index..index + slots].iter().any(Option::is_some)
            || (index > 0 && matches!(self.bars[index - 1], Some((BarKind::Memory64 { .. }, _))))
        {
            return Err(bad);
        }
        let mask = !(size - 1);
        let (low, low_mask) = match kind {
            BarKind::Io => (BAR_IO, mask as u32 & BAR_IO_ADDRESS),
            BarKind::Memory32 { prefetchable } => {
                (prefetch(prefetchable), mask as u32 & BAR_MEM_ADDRESS)
            }
            BarKind::Memory64 { prefetchable } => (
                BAR_MEM_64 | prefetch(prefetchable),
                mask as u32 & BAR_MEM_ADDRESS,
            ),
        };
        let at = BAR0 + 4 * index as u8;
        self.set(at, &low.to_le_bytes(), &low_mask.to_le_bytes());
        if slots == 2 {
            self.set(at + 4, &[0; 4], &((mask >> 32) as u32).to_le_bytes());
        }
        self.bars[index] = Some((kind, size));
        Ok(())
    }

    /// `size` bytes from `offset`; bytes past the end of the space read as ones.
    pub fn read(&self, offset: u8, size: u8) -> u32 {
        (0..size.min(4) as usize).fold(0, |v, i| {
            let b = self.bytes.get(offset as usize + i).copied().unwrap_or(0xFF);
            v | (b as u32) << (8 * i)
        })
    }

    /// Write through the masks: read-only bits keep their value.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        for i in 0..size.min(4) as usize {
            let at = offset as usize + i;
            if at < 256 {
                let (v, w) = ((value >> (8 * i)) as u8, self.writable[at]);
                self.bytes[at] = self.bytes[at] & !w | v & w;
            }
        }
    }

    pub fn command(&self) -> u16 {
        self.read(COMMAND, 2) as u16
    }

    /// The address BAR `index` is programmed to.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let (kind, _) = (*self.bars.get(index)?)?;
        let low = self.read(BAR0 + 4 * index as u8, 4);
        Some(match kind {
            BarKind::Io => (low & BAR_IO_ADDRESS) as u64,
            BarKind::Memory32 { .. } => (low & BAR_MEM_ADDRESS) as u64,
            BarKind::Memory64 { .. } => {
                (self.read(BAR0 + 4 * index as u8 + 4, 4) as u64) << 32
                    | (low & BAR_MEM_ADDRESS) as u64
            }
        })
    }

    /// The BAR decoding `addr` in `space`, and the offset into it. A BAR decodes only
    /// while its space is enabled in the command register, at a nonzero address, with
    /// its window inside the space (a BAR holding the sizing mask decodes nothing).
    pub fn decode(&self, space: Space, addr: u64) -> Option<(usize, u64)> {
        let enabled = match space {
            Space::Io => COMMAND_IO,
            Space::Memory => COMMAND_MEMORY,
        };
        if self.command() & enabled == 0 {
            return None;
        }
        (0..BARS).find_map(|i| {
            let (kind, size) = self.bars[i]?;
            let limit = match (kind, space) {
                (BarKind::Io, Space::Io) => IO_SPACE_END,
                (BarKind::Memory32 { .. }, Space::Memory) => MEM32_SPACE_END,
                (BarKind::Memory64 { .. }, Space::Memory) => u64::MAX,
                _ => return None,
            };
            let base = self.bar_address(i)?;
            let fits = base != 0 && base.checked_add(size).is_some_and(|end| end <= limit);
            (fits && (base..base + size).contains(&addr)).then(|| (i, addr - base))
        })
    }
}

fn prefetch(prefetchable: bool) -> u32 {
    if prefetchable {
        BAR_PREFETCHABLE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(Identity {
            vendor: 0x1234,
            device: 0x5678,
            revision: 2,
            class: 0x02_00_00,
            header_type: 0,
            interrupt_pin: 1,
        })
    }

    #[test]
    fn header_fields_and_read_only_bits() {
        let mut c = space();
        assert_eq!(c.read(VENDOR_ID, 4), 0x5678_1234);
        assert_eq!(c.read(REVISION_ID, 4), 0x0200_0002);
        c.write(VENDOR_ID, 4, 0);
        assert_eq!(
            c.read(VENDOR_ID, 4),
            0x5678_1234,
            "identification is read-only"
        );
        c.write(COMMAND, 4, u32::MAX);
        assert_eq!(
            c.read(COMMAND, 4),
            0x0547,
            "command bits that exist; status read-only"
        );
        c.write(INTERRUPT_LINE, 2, 0xFF0B);
        assert_eq!(c.read(INTERRUPT_LINE, 2), 0x010B, "line writable, pin not");
        assert_eq!(c.read(0xFE, 4), 0xFFFF_0000, "past the end reads as ones");
        c.write(0xFF, 4, 0);
    }

    #[test]
    fn bar_sizing_protocol() {
        let mut c = space();
        c.add_bar(
            0,
            BarKind::Memory32 {
                prefetchable: false,
            },
            0x1000,
        )
        .unwrap();
        c.add_bar(1, BarKind::Io, 0x40).unwrap();
        c.add_bar(2, BarKind::Memory64 { prefetchable: true }, 0x2_0000_0000)
            .unwrap();
        let bar = |c: &mut ConfigSpace, i: u8| {
            c.write(BAR0 + 4 * i, 4, u32::MAX);
            c.read(BAR0 + 4 * i, 4)
        };
        assert_eq!(bar(&mut c, 0), 0xFFFF_F000);
        assert_eq!(bar(&mut c, 1), 0xFFFF_FFC1);
        assert_eq!(bar(&mut c, 2), 0x0000_000C, "8 GiB: no low address bits");
        assert_eq!(bar(&mut c, 3), 0xFFFF_FFFE);
        assert_eq!(bar(&mut c, 4), 0, "unimplemented BARs read as zero");
        c.write(BAR0, 4, 0xFEBF_1234);
        assert_eq!(c.bar_address(0), Some(0xFEBF_1000));
        assert!(c.add_bar(3, BarKind::Io, 16).is_err(), "upper half of BAR2");
        assert!(c
            .add_bar(
                5,
                BarKind::Memory64 {
                    prefetchable: false
                },
                16
            )
            .is_err());
        assert!(c.add_bar(4, BarKind::Io, 512).is_err());
        assert!(c
            .add_bar(
                4,
                BarKind::Memory32 {
                    prefetchable: false
                },
                24
            )
            .is_err());
        assert!(c.add_bar(0, BarKind::Io, 16).is_err(), "taken");
    }

    #[test]
    fn decoding_follows_command_and_address() {
        let mut c = space();
        c.add_bar(
            0,
            BarKind::Memory32 {
                prefetchable: false,
            },
            0x1000,
        )
        .unwrap();
        c.add_bar(1, BarKind::Io, 0x100).unwrap();
        c.write(BAR0, 4, 0xFEB0_0000);
        c.write(BAR0 + 4, 4, 0xC000);
        assert_eq!(
            c.decode(Space::Memory, 0xFEB0_0010),
            None,
            "memory decode off"
        );
        c.write(COMMAND, 2, COMMAND_MEMORY as u32);
        assert_eq!(c.decode(Space::Memory, 0xFEB0_0010), Some((0, 0x10)));
        assert_eq!(c.decode(Space::Memory, 0xFEB0_1000), None);
        assert_eq!(c.decode(Space::Io, 0xC010), None, "I/O decode off");
        c.write(COMMAND, 2, (COMMAND_MEMORY | COMMAND_IO) as u32);
        assert_eq!(c.decode(Space::Io, 0xC0FF), Some((1, 0xFF)));
        // While a BAR holds the sizing mask it decodes nothing.
        c.write(BAR0 + 4, 4, u32::MAX);
        assert_eq!(c.decode(Space::Io, 0xFF10), None);
        c.write(BAR0 + 4, 4, 0);
        assert_eq!(c.decode(Space::Io, 0x10), None);
    }
}
