//! System control port A (0x92, PS/2 "fast A20"): bit 1 drives the A20 gate, bit 0
//! pulses a fast CPU reset.

use crate::port_bus::{IoAccess, PortDevice};

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

impl PortDevice for SystemControlA {
    fn name(&self) -> &'static str {
        "sysctrl-a"
    }

    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        self.value as u32
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) -> IoAccess {
        let v = value as u8;
        let changed = (v ^ self.value) & A20 != 0;
        // The reset bit is a pulse; it reads back as written but only a 0→1 edge counts.
        let reset = v & FAST_RESET != 0 && self.value & FAST_RESET == 0;
        self.value = v;
        if reset {
            IoAccess::Stop
        } else if changed {
            IoAccess::A20(v & A20 != 0)
        } else {
            IoAccess::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a20_bit_toggles_the_gate() {
        let mut p = SystemControlA::new(false);
        assert_eq!(p.read(0, 1), 0);
        assert_eq!(p.write(0, 1, 0x02), IoAccess::A20(true));
        assert_eq!(p.write(0, 1, 0x02), IoAccess::Done);
        assert_eq!(p.read(0, 1), 0x02);
        assert_eq!(p.write(0, 1, 0x00), IoAccess::A20(false));
        assert_eq!(p.write(0, 1, 0x01), IoAccess::Stop);
    }
}
