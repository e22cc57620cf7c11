//! The Intel 82441FX (i440FX) PCI and memory controller as host bridge 00:00.0
//! (8086:1237, the one QEMU's `pc` machine has). Besides the header, its programmable
//! attribute map (PAM0–6, which make the BIOS areas below 1 MiB read/write RAM) and
//! SMRAM control are writable, so firmware that programs them reads back what it
//! wrote; the machine reads them through `PciBus::config_read` when it maps memory.

use super::config::{ConfigSpace, Identity};
use super::PciDevice;

pub const VENDOR: u16 = 0x8086;
pub const DEVICE: u16 = 0x1237;
/// Bridge device, host bridge.
const CLASS: u32 = 0x06_00_00;
const REVISION: u8 = 0x02;

/// PAM0 (0xF0000–0xFFFFF) to PAM6 (0xEC000–0xEFFFF), 82441FX datasheet 3.2.18.
pub const PAM0: u8 = 0x59;
pub const PAMS: usize = 7;
/// Each PAM nibble: bit 0 read enable (RAM), bit 1 write enable, bit 3 reserved;
/// PAM0's low nibble is reserved.
const PAM_WRITABLE: [u8; PAMS] = [0x30, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33];
/// SMRAM: D_OPEN, D_CLS, D_LCK, G_SMRAME writable; C_BASE_SEG fixed at 010 (0xA0000).
pub const SMRAM: u8 = 0x72;
const SMRAM_RESET: u8 = 0x02;
const SMRAM_WRITABLE: u8 = 0x78;

pub struct I440fx {
    config: ConfigSpace,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl I440fx {
    pub fn new() -> Self {
        let mut config = ConfigSpace::new(Identity {
            vendor: VENDOR,
            device: DEVICE,
            revision: REVISION,
            class: CLASS,
            header_type: 0,
            interrupt_pin: 0,
        });
        config.set(PAM0, &[0; PAMS], &PAM_WRITABLE);
        config.set(SMRAM, &[SMRAM_RESET], &[SMRAM_WRITABLE]);
        I440fx { config }
    }
}

impl PciDevice for I440fx {
    fn name(&self) -> &'static str {
        "i440fx"
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
    fn pam_and_smram_registers() {
        let mut hb = I440fx::new();
        let c = hb.config_mut();
        // SeaBIOS makes 0xF0000 RAM read/write: PAM0 = 0x30.
        c.write(PAM0, 1, 0xFF);
        assert_eq!(c.read(PAM0, 1), 0x30);
        c.write(PAM0 + 1, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(PAM0 + 1, 4), 0x3333_3333);
        assert_eq!(c.read(SMRAM, 1), 0x02);
        c.write(SMRAM, 1, 0xFF);
        assert_eq!(c.read(SMRAM, 1), 0x7A);
        assert_eq!(c.read(0, 4), 0x1237_8086);
    }
}
