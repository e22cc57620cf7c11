//! trapeze-devices: the PC's devices (DESIGN.md §6). Each device is one module with its
//! registers as named constants, its state, its bus behaviour and its unit tests; no
//! device knows about another — the machine wires them together.
//!
//! Three conventions hold everywhere: every access carries the virtual time (`clock`),
//! devices raise interrupts by driving `irq::IrqLine`s that the machine routes to the
//! interrupt controllers, and a device asks the machine for anything else (reset, A20,
//! an APIC message) through the `IoAccess` its write returns.

pub mod acpi_pm;
pub mod bus;
pub mod clock;
pub mod debug_exit;
pub mod debugcon;
pub mod dma;
pub mod fw_cfg;
pub mod i8042;
pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod mmio_bus;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod port_bus;
pub mod rtc;
pub mod sysctrl;
pub mod testdev;
pub mod uart;

pub use bus::{shared, AccessStats, BusError, Device, DeviceId, IoAccess, Shared};
pub use clock::{Nanos, Timed};
pub use irq::{IrqLine, IrqLines};
pub use mmio_bus::{MmioBus, MmioDevice};
pub use port_bus::{PortBus, PortDevice, PortError};
