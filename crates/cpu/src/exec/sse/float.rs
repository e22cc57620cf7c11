//! SSE/SSE2 floating-point arithmetic and comparison (SDM Vol.1 10.4.2, 11.4.1): ADD SUB
//! MUL DIV SQRT MIN MAX RCP RSQRT and CMP on packed and scalar single/double precision,
//! COMISS/UCOMISS/COMISD/UCOMISD.

use iced_x86::Mnemonic::{self, *};
use trapeze_mmu::Bus;

use super::mxcsr::{bits, Float, Fp, F32, F64};
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::rf;

pub(crate) fn register(t: &mut Table) {
    family::<Add>(t, [Addps, Addss, Addpd, Addsd]);
    family::<Sub>(t, [Subps, Subss, Subpd, Subsd]);
    family::<Mul>(t, [Mulps, Mulss, Mulpd, Mulsd]);
    family::<Div>(t, [Divps, Divss, Divpd, Divsd]);
    family::<Sqrt>(t, [Sqrtps, Sqrtss, Sqrtpd, Sqrtsd]);
    family::<Min>(t, [Minps, Minss, Minpd, Minsd]);
    family::<Max>(t, [Maxps, Maxss, Maxpd, Maxsd]);
    family::<Cmp>(t, [Cmpps, Cmpss, Cmppd, Cmpsd]);
    t.on(Rcpps, |_| Some(arith::<F32, true, Rcp>));
    t.on(Rcpss, |_| Some(arith::<F32, false, Rcp>));
    t.on(Rsqrtps, |_| Some(arith::<F32, true, Rsqrt>));
    t.on(Rsqrtss, |_| Some(arith::<F32, false, Rsqrt>));
    t.on(Comiss, |_| Some(comis::<F32, true>));
    t.on(Ucomiss, |_| Some(comis::<F32, false>));
    t.on(Comisd, |_| Some(comis::<F64, true>));
    t.on(Ucomisd, |_| Some(comis::<F64, false>));
}

/// Registers the PS, SS, PD and SD forms of one operation.
fn family<O: FpOp>(t: &mut Table, [ps, ss, pd, sd]: [Mnemonic; 4]) {
    t.on(ps, |_| Some(arith::<F32, true, O>));
    t.on(ss, |_| Some(arith::<F32, false, O>));
    t.on(pd, |_| Some(arith::<F64, true, O>));
    // CMPSD is also a string instruction: only the XMM forms are ours.
    t.share(sd, |i| {
        i.op0_register()
            .is_xmm()
            .then_some(arith::<F64, false, O> as _)
    });
}

/// Lane `i` of a vector of `F`.
#[inline(always)]
pub(crate) fn fget<F: Float>(v: u128, i: usize) -> u64 {
    (v >> (i as u32 * F::BITS)) as u64 & (u64::MAX >> (64 - F::BITS))
}

/// `v` with lane `i` of `F` replaced by `x`.
#[inline(always)]
pub(crate) fn fput<F: Float>(v: u128, i: usize, x: u64) -> u128 {
    let sh = i as u32 * F::BITS;
    let m = (u64::MAX >> (64 - F::BITS)) as u128;
    v & !(m << sh) | (x as u128 & m) << sh
}

/// One lane of an arithmetic operation; `imm` is the instruction's imm8 (CMP).
pub(crate) trait FpOp: 'static {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, imm: u8) -> u64;
}

struct Add;
struct Sub;
struct Mul;
struct Div;
struct Sqrt;
struct Min;
struct Max;
struct Cmp;
struct Rcp;
struct Rsqrt;

impl FpOp for Add {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        fp.arith::<F>(a, b, F::add)
    }
}
impl FpOp for Sub {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        fp.arith::<F>(a, b, F::sub)
    }
}
impl FpOp for Mul {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        fp.arith::<F>(a, b, F::mul)
    }
}
impl FpOp for Div {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        fp.arith::<F>(a, b, F::div)
    }
}
impl FpOp for Sqrt {
    /// SQRT reads only the source.
    fn apply<F: Float>(fp: &mut Fp, _: u64, b: u64, _: u8) -> u64 {
        fp.arith::<F>(b, 0, |x, _| F::sqrt(x))
    }
}

/// MIN/MAX (SDM Vol.2 MINPS): a NaN in either operand, or two zeros, return the second
/// operand; any NaN (QNaN too) is an invalid operation.
fn min_max<F: Float>(fp: &mut Fp, a: u64, b: u64, max: bool) -> u64 {
    let mut denormal = false;
    let a = fp.operand::<F>(a, &mut denormal);
    let b = fp.operand::<F>(b, &mut denormal);
    if F::is_nan(a) || F::is_nan(b) {
        fp.flags |= bits::IE;
        return b;
    }
    if denormal {
        fp.flags |= bits::DE;
    }
    let first = if max { F::lt(b, a) } else { F::lt(a, b) };
    if first {
        a
    } else {
        b
    }
}

impl FpOp for Min {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        min_max::<F>(fp, a, b, false)
    }
}
impl FpOp for Max {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, _: u8) -> u64 {
        min_max::<F>(fp, a, b, true)
    }
}

/// Compares two operands after DAZ: (unordered, less, equal). Invalid is raised by an
/// SNaN, and by a QNaN when the comparison is `signaling`; DE by a denormal of an
/// ordered comparison.
fn order<F: Float>(fp: &mut Fp, a: u64, b: u64, signaling: bool) -> (bool, bool, bool) {
    let mut denormal = false;
    let a = fp.operand::<F>(a, &mut denormal);
    let b = fp.operand::<F>(b, &mut denormal);
    let unordered = F::is_nan(a) || F::is_nan(b);
    if F::is_snan(a) || F::is_snan(b) || unordered && signaling {
        fp.flags |= bits::IE;
    } else if denormal && !unordered {
        fp.flags |= bits::DE;
    }
    (unordered, F::lt(a, b), F::eq(a, b))
}

/// The CMPPS predicates 0..7 (SDM Vol.2 Table 3-1): EQ LT LE UNORD NEQ NLT NLE ORD. LT,
/// LE, NLT and NLE signal invalid on a QNaN too.
fn compare<F: Float>(fp: &mut Fp, a: u64, b: u64, pred: u8) -> bool {
    let (unordered, lt, eq) = order::<F>(fp, a, b, matches!(pred & 7, 1 | 2 | 5 | 6));
    match pred & 7 {
        0 => eq,
        1 => lt,
        2 => lt || eq,
        3 => unordered,
        4 => !eq,
        5 => !lt,
        6 => !(lt || eq),
        _ => !unordered,
    }
}

impl FpOp for Cmp {
    fn apply<F: Float>(fp: &mut Fp, a: u64, b: u64, imm: u8) -> u64 {
        if compare::<F>(fp, a, b, imm) {
            u64::MAX
        } else {
            0
        }
    }
}

/// RCPPS/RSQRTPS (SDM Vol.2 RCPPS): approximations with relative error at most
/// 1.5 * 2^-12 that raise no exceptions. A denormal source counts as zero, a result
/// below the normal range is zero, a NaN source is returned quieted. trapeze returns the
/// correctly rounded single-precision value truncated to 12 fraction bits (Intel's exact
/// table values are not documented).
fn approximate(b: u64, rsqrt: bool) -> u64 {
    let sign = b & F32::SIGN;
    if F32::is_nan(b) {
        return b | F32::QUIET;
    }
    let x = if F32::is_denormal(b) { sign } else { b };
    if rsqrt && sign != 0 && x != sign {
        return F32::INDEFINITE;
    }
    let v = f32::from_bits(x as u32) as f64;
    let r = if rsqrt { 1.0 / v.sqrt() } else { 1.0 / v } as f32;
    let r = r.to_bits() as u64;
    if F32::is_denormal(r) {
        return r & F32::SIGN;
    }
    if r & F32::EXP == F32::EXP {
        return r;
    }
    r & !0x7FF
}

impl FpOp for Rcp {
    fn apply<F: Float>(_: &mut Fp, _: u64, b: u64, _: u8) -> u64 {
        approximate(b, false)
    }
}
impl FpOp for Rsqrt {
    fn apply<F: Float>(_: &mut Fp, _: u64, b: u64, _: u8) -> u64 {
        approximate(b, true)
    }
}

/// `dst = dst OP src` on every lane (packed) or lane 0 (scalar, the rest of the
/// destination kept). Nothing is written when an unmasked exception is raised.
fn arith<F: Float, const PACKED: bool, O: FpOp>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    cpu.simd_begin(e)?;
    let a = cpu.vread(bus, e, 0)?;
    let b = cpu.vread(bus, e, 1)?;
    let imm = e.insn.immediate8();
    let mut fp = Fp::new(cpu.sse.mxcsr);
    let n = if PACKED { 128 / F::BITS as usize } else { 1 };
    let mut r = a;
    for i in 0..n {
        let x = O::apply::<F>(&mut fp, fget::<F>(a, i), fget::<F>(b, i), imm);
        r = fput::<F>(r, i, x);
    }
    cpu.simd_fp_commit(&fp)?;
    cpu.vwrite(bus, e, 0, r)
}

/// COMISS/UCOMISS (SDM Vol.2 COMISS): ZF PF CF = 111 unordered, 000 greater, 001 less,
/// 100 equal; OF SF AF cleared. COMIS signals invalid on any NaN, UCOMIS on SNaNs.
fn comis<F: Float, const SIGNALING: bool>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    cpu.simd_begin(e)?;
    let a = fget::<F>(cpu.vread(bus, e, 0)?, 0);
    let b = fget::<F>(cpu.vread(bus, e, 1)?, 0);
    let mut fp = Fp::new(cpu.sse.mxcsr);
    let (unordered, lt, eq) = order::<F>(&mut fp, a, b, SIGNALING);
    cpu.simd_fp_commit(&fp)?;
    let v = if unordered {
        rf::ZF | rf::PF | rf::CF
    } else if lt {
        rf::CF
    } else if eq {
        rf::ZF
    } else {
        0
    };
    cpu.set_arith_flags(rf::ARITH, v);
    Ok(())
}
