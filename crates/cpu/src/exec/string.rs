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
use crate::flags::{rf, Op};
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
    /// Index registers a REP writes back even when it runs zero iterations (see
    /// `run`): MOVS and STOS do, the other string instructions do not.
    const ZERO_COUNT_WRITES: &'static [usize] = &[];
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
    let step = if cpu.df() {
        (T::BYTES as u64).wrapping_neg()
    } else {
        T::BYTES as u64
    };
    let v = cpu.gpr[r].wrapping_add(step);
    cpu.set_gpr::<A>(r, A::from_u64(v));
}

/// The accumulator at the element size.
#[inline(always)]
fn acc<T: Word>(cpu: &Cpu) -> T {
    T::from_u64(cpu.gpr[gpr::RAX])
}

fn run<T: Word, K: StringOp, A: Word>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
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
    // Under TF a single-step trap follows every iteration: one per call.
    let chunk = if cpu.rflags & rf::TF != 0 {
        1
    } else {
        REP_CHUNK
    };
    for _ in 0..chunk {
        let count = index::<A>(cpu, gpr::RCX);
        if count == 0 {
            // With CX = 0 nothing is accessed, but the count register (and, for
            // MOVS/STOS, the index registers) are still written at the address size:
            // in 64-bit mode with a 32-bit address size the Intel host zero-extends
            // RCX (RSI, RDI) here. At 16 or 64 bits these writes change nothing.
            cpu.set_gpr::<A>(gpr::RCX, A::from_u64(0));
            for &r in K::ZERO_COUNT_WRITES {
                cpu.set_gpr::<A>(r, A::from_u64(cpu.gpr[r]));
            }
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
    const ZERO_COUNT_WRITES: &'static [usize] = &[gpr::RSI, gpr::RDI];
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
    const ZERO_COUNT_WRITES: &'static [usize] = &[gpr::RDI];
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
        let port = cpu.gpr[gpr::RDX] as u16;
        let v = port_in::<T>(cpu, bus, port)?;
        cpu.mmu.write::<T>(bus, lin, v)?;
        advance::<T, A>(cpu, gpr::RDI);
        Ok(())
    }
}

impl StringOp for Outs {
    #[inline(always)]
    fn step<T: Word, A: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, src: usize) -> Result<(), Fault> {
        let v = cpu.read_mem::<T>(bus, src, index::<A>(cpu, gpr::RSI))?;
        let port = cpu.gpr[gpr::RDX] as u16;
        port_out::<T>(cpu, bus, port, v)?;
        advance::<T, A>(cpu, gpr::RSI);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::rf;
    use crate::state::Segment;
    use crate::testutil::{long_mode, port_value, read, read16, read64, real_mode, PortLog};
    use crate::{Exit, NullBus};

    const FLAGS: u64 = rf::CF | rf::ZF | rf::SF | rf::OF;

    fn regs(cpu: &mut Cpu, v: &[(usize, u64)]) {
        for &(r, x) in v {
            cpu.gpr[r] = x;
        }
    }

    #[test]
    fn rep_movsb_overlapping_forward_copy_repeats_the_first_byte() {
        // rep movsb ; hlt — each iteration reads what the previous one wrote.
        let mut cpu = real_mode(&[0xF3, 0xA4, 0xF4]);
        cpu.mmu.phys.write_bytes(0x2000, b"ABCDEFGH").unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2000), (gpr::RDI, 0x2001), (gpr::RCX, 4)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(&read::<8>(&cpu, 0x2000), b"AAAAAFGH");
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x2004, 0x2005, 0)
        );
    }

    #[test]
    fn rep_movsw_with_df_set_walks_down() {
        // std ; rep movsw ; hlt
        let mut cpu = real_mode(&[0xFD, 0xF3, 0xA5, 0xF4]);
        cpu.mmu
            .phys
            .write_bytes(0x2000, &[0x11, 0x11, 0x22, 0x22, 0x33, 0x33])
            .unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2004), (gpr::RDI, 0x3004), (gpr::RCX, 3)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            read::<6>(&cpu, 0x3000),
            [0x11, 0x11, 0x22, 0x22, 0x33, 0x33]
        );
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x1FFE, 0x2FFE, 0)
        );
    }

    #[test]
    fn sixteen_bit_addressing_wraps_si_di_and_keeps_the_upper_bits() {
        // movsb ; std ; stosb ; hlt
        let mut cpu = real_mode(&[0xA4, 0xFD, 0xAA, 0xF4]);
        cpu.mmu.phys.write_bytes(0xFFFF, &[0x5A]).unwrap();
        regs(
            &mut cpu,
            &[
                (gpr::RSI, 0x1234_FFFF),
                (gpr::RDI, 0xABCD_0000),
                (gpr::RAX, 0x77),
            ],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        // MOVSB: DS:FFFF -> ES:0000, SI wraps to 0000, DI to 0001; then STOSB with
        // DF=1 stores at ES:0001 and DI goes back to 0000.
        assert_eq!(read::<2>(&cpu, 0), [0x5A, 0x77]);
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI]),
            (0x1234_0000, 0xABCD_0000)
        );
    }

    #[test]
    fn rep_with_zero_count_does_nothing_and_counts_cx_only_at_16_bits() {
        // rep stosb ; hlt: with CX = 0 nothing is stored, whatever ECX's upper half says.
        let mut cpu = real_mode(&[0xF3, 0xAA, 0xF4]);
        regs(
            &mut cpu,
            &[
                (gpr::RDI, 0x3000),
                (gpr::RCX, 0x0005_0000),
                (gpr::RAX, 0x99),
            ],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(read::<1>(&cpu, 0x3000), [0]);
        assert_eq!(
            (cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x3000, 0x0005_0000)
        );

        let mut cpu = real_mode(&[0xF3, 0xAA, 0xF4]);
        regs(
            &mut cpu,
            &[
                (gpr::RDI, 0x3000),
                (gpr::RCX, 0x0005_0003),
                (gpr::RAX, 0x99),
            ],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(read::<4>(&cpu, 0x3000), [0x99, 0x99, 0x99, 0]);
        assert_eq!(
            (cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x3003, 0x0005_0000)
        );
    }

    #[test]
    fn repe_cmpsb_stops_after_the_first_difference() {
        // repe cmpsb ; hlt
        let mut cpu = real_mode(&[0xF3, 0xA6, 0xF4]);
        cpu.mmu.phys.write_bytes(0x2000, b"abcxefgh").unwrap();
        cpu.mmu.phys.write_bytes(0x3000, b"abcyefgh").unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2000), (gpr::RDI, 0x3000), (gpr::RCX, 10)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x2004, 0x3004, 6)
        );
        // 'x' - 'y' = 0xFF: borrow, negative, no signed overflow.
        assert_eq!(cpu.rflags() & FLAGS, rf::CF | rf::SF);

        // All equal: runs out of count with ZF = 1.
        let mut cpu = real_mode(&[0xF3, 0xA6, 0xF4]);
        cpu.mmu.phys.write_bytes(0x2000, b"abc").unwrap();
        cpu.mmu.phys.write_bytes(0x3000, b"abc").unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2000), (gpr::RDI, 0x3000), (gpr::RCX, 3)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RSI], cpu.gpr[gpr::RCX]), (0x2003, 0));
        assert_eq!(cpu.rflags() & FLAGS, rf::ZF);
    }

    #[test]
    fn repne_scas_finds_the_accumulator_or_runs_out() {
        // repne scasb ; hlt
        let mut cpu = real_mode(&[0xF2, 0xAE, 0xF4]);
        cpu.mmu.phys.write_bytes(0x2000, b"abcd").unwrap();
        regs(
            &mut cpu,
            &[(gpr::RDI, 0x2000), (gpr::RCX, 10), (gpr::RAX, b'c' as u64)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]), (0x2003, 7));
        assert_eq!(cpu.rflags() & FLAGS, rf::ZF);

        // repne scasw: 0x3333 is not among 0x1111, 0x2222; last compare 0x3333 - 0x2222.
        let mut cpu = real_mode(&[0xF2, 0xAF, 0xF4]);
        cpu.mmu
            .phys
            .write_bytes(0x2000, &[0x11, 0x11, 0x22, 0x22])
            .unwrap();
        regs(
            &mut cpu,
            &[(gpr::RDI, 0x2000), (gpr::RCX, 2), (gpr::RAX, 0x3333)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]), (0x2004, 0));
        assert_eq!(cpu.rflags() & FLAGS, 0);
    }

    #[test]
    fn long_rep_restarts_itself_in_chunks() {
        // rep stosb ; hlt, with more iterations than one handler call runs.
        let mut cpu = real_mode(&[0xF3, 0xAA, 0xF4]);
        regs(
            &mut cpu,
            &[(gpr::RDI, 0x4000), (gpr::RCX, 10000), (gpr::RAX, 0x77)],
        );
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.rip, 0x1000);
        assert_eq!(
            (cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x4000 + 4096, 10000 - 4096)
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]), (0x4000 + 10000, 0));
        let mut buf = vec![0u8; 10001];
        cpu.mmu.phys.read_bytes(0x4000, &mut buf).unwrap();
        assert!(buf[..10000].iter().all(|&b| b == 0x77));
        assert_eq!(buf[10000], 0);
    }

    #[test]
    fn segment_override_moves_the_source_but_never_es_di() {
        // es movsb ; fs stosb ; hlt
        let mut cpu = real_mode(&[0x26, 0xA4, 0x64, 0xAA, 0xF4]);
        cpu.seg[sreg::DS] = Segment::real(0x200);
        cpu.seg[sreg::FS] = Segment::real(0x300);
        cpu.mmu.phys.write_bytes(0x10, &[0xEE]).unwrap();
        cpu.mmu.phys.write_bytes(0x2010, &[0xDD]).unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x10), (gpr::RDI, 0x3000), (gpr::RAX, 0x42)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        // MOVSB read ES:0010 (linear 0x10) and wrote ES:3000; STOSB wrote ES:3001.
        assert_eq!(read::<2>(&cpu, 0x3000), [0xEE, 0x42]);
        assert_eq!(read::<2>(&cpu, 0x6000), [0, 0]);
    }

    #[test]
    fn fault_in_the_middle_of_a_rep_is_precise() {
        // rep movsw at 0000:1000 with SI = FFF9: the 4th word (at FFFF) crosses the
        // 64 KiB limit: #GP, delivered through IVT entry 13 to a HLT at 0000:1100.
        let mut cpu = real_mode(&[0xF3, 0xA5, 0xF4]);
        cpu.mmu
            .phys
            .write_bytes(13 * 4, &[0x00, 0x11, 0x00, 0x00])
            .unwrap();
        cpu.mmu.phys.write_bytes(0x1100, &[0xF4]).unwrap();
        regs(
            &mut cpu,
            &[
                (gpr::RSI, 0xFFF9),
                (gpr::RDI, 0x3000),
                (gpr::RCX, 10),
                (gpr::RSP, 0x8000),
            ],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.stats.exceptions[13], 1);
        assert_eq!(cpu.rip, 0x1101);
        // Three iterations done, the registers say so, and the pushed IP is the REP's.
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0xFFFF, 0x3006, 7)
        );
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FFA);
        assert_eq!((read16(&cpu, 0x7FFA), read16(&cpu, 0x7FFC)), (0x1000, 0));
    }

    #[test]
    fn rep_outs_and_ins_go_through_the_bus() {
        // rep outsb ; rep insw ; hlt
        let mut cpu = real_mode(&[0xF3, 0x6E, 0xF3, 0x6D, 0xF4]);
        cpu.mmu.phys.write_bytes(0x2000, b"xyz").unwrap();
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2000), (gpr::RDX, 0x3F8), (gpr::RCX, 3)],
        );
        let mut bus = PortLog::default();
        assert_eq!(cpu.step(&mut bus), Exit::Budget);
        assert_eq!(
            bus.writes,
            [
                (0x3F8, 1, b'x' as u32),
                (0x3F8, 1, b'y' as u32),
                (0x3F8, 1, b'z' as u32)
            ]
        );
        assert_eq!(cpu.gpr[gpr::RSI], 0x2003);
        regs(
            &mut cpu,
            &[(gpr::RDI, 0x3000), (gpr::RDX, 0x60), (gpr::RCX, 2)],
        );
        assert_eq!(cpu.run(&mut bus, 100), Exit::Halt);
        assert_eq!(bus.reads, [(0x60, 2), (0x60, 2)]);
        let v = port_value(0x60, 2) as u16;
        assert_eq!((read16(&cpu, 0x3000), read16(&cpu, 0x3002)), (v, v));
        assert_eq!(cpu.gpr[gpr::RDI], 0x3004);
        assert_eq!(cpu.stats.io_exits, 5);
    }

    #[test]
    fn a_device_stop_ends_a_rep_after_the_iteration_that_asked() {
        // rep outsb to port 0xF4 (PortLog stops the run on it) ; hlt
        let mut cpu = real_mode(&[0xF3, 0x6E, 0xF4]);
        regs(
            &mut cpu,
            &[(gpr::RSI, 0x2000), (gpr::RDX, 0xF4), (gpr::RCX, 3)],
        );
        let mut bus = PortLog::default();
        assert_eq!(cpu.run(&mut bus, 100), Exit::Stop);
        assert_eq!(bus.writes.len(), 1);
        assert_eq!(
            (cpu.rip, cpu.gpr[gpr::RSI], cpu.gpr[gpr::RCX]),
            (0x1000, 0x2001, 2)
        );
    }

    #[test]
    fn lods_loads_the_accumulator() {
        // lodsw ; rep lodsb ; hlt
        let mut cpu = real_mode(&[0xAD, 0xF3, 0xAC, 0xF4]);
        cpu.mmu
            .phys
            .write_bytes(0x2000, &[0xEF, 0xBE, b'a', b'b', b'c'])
            .unwrap();
        regs(&mut cpu, &[(gpr::RSI, 0x2000), (gpr::RAX, 0x1234_5678)]);
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.gpr[gpr::RAX], 0x1234_BEEF);
        cpu.gpr[gpr::RCX] = 3;
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            (cpu.gpr[gpr::RAX], cpu.gpr[gpr::RSI]),
            (0x1234_BE00 | b'c' as u64, 0x2005)
        );
    }

    #[test]
    fn zero_count_rep_with_32_bit_addresses_zero_extends_like_the_host() {
        // a32 rep movsb ; a32 rep lods ; hlt, ECX = 0 (upper half of RCX set). The Intel
        // host (64-bit mode) clears the upper halves of RCX, RSI and RDI for MOVS (and
        // STOS: RDI), but only of RCX for LODS, CMPS and SCAS.
        let mut cpu = long_mode(&[0x67, 0xF3, 0xA4, 0x67, 0xF3, 0xAC, 0xF4]);
        let (rsi, rdi) = (0xAAAA_0000_0000_2000, 0xBBBB_0000_0000_3000);
        regs(
            &mut cpu,
            &[
                (gpr::RSI, rsi),
                (gpr::RDI, rdi),
                (gpr::RCX, 0xFFFF_FFFF_0000_0000),
            ],
        );
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(
            (cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]),
            (0x2000, 0x3000, 0)
        );
        regs(
            &mut cpu,
            &[(gpr::RSI, rsi), (gpr::RCX, 0xFFFF_FFFF_0000_0000)],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RSI], cpu.gpr[gpr::RCX]), (rsi, 0));
    }

    #[test]
    fn sixty_four_bit_forms() {
        // rep stosq ; a32 stosb ; cmpsq ; hlt
        let mut cpu = long_mode(&[0xF3, 0x48, 0xAB, 0x67, 0xAA, 0x48, 0xA7, 0xF4]);
        regs(
            &mut cpu,
            &[
                (gpr::RDI, 0x5000),
                (gpr::RCX, 3),
                (gpr::RAX, 0x1122_3344_5566_7788),
            ],
        );
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        for a in [0x5000, 0x5008, 0x5010] {
            assert_eq!(read64(&cpu, a), 0x1122_3344_5566_7788);
        }
        assert_eq!((cpu.gpr[gpr::RDI], cpu.gpr[gpr::RCX]), (0x5018, 0));
        // 32-bit address size: EDI addresses, and the update zero-extends into RDI.
        cpu.gpr[gpr::RDI] = 0x0000_0001_0000_6000;
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(read::<1>(&cpu, 0x6000), [0x88]);
        assert_eq!(cpu.gpr[gpr::RDI], 0x6001);
        // CMPSQ: 5 - 7 borrows and is negative.
        cpu.mmu
            .phys
            .write_bytes(0x7000, &5u64.to_le_bytes())
            .unwrap();
        cpu.mmu
            .phys
            .write_bytes(0x7100, &7u64.to_le_bytes())
            .unwrap();
        regs(&mut cpu, &[(gpr::RSI, 0x7000), (gpr::RDI, 0x7100)]);
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.rflags() & FLAGS, rf::CF | rf::SF);
        assert_eq!((cpu.gpr[gpr::RSI], cpu.gpr[gpr::RDI]), (0x7008, 0x7108));
    }
}
