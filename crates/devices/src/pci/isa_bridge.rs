//! The Intel 82371SB (PIIX3) PCI-to-ISA bridge as 00:01.0 (8086:7000), function 0 of
//! a multi-function device as in QEMU's `pc` machine. Its ISA-side registers that
//! firmware programs are writable with their datasheet reset values; the PIRQ route
//! control registers tell the machine which ISA IRQ each PCI interrupt line (PIRQA–D)
//! drives.

use super::config::{ConfigSpace, Identity, HEADER_MULTIFUNCTION};
use super::PciDevice;

pub const VENDOR: u16 = 0x8086;
pub const DEVICE: u16 = 0x7000;
/// Bridge device, PCI-to-ISA bridge.
const CLASS: u32 = 0x06_01_00;

/// PIRQRC[A:D] (82371SB datasheet 2.2.14): bit 7 disables routing, bits 3:0 name the ISA
/// IRQ.
pub const PIRQRC: u8 = 0x60;
pub const PIRQ_DISABLED: u8 = 0x80;
pub const PIRQ_IRQ: u8 = 0x0F;

/// (offset, reset value, writable bits) of the registers firmware writes.
const REGISTERS: [(u8, u8, u8); 14] = [
    // IORT: ISA I/O recovery timer.
    (0x4C, 0x4D, 0xFF),
    // XBCS: X-bus chip select.
    (0x4E, 0x03, 0xFF),
    (0x4F, 0x00, 0x07),
    // PIRQRC[A:D].
    (0x60, PIRQ_DISABLED, 0x8F),
    (0x61, PIRQ_DISABLED, 0x8F),
    (0x62, PIRQ_DISABLED, 0x8F),
    (0x63, PIRQ_DISABLED, 0x8F),
    // TOM: top of memory.
    (0x69, 0x02, 0xFE),
    // MSTAT: miscellaneous status.
    (0x6A, 0x00, 0xFF),
    (0x6B, 0x00, 0x80),
    // MBIRQ0/1: motherboard device IRQ routes.
    (0x70, 0x80, 0xCF),
    (0x71, 0x80, 0xCF),
    // MBDMA0/1: motherboard device DMA.
    (0x76, 0x0C, 0x8F),
    (0x77, 0x0C, 0x8F),
];

pub struct Piix3 {
    config: ConfigSpace,
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3 {
    pub fn new() -> Self {
        let mut config = ConfigSpace::new(Identity {
            vendor: VENDOR,
            device: DEVICE,
            revision: 0,
            class: CLASS,
            header_type: HEADER_MULTIFUNCTION,
            interrupt_pin: 0,
        });
        for (offset, reset, writable) in REGISTERS {
            config.set(offset, &[reset], &[writable]);
        }
        Piix3 { config }
    }
}

impl PciDevice for Piix3 {
    fn name(&self) -> &'static str {
        "piix3"
    }

    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pirq_routing_registers() {
        let mut isa = Piix3::new();
        let c = isa.config_mut();
        assert_eq!(
            c.read(PIRQRC, 4),
            0x8080_8080,
            "all PIRQs unrouted at reset"
        );
        // SeaBIOS routes PIRQA-D to IRQ 10, 10, 11, 11.
        c.write(PIRQRC, 4, 0x0B0B_0A0A);
        assert_eq!(c.read(PIRQRC + 2, 1) as u8 & PIRQ_IRQ, 11);
        c.write(PIRQRC, 1, 0xFF);
        assert_eq!(c.read(PIRQRC, 1), 0x8F);
        assert_eq!(c.read(0x0E, 1), 0x80, "multi-function");
        assert_eq!(c.read(0x4C, 1), 0x4D);
    }
}
