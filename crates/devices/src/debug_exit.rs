//! QEMU's isa-debug-exit (iobase 0xF4, iosize 4): writing V ends the run with host exit
//! status (V << 1) | 1, so test kernels written for QEMU work unchanged.

use std::sync::{Arc, Mutex};

use crate::bus::{ones, Device, IoAccess};
use crate::clock::Nanos;
use crate::port_bus::PortDevice;

pub const PORT: u16 = 0xF4;
pub const LEN: u16 = 4;

/// The value the guest wrote, shared with the machine.
pub type ExitCode = Arc<Mutex<Option<u32>>>;

pub struct DebugExit {
    code: ExitCode,
}

impl DebugExit {
    pub fn new(code: ExitCode) -> Self {
        DebugExit { code }
    }
}

/// The host exit status QEMU gives for a written value.
pub fn status(value: u32) -> i32 {
    ((value << 1) | 1) as i32
}

impl Device for DebugExit {
    fn name(&self) -> &'static str {
        "debug-exit"
    }
}

impl PortDevice for DebugExit {
    fn read(&mut self, _base: u16, _offset: u16, size: u8, _now: Nanos) -> u32 {
        ones(size) as u32
    }

    fn write(&mut self, _base: u16, _offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        let v = value & ones(size) as u32;
        if let Ok(mut c) = self.code.lock() {
            *c = Some(v);
        }
        IoAccess::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_records_value_and_stops() {
        let code = ExitCode::default();
        let mut d = DebugExit::new(code.clone());
        assert_eq!(d.write(PORT, 0, 1, 0x1_10, Nanos::ZERO), IoAccess::Stop);
        assert_eq!(*code.lock().unwrap(), Some(0x10));
        assert_eq!(status(0x10), 33);
        assert_eq!(status(0), 1);
    }
}
