//! PCI bus 0 behind a host bridge with configuration mechanism #1 (PCI Local Bus
//! Specification 3.0, 3.2.2.3.2): CONFIG_ADDRESS at 0xCF8 (dword accesses; enable bit
//! 31, bus, device, function, register) and CONFIG_DATA at 0xCFC–0xCFF (byte, word or
//! dword at any offset). Up to 32 devices of 8 functions each; configuration reads of
//! a function that does not exist return all ones, so enumeration finds exactly the
//! functions added.
//!
//! The same `PciBus` decodes the functions' BARs: the machine makes it the fallback of
//! the port bus (where it also holds the configuration ports) and of the MMIO bus,
//! behind the fixed devices, and it hands each access to the function whose enabled
//! BAR contains it.

pub mod config;
pub mod host_bridge;
pub mod isa_bridge;
pub mod testdev;

use thiserror::Error;

use crate::bus::{ones, AccessStats, Device, IoAccess};
use crate::clock::Nanos;
use crate::mmio_bus::MmioDevice;
use crate::port_bus::PortDevice;
use config::{ConfigSpace, Space};

pub const CONFIG_ADDRESS: u16 = 0xCF8;
/// Only the first port: dword accesses start there, and 0xCF9 is the PIIX reset
/// control register (`sysctrl::ResetControl`).
pub const CONFIG_ADDRESS_PORTS: u16 = 1;
pub const CONFIG_DATA: u16 = 0xCFC;
pub const CONFIG_DATA_PORTS: u16 = 4;

const ENABLE: u32 = 1 << 31;
/// Bits 30:24 are reserved and bits 1:0 select type 0/1 cycles: they read as zero.
const ADDRESS_WRITABLE: u32 = 0x80FF_FFFC;
const BUS_SHIFT: u32 = 16;
const DEVICE_SHIFT: u32 = 11;
const FUNCTION_SHIFT: u32 = 8;
const REGISTER: u32 = 0xFC;

pub const DEVICES: u8 = 32;
pub const FUNCTIONS: u8 = 8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciError {
    #[error(
        "PCI function {device:02x}.{function} does not exist on a bus of 32 devices × 8 functions"
    )]
    BadAddress { device: u8, function: u8 },
    #[error("PCI function {device:02x}.{function} is already taken")]
    Taken { device: u8, function: u8 },
    #[error("BAR {index} of {size:#x} bytes is not a valid BAR")]
    BadBar { index: usize, size: u64 },
}

/// A PCI function: it owns its configuration space and answers accesses to its BARs.
pub trait PciDevice {
    fn name(&self) -> &'static str;
    fn config(&self) -> &ConfigSpace;
    fn config_mut(&mut self) -> &mut ConfigSpace;

    /// A read of `size` bytes at `offset` into BAR `bar`.
    fn bar_read(&mut self, _bar: usize, _offset: u64, size: u8, _now: Nanos) -> u64 {
        ones(size)
    }

    fn bar_write(
        &mut self,
        _bar: usize,
        _offset: u64,
        _size: u8,
        _value: u64,
        _now: Nanos,
    ) -> IoAccess {
        IoAccess::Done
    }
}

struct Slot {
    device: u8,
    function: u8,
    dev: Box<dyn PciDevice>,
    stats: AccessStats,
}

#[derive(Default)]
pub struct PciBus {
    address: u32,
    slots: Vec<Slot>,
}

impl PciBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Put `dev` at bus 0, `device`.`function`.
    pub fn add(
        &mut self,
        device: u8,
        function: u8,
        dev: Box<dyn PciDevice>,
    ) -> Result<(), PciError> {
        if device >= DEVICES || function >= FUNCTIONS {
            return Err(PciError::BadAddress { device, function });
        }
        if self
            .slots
            .iter()
            .any(|s| (s.device, s.function) == (device, function))
        {
            return Err(PciError::Taken { device, function });
        }
        self.slots.push(Slot {
            device,
            function,
            dev,
            stats: AccessStats::default(),
        });
        Ok(())
    }

    fn slot(&mut self, device: u8, function: u8) -> Option<&mut Slot> {
        self.slots
            .iter_mut()
            .find(|s| (s.device, s.function) == (device, function))
    }

    /// Configuration read of function `device`.`function` on bus 0 (all ones if absent).
    pub fn config_read(&mut self, device: u8, function: u8, offset: u8, size: u8) -> u32 {
        match self.slot(device, function) {
            Some(s) => {
                s.stats.reads += 1;
                s.dev.config().read(offset, size)
            }
            None => ones(size) as u32,
        }
    }

    pub fn config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32) {
        if let Some(s) = self.slot(device, function) {
            s.stats.writes += 1;
            s.dev.config_mut().write(offset, size, value);
        }
    }

    /// The function CONFIG_ADDRESS selects, and the register offset of a data port
    /// access at `port_offset`; none while disabled or for another bus.
    fn target(&self, port_offset: u16) -> Option<(u8, u8, u8)> {
        let a = self.address;
        if a & ENABLE == 0 || (a >> BUS_SHIFT) as u8 != 0 {
            return None;
        }
        let device = ((a >> DEVICE_SHIFT) & 0x1F) as u8;
        let function = ((a >> FUNCTION_SHIFT) & 0x7) as u8;
        Some((
            device,
            function,
            (a & REGISTER) as u8 + (port_offset & 3) as u8,
        ))
    }

    /// The function and BAR decoding `addr`, counting the access.
    fn decode(&mut self, space: Space, addr: u64, write: bool) -> Option<(&mut Slot, usize, u64)> {
        let (i, bar, offset) = self.slots.iter().enumerate().find_map(|(i, s)| {
            s.dev
                .config()
                .decode(space, addr)
                .map(|(bar, offset)| (i, bar, offset))
        })?;
        let slot = &mut self.slots[i];
        if write {
            slot.stats.writes += 1;
        } else {
            slot.stats.reads += 1;
        }
        Some((slot, bar, offset))
    }

    fn bar_read(&mut self, space: Space, addr: u64, size: u8, now: Nanos) -> u64 {
        match self.decode(space, addr, false) {
            Some((s, bar, offset)) => s.dev.bar_read(bar, offset, size, now),
            None => ones(size),
        }
    }

    fn bar_write(&mut self, space: Space, addr: u64, size: u8, value: u64, now: Nanos) -> IoAccess {
        match self.decode(space, addr, true) {
            Some((s, bar, offset)) => s.dev.bar_write(bar, offset, size, value, now),
            None => IoAccess::Done,
        }
    }

    /// (function name, configuration and BAR accesses) for every function.
    pub fn stats(&self) -> Vec<(&'static str, AccessStats)> {
        self.slots.iter().map(|s| (s.dev.name(), s.stats)).collect()
    }
}

impl Device for PciBus {
    fn name(&self) -> &'static str {
        "pci"
    }
}

impl PortDevice for PciBus {
    fn read(&mut self, base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        match base {
            CONFIG_ADDRESS if offset == 0 && size == 4 => self.address,
            CONFIG_ADDRESS => ones(size) as u32,
            CONFIG_DATA => match self.target(offset) {
                Some((device, function, register)) => {
                    self.config_read(device, function, register, size)
                }
                None => ones(size) as u32,
            },
            _ => self.bar_read(Space::Io, base as u64 + offset as u64, size, now) as u32,
        }
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        match base {
            CONFIG_ADDRESS if offset == 0 && size == 4 => self.address = value & ADDRESS_WRITABLE,
            CONFIG_ADDRESS => {}
            CONFIG_DATA => {
                if let Some((device, function, register)) = self.target(offset) {
                    self.config_write(device, function, register, size, value);
                }
            }
            _ => {
                return self.bar_write(
                    Space::Io,
                    base as u64 + offset as u64,
                    size,
                    value as u64,
                    now,
                )
            }
        }
        IoAccess::Done
    }
}

impl MmioDevice for PciBus {
    fn read(&mut self, base: u64, offset: u64, size: u8, now: Nanos) -> u64 {
        self.bar_read(Space::Memory, base.wrapping_add(offset), size, now)
    }

    fn write(&mut self, base: u64, offset: u64, size: u8, value: u64, now: Nanos) -> IoAccess {
        self.bar_write(Space::Memory, base.wrapping_add(offset), size, value, now)
    }
}

#[cfg(test)]
mod tests {
    use super::config::*;
    use super::host_bridge::I440fx;
    use super::isa_bridge::Piix3;
    use super::testdev::PciTestdev;
    use super::*;
    use crate::port_bus::PortBus;

    /// The machine's wiring: config ports on the port bus, BAR decode as the fallback.
    fn platform() -> (PortBus, crate::mmio_bus::MmioBus) {
        let mut pci = PciBus::new();
        pci.add(0, 0, Box::new(I440fx::new())).unwrap();
        pci.add(1, 0, Box::new(Piix3::new())).unwrap();
        pci.add(3, 0, Box::new(PciTestdev::new())).unwrap();
        let pci = crate::bus::shared(pci);
        let mut ports = PortBus::new();
        let id = ports
            .register(CONFIG_ADDRESS, CONFIG_ADDRESS_PORTS, Box::new(pci.clone()))
            .unwrap();
        ports.add_range(id, CONFIG_DATA, CONFIG_DATA_PORTS).unwrap();
        ports.set_fallback(id).unwrap();
        let mut mmio = crate::mmio_bus::MmioBus::new();
        let id = mmio.add(Box::new(pci));
        mmio.set_fallback(id).unwrap();
        (ports, mmio)
    }

    fn cfg_read(p: &mut PortBus, dev: u8, func: u8, reg: u8, size: u8) -> u32 {
        p.write(
            CONFIG_ADDRESS,
            4,
            ENABLE | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xFC),
            Nanos::ZERO,
        );
        p.read(CONFIG_DATA + (reg & 3) as u16, size, Nanos::ZERO)
    }

    fn cfg_write(p: &mut PortBus, dev: u8, func: u8, reg: u8, size: u8, v: u32) {
        p.write(
            CONFIG_ADDRESS,
            4,
            ENABLE | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xFC),
            Nanos::ZERO,
        );
        p.write(CONFIG_DATA + (reg & 3) as u16, size, v, Nanos::ZERO);
    }

    #[test]
    fn enumeration_finds_exactly_the_functions_present() {
        let (mut p, _) = platform();
        let mut found = Vec::new();
        for dev in 0..DEVICES {
            for func in 0..FUNCTIONS {
                let id = cfg_read(&mut p, dev, func, VENDOR_ID, 4);
                if id != u32::MAX {
                    found.push((dev, func, id));
                }
                // The usual scan: stop at function 0 of a single-function device.
                let multi =
                    cfg_read(&mut p, dev, 0, HEADER_TYPE, 1) as u8 & HEADER_MULTIFUNCTION != 0;
                if func == 0 && !multi {
                    break;
                }
            }
        }
        assert_eq!(
            found,
            [
                (0, 0, 0x1237_8086),
                (1, 0, 0x7000_8086),
                (3, 0, 0x0005_1B36)
            ]
        );
    }

    #[test]
    fn config_address_register_and_data_offsets() {
        let (mut p, _) = platform();
        p.write(CONFIG_ADDRESS, 4, 0xFFFF_FFFF, Nanos::ZERO);
        assert_eq!(p.read(CONFIG_ADDRESS, 4, Nanos::ZERO), ADDRESS_WRITABLE);
        // Byte and word reads at every offset of a dword.
        assert_eq!(cfg_read(&mut p, 0, 0, 0x00, 2), 0x8086);
        assert_eq!(cfg_read(&mut p, 0, 0, 0x02, 2), 0x1237);
        assert_eq!(cfg_read(&mut p, 0, 0, 0x0B, 1), 0x06, "bridge class");
        assert_eq!(cfg_read(&mut p, 0, 0, 0x0A, 1), 0x00, "host bridge");
        assert_eq!(cfg_read(&mut p, 1, 0, 0x0A, 1), 0x01, "ISA bridge");
        // Disabled, or another bus: nothing answers.
        p.write(CONFIG_ADDRESS, 4, 0, Nanos::ZERO);
        assert_eq!(p.read(CONFIG_DATA, 4, Nanos::ZERO), u32::MAX);
        p.write(CONFIG_ADDRESS, 4, ENABLE | 1 << 16, Nanos::ZERO);
        assert_eq!(p.read(CONFIG_DATA, 4, Nanos::ZERO), u32::MAX);
        // Narrow accesses to CONFIG_ADDRESS are not decoded.
        assert_eq!(p.read(CONFIG_ADDRESS, 2, Nanos::ZERO), 0xFFFF);
    }

    #[test]
    fn sizing_and_using_a_bar() {
        let (mut p, mut m) = platform();
        // pci-testdev: BAR0 is 4 KiB of memory, BAR1 256 ports.
        cfg_write(&mut p, 3, 0, BAR0, 4, u32::MAX);
        assert_eq!(cfg_read(&mut p, 3, 0, BAR0, 4), 0xFFFF_F000);
        cfg_write(&mut p, 3, 0, BAR0 + 4, 4, u32::MAX);
        assert_eq!(cfg_read(&mut p, 3, 0, BAR0 + 4, 4), 0xFFFF_FF01);
        cfg_write(&mut p, 3, 0, BAR0, 4, 0xFEB0_0000);
        cfg_write(&mut p, 3, 0, BAR0 + 4, 4, 0xC000);
        assert_eq!(m.read(0xFEB0_0000, 1, Nanos::ZERO), 0xFF, "decode disabled");
        cfg_write(
            &mut p,
            3,
            0,
            COMMAND,
            2,
            (COMMAND_IO | COMMAND_MEMORY) as u32,
        );
        // Select the I/O BAR's first test ("portio-no-eventfd") through the I/O BAR,
        // read its name through the memory BAR.
        p.write(0xC000, 1, 0, Nanos::ZERO);
        let name: Vec<u8> = (0..17)
            .map(|i| m.read(0xFEB0_0010 + i, 1, Nanos::ZERO) as u8)
            .collect();
        assert_eq!(name, b"portio-no-eventfd");
        let stats = p.stats();
        assert!(stats
            .iter()
            .any(|(n, s)| *n == "pci" && s.reads > 0 && s.writes > 0));
    }
}
