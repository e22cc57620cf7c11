//! Guest memory for trapeze: the physical map (RAM, ROM, MMIO), linear-to-physical
//! translation and the software TLB (DESIGN.md §4).
//!
//! The CPU reaches everything outside RAM and ROM through the [`Bus`] trait, which the
//! machine implements over its devices. This crate knows nothing about instructions.

mod bus;
mod mmu;
pub mod paging;
mod phys;
mod tlb;

pub use bus::{Bus, BusFlow, NullBus};
pub use mmu::{event, Access, MemFault, Mmu, Pod};
pub use phys::{MapError, PhysMem, PAGE_SIZE};
pub use tlb::TlbEntry;
