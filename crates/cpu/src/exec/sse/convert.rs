//! Conversions between integers, single and double precision (SDM Vol.1 10.4.6,
//! 11.4.2, 11.5.2.3): the CVT* instructions on XMM, MMX and GP registers.

use trapeze_mmu::Bus;

use super::float::{fget, fput};
use super::mxcsr::{Float, Fp, F32, F64};
use super::{loc, Lane, Loc};
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;

/// One conversion: `a` the destination's old value, `b` the source, `dst`/`src` the
/// operand sizes in bytes (a GPR's decides between 32- and 64-bit integers).
trait ConvOp {
    fn apply(fp: &mut Fp, a: u128, b: u128, dst: usize, src: usize) -> u128;
}

fn size(l: Loc) -> usize {
    match l {
        Loc::Gpr(r) => r.size(),
        Loc::Mem(b) => b,
        Loc::Mm(_) => 8,
        _ => 16,
    }
}

fn convert<O: ConvOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let mm = cpu.simd_begin(e)?;
    let a = cpu.vread(bus, e, 0)?;
    let b = cpu.vread(bus, e, 1)?;
    let mut fp = Fp::new(cpu.sse.mxcsr);
    let (dst, src) = (size(loc(&e.insn, 0)), size(loc(&e.insn, 1)));
    let r = O::apply(&mut fp, a, b, dst, src);
    cpu.simd_fp_commit(&fp)?;
    cpu.vwrite(bus, e, 0, r)?;
    cpu.simd_end(mm);
    Ok(())
}

macro_rules! convs {
    ($t:ident; $($m:ident => |$fp:ident, $a:ident, $b:ident, $d:ident, $s:ident| $body:expr;)*) => {$(
        #[allow(non_camel_case_types)]
        struct $m;
        impl ConvOp for $m {
            #[allow(unused_variables)]
            fn apply($fp: &mut Fp, $a: u128, $b: u128, $d: usize, $s: usize) -> u128 {
                $body
            }
        }
        $t.on(iced_x86::Mnemonic::$m, |_| Some(convert::<$m>));
    )*};
}

/// Float → signed integer (64-bit when `wide`), rounding per MXCSR.RC or truncating;
/// NaN and out-of-range give the integer indefinite with IE (SDM Vol.1 11.5.2.1). DAZ
/// applies to the source; these conversions raise no DE.
fn to_int<F: Float>(fp: &mut Fp, x: u64, wide: bool, truncate: bool) -> u64 {
    let x = fp.operand::<F>(x, &mut false);
    let rc = fp.rc();
    fp.soft(|| {
        if wide {
            F::to_i64(x, rc, truncate) as u64
        } else {
            F::to_i32(x, rc, truncate) as u32 as u64
        }
    })
}

fn from_int<F: Float>(fp: &mut Fp, v: i64) -> u64 {
    fp.soft(|| F::from_i64(v))
}

/// A 32- or 64-bit integer source, sign-extended.
fn int_src(b: u128, bytes: usize) -> i64 {
    if bytes == 8 {
        b as i64
    } else {
        b as i32 as i64
    }
}

/// Single ↔ double precision (`F` the source format, `G` the result's).
fn resize<F: Float, G: Float>(fp: &mut Fp, x: u64) -> u64 {
    fp.arith_to::<F, G>(x, 0, |x, _| F::convert(x))
}

/// `n` lanes of float `F` → 32-bit integers.
fn floats_to_ints<F: Float>(fp: &mut Fp, b: u128, n: usize, truncate: bool) -> u128 {
    (0..n).fold(0, |r, i| {
        (to_int::<F>(fp, fget::<F>(b, i), false, truncate) as u32).put(r, i)
    })
}

/// `n` 32-bit integers → lanes of float `F`, over `r`.
fn ints_to_floats<F: Float>(fp: &mut Fp, r: u128, b: u128, n: usize) -> u128 {
    (0..n).fold(r, |r, i| {
        fput::<F>(r, i, from_int::<F>(fp, i32::get(b, i) as i64))
    })
}

pub(crate) fn register(t: &mut Table) {
    convs!(t;
        Cvtpi2ps => |fp, a, b, d, s| ints_to_floats::<F32>(fp, a, b, 2);
        Cvtps2pi => |fp, a, b, d, s| floats_to_ints::<F32>(fp, b, 2, false);
        Cvttps2pi => |fp, a, b, d, s| floats_to_ints::<F32>(fp, b, 2, true);
        Cvtsi2ss => |fp, a, b, d, s| fput::<F32>(a, 0, from_int::<F32>(fp, int_src(b, s)));
        Cvtss2si => |fp, a, b, d, s| to_int::<F32>(fp, fget::<F32>(b, 0), d == 8, false) as u128;
        Cvttss2si => |fp, a, b, d, s| to_int::<F32>(fp, fget::<F32>(b, 0), d == 8, true) as u128;
        Cvtpi2pd => |fp, a, b, d, s| ints_to_floats::<F64>(fp, 0, b, 2);
        Cvtpd2pi => |fp, a, b, d, s| floats_to_ints::<F64>(fp, b, 2, false);
        Cvttpd2pi => |fp, a, b, d, s| floats_to_ints::<F64>(fp, b, 2, true);
        Cvtsi2sd => |fp, a, b, d, s| fput::<F64>(a, 0, from_int::<F64>(fp, int_src(b, s)));
        Cvtsd2si => |fp, a, b, d, s| to_int::<F64>(fp, fget::<F64>(b, 0), d == 8, false) as u128;
        Cvttsd2si => |fp, a, b, d, s| to_int::<F64>(fp, fget::<F64>(b, 0), d == 8, true) as u128;
        Cvtdq2ps => |fp, a, b, d, s| ints_to_floats::<F32>(fp, 0, b, 4);
        Cvtps2dq => |fp, a, b, d, s| floats_to_ints::<F32>(fp, b, 4, false);
        Cvttps2dq => |fp, a, b, d, s| floats_to_ints::<F32>(fp, b, 4, true);
        Cvtdq2pd => |fp, a, b, d, s| ints_to_floats::<F64>(fp, 0, b, 2);
        Cvtpd2dq => |fp, a, b, d, s| floats_to_ints::<F64>(fp, b, 2, false);
        Cvttpd2dq => |fp, a, b, d, s| floats_to_ints::<F64>(fp, b, 2, true);
        Cvtpd2ps => |fp, a, b, d, s| {
            (0..2).fold(0, |r, i| fput::<F32>(r, i, resize::<F64, F32>(fp, fget::<F64>(b, i))))
        };
        Cvtps2pd => |fp, a, b, d, s| {
            (0..2).fold(0, |r, i| fput::<F64>(r, i, resize::<F32, F64>(fp, fget::<F32>(b, i))))
        };
        Cvtsd2ss => |fp, a, b, d, s| fput::<F32>(a, 0, resize::<F64, F32>(fp, fget::<F64>(b, 0)));
        Cvtss2sd => |fp, a, b, d, s| fput::<F64>(a, 0, resize::<F32, F64>(fp, fget::<F32>(b, 0)));
    );
}
