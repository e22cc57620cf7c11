//! Cacheability control, prefetch and memory ordering (SDM Vol.1 10.4.6.3, 11.4.4.3):
//! trapeze has no caches and executes in program order, so these only check their
//! operand where the architecture says they do.

use iced_x86::Mnemonic::*;
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::system::nop;
use crate::exec::Table;
use crate::fault::Fault;

pub(crate) fn register(t: &mut Table) {
    // PREFETCHh never faults (SDM Vol.2 PREFETCHh); the fences order nothing here.
    t.on_all(
        &[
            Prefetchnta,
            Prefetcht0,
            Prefetcht1,
            Prefetcht2,
            Sfence,
            Lfence,
            Mfence,
        ],
        |_| Some(nop),
    );
    t.on(Clflush, |_| Some(clflush));
}

/// CLFLUSH m8: faults like a byte read of its operand (SDM Vol.2 CLFLUSH), without
/// the read access itself.
fn clflush(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let lin = cpu.linear(e.mem.seg as usize, cpu.ea(&e.mem), 1)?;
    cpu.mmu.read::<u8>(bus, lin)?;
    Ok(())
}
