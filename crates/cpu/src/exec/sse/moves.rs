//! Data movement between XMM/MMX registers, GPRs and memory (SDM Vol.1 9.4.1, 10.4.1,
//! 11.4.1, 11.4.4): MOVD/MOVQ, MOVAPS/MOVUPS/MOVAPD/MOVUPD/MOVDQA/MOVDQU, MOVSS/MOVSD,
//! MOVLPS/MOVHPS/MOVLPD/MOVHPD/MOVHLPS/MOVLHPS, MOVDQ2Q/MOVQ2DQ, the non-temporal
//! stores, MASKMOVQ/MASKMOVDQU and EMMS.

use iced_x86::{Mnemonic, OpKind};
use trapeze_mmu::Bus;

use super::{loc, low_mask, Loc};
use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::{seg_index, Entry};
use crate::exec::Table;
use crate::fault::Fault;
use crate::state::Word;

pub(crate) fn register(t: &mut Table) {
    use Mnemonic::*;
    t.on_all(
        &[
            Movd, Movq, Movaps, Movups, Movapd, Movupd, Movdqa, Movdqu, Movdq2q, Movq2dq, Movntps,
            Movntpd, Movntdq, Movntq,
        ],
        |_| Some(copy),
    );
    t.on(Movss, |_| Some(scalar));
    // MOVSD is also a string instruction: only the XMM forms are ours.
    t.share(Movsd, |i| {
        let xmm = |n| i.op_kind(n) == OpKind::Register && i.op_register(n).is_xmm();
        (xmm(0) || xmm(1)).then_some(scalar as _)
    });
    t.on_all(&[Movlps, Movlpd], |_| Some(half::<false>));
    t.on_all(&[Movhps, Movhpd], |_| Some(half::<true>));
    ops!(t;
        Movhlps => |a, b, n, imm| a & !low_mask(64) | b >> 64;
        Movlhps => |a, b, n, imm| a & low_mask(64) | b << 64;
    );
    t.on(Movnti, by_size!(movnti));
    t.on_all(&[Maskmovq, Maskmovdqu], |_| Some(maskmov));
    t.on(Emms, |_| Some(emms));
}

/// Size in bytes of an operand.
fn size(l: Loc) -> usize {
    match l {
        Loc::Xmm(_) | Loc::Imm => 16,
        Loc::Mm(_) => 8,
        Loc::Gpr(r) => r.size(),
        Loc::Mem(b) => b,
    }
}

/// `dst = src`, as wide as the narrower of the two (MOVQ: 64 bits) and zero-extended
/// into a register destination (MOVD xmm, r32 clears bits 127:32; MOVQ xmm, xmm clears
/// 127:64).
fn copy(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let mm = cpu.simd_begin(e)?;
    let movq = if e.insn.mnemonic() == Mnemonic::Movq {
        8
    } else {
        16
    };
    let bytes = size(loc(&e.insn, 0)).min(size(loc(&e.insn, 1))).min(movq);
    let v = cpu.vread(bus, e, 1)? & low_mask(bytes as u32 * 8);
    cpu.vwrite(bus, e, 0, v)?;
    cpu.simd_end(mm);
    Ok(())
}

/// MOVSS/MOVSD: between registers only the low element moves; a load clears the rest
/// of the register, a store writes the element.
fn scalar(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (d, s) = (loc(&e.insn, 0), loc(&e.insn, 1));
    let (Loc::Xmm(d), Loc::Xmm(s)) = (d, s) else {
        return copy(cpu, bus, e);
    };
    cpu.simd_begin(e)?;
    let m = low_mask(if e.insn.mnemonic() == Mnemonic::Movss {
        32
    } else {
        64
    });
    cpu.sse.xmm[d] = cpu.sse.xmm[d] & !m | cpu.sse.xmm[s] & m;
    Ok(())
}

/// MOVLPS/MOVHPS (and PD): load a 64-bit half of the register (the other kept), or
/// store it.
fn half<const HIGH: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.simd_begin(e)?;
    let sh = if HIGH { 64 } else { 0 };
    match loc(&e.insn, 0) {
        Loc::Xmm(d) => {
            let v = cpu.vread(bus, e, 1)?;
            let old = cpu.sse.xmm[d];
            cpu.sse.xmm[d] = old & !(low_mask(64) << sh) | v << sh;
            Ok(())
        }
        _ => {
            let v = cpu.vread(bus, e, 1)? >> sh;
            cpu.vwrite(bus, e, 0, v)
        }
    }
}

/// MOVNTI m32/m64, r: a non-temporal GPR store (no SSE state involved).
fn movnti<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.read_op::<T>(bus, e, 1)?;
    cpu.write_op::<T>(bus, e, 0, v)
}

/// MASKMOVQ/MASKMOVDQU (SDM Vol.2): store the bytes of operand 1 whose byte in operand
/// 2 has its top bit set, at DS:rDI (segment override allowed). The whole span is
/// checked before any byte is written.
fn maskmov(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let mm = cpu.simd_begin(e)?;
    let i = &e.insn;
    let n = size(loc(i, 1));
    let data = cpu.vread(bus, e, 1)?;
    let mask = cpu.vread(bus, e, 2)?;
    let addr_mask = match i.op0_kind() {
        OpKind::MemorySegDI => 0xFFFF,
        OpKind::MemorySegEDI => 0xFFFF_FFFF,
        _ => u64::MAX,
    };
    let off = cpu.gpr[crate::state::gpr::RDI] & addr_mask;
    let lin = cpu.linear(seg_index(i.memory_segment()) as usize, off, n)?;
    cpu.mmu.probe_write(lin, n)?;
    for b in 0..n {
        if mask >> (8 * b + 7) & 1 != 0 {
            cpu.mmu
                .write::<u8>(bus, lin.wrapping_add(b as u64), (data >> (8 * b)) as u8)?;
        }
    }
    cpu.simd_end(mm);
    Ok(())
}

/// EMMS: every x87 register tagged empty (SDM Vol.1 9.5.3). Like the other MMX
/// instructions it also sets TOP to 0 (what the hardware does; the SDM only mentions
/// the tags).
fn emms(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.mmx_available()?;
    cpu.x87_pending()?;
    cpu.enter_mmx();
    cpu.x87.tag = 0xFFFF;
    Ok(())
}
