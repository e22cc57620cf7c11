//! Data movement: MOV (GPR, memory, immediate, moffs, segment and control registers),
//! MOVZX MOVSX MOVSXD, XCHG XADD CMPXCHG CMPXCHG8B/16B, LEA, CBW..CQO, XLAT,
//! LAHF SAHF, CMOVcc SETcc, LDS LES LFS LGS LSS (SDM Vol.2).

use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use trapeze_mmu::Bus;

use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::{seg_index, Entry};
use crate::exec::{op_size, Handler, Table};
use crate::fault::Fault;
use crate::flags::{rf, Op};
use crate::state::{gpr, sreg, Word};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Mov, select_mov);
    t.on(Mnemonic::Movzx, |i| ext_select(i, false));
    t.on(Mnemonic::Movsx, |i| ext_select(i, true));
    t.on(Mnemonic::Movsxd, |i| ext_select(i, true));
    t.on(Mnemonic::Xchg, by_size!(xchg));
    t.on(Mnemonic::Xadd, by_size!(xadd));
    t.on(Mnemonic::Cmpxchg, by_size!(cmpxchg));
    t.on(Mnemonic::Cmpxchg8b, |_| Some(cmpxchg_double::<u32>));
    t.on(Mnemonic::Cmpxchg16b, |_| Some(cmpxchg_double::<u64>));
    t.on(Mnemonic::Lea, by_size!(lea));
    t.on_all(&[Mnemonic::Cbw, Mnemonic::Cwde, Mnemonic::Cdqe], |i| {
        Some(match i.mnemonic() {
            Mnemonic::Cbw => widen_acc::<u8, u16>,
            Mnemonic::Cwde => widen_acc::<u16, u32>,
            _ => widen_acc::<u32, u64>,
        })
    });
    t.on(Mnemonic::Cwd, |_| Some(sign_to_dx::<u16>));
    t.on(Mnemonic::Cdq, |_| Some(sign_to_dx::<u32>));
    t.on(Mnemonic::Cqo, |_| Some(sign_to_dx::<u64>));
    t.on(Mnemonic::Xlatb, |_| Some(xlat));
    t.on(Mnemonic::Salc, |_| Some(salc));
    t.on(Mnemonic::Lahf, |_| Some(lahf));
    t.on(Mnemonic::Sahf, |_| Some(sahf));
    t.on_all(CMOVCC, |i| cc_select(i, &CMOV_BY_SIZE));
    t.on_all(SETCC, |i| Some(SET[cc(i)]));
    t.on_all(
        &[
            Mnemonic::Lds,
            Mnemonic::Les,
            Mnemonic::Lfs,
            Mnemonic::Lgs,
            Mnemonic::Lss,
        ],
        by_size!(load_far_pointer),
    );
}

/// The Jcc/SETcc/CMOVcc condition as its 4-bit encoding.
pub(crate) fn cc(i: &Instruction) -> usize {
    (i.condition_code() as usize).wrapping_sub(1) & 0xF
}

/// Monomorphize `$f::<CC>` for all 16 conditions.
#[macro_export]
macro_rules! per_cc {
    ($f:ident $(, $g:ty)*) => {
        [
            $f::<0x0 $(, $g)*>, $f::<0x1 $(, $g)*>, $f::<0x2 $(, $g)*>, $f::<0x3 $(, $g)*>,
            $f::<0x4 $(, $g)*>, $f::<0x5 $(, $g)*>, $f::<0x6 $(, $g)*>, $f::<0x7 $(, $g)*>,
            $f::<0x8 $(, $g)*>, $f::<0x9 $(, $g)*>, $f::<0xA $(, $g)*>, $f::<0xB $(, $g)*>,
            $f::<0xC $(, $g)*>, $f::<0xD $(, $g)*>, $f::<0xE $(, $g)*>, $f::<0xF $(, $g)*>,
        ]
    };
}

const CMOVCC: &[Mnemonic] = &[
    Mnemonic::Cmovo,
    Mnemonic::Cmovno,
    Mnemonic::Cmovb,
    Mnemonic::Cmovae,
    Mnemonic::Cmove,
    Mnemonic::Cmovne,
    Mnemonic::Cmovbe,
    Mnemonic::Cmova,
    Mnemonic::Cmovs,
    Mnemonic::Cmovns,
    Mnemonic::Cmovp,
    Mnemonic::Cmovnp,
    Mnemonic::Cmovl,
    Mnemonic::Cmovge,
    Mnemonic::Cmovle,
    Mnemonic::Cmovg,
];
const SETCC: &[Mnemonic] = &[
    Mnemonic::Seto,
    Mnemonic::Setno,
    Mnemonic::Setb,
    Mnemonic::Setae,
    Mnemonic::Sete,
    Mnemonic::Setne,
    Mnemonic::Setbe,
    Mnemonic::Seta,
    Mnemonic::Sets,
    Mnemonic::Setns,
    Mnemonic::Setp,
    Mnemonic::Setnp,
    Mnemonic::Setl,
    Mnemonic::Setge,
    Mnemonic::Setle,
    Mnemonic::Setg,
];

static SET: [Handler; 16] = per_cc!(setcc);
static CMOV_BY_SIZE: [[Handler; 16]; 3] = [
    per_cc!(cmovcc, u16),
    per_cc!(cmovcc, u32),
    per_cc!(cmovcc, u64),
];

/// Pick from a per-size (16/32/64), per-condition handler table.
pub(crate) fn cc_select(i: &Instruction, t: &[[Handler; 16]; 3]) -> Option<Handler> {
    let row = match op_size(i, 0) {
        2 => 0,
        4 => 1,
        8 => 2,
        _ => return None,
    };
    Some(t[row][cc(i)])
}

fn select_mov(i: &Instruction) -> Option<Handler> {
    let reg = |n| (i.op_kind(n) == OpKind::Register).then(|| i.op_register(n));
    match (reg(0), reg(1)) {
        (Some(r), _) if r.is_segment_register() => Some(mov_to_sreg),
        (_, Some(r)) if r.is_segment_register() => Some(if i.op0_kind() == OpKind::Memory {
            mov_from_sreg::<u16>
        } else {
            by_size!(mov_from_sreg)(i)?
        }),
        (Some(r), _) if r.is_cr() => Some(crate::exec::system::mov_to_cr),
        (_, Some(r)) if r.is_cr() => Some(crate::exec::system::mov_from_cr),
        (Some(r), _) | (_, Some(r)) if r.is_dr() => Some(crate::exec::system::mov_dr),
        _ => by_size!(mov)(i),
    }
}

fn mov<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.read_op::<T>(bus, e, 1)?;
    cpu.write_op::<T>(bus, e, 0, v)
}

/// MOV Sreg, r/m16. Loading CS this way is #UD (the decoder already says so); MOV SS
/// blocks interrupts until after the next instruction (SDM Vol.2B MOV).
fn mov_to_sreg(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let sel = cpu.read_op::<u16>(bus, e, 1)?;
    let s = seg_index(e.insn.op0_register()) as usize;
    if s == sreg::CS {
        return Err(Fault::ud());
    }
    cpu.load_segment(bus, s, sel)?;
    if s == sreg::SS {
        cpu.shadow = true;
    }
    Ok(())
}

/// MOV r/m, Sreg: a register destination with a 32/64-bit operand gets the selector
/// zero-extended; a memory destination is always 16 bits.
fn mov_from_sreg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let sel = cpu.seg[seg_index(e.insn.op1_register()) as usize].selector;
    cpu.write_op::<T>(bus, e, 0, T::from_u64(sel as u64))
}

fn ext_select(i: &Instruction, signed: bool) -> Option<Handler> {
    macro_rules! pick {
        ($($d:literal, $s:literal => $dt:ty, $st:ty);*) => {
            match (op_size(i, 0), op_size(i, 1), signed) {
                $(($d, $s, false) => Some(extend::<$dt, $st, false>),
                  ($d, $s, true) => Some(extend::<$dt, $st, true>),)*
                _ => None,
            }
        };
    }
    pick!(2, 1 => u16, u8; 4, 1 => u32, u8; 8, 1 => u64, u8; 2, 2 => u16, u16;
          4, 2 => u32, u16; 8, 2 => u64, u16; 4, 4 => u32, u32; 8, 4 => u64, u32)
}

fn extend<D: Word, S: Word, const SIGNED: bool>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    let v = cpu.read_op::<S>(bus, e, 1)?;
    let wide = if SIGNED { v.sext() } else { v.to_u64() };
    cpu.write_op::<D>(bus, e, 0, D::from_u64(wide))
}

/// XCHG: with a memory operand the exchange is atomic (implicitly locked); with one
/// interpreter thread it is simply read, write, write.
fn xchg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let b = cpu.read_op::<T>(bus, e, 1)?;
    let mut a = None;
    cpu.rmw::<T>(bus, e, |_, old| {
        a = Some(old);
        Some(b)
    })?;
    let a = a.expect("rmw runs its closure on success");
    cpu.write_op::<T>(bus, e, 1, a)
}

fn xadd<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let b = cpu.read_op::<T>(bus, e, 1)?;
    let mut old = None;
    cpu.rmw::<T>(bus, e, |cpu, a| {
        old = Some(a);
        let r = T::from_u64(a.to_u64().wrapping_add(b.to_u64()));
        cpu.set_lazy::<T>(Op::Add, a.to_u64(), b.to_u64(), r.to_u64());
        Some(r)
    })?;
    let a = old.expect("rmw runs its closure on success");
    // When both operands are the same register the sum wins (it is written last
    // on hardware too: the destination gets the sum).
    if e.insn.op0_kind() == OpKind::Register && e.insn.op0_register() == e.insn.op1_register() {
        return Ok(());
    }
    cpu.write_op::<T>(bus, e, 1, a)
}

/// CMPXCHG: compare the accumulator with the destination; the destination is written
/// in both cases (with its old value on mismatch, SDM Vol.2A CMPXCHG), so a
/// read-only destination faults either way.
fn cmpxchg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let src = cpu.read_op::<T>(bus, e, 1)?;
    let acc = T::from_u64(cpu.gpr[gpr::RAX]);
    let mut seen = None;
    cpu.rmw::<T>(bus, e, |cpu, dst| {
        seen = Some(dst);
        cpu.set_lazy::<T>(
            Op::Sub,
            acc.to_u64(),
            dst.to_u64(),
            acc.to_u64().wrapping_sub(dst.to_u64()),
        );
        // A register destination is left alone on mismatch (only memory sees the
        // write-back), which the hardware does too: 32-bit registers are not
        // zero-extended then.
        (acc == dst || e.insn.op0_kind() != OpKind::Register).then_some(if acc == dst {
            src
        } else {
            dst
        })
    })?;
    let dst = seen.expect("rmw runs its closure on success");
    if acc != dst {
        cpu.set_gpr::<T>(gpr::RAX, dst);
    }
    Ok(())
}

/// CMPXCHG8B/16B m64/m128 against EDX:EAX / RDX:RAX; only ZF changes. The 16-byte
/// form needs a 16-byte-aligned operand (#GP(0), SDM Vol.2A).
fn cmpxchg_double<H: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    if H::BYTES == 8 && off & 15 != 0 {
        return Err(Fault::gp(0));
    }
    let lin = cpu.linear(seg, off, 2 * H::BYTES)?;
    let lo = cpu.mmu.read::<H>(bus, lin)?;
    let hi = cpu.mmu.read::<H>(bus, lin.wrapping_add(H::BYTES as u64))?;
    cpu.mmu.probe_write(lin, 2 * H::BYTES)?;
    let (a, d) = (
        H::from_u64(cpu.gpr[gpr::RAX]),
        H::from_u64(cpu.gpr[gpr::RDX]),
    );
    let equal = lo == a && hi == d;
    let (wl, wh) = if equal {
        (
            H::from_u64(cpu.gpr[gpr::RBX]),
            H::from_u64(cpu.gpr[gpr::RCX]),
        )
    } else {
        (lo, hi)
    };
    cpu.mmu.write::<H>(bus, lin, wl)?;
    cpu.mmu
        .write::<H>(bus, lin.wrapping_add(H::BYTES as u64), wh)?;
    if !equal {
        cpu.set_gpr::<H>(gpr::RAX, lo);
        cpu.set_gpr::<H>(gpr::RDX, hi);
    }
    cpu.set_arith_flags(rf::ZF, if equal { rf::ZF } else { 0 });
    Ok(())
}

/// LEA: the offset, truncated or zero-extended to the operand size.
fn lea<T: Word>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let off = cpu.ea(&e.mem);
    cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(off));
    Ok(())
}

/// CBW/CWDE/CDQE: sign-extend the low half of the accumulator into all of it.
fn widen_acc<S: Word, D: Word>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let v = S::from_u64(cpu.gpr[gpr::RAX]).sext();
    cpu.set_gpr::<D>(gpr::RAX, D::from_u64(v));
    Ok(())
}

/// CWD/CDQ/CQO: DX/EDX/RDX = the sign of AX/EAX/RAX.
fn sign_to_dx<T: Word>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let neg = T::from_u64(cpu.gpr[gpr::RAX]).sext() >> 63 != 0;
    cpu.set_gpr::<T>(gpr::RDX, T::from_u64(if neg { u64::MAX } else { 0 }));
    Ok(())
}

/// XLAT: AL = [seg:(E/R)BX + AL].
fn xlat(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let off = cpu.gpr[gpr::RBX].wrapping_add(cpu.gpr[gpr::RAX] & 0xFF) & e.mem.addr_mask;
    let seg = seg_index(e.insn.memory_segment()) as usize;
    let v = cpu.read_mem::<u8>(bus, seg, off)?;
    cpu.set_gpr::<u8>(gpr::RAX, v);
    Ok(())
}

/// LAHF/SAHF move SF ZF AF PF CF (bits 7 6 4 2 0) between AH and FLAGS.
const AH_FLAGS: u64 = rf::SF | rf::ZF | rf::AF | rf::PF | rf::CF;

fn lahf(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let f = (cpu.rflags() & AH_FLAGS) | rf::FIXED1;
    cpu.set_reg::<u8>(Register::AH, f as u8);
    Ok(())
}

fn sahf(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let ah = cpu.reg::<u8>(Register::AH) as u64;
    cpu.set_arith_flags(AH_FLAGS, ah);
    Ok(())
}

/// SALC (D6, undocumented, outside 64-bit mode): AL = CF ? 0xFF : 0, flags unchanged.
fn salc(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let v = if cpu.cf() { 0xFF } else { 0 };
    cpu.set_gpr::<u8>(gpr::RAX, v);
    Ok(())
}

fn setcc<const CC: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.cond(CC) as u8;
    cpu.write_op::<u8>(bus, e, 0, v)
}

/// CMOVcc reads its source whether or not it moves (a memory source can fault), and a
/// 32-bit destination is zero-extended even when the condition is false in 64-bit
/// mode (SDM Vol.2A CMOVcc).
fn cmovcc<const CC: u8, T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.read_op::<T>(bus, e, 1)?;
    let r = e.insn.op0_register();
    let v = if cpu.cond(CC) { v } else { cpu.reg::<T>(r) };
    cpu.set_reg::<T>(r, v);
    Ok(())
}

/// LDS/LES/LFS/LGS/LSS r, m16:16/32/64: the offset first, then the selector.
fn load_far_pointer<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    let v = cpu.read_mem::<T>(bus, seg, off)?;
    let sel = cpu.read_mem::<u16>(
        bus,
        seg,
        off.wrapping_add(T::BYTES as u64) & e.mem.addr_mask,
    )?;
    let target = match e.insn.mnemonic() {
        Mnemonic::Lds => sreg::DS,
        Mnemonic::Les => sreg::ES,
        Mnemonic::Lfs => sreg::FS,
        Mnemonic::Lgs => sreg::GS,
        _ => sreg::SS,
    };
    cpu.load_segment(bus, target, sel)?;
    cpu.set_reg::<T>(e.insn.op0_register(), v);
    Ok(())
}
