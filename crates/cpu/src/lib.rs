//! trapeze-cpu: the x86 CPU of trapeze (DESIGN.md §2): architectural state, the decode
//! cache, lazy flags, faults as values, and one module of handlers per instruction
//! family.

pub mod classify;
pub mod cpu;
pub mod cpuid;
pub mod debug_api;
pub mod decode_cache;
pub mod dump;
pub mod exec;
pub mod fault;
pub mod flags;
pub mod fpu;
pub mod interrupt;
pub mod msr;
pub mod segment;
pub mod softfloat;
pub mod state;
pub mod task;
#[cfg(test)]
pub(crate) mod testutil;
pub mod x87ops;

pub use cpu::{Cpu, CpuStats, Exit};
pub use fault::{vector, Fault};
pub use flags::rf;
pub use state::{attr, cr0, cr4, efer, gpr, sreg, Segment, TableReg, Word};
pub use trapeze_mmu::{Bus, BusFlow, Mmu, NullBus, PhysMem};
