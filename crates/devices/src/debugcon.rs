//! The 0xE9 debug console (Bochs' "port E9 hack", QEMU's isa-debugcon): every byte
//! written goes to the host; reads return 0xE9 so guests can detect it.

use std::io::Write;

use crate::bus::{Device, IoAccess};
use crate::clock::Nanos;
use crate::port_bus::PortDevice;

pub const PORT: u16 = 0xE9;

pub struct DebugCon {
    out: Box<dyn Write + Send>,
}

impl DebugCon {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        DebugCon { out }
    }
}

impl Device for DebugCon {
    fn name(&self) -> &'static str {
        "debugcon"
    }
}

impl PortDevice for DebugCon {
    fn read(&mut self, _base: u16, _offset: u16, _size: u8, _now: Nanos) -> u32 {
        PORT as u32
    }

    fn write(&mut self, _base: u16, _offset: u16, _size: u8, value: u32, _now: Nanos) -> IoAccess {
        let b = value as u8;
        // Host output errors (a closed pipe) must not stop the guest.
        let _ = self.out.write_all(&[b]);
        if b == b'\n' {
            let _ = self.out.flush();
        }
        IoAccess::Done
    }
}

impl Drop for DebugCon {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_pass_through_and_reads_identify_the_port() {
        let sink = Sink::default();
        let mut d = DebugCon::new(Box::new(sink.clone()));
        for b in b"hi\n" {
            d.write(PORT, 0, 1, *b as u32 | 0x100, Nanos::ZERO);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        assert_eq!(d.read(PORT, 0, 1, Nanos::ZERO), 0xE9);
    }
}
