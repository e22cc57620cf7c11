//! System control ports outside any other device: system control port A (0x92, PS/2
//! "fast A20": bit 1 drives the A20 gate, bit 0 pulses a fast CPU reset) and the PIIX
//! reset control register (0xCF9, inside the PCI configuration ports but decoded by the
//! south bridge: Linux's `reboot=pci`).

use crate::bus::{Device, IoAccess};
use crate::clock::Nanos;
use crate::port_bus::PortDevice;

pub const PORT: u16 = 0x92;
const A20: u8 = 1 << 1;
const FAST_RESET: u8 = 1 << 0;

pub struct SystemControlA {
    value: u8,
}

impl SystemControlA {
    /// `a20` is the gate's state at power-on.
    pub fn new(a20: bool) -> Self {
        SystemControlA {
            value: if a20 { A20 } else { 0 },
        }
    }
}

impl Device for SystemControlA {
    fn name(&self) -> &'static str {
        "sysctrl-a"
    }
}

impl PortDevice for SystemControlA {
    fn read(&mut self, _base: u16, _offset: u16, _size: u8, _now: Nanos) -> u32 {
        self.value as u32
    }

    fn write(&mut self, _base: u16, _offset: u16, _size: u8, value: u32, _now: Nanos) -> IoAccess {
        let v = value as u8;
        let changed = (v ^ self.value) & A20 != 0;
        // The reset bit is a pulse; it reads back as written but only a 0→1 edge counts.
        let reset = v & FAST_RESET != 0 && self.value & FAST_RESET == 0;
        self.value = v;
        if reset {
            IoAccess::Reset
        } else if changed {
            IoAccess::A20(v & A20 != 0)
        } else {
            IoAccess::Done
        }
    }
}

pub const RESET_CONTROL: u16 = 0xCF9;
/// PIIX3 RC register bits (82371SB datasheet 4.1.4).
const RC_SRST: u8 = 1 << 1;
const RC_RCPU: u8 = 1 << 2;

/// The PIIX3 reset control register: writing RCPU = 1 resets the system; SRST (hard or
/// soft reset) reads back as written. One byte wide; wider accesses are not decoded.
#[derive(Default)]
pub struct ResetControl {
    srst: u8,
}

impl ResetControl {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Device for ResetControl {
    fn name(&self) -> &'static str {
        "reset-control"
    }
}

impl PortDevice for ResetControl {
    fn read(&mut self, _base: u16, _offset: u16, size: u8, _now: Nanos) -> u32 {
        if size == 1 {
            self.srst as u32
        } else {
            u32::MAX
        }
    }

    fn write(&mut self, _base: u16, _offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        if size != 1 {
            return IoAccess::Done;
        }
        let v = value as u8;
        if v & RC_RCPU != 0 {
            return IoAccess::Reset;
        }
        self.srst = v & RC_SRST;
        IoAccess::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &mut impl PortDevice, v: u32) -> IoAccess {
        p.write(0, 0, 1, v, Nanos::ZERO)
    }

    #[test]
    fn a20_bit_toggles_the_gate_and_bit_0_resets() {
        let mut p = SystemControlA::new(false);
        assert_eq!(p.read(PORT, 0, 1, Nanos::ZERO), 0);
        assert_eq!(write(&mut p, 0x02), IoAccess::A20(true));
        assert_eq!(write(&mut p, 0x02), IoAccess::Done);
        assert_eq!(p.read(PORT, 0, 1, Nanos::ZERO), 0x02);
        assert_eq!(write(&mut p, 0x00), IoAccess::A20(false));
        assert_eq!(write(&mut p, 0x01), IoAccess::Reset);
        // Held high, the reset bit does not reset again.
        assert_eq!(write(&mut p, 0x01), IoAccess::Done);
    }

    #[test]
    fn linux_reboot_pci_sequence_resets() {
        // arch/x86/kernel/reboot.c: outb(cf9 | 2, 0xcf9); udelay(50); outb(cf9 | 6, 0xcf9).
        let mut rc = ResetControl::new();
        assert_eq!(write(&mut rc, 0x02), IoAccess::Done);
        assert_eq!(rc.read(RESET_CONTROL, 0, 1, Nanos::ZERO), 0x02);
        assert_eq!(write(&mut rc, 0x06), IoAccess::Reset);
        assert_eq!(rc.write(0, 0, 4, 0x06, Nanos::ZERO), IoAccess::Done);
    }
}
