//! trapeze-machine: the PC that ties the CPU, memory and devices together, and the VMM
//! run loop (DESIGN.md §1): `cpu.run()` → `Exit` → handle → resume.

pub mod acpi;
pub mod classify;
pub mod clock;
pub mod config;
pub mod console;
pub mod debug;
pub mod gdb;
pub mod linux;
pub mod machine;
pub mod multiboot;
pub mod platform;

pub use config::{parse_addr, parse_size, Config, Image, MachineError, Output};
pub use machine::{Machine, Outcome, RunStats};

/// The default guest `trapeze run` boots with no image: a real-mode program that prints
/// a banner and computed results on the debug console and exits via the debug-exit port.
pub const DEFAULT_GUEST: &[u8] = include_bytes!("../../../testdata/guests/hello.bin");

/// The integer-loop guest `trapeze bench` runs (9 instructions × 10,000,000 iterations).
pub const BENCH_GUEST: &[u8] = include_bytes!("../../../testdata/guests/intloop.bin");
