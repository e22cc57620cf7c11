//! x87 arithmetic as pure functions of `F80` values and the control word: the operand
//! checks, rounding and condition-code rules of SDM Vol.1 chapters 4.9 and 8, with the
//! basic operations computed by SoftFloat. The executor (exec/x87.rs) moves values
//! between registers and memory and commits the exceptions these functions report.
//!
//! Transcendentals (FSIN FCOS FSINCOS FPTAN FPATAN F2XM1 FYL2X FYL2XP1) are computed
//! with the host's binary64 libm on the operand rounded to 53 bits, with the exponent
//! handled exactly: results are good to about 2^-52 relative, where the x87 gives
//! about 2^-63. C1 is 0 after them (hardware reports the rounding direction).

use crate::fpu::{cw, Class, F80};
use crate::softfloat::{self as sf, ex, Precision};

/// A result: the value, the exceptions raised and C1 (the inexact result was rounded
/// away from zero; SDM Vol.1 8.1.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out<T = F80> {
    pub v: T,
    pub ex: u16,
    pub c1: bool,
}

impl<T> Out<T> {
    fn invalid(v: T) -> Self {
        Out {
            v,
            ex: ex::IE,
            c1: false,
        }
    }
    fn exact(v: T) -> Self {
        Out {
            v,
            ex: 0,
            c1: false,
        }
    }
}

/// CW.RC.
pub fn rc(cw: u16) -> u8 {
    (cw >> cw::RC_SHIFT) as u8 & 3
}

/// CW.PC (SDM Vol.1 Table 8-2); the reserved encoding 01 acts as extended here.
pub fn precision(cw: u16) -> Precision {
    match (cw >> cw::PC_SHIFT) & 3 {
        0 => Precision::Single,
        2 => Precision::Double,
        _ => Precision::Extended,
    }
}

/// Run `f(rc)` under rounding `rc` and precision `p`. When the result is inexact, run
/// it again toward zero: a different result means it was rounded up in magnitude (C1).
fn rounded<T: PartialEq + Copy>(rc: u8, p: Precision, f: impl Fn(u8) -> T) -> Out<T> {
    let (v, e) = sf::run(rc, p, || f(rc));
    let c1 = e & ex::PE != 0 && rc != 3 && sf::run(3, p, || f(3)).0 != v;
    Out { v, ex: e, c1 }
}

/// The checks that come before an operation (SDM Vol.1 4.9.1.6 priorities): an
/// unsupported operand is invalid; a denormal one raises DE unless a NaN is involved.
/// Ok(DE or 0), or the masked result of the invalid operation.
fn check(ops: &[F80]) -> Result<u16, Out> {
    if ops.iter().any(|o| o.class() == Class::Unsupported) {
        return Err(Out::invalid(F80::INDEFINITE));
    }
    let nan = ops.iter().any(|o| o.is_nan());
    let den = ops.iter().any(|o| o.class() == Class::Denormal);
    Ok(if den && !nan { ex::DE } else { 0 })
}

/// With NaN operands: the NaN the x87 propagates (SNaNs quieted, IE for SNaNs).
fn propagate_nan(a: F80, b: F80) -> Option<Out> {
    (a.is_nan() || b.is_nan()).then(|| {
        let (v, e) = sf::run(0, Precision::Extended, || sf::f80_add(a, b));
        Out {
            v,
            ex: e,
            c1: false,
        }
    })
}

/// A pseudo-denormal (exponent 0 with the integer bit set) has the value of the same
/// significand with exponent 1; SoftFloat computes with the latter (the 387 and later
/// accept pseudo-denormals as operands, SDM Vol.1 8.2.2).
fn canon(a: F80) -> F80 {
    if a.exp() == 0 && a.signif >> 63 != 0 {
        F80::new(a.sign() as u16, 1, a.signif)
    } else {
        a
    }
}

/// The two-operand arithmetic instructions, with `a` the destination's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    SubR,
    Mul,
    Div,
    DivR,
}

pub fn arith(op: Arith, cwd: u16, a: F80, b: F80) -> Out {
    let de = match check(&[a, b]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let (a, b) = (canon(a), canon(b));
    let (x, y) = match op {
        Arith::SubR | Arith::DivR => (b, a),
        _ => (a, b),
    };
    let f = match op {
        Arith::Add => sf::f80_add,
        Arith::Sub | Arith::SubR => sf::f80_sub,
        Arith::Mul => sf::f80_mul,
        Arith::Div | Arith::DivR => sf::f80_div,
    };
    let mut o = rounded(rc(cwd), precision(cwd), |_| f(x, y));
    o.ex |= de;
    o
}

pub fn sqrt(cwd: u16, a: F80) -> Out {
    let de = match check(&[a]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let a = canon(a);
    let mut o = rounded(rc(cwd), precision(cwd), |_| sf::f80_sqrt(a));
    o.ex |= de;
    o
}

/// FRNDINT: round to an integral value per CW.RC.
pub fn round_int(cwd: u16, a: F80) -> Out {
    let de = match check(&[a]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    let a = canon(a);
    let mut o = rounded(rc(cwd), Precision::Extended, |r| {
        sf::f80_round_to_int(a, r, true)
    });
    o.ex |= de;
    o
}

/// The outcome of a comparison (C3 C2 C0 and ZF PF CF, SDM Vol.1 Table 8-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Greater,
    Less,
    Equal,
    Unordered,
}

/// FCOM (`quiet` false: IE for any NaN) and FUCOM (IE for SNaNs only).
pub fn compare(a: F80, b: F80, quiet: bool) -> Out<Cmp> {
    let de = match check(&[a, b]) {
        Ok(d) => d,
        Err(_) => return Out::invalid(Cmp::Unordered),
    };
    let (a, b) = (canon(a), canon(b));
    if a.is_nan() || b.is_nan() {
        let ie = !quiet || a.is_snan() || b.is_snan();
        return Out {
            v: Cmp::Unordered,
            ex: if ie { ex::IE } else { 0 },
            c1: false,
        };
    }
    let ((lt, eq), _) = sf::run(0, Precision::Extended, || {
        (sf::f80_lt(a, b, true), sf::f80_eq(a, b, true))
    });
    Out {
        v: if eq {
            Cmp::Equal
        } else if lt {
            Cmp::Less
        } else {
            Cmp::Greater
        },
        ex: de,
        c1: false,
    }
}

/// A NaN of `frac_bits` fraction bits extended to F80 as it is, signaling or quiet:
/// the instruction that uses it applies the x87 NaN rules (SDM Vol.1 Table 4-7) to it.
fn nan_f80(sign: bool, frac: u64, frac_bits: u32) -> F80 {
    F80::new(sign as u16, 0x7FFF, 1 << 63 | frac << (63 - frac_bits))
}

/// A memory operand of FLD m32fp and the arithmetic: DE for a denormal; a NaN is kept
/// signaling (`nan_f80`).
pub fn from_f32(v: u32) -> Out {
    if v & 0x7F80_0000 == 0x7F80_0000 && v & 0x7F_FFFF != 0 {
        return Out::exact(nan_f80(v >> 31 != 0, (v & 0x7F_FFFF) as u64, 23));
    }
    let de = if v & 0x7F80_0000 == 0 && v & 0x7F_FFFF != 0 {
        ex::DE
    } else {
        0
    };
    let (r, e) = sf::run(0, Precision::Extended, || sf::f32_to_f80(v));
    Out {
        v: r,
        ex: e | de,
        c1: false,
    }
}

/// A memory operand of FLD m64fp and the arithmetic.
pub fn from_f64(v: u64) -> Out {
    if v & 0x7FF0_0000_0000_0000 == 0x7FF0_0000_0000_0000 && v & 0xF_FFFF_FFFF_FFFF != 0 {
        return Out::exact(nan_f80(v >> 63 != 0, v & 0xF_FFFF_FFFF_FFFF, 52));
    }
    let de = if v & 0x7FF0_0000_0000_0000 == 0 && v & 0xF_FFFF_FFFF_FFFF != 0 {
        ex::DE
    } else {
        0
    };
    let (r, e) = sf::run(0, Precision::Extended, || sf::f64_to_f80(v));
    Out {
        v: r,
        ex: e | de,
        c1: false,
    }
}

/// FILD: always exact.
pub fn from_int(v: i64) -> F80 {
    sf::run(0, Precision::Extended, || sf::i64_to_f80(v)).0
}

/// FST m32fp (rounded per CW.RC; precision control does not apply).
pub fn to_f32(cwd: u16, a: F80) -> Out<u32> {
    let a = canon(a);
    if a.class() == Class::Unsupported {
        return Out::invalid(0xFFC0_0000);
    }
    rounded(rc(cwd), Precision::Extended, |_| sf::f80_to_f32(a))
}

/// FST m64fp.
pub fn to_f64(cwd: u16, a: F80) -> Out<u64> {
    let a = canon(a);
    if a.class() == Class::Unsupported {
        return Out::invalid(0xFFF8_0000_0000_0000);
    }
    rounded(rc(cwd), Precision::Extended, |_| sf::f80_to_f64(a))
}

/// FIST to a `bits`-bit integer; out of range or NaN gives the integer indefinite
/// (the most negative value) with IE.
pub fn to_int(cwd: u16, a: F80, bits: u32) -> Out<i64> {
    let a = canon(a);
    let indefinite = i64::MIN >> (64 - bits);
    if a.class() == Class::Unsupported {
        return Out::invalid(indefinite);
    }
    let o = rounded(rc(cwd), Precision::Extended, |r| sf::f80_to_i64(a, r));
    if o.ex & ex::IE != 0 || o.v != (o.v << (64 - bits)) >> (64 - bits) {
        return Out::invalid(indefinite);
    }
    o
}

/// FBLD: 18 packed BCD digits and a sign byte (SDM Vol.1 4.2.1.2); exact.
pub fn from_bcd(b: [u8; 10]) -> F80 {
    let v = b[..9].iter().rev().fold(0i64, |v, &d| {
        v * 100 + (d >> 4) as i64 * 10 + (d & 15) as i64
    });
    let r = from_int(v);
    if b[9] & 0x80 != 0 {
        -r
    } else {
        r
    }
}

/// The packed BCD integer indefinite (SDM Vol.1 Table 4-4).
pub const BCD_INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0xFF];

/// FBSTP: round per CW.RC; |value| ≥ 10^18, NaN or infinity is invalid.
pub fn to_bcd(cwd: u16, a: F80) -> Out<[u8; 10]> {
    let a = canon(a);
    if matches!(a.class(), Class::Unsupported | Class::NaN | Class::Infinity) {
        return Out::invalid(BCD_INDEFINITE);
    }
    let o = rounded(rc(cwd), Precision::Extended, |r| {
        sf::f80_round_to_int(a, r, true)
    });
    let (n, _) = sf::run(0, Precision::Extended, || sf::f80_to_i64(o.v, 3));
    if n.unsigned_abs() > 999_999_999_999_999_999 {
        return Out::invalid(BCD_INDEFINITE);
    }
    let mut b = [0u8; 10];
    let mut m = n.unsigned_abs();
    for byte in &mut b[..9] {
        *byte = (m % 10) as u8 | ((m / 10 % 10) as u8) << 4;
        m /= 100;
    }
    b[9] = if a.sign() { 0x80 } else { 0 };
    Out {
        v: b,
        ex: o.ex & ex::PE,
        c1: o.c1,
    }
}

/// A finite nonzero value as (sign, biased exponent of bit 63, significand with bit
/// 63 set); denormals get exponents below 1.
fn unpack(a: F80) -> (bool, i32, u64) {
    let lz = a.signif.leading_zeros() as i32;
    let e = a.exp().max(1) as i32;
    (a.sign(), e - lz, a.signif << lz)
}

/// `m * 2^(e - 16383 - 63)` when it is exactly representable (as FPREM's results are).
fn pack_exact(sign: bool, e: i32, m: u64) -> F80 {
    if m == 0 {
        return F80::new(sign as u16, 0, 0);
    }
    let lz = m.leading_zeros() as i32;
    let (e, m) = (e - lz, m << lz);
    if e >= 1 {
        F80::new(sign as u16, e as u16, m)
    } else {
        F80::new(sign as u16, 0, m >> (1 - e))
    }
}

/// FXTRACT: (exponent, significand).
pub fn xtract(a: F80) -> (Out, F80) {
    match a.class() {
        Class::Unsupported => (Out::invalid(F80::INDEFINITE), F80::INDEFINITE),
        Class::NaN => {
            let o = propagate_nan(a, a).expect("a NaN");
            (o, o.v)
        }
        Class::Zero => (
            Out {
                v: F80::new(1, 0x7FFF, 1 << 63),
                ex: ex::ZE,
                c1: false,
            },
            a,
        ),
        Class::Infinity => (Out::exact(a.abs()), a),
        c => {
            let (s, e, m) = unpack(a);
            let de = if c == Class::Denormal { ex::DE } else { 0 };
            let exp = from_int(e as i64 - 0x3FFF);
            (
                Out {
                    v: exp,
                    ex: de,
                    c1: false,
                },
                F80::new(s as u16, 0x3FFF, m),
            )
        }
    }
}

/// FSCALE: a * 2^trunc(b), rounded per CW.RC when out of range.
pub fn scale(cwd: u16, a: F80, b: F80) -> Out {
    let de = match check(&[a, b]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = propagate_nan(a, b) {
        return o;
    }
    let sign = a.sign() as u16;
    if b.class() == Class::Infinity {
        return match (a.class(), b.sign()) {
            (Class::Zero, false) | (Class::Infinity, true) => Out::invalid(F80::INDEFINITE),
            (Class::Zero, true) | (Class::Infinity, false) => Out::exact(a),
            (_, false) => Out {
                v: F80::new(sign, 0x7FFF, 1 << 63),
                ex: de,
                c1: false,
            },
            (_, true) => Out {
                v: F80::new(sign, 0, 0),
                ex: de,
                c1: false,
            },
        };
    }
    if matches!(a.class(), Class::Zero | Class::Infinity) {
        return Out {
            v: a,
            ex: de,
            c1: false,
        };
    }
    // |b| ≥ 2^63 does not fit the conversion, and is out of any range anyway.
    let n = if b.exp() >= 0x3FFF + 63 {
        if b.sign() {
            -0x10000
        } else {
            0x10000
        }
    } else {
        sf::run(3, Precision::Extended, || sf::f80_to_i64(b, 3)).0
    };
    let (_, e, m) = unpack(a);
    let t = (e as i64 + n.clamp(-0x10000, 0x10000)).clamp(-0x3000, 0x7FFE + 0x3000) as i32;
    if (1..=0x7FFE).contains(&t) {
        return Out {
            v: F80::new(sign, t as u16, m),
            ex: de,
            c1: false,
        };
    }
    // Out of range: one multiplication by a power of two rounds (and raises OE/UE)
    // exactly once.
    let y = if t > 0x7FFE { 0x7FFE } else { 1 };
    let x = (t - y + 0x3FFF) as u16;
    let mut o = rounded(rc(cwd), Precision::Extended, |_| {
        sf::f80_mul(F80::new(sign, x, m), F80::new(0, y as u16, 1 << 63))
    });
    o.ex |= de;
    o
}

/// FPREM (`ieee` false: quotient truncated) and FPREM1 (quotient rounded to nearest):
/// the (partial) remainder and C0 C3 C1 = quotient bits 2 1 0, C2 = incomplete; or
/// `PREM_KEEP` for an invalid operation or a NaN operand: then C0 and C3 keep their
/// values, as on the host. The
/// reduction of an incomplete step is 2^(D-N) with N = 32 + D mod 32, the
/// implementation-dependent N of SDM Vol.2A FPREM as QEMU and AMD document it.
pub const PREM_KEEP: u16 = u16::MAX;

pub fn prem(a: F80, b: F80, ieee: bool) -> (Out, u16) {
    use crate::fpu::sw;
    let de = match check(&[a, b]) {
        Ok(d) => d,
        Err(o) => return (o, PREM_KEEP),
    };
    if let Some(o) = propagate_nan(a, b) {
        return (o, PREM_KEEP);
    }
    if a.class() == Class::Infinity || b.class() == Class::Zero {
        return (Out::invalid(F80::INDEFINITE), PREM_KEEP);
    }
    let keep = |de, cc| {
        (
            Out {
                v: canon(a),
                ex: de,
                c1: false,
            },
            cc,
        )
    };
    if a.class() == Class::Zero || b.class() == Class::Infinity {
        return keep(de, 0);
    }
    let (sa, ea, ma) = unpack(a);
    let (_, eb, mb) = unpack(b);
    let d = ea - eb;
    if d < 0 {
        // |a| < |b|: the quotient is 0, or 1 when FPREM1 rounds |a| > |b|/2 up.
        if !(ieee && d == -1 && ma > mb) {
            return keep(de, 0);
        }
        let r = ((mb as u128) << 1) - ma as u128;
        let v = pack_exact(!sa, eb - 1, r as u64);
        return (
            Out {
                v,
                ex: de,
                c1: false,
            },
            sw::C1,
        );
    }
    let partial = d >= 64;
    let steps = if partial { 32 + d % 32 } else { d };
    let (mut q, mut r) = (0u64, ma as u128);
    for i in 0..=steps {
        q <<= 1;
        if r >= mb as u128 {
            r -= mb as u128;
            q |= 1;
        }
        if i < steps {
            r <<= 1;
        }
    }
    let mut sign = sa;
    if ieee && !partial && (2 * r > mb as u128 || (2 * r == mb as u128 && q & 1 != 0)) {
        r = mb as u128 - r;
        q = q.wrapping_add(1);
        sign = !sign;
    }
    let unit = eb + (d - steps);
    let v = if r == 0 {
        F80::new(sa as u16, 0, 0)
    } else {
        pack_exact(sign, unit, r as u64)
    };
    let mut cc = 0;
    for (bit, flag) in [(2, sw::C0), (1, sw::C3), (0, sw::C1)] {
        if q >> bit & 1 != 0 {
            cc |= flag;
        }
    }
    if partial {
        cc = sw::C2;
    }
    (
        Out {
            v,
            ex: de,
            c1: false,
        },
        cc,
    )
}

/// A finite F80 as a binary64 (rounded to nearest).
fn to_host(a: F80) -> f64 {
    let a = canon(a);
    f64::from_bits(sf::run(0, Precision::Extended, || sf::f80_to_f64(a)).0)
}

fn from_host(v: f64) -> F80 {
    sf::run(0, Precision::Extended, || sf::f64_to_f80(v.to_bits())).0
}

/// An inexact transcendental result.
fn approx(v: F80, de: u16) -> Out {
    Out {
        v,
        ex: ex::PE | de,
        c1: false,
    }
}

/// |a| < 2^-32: sin a = tan a = a and cos a = 1 to the last bit of the significand.
fn tiny(a: F80) -> bool {
    a.exp() < 0x3FFF - 32
}

/// The trigonometric functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trig {
    Sin,
    Cos,
    Tan,
}

/// FSIN FCOS FPTAN: None when |a| ≥ 2^63 (C2 = 1, operand unchanged).
pub fn trig(f: Trig, a: F80) -> Option<Out> {
    let de = match check(&[a]) {
        Ok(d) => d,
        Err(o) => return Some(o),
    };
    match a.class() {
        Class::NaN => return propagate_nan(a, a),
        Class::Infinity => return Some(Out::invalid(F80::INDEFINITE)),
        Class::Zero if f == Trig::Cos => return Some(Out::exact(F80::ONE)),
        Class::Zero => return Some(Out::exact(a)),
        _ if a.exp() >= 0x3FFF + 63 => return None,
        _ => {}
    }
    if tiny(a) {
        return Some(approx(if f == Trig::Cos { F80::ONE } else { a }, de));
    }
    let x = to_host(a);
    let v = match f {
        Trig::Sin => x.sin(),
        Trig::Cos => x.cos(),
        Trig::Tan => x.tan(),
    };
    Some(approx(from_host(v), de))
}

/// F2XM1: 2^a - 1 for -1 ≤ a ≤ 1.
pub fn f2xm1(a: F80) -> Out {
    let de = match check(&[a]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    match a.class() {
        Class::NaN => propagate_nan(a, a).expect("a NaN"),
        Class::Zero => Out::exact(a),
        Class::Infinity if a.sign() => Out::exact(-F80::ONE),
        Class::Infinity => Out::exact(a),
        _ if a.exp() < 0x3FFF - 1000 => {
            // Below the binary64 range: 2^a - 1 = a ln 2.
            let mut o = rounded(0, Precision::Extended, |_| sf::f80_mul(a, LN2));
            o.ex |= de | ex::PE;
            o
        }
        _ => approx(
            from_host((std::f64::consts::LN_2 * to_host(a)).exp_m1()),
            de,
        ),
    }
}

/// ln 2 rounded to nearest.
const LN2: F80 = F80::new(0, 0x3FFE, 0xB172_17F7_D1CF_79AC);
/// log2 e rounded to nearest.
const L2E: F80 = F80::new(0, 0x3FFF, 0xB8AA_3B29_5C17_F0BC);

/// log2 of a finite positive value: the exponent exactly plus log2 of the significand.
fn log2(a: F80) -> F80 {
    let (_, e, m) = unpack(a);
    let l = (e - 0x3FFF) as f64 + (m as f64 / (1u64 << 63) as f64).log2();
    from_host(l)
}

/// FYL2X: y * log2 x.
pub fn yl2x(x: F80, y: F80) -> Out {
    let de = match check(&[x, y]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = propagate_nan(x, y) {
        return o;
    }
    let (l, zero_divide, exact) = match x.class() {
        _ if x.sign() && x.class() != Class::Zero => return Out::invalid(F80::INDEFINITE),
        Class::Zero => (F80::new(1, 0x7FFF, 1 << 63), true, true),
        Class::Infinity => (x, false, true),
        _ if x == F80::ONE => (F80::ZERO, false, true),
        _ => (log2(x), false, false),
    };
    let mut o = rounded(0, Precision::Extended, |_| sf::f80_mul(l, y));
    if o.ex & ex::IE != 0 {
        return Out::invalid(F80::INDEFINITE);
    }
    if zero_divide && y.class() != Class::Infinity {
        o.ex |= ex::ZE;
    }
    o.ex |= de | if exact { 0 } else { ex::PE };
    o
}

/// FYL2XP1: y * log2(x + 1) for |x| < 1 - sqrt(2)/2.
pub fn yl2xp1(x: F80, y: F80) -> Out {
    let de = match check(&[x, y]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = propagate_nan(x, y) {
        return o;
    }
    let (l, exact) = match x.class() {
        Class::Zero => (x, true),
        Class::Infinity => return Out::invalid(F80::INDEFINITE),
        _ if x.exp() < 0x3FFF - 1000 => (
            sf::run(0, Precision::Extended, || sf::f80_mul(x, L2E)).0,
            false,
        ),
        _ => (
            from_host(to_host(x).ln_1p() * std::f64::consts::LOG2_E),
            false,
        ),
    };
    let mut o = rounded(0, Precision::Extended, |_| sf::f80_mul(l, y));
    if o.ex & ex::IE != 0 {
        return Out::invalid(F80::INDEFINITE);
    }
    o.ex |= de | if exact { 0 } else { ex::PE };
    o
}

/// FPATAN: atan2(y, x), with the signed-zero and infinity cases of SDM Vol.2A
/// Table 3-29 (the IEEE atan2 conventions, which binary64 atan2 follows).
pub fn patan(y: F80, x: F80) -> Out {
    let de = match check(&[x, y]) {
        Ok(d) => d,
        Err(o) => return o,
    };
    if let Some(o) = propagate_nan(x, y) {
        return o;
    }
    let special = |c: Class| matches!(c, Class::Zero | Class::Infinity);
    if special(x.class()) || special(y.class()) {
        let v = from_host(to_host(y).atan2(to_host(x)));
        let exact = v.class() == Class::Zero;
        return Out {
            v,
            ex: if exact { 0 } else { ex::PE },
            c1: false,
        };
    }
    // Scale both by one power of two so that the larger is near 1.
    let (_, ey, _) = unpack(y);
    let (_, ex_, _) = unpack(x);
    let big = ey.max(ex_);
    if ey < big - 1000 && !x.sign() {
        // |y/x| < 2^-999: atan(y/x) = y/x.
        let mut o = rounded(0, Precision::Extended, |_| sf::f80_div(y, x));
        o.ex |= de | ex::PE;
        return o;
    }
    let shifted = |a: F80, e: i32| {
        let (s, ea, m) = unpack(a);
        let t = (ea - e + 0x3FFF).max(0x3FFF - 1100);
        F80::new(s as u16, t as u16, m)
    };
    let v = to_host(shifted(y, big)).atan2(to_host(shifted(x, big)));
    approx(from_host(v), de)
}

/// The constants of FLD1 FLDL2T FLDL2E FLDPI FLDLG2 FLDLN2 FLDZ: (sign/exponent,
/// significand truncated to 64 bits, the dropped bits are above one half). The 387 and
/// later round them per CW.RC (SDM Vol.1 8.3.7).
#[derive(Clone, Copy, Debug)]
pub struct Const {
    pub exp: u16,
    pub signif: u64,
    pub round_up_nearest: bool,
    pub exact: bool,
}

pub const L2T_C: Const = Const::irrational(0x4000, 0xD49A_784B_CD1B_8AFE, false);
pub const L2E_C: Const = Const::irrational(0x3FFF, 0xB8AA_3B29_5C17_F0BB, true);
pub const PI_C: Const = Const::irrational(0x4000, 0xC90F_DAA2_2168_C234, true);
pub const LG2_C: Const = Const::irrational(0x3FFD, 0x9A20_9A84_FBCF_F798, true);
pub const LN2_C: Const = Const::irrational(0x3FFE, 0xB172_17F7_D1CF_79AB, true);
pub const ONE_C: Const = Const::exact_value(F80::ONE);
pub const ZERO_C: Const = Const::exact_value(F80::ZERO);

impl Const {
    const fn irrational(exp: u16, signif: u64, round_up_nearest: bool) -> Const {
        Const {
            exp,
            signif,
            round_up_nearest,
            exact: false,
        }
    }
    const fn exact_value(v: F80) -> Const {
        Const {
            exp: v.sign_exp,
            signif: v.signif,
            round_up_nearest: false,
            exact: true,
        }
    }
    /// The constant rounded per CW.RC (all are positive: up rounds away from zero).
    pub fn value(self, cwd: u16) -> F80 {
        let up = !self.exact
            && match rc(cwd) {
                0 => self.round_up_nearest,
                2 => true,
                _ => false,
            };
        F80::new(0, self.exp, self.signif + up as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> F80 {
        from_host(v)
    }

    #[test]
    fn prem_matches_fmod_and_remainder() {
        for (a, b) in [
            (10.5, 3.0),
            (-10.5, 3.0),
            (7.0, 2.0),
            (5.0, 2.0),
            (1e300, 7.0),
        ] {
            // A large exponent difference takes several partial steps (C2 = 1).
            let mut x = f(a);
            let mut steps = 0;
            loop {
                let (r, cc) = prem(x, f(b), false);
                x = r.v;
                steps += 1;
                if cc & crate::fpu::sw::C2 == 0 {
                    break;
                }
            }
            assert_eq!(to_host(x), a % b, "fprem {a} {b}");
            assert_eq!(steps > 1, a > 1e100);
            let (r, _) = prem(f(a), f(b), true);
            let ieee = a - b * (a / b).round_ties_even();
            if a.abs() < 1e10 {
                assert_eq!(to_host(r.v), ieee, "fprem1 {a} {b}");
            }
        }
        // 10.5 = 3*3 + 1.5: quotient 3 → C1 (bit 1) and C3 (bit 0).
        let (_, cc) = prem(f(10.5), f(3.0), false);
        assert_eq!(cc, crate::fpu::sw::C1 | crate::fpu::sw::C3);
    }

    #[test]
    fn scale_and_xtract_are_inverse() {
        let a = f(-1234.5678);
        let (e, s) = xtract(a);
        assert_eq!(to_host(e.v), 10.0);
        assert_eq!(scale(cw::INIT, s, e.v).v, a);
        // Overflow is rounded once, to infinity under round-to-nearest.
        let o = scale(cw::INIT, F80::ONE, f(20000.0));
        assert_eq!(o.v, F80::new(0, 0x7FFF, 1 << 63));
        assert_eq!(o.ex, ex::OE | ex::PE);
    }

    #[test]
    fn bcd_round_trips() {
        let (b, _) = (to_bcd(cw::INIT, f(-123456789012.0)).v, 0);
        assert_eq!(b[..6], [0x12, 0x90, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(b[9], 0x80);
        assert_eq!(from_bcd(b), f(-123456789012.0));
        assert_eq!(to_bcd(cw::INIT, f(1e18)).v, BCD_INDEFINITE);
    }

    #[test]
    fn integer_stores_saturate_to_the_indefinite() {
        assert_eq!(to_int(cw::INIT, f(40000.0), 16).v, -32768);
        assert_eq!(to_int(cw::INIT, f(40000.0), 16).ex, ex::IE);
        assert_eq!(to_int(cw::INIT, f(2.5), 32).v, 2);
        let up = to_int(cw::INIT, f(3.5), 32);
        assert_eq!((up.v, up.ex, up.c1), (4, ex::PE, true));
    }
}

/// The host's x87 as the oracle: one instruction on ST(0) = a, ST(1) = b (CW 037Fh,
/// everything masked), returning ST(0), ST(1) and the status word after it.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod host {
    use super::F80;

    macro_rules! host_op {
        ($name:ident, $insn:literal) => {
            pub fn $name(a: F80, b: F80) -> (F80, F80, u16) {
                let input = [b, a].map(|v| {
                    let mut x = [0u8; 16];
                    x[..8].copy_from_slice(&v.signif.to_le_bytes());
                    x[8..10].copy_from_slice(&v.sign_exp.to_le_bytes());
                    x
                });
                let mut out = [[0u8; 16]; 2];
                let sw: u16;
                // SAFETY: x87 instructions on local buffers; FNINIT leaves the host's
                // x87 state as the ABI expects after the two FSTPs.
                unsafe {
                    std::arch::asm!(
                        "fninit",
                        "fld tbyte ptr [{i}]",
                        "fld tbyte ptr [{i} + 16]",
                        $insn,
                        "fnstsw ax",
                        "fstp tbyte ptr [{o}]",
                        "fstp tbyte ptr [{o} + 16]",
                        "fninit",
                        i = in(reg) input.as_ptr(),
                        o = in(reg) out.as_mut_ptr(),
                        out("ax") sw,
                    );
                }
                let f = |x: &[u8; 16]| F80 {
                    signif: u64::from_le_bytes(x[..8].try_into().unwrap()),
                    sign_exp: u16::from_le_bytes([x[8], x[9]]),
                };
                (f(&out[0]), f(&out[1]), sw)
            }
        };
    }
    host_op!(fprem, "fprem");
    host_op!(fprem1, "fprem1");
    host_op!(fscale, "fscale");
    host_op!(fxtract, "fxtract");
    host_op!(fsin, "fsin");
    host_op!(fcos, "fcos");
    host_op!(fptan, "fptan");
    host_op!(fpatan, "fpatan");
    host_op!(f2xm1, "f2xm1");
    host_op!(fyl2x, "fyl2x");
    host_op!(fyl2xp1, "fyl2xp1");
}

#[cfg(all(test, target_arch = "x86_64"))]
mod host_tests {
    use super::*;
    use crate::fpu::sw;

    /// A deterministic stream of finite F80 values with exponents around `center`
    /// (± `spread`), denormals and pseudo-denormals among them.
    fn values(seed: u64, n: usize, center: u16, spread: u16) -> Vec<F80> {
        let mut s = seed;
        (0..n)
            .map(|k| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = s ^ (s >> 29);
                let sign = (r >> 63) as u16;
                match k % 23 {
                    0 => F80::new(sign, 0, r >> 12),
                    1 => F80::new(sign, 0, r | 1 << 63),
                    _ => {
                        let e = center - spread + (r % (2 * spread as u64 + 1)) as u16;
                        F80::new(sign, e, r | 1 << 63)
                    }
                }
            })
            .collect()
    }

    #[test]
    fn fprem_fprem1_fscale_fxtract_match_the_host() {
        let xs = values(1, 600, 0x3FFF, 80);
        let ys = values(2, 600, 0x3FFF, 80);
        let cc = sw::C0 | sw::C1 | sw::C2 | sw::C3;
        let mut bad = Vec::new();
        for (&a, &b) in xs.iter().zip(&ys) {
            for ieee in [false, true] {
                let (h, _, hsw) = if ieee {
                    host::fprem1(a, b)
                } else {
                    host::fprem(a, b)
                };
                let (o, c) = prem(a, b, ieee);
                if o.v != h || c != hsw & cc {
                    bad.push(format!(
                        "fprem{} {a:x?} {b:x?}: host {h:x?} {:04x}, ours {:x?} {c:04x}",
                        ieee as u8,
                        hsw & cc,
                        o.v
                    ));
                }
            }
            let small = F80::new(b.sign() as u16, 0x3FFF + (b.signif % 14) as u16, b.signif);
            let (h, _, _) = host::fscale(a, small);
            if scale(cw::INIT, a, small).v != h {
                bad.push(format!(
                    "fscale {a:x?} {small:x?}: host {h:x?} ours {:x?}",
                    scale(cw::INIT, a, small).v
                ));
            }
            let (hs, he, _) = host::fxtract(a, b);
            let (e, s) = xtract(a);
            if (e.v, s) != (he, hs) {
                bad.push(format!(
                    "fxtract {a:x?}: host {he:x?} {hs:x?} ours {:x?} {s:x?}",
                    e.v
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{} differ:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
    }

    /// The transcendentals agree with the host's to 2^-50 relative (or absolute, where
    /// the result passes through zero: sin, cos, tan and atan near their zeros, y·log2 x
    /// near x = 1 relative to y), over each instruction's domain.
    #[test]
    fn transcendentals_match_the_host_within_tolerance() {
        let tol = (-50f64).exp2();
        let mut bad = Vec::new();
        let mut check = |name: &str, a: F80, b: F80, ours: F80, host: F80, scale: f64| {
            let (o, h) = (to_host(ours), to_host(host));
            if (o - h).abs() > tol * h.abs().max(scale) {
                bad.push(format!("{name} {a:x?} {b:x?}: host {h:e} ours {o:e}"));
            }
        };
        let small = values(3, 400, 0x3FF0, 14);
        let any = values(4, 400, 0x3FFF, 100);
        for (&x, &y) in small.iter().zip(&any) {
            for (name, t, h) in [
                ("fsin", Trig::Sin, host::fsin(x, y).0),
                ("fcos", Trig::Cos, host::fcos(x, y).0),
                ("fptan", Trig::Tan, host::fptan(x, y).1),
            ] {
                check(name, x, y, trig(t, x).expect("in range").v, h, 1.0);
            }
            check("f2xm1", x, y, f2xm1(x).v, host::f2xm1(x, y).0, 0.0);
            let p = F80::new(0, x.exp().min(0x3FFC), x.signif);
            check("fyl2xp1", p, y, yl2xp1(p, y).v, host::fyl2xp1(p, y).0, 0.0);
            check(
                "fyl2x",
                y.abs(),
                x,
                yl2x(y.abs(), x).v,
                host::fyl2x(y.abs(), x).0,
                to_host(x).abs(),
            );
            check("fpatan", x, y, patan(y, x).v, host::fpatan(x, y).0, 1.0);
        }
        assert!(
            bad.is_empty(),
            "{} differ:\n{}",
            bad.len(),
            bad[..bad.len().min(20)].join("\n")
        );
    }
}
