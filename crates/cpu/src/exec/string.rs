//! String instructions: MOVS STOS LODS CMPS SCAS INS OUTS and the REP / REPE / REPNE
//! prefixes (SDM Vol.2B "REP/REPE/REPZ/REPNE/REPNZ", Vol.1 7.3.9).
//!
//! The source is seg:SI (DS unless overridden), the destination always ES:DI; the
//! address size (16/32/64) picks SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX and how they
//! wrap; DF picks the direction. A repeated instruction is restartable per iteration
//! (DESIGN.md §2): each iteration commits its SI/DI/CX updates, so a fault in
//! iteration k is delivered with RIP at the instruction and the registers saying how
//! far it got; and a handler call runs at most `REP_CHUNK` iterations before it
//! restarts the instruction, so interrupts and budgets are seen during long copies.

use iced_x86::{Instruction, Mnemonic, OpKind};
use trapeze_mmu::{event, Bus};

use crate::cpu::Cpu;
use crate::decode_cache::{seg_index, Entry};
use crate::exec::io::{port_in, port_out};
use crate::exec::{Handler, Table};
use crate::fault::Fault;
use crate::flags::Op;
use crate::state::{gpr, sreg, Word};

pub(crate) fn register(t: &mut Table) {
    use Mnemonic::*;
    // MOVSD and CMPSD are also the SSE2 scalar-double mnemonics; `select` only takes
    // the string forms (those with SI/DI operands).
    t.on_all(&[Movsb, Movsw, Movsd, Movsq], select::<Movs>);
    t.on_all(&[Stosb, Stosw, Stosd, Stosq], select::<Stos>);
    t.on_all(&[Lodsb, Lodsw, Lodsd, Lodsq], select::<Lods>);
    t.on_all(&[Cmpsb, Cmpsw, Cmpsd, Cmpsq], select::<Cmps>);
    t.on_all(&[Scasb, Scasw, Scasd, Scasq], select::<Scas>);
    t.on_all(&[Insb, Insw, Insd], select::<Ins>);
    t.on_all(&[Outsb, Outsw, Outsd], select::<Outs>);
}

/// Iterations of a repeated string instruction per handler call. Past this the
/// instruction restarts itself (RIP stays on it), letting the run loop take
/// interrupts and end the budget in the middle of a long REP.
const REP_CHUNK: u32 = 4096;

/// The address size of a string instruction (in bytes), from its implicit SI/DI
/// operands; None for anything else.
fn addr_size(i: &Instruction) -> Option<usize> {
    (0..i.op_count()).find_map(|n| match i.op_kind(n) {
        OpKind::MemorySegSI | OpKind::MemoryESDI => Some(2),
        OpKind::MemorySegESI | OpKind::MemoryESEDI => Some(4),
        OpKind::MemorySegRSI | OpKind::MemoryESRDI => Some(8),
        _ => None,
    })
}

/// A string instruction with a REP/REPE/REPNE prefix: it may restart itself, so it
/// must end its basic block (`exec::ends_block`).
pub(crate) fn repeats(i: &Instruction) -> bool {
    (i.has_rep_prefix() || i.has_repne_prefix()) && addr_size(i).is_some()
}

/// Pick `run::<T, K, A>`: T from the element size, A (u16/u32/u64) from the address size.
fn select<K: StringOp>(i: &Instruction) -> Option<Handler> {
    match i.memory_size().size() {
        1 => by_addr::<u8, K>(i),
        2 => by_addr::<u16, K>(i),
        4 => by_addr::<u32, K>(i),
        8 => by_addr::<u64, K>(i),
        _ => None,
    }
}

fn by_addr<T: Word, K: StringOp>(i: &Instruction) -> Option<Handler> {
    Some(match addr_size(i)? {
        2 => run::<T, K, u16>,
        4 => run::<T, K, u32>,
        _ => run::<T, K, u64>,
    })
}

/// One string instruction, generic over the element type T and the address-size
/// type A (whose `MASK` and `merge` give the SI/DI/CX wraparound and write rules).
trait StringOp {
    /// CMPS and SCAS: REPE/REPNE also end on ZF.
    const COMPARES: bool = false;
    /// One iteration, SI/DI updates included. `src` is the source segment.
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault>;
}

/// SI/DI/CX at the address size.
#[inline(always)]
fn index<A: Word>(cpu: &Cpu, r: usize) -> u64 {
    cpu.gpr[r] & A::MASK
}

/// SI or DI += or -= the element size (DF), wrapping at the address size; a 16-bit
/// address size leaves bits 16.. alone, a 32-bit one zero-extends like any 32-bit write.
#[inline(always)]
fn advance<T: Word, A: Word>(cpu: &mut Cpu, r: usize) {
    let step = if cpu.df() { (T::BYTES as u64).wrapping_neg() } else { T::BYTES as u64 };
    let v = cpu.gpr[r].wrapping_add(step);
    cpu.set_gpr::<A>(r, A::from_u64(v));
}

/// The accumulator at the element size.
#[inline(always)]
fn acc<T: Word>(cpu: &Cpu) -> T {
    T::from_u64(cpu.gpr[gpr::RAX])
}

fn run<T: Word, K: StringOp, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let src = seg_index(e.insn.memory_segment()) as usize;
    // For CMPS/SCAS: REPE repeats while ZF = 1, REPNE while ZF = 0. Other string
    // instructions treat F2 like F3: both just repeat.
    let while_zf = if e.insn.has_repe_prefix() {
        true
    } else if e.insn.has_repne_prefix() {
        false
    } else {
        return K::step::<T, A>(cpu, bus, src);
    };
    for _ in 0..REP_CHUNK {
        let count = index::<A>(cpu, gpr::RCX);
        if count == 0 {
            return Ok(());
        }
        K::step::<T, A>(cpu, bus, src)?;
        cpu.set_gpr::<A>(gpr::RCX, A::from_u64(count - 1));
        if count == 1 || (K::COMPARES && cpu.zf() != while_zf) {
            return Ok(());
        }
        // A device asked to stop (port or MMIO write): stop here, precisely.
        if cpu.mmu.events & event::BUS_STOP != 0 {
            break;
        }
    }
    cpu.next_ip = cpu.rip;
    Ok(())
}

struct Movs;
struct Stos;
struct Lods;
struct Cmps;
struct Scas;
struct Ins;
struct Outs;

impl StringOp for Movs {
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault> {
        let v = cpu.read_mem::<T>(bus, src, index::<A>(cpu, gpr::RSI))?;
        cpu.write_mem::<T>(bus, sreg::ES, index::<A>(cpu, gpr::RDI), v)?;
        advance::<T, A>(cpu, gpr::RSI);
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Stos {
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: usize) -> Result<(), Fault> {
        cpu.write_mem::<T>(bus, sreg::ES, index::<A>(cpu, gpr::RDI), acc::<T>(cpu))?;
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Lods {
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault> {
        let v = cpu.read_mem::<T>(bus, src, index::<A>(cpu, gpr::RSI))?;
        cpu.set_gpr::<T>(gpr::RAX, v);
        advance::<T, A>(cpu, gpr::RSI);
        Ok(())
    }
}

/// CMPS and SCAS set the flags of CMP first, second (SDM Vol.2A CMPS: "SRC1 - SRC2").
#[inline(always)]
fn compare<T: Word>(cpu: &mut Cpu, a: T, b: T) {
    let res = T::from_u64(a.to_u64().wrapping_sub(b.to_u64()));
    cpu.set_lazy::<T>(Op::Sub, a.to_u64(), b.to_u64(), res.to_u64());
}

impl StringOp for Cmps {
    const COMPARES: bool = true;
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault> {
        let a = cpu.read_mem::<T>(bus, src, index::<A>(cpu, gpr::RSI))?;
        let b = cpu.read_mem::<T>(bus, sreg::ES, index::<A>(cpu, gpr::RDI))?;
        compare(cpu, a, b);
        advance::<T, A>(cpu, gpr::RSI);
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Scas {
    const COMPARES: bool = true;
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: usize) -> Result<(), Fault> {
        let b = cpu.read_mem::<T>(bus, sreg::ES, index::<A>(cpu, gpr::RDI))?;
        compare(cpu, acc::<T>(cpu), b);
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Ins {
    /// The destination is checked before the port is read, so a fault does not
    /// swallow a byte from the device (the restarted instruction reads it again).
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: usize) -> Result<(), Fault> {
        let lin = cpu.linear(sreg::ES, index::<A>(cpu, gpr::RDI), T::BYTES)?;
        cpu.mmu.probe_write(lin, T::BYTES)?;
        let v = port_in::<T>(cpu, bus, cpu.gpr[gpr::RDX] as u16)?;
        cpu.mmu.write::<T>(bus, lin, v)?;
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Outs {
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault> {
        let v = cpu.read_mem::<T>(bus, src, index::<A>(cpu, gpr::RSI))?;
        port_out::<T>(cpu, bus, cpu.gpr[gpr::RDX] as u16, v)?;
        advance::<T, A>(cpu, gpr::RSI);
        Ok(())
    }
}
