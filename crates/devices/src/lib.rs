//! trapeze-devices: the PC's devices (DESIGN.md §6). Each device is one module with its
//! registers as named constants, its state, its bus behaviour and its unit tests; no
//! device knows about another — the machine wires them together.

pub mod debug_exit;
pub mod debugcon;
pub mod port_bus;
pub mod sysctrl;

pub use port_bus::{IoAccess, PortBus, PortDevice, PortError};
