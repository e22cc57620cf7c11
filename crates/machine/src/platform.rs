//! The machine's side of the CPU's `Bus`: port I/O through the port bus, MMIO to
//! whatever is mapped (nothing yet: unclaimed MMIO floats high).

use trapeze_devices::{IoAccess, Nanos, PortBus};
use trapeze_mmu::{Bus, BusFlow};

pub struct Platform {
    pub ports: PortBus,
    pub mmio_unclaimed: u64,
}

impl Bus for Platform {
    fn io_in(&mut self, port: u16, size: u8) -> u32 {
        // No virtual clock yet: time stands at zero until the machine wiring of issue 4.
        self.ports.read(port, size, Nanos::ZERO)
    }

    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusFlow {
        match self.ports.write(port, size, value, Nanos::ZERO) {
            IoAccess::Done => BusFlow::Continue,
            // Without a debug-exit code, the machine reports a stop as a reset.
            IoAccess::Stop | IoAccess::Reset => BusFlow::Stop,
            IoAccess::A20(on) => BusFlow::A20(on),
            // Only the APICs answer with these, and none is wired yet.
            IoAccess::Interrupt(_) | IoAccess::EoiBroadcast(_) | IoAccess::Signal(_) => {
                BusFlow::Continue
            }
        }
    }

    fn mmio_read(&mut self, _addr: u64, size: u8) -> u64 {
        self.mmio_unclaimed += 1;
        u64::MAX >> (64 - 8 * size as u32)
    }

    fn mmio_write(&mut self, _addr: u64, _size: u8, _value: u64) -> BusFlow {
        self.mmio_unclaimed += 1;
        BusFlow::Continue
    }
}
