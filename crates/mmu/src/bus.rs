//! The CPU's only way out to the platform: port I/O and MMIO.

/// What the platform wants after a bus access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusFlow {
    Continue,
    /// A device asked to end the run (e.g. the debug-exit port). The CPU finishes the
    /// current instruction and returns to the machine.
    Stop,
    /// The A20 gate changed (the CPU's A20M# input: port 0x92, i8042 output port).
    A20(bool),
}

/// Port I/O and MMIO, implemented by the machine over its devices. Sizes are in bytes
/// (1, 2, 4 for ports; 1, 2, 4, 8 for MMIO). Every call is a trap to the VMM.
pub trait Bus {
    fn io_in(&mut self, port: u16, size: u8) -> u32;
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusFlow;
    fn mmio_read(&mut self, addr: u64, size: u8) -> u64;
    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) -> BusFlow;
    /// Called before each port access with the instructions retired so far (up to the
    /// start of the current block), so that a platform on virtual time can give the
    /// access its own time instead of the time its run slice began.
    fn clock(&mut self, _icount: u64) {}
    /// INTA cycle: the vector of the highest-priority pending external interrupt.
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        None
    }
}

/// A bus with nothing on it: reads float high, writes vanish. For tests and tools.
#[derive(Default)]
pub struct NullBus;

impl Bus for NullBus {
    fn io_in(&mut self, _port: u16, size: u8) -> u32 {
        ones(size) as u32
    }
    fn io_out(&mut self, _port: u16, _size: u8, _value: u32) -> BusFlow {
        BusFlow::Continue
    }
    fn mmio_read(&mut self, _addr: u64, size: u8) -> u64 {
        ones(size)
    }
    fn mmio_write(&mut self, _addr: u64, _size: u8, _value: u64) -> BusFlow {
        BusFlow::Continue
    }
}

fn ones(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}
