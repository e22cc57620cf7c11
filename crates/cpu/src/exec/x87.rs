//! x87 FPU instructions (SDM Vol.1 chapter 8, Vol.2 F*): loads and stores, arithmetic,
//! comparisons, transcendentals and the stack-management instructions. The values are
//! computed by `x87ops`; this module moves them between the register stack and memory
//! and commits the exceptions (SDM Vol.1 8.5, 4.9.2 masked responses).
//!
//! Every x87 instruction raises #NM when CR0.EM or CR0.TS is set. The waiting ones (all
//! but FNINIT FNCLEX FNSTCW FNSTSW FNSTENV FNSAVE and FXSAVE/FXRSTOR) first
//! take a pending unmasked exception as #MF (`Cpu::fpu_pending`). The non-control ones
//! record FIP/FCS, FOP and FDP/FDS (SDM Vol.1 8.1.8).

use iced_x86::{CodeSize, Instruction, MemorySize, Mnemonic, Register};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::rf;
use crate::fpu::{cw, sw, Class, F80};
use crate::softfloat::ex;
use crate::x87ops::{self as ops, Arith, Cmp, Const, Out, Trig};

pub(crate) fn register(t: &mut Table) {
    use Mnemonic::*;
    t.on(Fld, |i| {
        Some(if is_reg(i) {
            fld_st
        } else {
            by_kind!(i, fld_mem)
        })
    });
    t.on_all(&[Fild, Fbld], |i| Some(by_kind!(i, fld_mem)));
    for (m, c) in [
        (Fld1, 0),
        (Fldl2t, 1),
        (Fldl2e, 2),
        (Fldpi, 3),
        (Fldlg2, 4),
        (Fldln2, 5),
        (Fldz, 6),
    ] {
        t.on(m, CONST_SELECT[c]);
    }
    t.on(Fst, |i| {
        Some(if is_reg(i) {
            fst_st::<false>
        } else {
            by_kind!(i, fst_mem, false)
        })
    });
    t.on(Fstp, |i| {
        Some(if is_reg(i) {
            fst_st::<true>
        } else {
            by_kind!(i, fst_mem, true)
        })
    });
    t.on(Fstpnce, |_| Some(fstpnce));
    t.on(Fist, |i| Some(by_kind!(i, fst_mem, false)));
    t.on_all(&[Fistp, Fbstp], |i| Some(by_kind!(i, fst_mem, true)));

    for (ms, op) in [
        ([Fadd, Faddp, Fiadd], Arith::Add),
        ([Fsub, Fsubp, Fisub], Arith::Sub),
        ([Fsubr, Fsubrp, Fisubr], Arith::SubR),
        ([Fmul, Fmulp, Fimul], Arith::Mul),
        ([Fdiv, Fdivp, Fidiv], Arith::Div),
        ([Fdivr, Fdivrp, Fidivr], Arith::DivR),
    ] {
        let n = op as usize;
        t.on(ms[0], ARITH_SELECT[n]);
        t.on(ms[1], ARITH_POP_SELECT[n]);
        t.on(ms[2], ARITH_SELECT[n]);
    }

    t.on_all(&[Fcom, Ficom], |i| Some(by_cmp!(i, false, 0)));
    t.on_all(&[Fcomp, Ficomp], |i| Some(by_cmp!(i, false, 1)));
    t.on(Fcompp, |_| Some(fcom::<REG, false, 2, false>));
    t.on(Fucom, |_| Some(fcom::<REG, true, 0, false>));
    t.on(Fucomp, |_| Some(fcom::<REG, true, 1, false>));
    t.on(Fucompp, |_| Some(fcom::<REG, true, 2, false>));
    t.on(Fcomi, |_| Some(fcom::<REG, false, 0, true>));
    t.on(Fcomip, |_| Some(fcom::<REG, false, 1, true>));
    t.on(Fucomi, |_| Some(fcom::<REG, true, 0, true>));
    t.on(Fucomip, |_| Some(fcom::<REG, true, 1, true>));
    t.on(Ftst, |_| Some(fcom::<ZERO, false, 0, false>));
    t.on(Fxam, |_| Some(fxam));

    t.on(Fchs, |_| Some(unary::<{ Unary::Chs as u8 }>));
    t.on(Fabs, |_| Some(unary::<{ Unary::Abs as u8 }>));
    t.on(Fsqrt, |_| Some(unary::<{ Unary::Sqrt as u8 }>));
    t.on(Frndint, |_| Some(unary::<{ Unary::Rndint as u8 }>));
    t.on(F2xm1, |_| Some(unary::<{ Unary::F2xm1 as u8 }>));
    t.on(Fsin, |_| Some(unary::<{ Unary::Sin as u8 }>));
    t.on(Fcos, |_| Some(unary::<{ Unary::Cos as u8 }>));
    t.on(Fptan, |_| Some(push_pair::<{ Pair::Ptan as u8 }>));
    t.on(Fsincos, |_| Some(push_pair::<{ Pair::Sincos as u8 }>));
    t.on(Fxtract, |_| Some(push_pair::<{ Pair::Xtract as u8 }>));
    t.on(Fscale, |_| Some(binary::<{ Binary::Scale as u8 }>));
    t.on(Fprem, |_| Some(binary::<{ Binary::Prem as u8 }>));
    t.on(Fprem1, |_| Some(binary::<{ Binary::Prem1 as u8 }>));
    t.on(Fyl2x, |_| Some(binary::<{ Binary::Yl2x as u8 }>));
    t.on(Fyl2xp1, |_| Some(binary::<{ Binary::Yl2xp1 as u8 }>));
    t.on(Fpatan, |_| Some(binary::<{ Binary::Patan as u8 }>));

    t.on(Fxch, |_| Some(fxch));
    for (m, cc) in [
        (Fcmovb, 0x2),
        (Fcmove, 0x4),
        (Fcmovbe, 0x6),
        (Fcmovu, 0xA),
        (Fcmovnb, 0x3),
        (Fcmovne, 0x5),
        (Fcmovnbe, 0x7),
        (Fcmovnu, 0xB),
    ] {
        t.on(m, FCMOV_SELECT[cc]);
    }
    t.on(Ffree, |_| Some(ffree::<false>));
    t.on(Ffreep, |_| Some(ffree::<true>));
    t.on(Fdecstp, |_| Some(fstp_adjust::<7>));
    t.on(Fincstp, |_| Some(fstp_adjust::<1>));
    t.on(Fnop, |_| Some(fnop::<true>));
    // The 8087's FENI/FDISI and the 287's FSETPM/FRSTPM do nothing on the 387 and
    // later (SDM Vol.1 8.3.13... and 387 manual), without waiting.
    t.on_all(&[Fneni, Fndisi, Fnsetpm, Frstpm], |_| Some(fnop::<false>));
}

// ---- operand kinds ------------------------------------------------------------------

const F32: u8 = 0;
const F64: u8 = 1;
const F80K: u8 = 2;
const I16: u8 = 3;
const I32: u8 = 4;
const I64: u8 = 5;
const BCD: u8 = 6;
/// A register ST(i) (comparisons).
const REG: u8 = 7;
/// The constant +0.0 (FTST).
const ZERO: u8 = 8;

/// `by_kind!(i, f, extra...)`: `f::<KIND, extra...>` for the memory operand's type.
macro_rules! by_kind {
    ($i:expr, $f:ident $(, $c:expr)*) => {
        match $i.memory_size() {
            MemorySize::Float32 => $f::<F32 $(, $c)*>,
            MemorySize::Float64 => $f::<F64 $(, $c)*>,
            MemorySize::Float80 => $f::<F80K $(, $c)*>,
            MemorySize::Int16 => $f::<I16 $(, $c)*>,
            MemorySize::Int32 => $f::<I32 $(, $c)*>,
            MemorySize::Int64 => $f::<I64 $(, $c)*>,
            MemorySize::Bcd => $f::<BCD $(, $c)*>,
            _ => return None,
        }
    };
}
use by_kind;

/// `by_cmp!(i, QUIET, POPS)`: FCOM/FICOM by operand kind.
macro_rules! by_cmp {
    ($i:expr, $q:expr, $p:expr) => {
        if is_reg($i) {
            fcom::<REG, $q, $p, false>
        } else {
            match $i.memory_size() {
                MemorySize::Float32 => fcom::<F32, $q, $p, false>,
                MemorySize::Float64 => fcom::<F64, $q, $p, false>,
                MemorySize::Int16 => fcom::<I16, $q, $p, false>,
                MemorySize::Int32 => fcom::<I32, $q, $p, false>,
                _ => return None,
            }
        }
    };
}
use by_cmp;

type Select = crate::exec::Select;

const CONST_SELECT: [Select; 7] = [
    |_| Some(fld_const::<0>),
    |_| Some(fld_const::<1>),
    |_| Some(fld_const::<2>),
    |_| Some(fld_const::<3>),
    |_| Some(fld_const::<4>),
    |_| Some(fld_const::<5>),
    |_| Some(fld_const::<6>),
];
const CONSTS: [Const; 7] = [
    ops::ONE_C,
    ops::L2T_C,
    ops::L2E_C,
    ops::PI_C,
    ops::LG2_C,
    ops::LN2_C,
    ops::ZERO_C,
];

macro_rules! arith_select {
    ($pop:expr; $($op:expr),*) => {
        [$(|i: &Instruction| -> Option<crate::exec::Handler> {
            Some(if $pop {
                arith_reg::<{ $op as u8 }, true>
            } else if is_reg(i) {
                arith_reg::<{ $op as u8 }, false>
            } else {
                by_kind!(i, arith_mem, { $op as u8 })
            })
        }),*]
    };
}
const ARITH_SELECT: [Select; 6] = arith_select!(false; Arith::Add, Arith::Sub, Arith::SubR,
    Arith::Mul, Arith::Div, Arith::DivR);
const ARITH_POP_SELECT: [Select; 6] = arith_select!(true; Arith::Add, Arith::Sub, Arith::SubR,
    Arith::Mul, Arith::Div, Arith::DivR);

const ARITH_OPS: [Arith; 6] = [
    Arith::Add,
    Arith::Sub,
    Arith::SubR,
    Arith::Mul,
    Arith::Div,
    Arith::DivR,
];

macro_rules! fcmov_select {
    ($($cc:literal),*) => { [$(|_: &Instruction| -> Option<crate::exec::Handler> {
        Some(fcmov::<$cc>)
    }),*] };
}
/// Indexed by the Jcc condition number (`Cpu::cond`).
const FCMOV_SELECT: [Select; 16] =
    fcmov_select!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

fn is_reg(i: &Instruction) -> bool {
    (0..i.op_count()).all(|n| i.op_kind(n) == iced_x86::OpKind::Register)
}

/// The i of the ST(i) operand (the one that is not ST(0)); 1 when the instruction
/// names none (FCOMPP, FUCOMPP).
fn sti(i: &Instruction) -> usize {
    (0..i.op_count())
        .map(|n| i.op_register(n))
        .filter(|r| r.is_st())
        .map(|r| r.number())
        .max()
        .unwrap_or(1)
}

// ---- the shared steps ---------------------------------------------------------------

impl Cpu {
    /// A pending unmasked x87 exception (SW.ES) is taken by the next waiting
    /// instruction as #MF when CR0.NE = 1. With CR0.NE = 0 the PC would signal it on
    /// FERR#/IRQ13; trapeze does not wire FERR#, and behaves as a PC whose IGNNE# is
    /// asserted: the exception stays pending and the instruction runs (SDM Vol.1 D.1).
    #[inline]
    pub fn fpu_pending(&self) -> Result<(), Fault> {
        if self.x87.sw & sw::ES != 0 && self.cr0 & crate::state::cr0::NE != 0 {
            return Err(Fault::new(crate::fault::vector::MF));
        }
        Ok(())
    }

    /// Record exceptions in the status word and set C1 to `c1`. Returns true when an
    /// unmasked IE, ZE or DE suppresses the result (SDM Vol.1 8.5: the destination and
    /// the stack stay unchanged).
    pub fn fpu_signal(&mut self, exc: u16, c1: bool) -> bool {
        let suppress = self.fpu_raise(exc);
        // A suppressed result was not rounded; a stack overflow reports C1 = 1.
        let c1 = c1 && (!suppress || exc & sw::SF != 0);
        self.x87.sw = (self.x87.sw & !sw::C1) | if c1 { sw::C1 } else { 0 };
        suppress
    }

    /// `fpu_signal` without touching C1 (FCOMI, FUCOMI, FCMOVcc).
    pub fn fpu_raise(&mut self, exc: u16) -> bool {
        let (rec, suppress) = outcome(self.x87.cw, exc, false);
        let x = &mut self.x87;
        x.sw |= rec;
        if rec & !x.cw & cw::MASKS != 0 {
            x.sw |= sw::ES | sw::B;
        }
        suppress
    }

    fn set_cc(&mut self, cc: u16) {
        self.x87.sw = (self.x87.sw & !sw::CC) | cc;
    }
}

/// The exceptions to record, by priority (SDM Vol.1 4.9.1.6: IE excludes all others,
/// ZE all but IE), and whether the result is suppressed. A store to memory is also
/// suppressed by an unmasked OE or UE (SDM Vol.1 4.9.2).
fn outcome(cwd: u16, exc: u16, memory: bool) -> (u16, bool) {
    let rec = if exc & ex::IE != 0 {
        exc & (ex::IE | sw::SF)
    } else if exc & ex::ZE != 0 {
        ex::ZE
    } else {
        exc
    };
    let unmasked = rec & !cwd & cw::MASKS;
    let stops = ex::IE | ex::ZE | ex::DE | if memory { ex::OE | ex::UE } else { 0 };
    if unmasked & (ex::IE | ex::ZE | ex::DE) != 0 {
        // Pre-computation exceptions: no result, so no post-computation ones.
        return (rec & (ex::IE | ex::ZE | ex::DE | sw::SF), true);
    }
    (rec, unmasked & stops != 0)
}

fn begin(cpu: &Cpu, wait: bool) -> Result<(), Fault> {
    cpu.x87_available()?;
    if wait {
        cpu.fpu_pending()?;
    }
    Ok(())
}

/// FIP/FCS and FOP, and FDP/FDS for a memory operand: the last non-control
/// instruction (SDM Vol.1 8.1.8, 8.1.9).
fn record(cpu: &mut Cpu, e: &Entry, mem: bool) {
    if mem {
        cpu.x87.fdp = cpu.ea(&e.mem);
        cpu.x87.fds = cpu.seg[e.mem.seg as usize].selector;
    }
    cpu.x87.fip = cpu.rip;
    cpu.x87.fcs = cpu.seg[crate::state::sreg::CS].selector;
    if cpu.long64() {
        // 64-bit mode keeps no selectors: they read as 0, as on processors that
        // deprecate FCS/FDS (CPUID.07H:EBX[13]), the host oracle among them.
        (cpu.x87.fcs, cpu.x87.fds) = (0, 0);
    }
    cpu.x87.fop = fop(&e.insn);
}

/// The 11-bit opcode: the low three bits of the first opcode byte and the ModR/M byte.
fn fop(i: &Instruction) -> u16 {
    let oc = i.op_code();
    let op = oc.op_code();
    if op > 0xFF {
        // A register form: D8 C0+i and the like.
        let idx = (0..i.op_count())
            .map(|n| i.op_register(n))
            .filter(|r| r.is_st())
            .map(|r| r.number())
            .max()
            .unwrap_or(0);
        return (op as u16 & 0x7FF) + idx as u16;
    }
    ((op as u16 & 7) << 8) | (oc.group_index().max(0) as u16) << 3 | modrm_mem(i) as u16
}

/// The mod and r/m fields that encode an instruction's memory operand.
fn modrm_mem(i: &Instruction) -> u8 {
    use Register as R;
    let (base, index, disp) = (i.memory_base(), i.memory_index(), i.memory_displ_size());
    if base.is_ip() {
        return 0b00_000_101;
    }
    let md = |has_base: bool| match disp {
        _ if !has_base => 0,
        0 => 0,
        1 => 1,
        _ => 2,
    };
    if base.size() == 2 || index.size() == 2 || (base == R::None && disp == 2) {
        let rm = match (base, index) {
            (R::BX, R::SI) => 0,
            (R::BX, R::DI) => 1,
            (R::BP, R::SI) => 2,
            (R::BP, R::DI) => 3,
            (R::SI, R::None) | (R::None, R::SI) => 4,
            (R::DI, R::None) | (R::None, R::DI) => 5,
            (R::BP, R::None) => 6,
            (R::BX, R::None) => 7,
            _ => return 0b00_000_110,
        };
        return md(true) << 6 | rm;
    }
    let sib = index != R::None
        || (base != R::None && base.number() & 7 == 4)
        || (base == R::None && i.code_size() == CodeSize::Code64);
    let rm = if sib {
        4
    } else if base == R::None {
        5
    } else {
        base.number() as u8 & 7
    };
    md(base != R::None) << 6 | rm
}

fn mem_at(cpu: &Cpu, e: &Entry) -> (usize, u64) {
    (e.mem.seg as usize, cpu.ea(&e.mem))
}

/// Read `N` bytes (N even) at seg:off.
pub(crate) fn read_bytes<const N: usize>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    seg: usize,
    off: u64,
) -> Result<[u8; N], Fault> {
    let mut b = [0u8; N];
    let mut k = 0;
    while k < N {
        let at = off.wrapping_add(k as u64);
        if N - k >= 8 {
            b[k..k + 8].copy_from_slice(&cpu.read_mem::<u64>(bus, seg, at)?.to_le_bytes());
            k += 8;
        } else {
            b[k..k + 2].copy_from_slice(&cpu.read_mem::<u16>(bus, seg, at)?.to_le_bytes());
            k += 2;
        }
    }
    Ok(b)
}

/// Check that all of `parts` (offset in the block, bytes) can be written at seg:off,
/// then write them: a store of several values commits all or nothing.
pub(crate) fn write_parts(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    seg: usize,
    off: u64,
    parts: &[(usize, &[u8])],
) -> Result<(), Fault> {
    let end = parts.iter().map(|(o, b)| o + b.len()).max().unwrap_or(0);
    let lin = cpu.linear(seg, off, end)?;
    cpu.mmu.probe_write(lin, end)?;
    for &(o, b) in parts {
        let mut k = 0;
        while k < b.len() {
            let at = off.wrapping_add((o + k) as u64);
            if b.len() - k >= 8 {
                let v = u64::from_le_bytes(b[k..k + 8].try_into().expect("8 bytes"));
                cpu.write_mem::<u64>(bus, seg, at, v)?;
                k += 8;
            } else {
                let v = u16::from_le_bytes([b[k], b[k + 1]]);
                cpu.write_mem::<u16>(bus, seg, at, v)?;
                k += 2;
            }
        }
    }
    Ok(())
}

pub(crate) fn f80_bytes(v: F80) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&v.signif.to_le_bytes());
    b[8..].copy_from_slice(&v.sign_exp.to_le_bytes());
    b
}

pub(crate) fn f80_from(b: &[u8]) -> F80 {
    F80 {
        signif: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        sign_exp: u16::from_le_bytes([b[8], b[9]]),
    }
}

/// Load a memory operand of kind `K` as an F80 with the exceptions of the conversion.
fn load<const K: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<Out, Fault> {
    let (seg, off) = mem_at(cpu, e);
    let exact = |v| Out {
        v,
        ex: 0,
        c1: false,
    };
    Ok(match K {
        F32 => ops::from_f32(cpu.read_mem::<u32>(bus, seg, off)?),
        F64 => ops::from_f64(cpu.read_mem::<u64>(bus, seg, off)?),
        I16 => exact(ops::from_int(
            cpu.read_mem::<u16>(bus, seg, off)? as i16 as i64
        )),
        I32 => exact(ops::from_int(
            cpu.read_mem::<u32>(bus, seg, off)? as i32 as i64
        )),
        I64 => exact(ops::from_int(cpu.read_mem::<u64>(bus, seg, off)? as i64)),
        F80K => exact(f80_from(&read_bytes::<10>(cpu, bus, seg, off)?)),
        _ => exact(ops::from_bcd(read_bytes::<10>(cpu, bus, seg, off)?)),
    })
}

/// The exceptions of converting a memory operand that still count next to the register
/// operand `a`: a NaN or unsupported `a` takes precedence over DE (SDM Vol.1 4.9.1.6).
fn operand_ex(a: F80, mem_ex: u16) -> u16 {
    if matches!(a.class(), Class::NaN | Class::Unsupported) {
        mem_ex & !ex::DE
    } else {
        mem_ex
    }
}

/// Push with the stack-overflow check: ST(7) must be empty (SDM Vol.1 8.5.1.1). The
/// masked response pushes the indefinite.
fn push(cpu: &mut Cpu, o: Out) {
    if !cpu.st_empty(7) {
        if !cpu.fpu_signal(ex::IE | sw::SF, true) {
            cpu.fpu_push(F80::INDEFINITE);
        }
        return;
    }
    if !cpu.fpu_signal(o.ex, o.c1) {
        cpu.fpu_push(o.v);
    }
}

/// Stack underflow (an empty source; SDM Vol.1 8.5.1.1): IE and SF with C1 = 0; the
/// masked response writes the indefinite to `dst` and pops as the instruction would.
fn underflow(cpu: &mut Cpu, dst: Option<usize>, pops: usize) {
    if cpu.fpu_signal(ex::IE | sw::SF, false) {
        return;
    }
    if let Some(d) = dst {
        cpu.set_st(d, F80::INDEFINITE);
    }
    for _ in 0..pops {
        cpu.fpu_pop();
    }
}

/// Write `o` to ST(dst) and pop `pops` times, unless an unmasked exception stops it.
fn finish(cpu: &mut Cpu, dst: usize, o: Out, pops: usize) {
    if cpu.fpu_signal(o.ex, o.c1) {
        return;
    }
    cpu.set_st(dst, o.v);
    for _ in 0..pops {
        cpu.fpu_pop();
    }
}

// ---- loads and stores ---------------------------------------------------------------

fn fld_mem<const K: u8>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    let mut o = load::<K>(cpu, bus, e)?;
    if K <= F64 && o.v.is_snan() {
        // FLD m32fp/m64fp of an SNaN: IE, and the NaN loads quieted.
        o.v.signif |= 1 << 62;
        o.ex |= ex::IE;
    }
    record(cpu, e, true);
    // A denormal source is reported (unless the stack overflows), but even unmasked
    // it does not stop the load (as on the host).
    if cpu.st_empty(7) {
        cpu.fpu_raise(o.ex & ex::DE);
    }
    push(
        cpu,
        Out {
            ex: o.ex & !ex::DE,
            ..o
        },
    );
    Ok(())
}

/// FLD ST(i): an exact copy.
fn fld_st(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let i = sti(&e.insn);
    if cpu.st_empty(i) {
        // Underflow is checked before overflow.
        if !cpu.fpu_signal(ex::IE | sw::SF, false) {
            cpu.fpu_push(F80::INDEFINITE);
        }
        return Ok(());
    }
    let v = cpu.st(i);
    push(
        cpu,
        Out {
            v,
            ex: 0,
            c1: false,
        },
    );
    Ok(())
}

fn fld_const<const C: usize>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let v = CONSTS[C].value(cpu.x87.cw);
    push(
        cpu,
        Out {
            v,
            ex: 0,
            c1: false,
        },
    );
    Ok(())
}

/// ST(0) converted for a store of kind `K`: the bytes, their count, and the outcome.
fn convert<const K: u8>(cwd: u16, v: F80) -> ([u8; 10], usize, u16, bool) {
    let mut b = [0u8; 10];
    let (n, exc, c1) = match K {
        F32 => {
            let o = ops::to_f32(cwd, v);
            b[..4].copy_from_slice(&o.v.to_le_bytes());
            (4, o.ex, o.c1)
        }
        F64 => {
            let o = ops::to_f64(cwd, v);
            b[..8].copy_from_slice(&o.v.to_le_bytes());
            (8, o.ex, o.c1)
        }
        I16 | I32 | I64 => {
            let n = [2, 4, 8][(K - I16) as usize];
            let o = ops::to_int(cwd, v, n as u32 * 8);
            b[..8].copy_from_slice(&o.v.to_le_bytes());
            (n, o.ex, o.c1)
        }
        F80K => {
            b = f80_bytes(v);
            (10, 0, false)
        }
        _ => {
            let o = ops::to_bcd(cwd, v);
            b = o.v;
            (10, o.ex, o.c1)
        }
    };
    (b, n, exc, c1)
}

/// FST/FSTP/FIST/FISTP/FBSTP to memory.
fn fst_mem<const K: u8, const POP: bool>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    begin(cpu, true)?;
    let cwd = cpu.x87.cw;
    let (bytes, n, exc, c1) = if cpu.st_empty(0) {
        let (b, n, _, _) = convert::<K>(cwd, F80::INDEFINITE);
        (b, n, ex::IE | sw::SF, false)
    } else {
        convert::<K>(cwd, cpu.st(0))
    };
    let (_, suppress) = outcome(cwd, exc, true);
    if !suppress {
        let (seg, off) = mem_at(cpu, e);
        write_parts(cpu, bus, seg, off, &[(0, &bytes[..n])])?;
    }
    record(cpu, e, true);
    // A store stopped by an unmasked OE or UE reports no rounding (PE, C1).
    let (exc, c1) = if suppress {
        (exc & !ex::PE, false)
    } else {
        (exc, c1)
    };
    cpu.fpu_signal(exc, c1);
    if !suppress && POP {
        cpu.fpu_pop();
    }
    Ok(())
}

/// FST/FSTP ST(i): an exact copy.
fn fst_st<const POP: bool>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let i = sti(&e.insn);
    let pops = POP as usize;
    if cpu.st_empty(0) {
        underflow(cpu, Some(i), pops);
        return Ok(());
    }
    let v = cpu.st(0);
    finish(
        cpu,
        i,
        Out {
            v,
            ex: 0,
            c1: false,
        },
        pops,
    );
    Ok(())
}

/// FSTPNCE ST(i) (D9 D8+i, the undocumented FSTP1): FSTP without the empty check: the
/// register and its tag are copied as they are (an empty ST(0) leaves ST(i) empty),
/// nothing is signalled, and C1 is cleared.
fn fstpnce(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let (from, to) = (cpu.st_phys(0), cpu.st_phys(sti(&e.insn)));
    cpu.x87.regs[to] = cpu.x87.regs[from];
    cpu.set_phys_tag(to, cpu.phys_tag(from));
    cpu.fpu_pop();
    cpu.x87.sw &= !sw::C1;
    Ok(())
}

// ---- arithmetic ---------------------------------------------------------------------

/// ST(0) ← ST(0) op m (float or integer).
fn arith_mem<const K: u8, const OP: u8>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    begin(cpu, true)?;
    let src = load::<K>(cpu, bus, e)?;
    record(cpu, e, true);
    if cpu.st_empty(0) {
        underflow(cpu, Some(0), 0);
        return Ok(());
    }
    let a = cpu.st(0);
    let mut o = ops::arith(ARITH_OPS[OP as usize], cpu.x87.cw, a, src.v);
    o.ex |= operand_ex(a, src.ex);
    finish(cpu, 0, o, 0);
    Ok(())
}

/// FADD ST(0),ST(i) / FADD ST(i),ST(0) / FADDP ST(i),ST(0) and the others: the
/// destination is operand 0.
fn arith_reg<const OP: u8, const POP: bool>(
    cpu: &mut Cpu,
    _: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let i = sti(&e.insn);
    let dst_is_st0 = e.insn.op0_register() == Register::ST0 && !POP;
    let (dst, src) = if dst_is_st0 { (0, i) } else { (i, 0) };
    let pops = POP as usize;
    if cpu.st_empty(dst) || cpu.st_empty(src) {
        underflow(cpu, Some(dst), pops);
        return Ok(());
    }
    let o = ops::arith(ARITH_OPS[OP as usize], cpu.x87.cw, cpu.st(dst), cpu.st(src));
    finish(cpu, dst, o, pops);
    Ok(())
}

// ---- comparisons --------------------------------------------------------------------

/// FCOM FCOMP FCOMPP FUCOM* FICOM* FTST, and with `EFLAGS` FCOMI FCOMIP FUCOMI
/// FUCOMIP: C3 C2 C0 (or ZF PF CF) from SDM Vol.1 Table 8-6, C1 = 0.
fn fcom<const K: u8, const QUIET: bool, const POPS: usize, const EFLAGS: bool>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    begin(cpu, true)?;
    let i = sti(&e.insn);
    let src = match K {
        REG => None,
        ZERO => Some(Out {
            v: F80::ZERO,
            ex: 0,
            c1: false,
        }),
        _ => Some(load::<K>(cpu, bus, e)?),
    };
    record(cpu, e, K != REG && K != ZERO);
    let empty = cpu.st_empty(0) || (K == REG && cpu.st_empty(i));
    let o = if empty {
        Out {
            v: Cmp::Unordered,
            ex: ex::IE | sw::SF,
            c1: false,
        }
    } else {
        let b = src.map_or_else(|| cpu.st(i), |s| s.v);
        let mut o = ops::compare(cpu.st(0), b, QUIET);
        o.ex |= operand_ex(cpu.st(0), src.map_or(0, |s| s.ex));
        o
    };
    // FCOMI and friends leave C1 alone but for a stack fault; an unmasked exception on
    // a comparison still sets the condition codes (unordered for a fault), but stops
    // the pops.
    let suppress = if EFLAGS && !empty {
        cpu.fpu_raise(o.ex)
    } else {
        cpu.fpu_signal(o.ex, false)
    };
    let (c3, c2, c0) = match o.v {
        Cmp::Greater => (false, false, false),
        Cmp::Less => (false, false, true),
        Cmp::Equal => (true, false, false),
        Cmp::Unordered => (true, true, true),
    };
    if EFLAGS {
        let f = (c3 as u64 * rf::ZF) | (c2 as u64 * rf::PF) | (c0 as u64 * rf::CF);
        cpu.set_arith_flags(rf::ARITH, f);
    } else {
        let cc = (c3 as u16 * sw::C3) | (c2 as u16 * sw::C2) | (c0 as u16 * sw::C0);
        cpu.set_cc(cc);
    }
    if !suppress {
        for _ in 0..POPS {
            cpu.fpu_pop();
        }
    }
    Ok(())
}

/// FXAM: the class of ST(0) in C3 C2 C0 and its sign in C1 (SDM Vol.2A FXAM).
fn fxam(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let v = cpu.st(0);
    let cc = if cpu.st_empty(0) {
        sw::C3 | sw::C0
    } else {
        match v.class() {
            Class::Unsupported => 0,
            Class::NaN => sw::C0,
            Class::Normal => sw::C2,
            Class::Infinity => sw::C2 | sw::C0,
            Class::Zero => sw::C3,
            Class::Denormal => sw::C3 | sw::C2,
        }
    };
    cpu.set_cc(cc | if v.sign() { sw::C1 } else { 0 });
    Ok(())
}

// ---- one-operand and stack instructions ------------------------------------------------

#[derive(Clone, Copy)]
enum Unary {
    Chs,
    Abs,
    Sqrt,
    Rndint,
    F2xm1,
    Sin,
    Cos,
}

/// ST(0) ← f(ST(0)). FSIN/FCOS leave an operand out of range (|x| ≥ 2^63) alone and
/// set C2; otherwise they clear it.
fn unary<const F: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    if cpu.st_empty(0) {
        underflow(cpu, Some(0), 0);
        return Ok(());
    }
    let (a, cwd) = (cpu.st(0), cpu.x87.cw);
    let exact = |v| Out {
        v,
        ex: 0,
        c1: false,
    };
    let o = match F {
        f if f == Unary::Chs as u8 => exact(-a),
        f if f == Unary::Abs as u8 => exact(a.abs()),
        f if f == Unary::Sqrt as u8 => ops::sqrt(cwd, a),
        f if f == Unary::Rndint as u8 => ops::round_int(cwd, a),
        f if f == Unary::F2xm1 as u8 => ops::f2xm1(a),
        f => {
            let t = if f == Unary::Sin as u8 {
                Trig::Sin
            } else {
                Trig::Cos
            };
            let Some(o) = ops::trig(t, a) else {
                cpu.x87.sw |= sw::C2;
                return Ok(());
            };
            cpu.x87.sw &= !sw::C2;
            o
        }
    };
    finish(cpu, 0, o, 0);
    Ok(())
}

#[derive(Clone, Copy)]
enum Pair {
    Ptan,
    Sincos,
    Xtract,
}

/// FPTAN (tan, then 1.0), FSINCOS (sin, then cos) and FXTRACT (exponent, then
/// significand): ST(0) is replaced and a second value pushed.
fn push_pair<const F: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let empty = cpu.st_empty(0);
    if empty || !cpu.st_empty(7) {
        // Underflow (C1 = 0) or overflow (C1 = 1): the masked response leaves the
        // indefinite in both.
        if !cpu.fpu_signal(ex::IE | sw::SF, !empty) {
            cpu.set_st(0, F80::INDEFINITE);
            cpu.fpu_push(F80::INDEFINITE);
        }
        return Ok(());
    }
    let a = cpu.st(0);
    let (first, second) = match F {
        f if f == Pair::Xtract as u8 => ops::xtract(a),
        f => {
            let t = if f == Pair::Ptan as u8 {
                Trig::Tan
            } else {
                Trig::Sin
            };
            let Some(o) = ops::trig(t, a) else {
                cpu.x87.sw |= sw::C2;
                return Ok(());
            };
            cpu.x87.sw &= !sw::C2;
            let second = if t == Trig::Tan {
                F80::ONE
            } else {
                ops::trig(Trig::Cos, a).map_or(F80::INDEFINITE, |c| c.v)
            };
            (o, second)
        }
    };
    if cpu.fpu_signal(first.ex, first.c1) {
        return Ok(());
    }
    cpu.set_st(0, first.v);
    cpu.fpu_push(second);
    Ok(())
}

#[derive(Clone, Copy)]
enum Binary {
    Scale,
    Prem,
    Prem1,
    Yl2x,
    Yl2xp1,
    Patan,
}

/// The instructions of ST(0) and ST(1): FSCALE FPREM FPREM1 write ST(0); FYL2X
/// FYL2XP1 FPATAN write ST(1) and pop.
fn binary<const F: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let pops_to_st1 = F >= Binary::Yl2x as u8;
    let (dst, pops) = if pops_to_st1 { (1, 1) } else { (0, 0) };
    if cpu.st_empty(0) || cpu.st_empty(1) {
        if F == Binary::Prem as u8 || F == Binary::Prem1 as u8 {
            cpu.x87.sw &= !sw::C2;
        }
        underflow(cpu, Some(dst), pops);
        return Ok(());
    }
    let (a, b) = (cpu.st(0), cpu.st(1));
    let o = match F {
        f if f == Binary::Scale as u8 => ops::scale(cpu.x87.cw, a, b),
        f if f == Binary::Prem as u8 || f == Binary::Prem1 as u8 => {
            let (o, cc) = ops::prem(a, b, f == Binary::Prem1 as u8);
            // Without a quotient, C0 and C3 stay and C2 and C1 are cleared.
            let c1 = if cc == ops::PREM_KEEP {
                cpu.x87.sw &= !sw::C2;
                false
            } else {
                if !outcome(cpu.x87.cw, o.ex, false).1 {
                    cpu.set_cc(cc);
                }
                cc & sw::C1 != 0
            };
            finish(cpu, 0, Out { c1, ..o }, 0);
            return Ok(());
        }
        f if f == Binary::Yl2x as u8 => ops::yl2x(a, b),
        f if f == Binary::Yl2xp1 as u8 => ops::yl2xp1(a, b),
        _ => ops::patan(b, a),
    };
    finish(cpu, dst, o, pops);
    Ok(())
}

/// FXCH: an empty register reads as the indefinite under the masked response.
fn fxch(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let i = sti(&e.insn);
    if cpu.st_empty(0) || cpu.st_empty(i) {
        if cpu.fpu_signal(ex::IE | sw::SF, false) {
            return Ok(());
        }
        for r in [0, i] {
            if cpu.st_empty(r) {
                cpu.set_st(r, F80::INDEFINITE);
            }
        }
    } else {
        cpu.fpu_signal(0, false);
    }
    let (a, b) = (cpu.st(0), cpu.st(i));
    cpu.set_st(0, b);
    cpu.set_st(i, a);
    Ok(())
}

/// FCMOVcc ST(0), ST(i) (P6): `CC` is the Jcc condition number.
fn fcmov<const CC: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    record(cpu, e, false);
    let i = sti(&e.insn);
    if cpu.st_empty(0) || cpu.st_empty(i) {
        underflow(cpu, Some(0), 0);
        return Ok(());
    }
    if cpu.cond(CC) {
        let v = cpu.st(i);
        cpu.set_st(0, v);
    }
    Ok(())
}

/// FFREE ST(i) (a control instruction), and FFREEP, which also pops. Both clear C1
/// (as the host does).
fn ffree<const POP: bool>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    let r = cpu.st_phys(sti(&e.insn));
    cpu.set_phys_tag(r, crate::fpu::tag::EMPTY);
    if POP {
        cpu.fpu_pop();
    }
    cpu.x87.sw &= !sw::C1;
    Ok(())
}

/// FDECSTP (`D` = 7) and FINCSTP (`D` = 1): TOP only, tags untouched; C1 = 0.
fn fstp_adjust<const D: usize>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    begin(cpu, true)?;
    cpu.set_fpu_top(cpu.fpu_top() + D);
    cpu.x87.sw &= !sw::C1;
    Ok(())
}

fn fnop<const WAIT: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    begin(cpu, WAIT)
}

#[cfg(test)]
mod tests {
    use crate::fault::vector;
    use crate::fpu::sw;
    use crate::state::cr0;
    use crate::testutil::{exec, raised, real_mode};

    const FNINIT: &[u8] = &[0xDB, 0xE3];
    const FLD1: &[u8] = &[0xD9, 0xE8];

    #[test]
    fn cr0_em_or_ts_is_nm_and_wait_needs_mp_too() {
        let mut cpu = real_mode(&[]);
        for bit in [cr0::EM, cr0::TS] {
            cpu.cr0 |= bit;
            assert!(raised(exec(&mut cpu, FLD1), vector::NM));
            assert!(raised(exec(&mut cpu, FNINIT), vector::NM));
            cpu.cr0 &= !bit;
        }
        cpu.cr0 |= cr0::TS;
        assert!(exec(&mut cpu, &[0x9B]).is_empty(), "WAIT with TS alone");
        cpu.cr0 |= cr0::MP;
        assert!(raised(exec(&mut cpu, &[0x9B]), vector::NM));
    }

    /// 1/0 with ZE unmasked: ES and B are set, ST(0) keeps 1.0, and the next waiting
    /// instruction raises #MF when CR0.NE = 1 (SDM Vol.1 8.7); FNSTSW does not wait.
    #[test]
    fn unmasked_exception_is_mf_at_the_next_waiting_instruction() {
        let mut cpu = real_mode(&[]);
        cpu.cr0 |= cr0::NE;
        assert!(exec(&mut cpu, FNINIT).is_empty());
        cpu.x87.cw = 0x037B;
        for insn in [&[0xD9, 0xEE][..], FLD1, &[0xD8, 0xF1]] {
            assert!(exec(&mut cpu, insn).is_empty());
        }
        assert_eq!(cpu.x87.sw & 0x80FF, sw::B | sw::ES | 0x04);
        assert_eq!(cpu.st(0), crate::fpu::F80::ONE);
        assert!(exec(&mut cpu, &[0xDF, 0xE0]).is_empty(), "FNSTSW AX");
        assert_eq!(cpu.gpr[0] as u16, cpu.x87.sw);
        assert!(raised(exec(&mut cpu, FLD1), vector::MF));
        assert!(raised(exec(&mut cpu, &[0x9B]), vector::MF));
        // CR0.NE = 0: IGNNE# behaviour, the instruction runs.
        cpu.cr0 &= !cr0::NE;
        assert!(exec(&mut cpu, FLD1).is_empty());
        cpu.cr0 |= cr0::NE;
        assert!(exec(&mut cpu, &[0xDB, 0xE2]).is_empty(), "FNCLEX");
        assert!(exec(&mut cpu, FLD1).is_empty());
    }

    /// FOP is the low 3 bits of the first opcode byte and the ModR/M byte; FIP/FDP the
    /// instruction's and operand's offsets (SDM Vol.1 8.1.8, 8.1.9).
    #[test]
    fn fop_fip_fdp_record_the_last_non_control_instruction() {
        let mut cpu = real_mode(&[]);
        cpu.gpr[3] = 0x100; // BX
        cpu.gpr[6] = 0x20; // SI
        exec(&mut cpu, FNINIT);
        for (code, fop, fdp) in [
            (&[0xD9, 0xE8][..], 0x1E8, 0),
            (&[0xD8, 0x40, 0x10], 0x040, 0x130),
            (
                &[0x67, 0xDC, 0x84, 0x33, 0x78, 0x56, 0x00, 0x00],
                0x484,
                0x5678 + 0x100 + 0x20,
            ),
            (&[0xDE, 0xC1], 0x6C1, 0x5678 + 0x100 + 0x20),
        ] {
            exec(&mut cpu, code);
            assert_eq!(
                (cpu.x87.fop, cpu.x87.fip, cpu.x87.fdp),
                (fop, 0x1000, fdp),
                "{code:02x?}"
            );
        }
        // A control instruction leaves them.
        exec(&mut cpu, &[0xD9, 0xF7]);
        assert_eq!(cpu.x87.fop, 0x6C1);
    }
}
