//! Guest memory as a DMA-capable device sees it. The machine supplies the
//! implementation; a device holding one must not assume anything about how RAM is
//! mapped, and every guest-supplied address may be wild.

use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("guest physical {addr:#x}+{len:#x} is not RAM")]
pub struct GuestMemoryError {
    pub addr: u64,
    pub len: u64,
}

pub trait GuestMemory: Send {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Writes must be seen by the CPU as if it had stored them (the machine invalidates
    /// decoded code in the pages written).
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError>;
}
