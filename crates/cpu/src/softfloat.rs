//! The one safe wrapper over Berkeley SoftFloat 3 (softfloat-sys, built with the
//! `8086-SSE` specialization: x86 NaN propagation and default NaN). The x87 and SSE
//! executors both compute through it.
//!
//! SoftFloat keeps its rounding mode, extF80 rounding precision and exception flags in
//! thread-local variables; `run` sets the first two from an x86 RC field and precision,
//! clears the flags, runs the operations and returns their exceptions in the bit order
//! the x87 status word and MXCSR share (IE DE ZE OE UE PE = bits 0..5). SoftFloat has
//! no denormal-operand exception: callers detect DE on their operands themselves.

use softfloat_sys as sf;

use crate::fpu::F80;

/// Exception flags as in FPU SW and MXCSR bits 0..5 (SDM Vol.1 8.1.3, 10.2.3).
pub mod ex {
    pub const IE: u16 = 1 << 0;
    pub const DE: u16 = 1 << 1;
    pub const ZE: u16 = 1 << 2;
    pub const OE: u16 = 1 << 3;
    pub const UE: u16 = 1 << 4;
    pub const PE: u16 = 1 << 5;
    pub const ALL: u16 = 0x3F;
}

/// x87 CW.RC / MXCSR.RC (SDM Vol.1 Table 4-8): 00 nearest, 01 down, 10 up, 11 toward
/// zero → SoftFloat's rounding modes.
const ROUNDING: [u8; 4] = [
    sf::softfloat_round_near_even,
    sf::softfloat_round_min,
    sf::softfloat_round_max,
    sf::softfloat_round_minMag,
];

/// Significand precision of extF80 results, as SoftFloat's `extF80_roundingPrecision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Single = 32,
    Double = 64,
    Extended = 80,
}

/// Run `f` with rounding control `rc` (x86 RC encoding) and extF80 precision `p`;
/// return its value and the exceptions it raised.
pub fn run<R>(rc: u8, p: Precision, f: impl FnOnce() -> R) -> (R, u16) {
    // SAFETY: the helpers only read/write SoftFloat's thread-local state.
    unsafe {
        sf::softfloat_roundingMode_write_helper(ROUNDING[rc as usize & 3]);
        sf::extF80_roundingPrecision_write_helper(p as u8);
        sf::softfloat_exceptionFlags_write_helper(0);
    }
    let r = f();
    let flags = unsafe { sf::softfloat_exceptionFlags_read_helper() };
    let mut e = 0;
    for (f, x) in [
        (sf::softfloat_flag_invalid, ex::IE),
        (sf::softfloat_flag_infinite, ex::ZE),
        (sf::softfloat_flag_overflow, ex::OE),
        (sf::softfloat_flag_underflow, ex::UE),
        (sf::softfloat_flag_inexact, ex::PE),
    ] {
        if flags & f != 0 {
            e |= x;
        }
    }
    (r, e)
}

/// The SoftFloat rounding mode for an x86 RC field (for `*_to_int` and `round_to_int`).
pub fn rounding(rc: u8) -> u8 {
    ROUNDING[rc as usize & 3]
}

fn to_sf(a: F80) -> sf::extFloat80_t {
    sf::extFloat80_t {
        signif: a.signif,
        signExp: a.sign_exp,
    }
}

fn from_sf(a: sf::extFloat80_t) -> F80 {
    F80 {
        signif: a.signif,
        sign_exp: a.signExp,
    }
}

// The operations below are plain calls into SoftFloat: they are meant to be called
// inside `run`, which gives them their rounding and collects their flags.

macro_rules! f80_binop {
    ($($name:ident => $sf:ident),*) => {$(
        pub fn $name(a: F80, b: F80) -> F80 {
            // SAFETY: a pure function of its arguments and the thread-local state.
            from_sf(unsafe { sf::$sf(to_sf(a), to_sf(b)) })
        }
    )*};
}
f80_binop!(f80_add => extF80_add, f80_sub => extF80_sub, f80_mul => extF80_mul,
    f80_div => extF80_div, f80_rem => extF80_rem);

pub fn f80_sqrt(a: F80) -> F80 {
    from_sf(unsafe { sf::extF80_sqrt(to_sf(a)) })
}

/// Round to an integral value with the given x86 RC; `exact` raises PE when inexact.
pub fn f80_round_to_int(a: F80, rc: u8, exact: bool) -> F80 {
    from_sf(unsafe { sf::extF80_roundToInt(to_sf(a), rounding(rc), exact) })
}

/// Quiet comparisons raise IE only for signaling NaNs; the others for any NaN.
pub fn f80_eq(a: F80, b: F80, quiet: bool) -> bool {
    unsafe {
        if quiet {
            sf::extF80_eq(to_sf(a), to_sf(b))
        } else {
            sf::extF80_eq_signaling(to_sf(a), to_sf(b))
        }
    }
}

pub fn f80_lt(a: F80, b: F80, quiet: bool) -> bool {
    unsafe {
        if quiet {
            sf::extF80_lt_quiet(to_sf(a), to_sf(b))
        } else {
            sf::extF80_lt(to_sf(a), to_sf(b))
        }
    }
}

pub fn f80_to_f32(a: F80) -> u32 {
    unsafe { sf::extF80_to_f32(to_sf(a)).v }
}
pub fn f80_to_f64(a: F80) -> u64 {
    unsafe { sf::extF80_to_f64(to_sf(a)).v }
}
pub fn f32_to_f80(a: u32) -> F80 {
    from_sf(unsafe { sf::f32_to_extF80(sf::float32_t { v: a }) })
}
pub fn f64_to_f80(a: u64) -> F80 {
    from_sf(unsafe { sf::f64_to_extF80(sf::float64_t { v: a }) })
}
pub fn i64_to_f80(a: i64) -> F80 {
    from_sf(unsafe { sf::i64_to_extF80(a) })
}
/// Convert with the given x86 RC; out of range or NaN raises IE and gives the
/// "integer indefinite" of SoftFloat's x86 specialization (i64::MIN).
pub fn f80_to_i64(a: F80, rc: u8) -> i64 {
    unsafe { sf::extF80_to_i64(to_sf(a), rounding(rc), true) }
}
pub fn f80_to_i32(a: F80, rc: u8) -> i32 {
    unsafe { sf::extF80_to_i32(to_sf(a), rounding(rc), true) as i32 }
}

pub fn f32_to_f64(a: u32) -> u64 {
    unsafe { sf::f32_to_f64(sf::float32_t { v: a }).v }
}
pub fn f64_to_f32(a: u64) -> u32 {
    unsafe { sf::f64_to_f32(sf::float64_t { v: a }).v }
}
pub fn i32_to_f32(a: i32) -> u32 {
    unsafe { sf::i32_to_f32(a).v }
}
pub fn i64_to_f32(a: i64) -> u32 {
    unsafe { sf::i64_to_f32(a).v }
}
pub fn i32_to_f64(a: i32) -> u64 {
    unsafe { sf::i32_to_f64(a).v }
}
pub fn i64_to_f64(a: i64) -> u64 {
    unsafe { sf::i64_to_f64(a).v }
}
/// f32/f64 → integer with an x86 RC (`truncate` overrides it with toward-zero, as the
/// CVTT* instructions do); invalid gives the x86 integer indefinite.
pub fn f32_to_i32(a: u32, rc: u8, truncate: bool) -> i32 {
    let rc = if truncate { 3 } else { rc };
    unsafe { sf::f32_to_i32(sf::float32_t { v: a }, rounding(rc), true) as i32 }
}
pub fn f32_to_i64(a: u32, rc: u8, truncate: bool) -> i64 {
    let rc = if truncate { 3 } else { rc };
    unsafe { sf::f32_to_i64(sf::float32_t { v: a }, rounding(rc), true) }
}
pub fn f64_to_i32(a: u64, rc: u8, truncate: bool) -> i32 {
    let rc = if truncate { 3 } else { rc };
    unsafe { sf::f64_to_i32(sf::float64_t { v: a }, rounding(rc), true) as i32 }
}
pub fn f64_to_i64(a: u64, rc: u8, truncate: bool) -> i64 {
    let rc = if truncate { 3 } else { rc };
    unsafe { sf::f64_to_i64(sf::float64_t { v: a }, rounding(rc), true) }
}

macro_rules! binop {
    ($t:ty, $w:ident, $($name:ident => $sf:ident),*) => {$(
        pub fn $name(a: $t, b: $t) -> $t {
            unsafe { sf::$sf(sf::$w { v: a }, sf::$w { v: b }).v }
        }
    )*};
}
binop!(u32, float32_t, f32_add => f32_add, f32_sub => f32_sub, f32_mul => f32_mul,
    f32_div => f32_div);
binop!(u64, float64_t, f64_add => f64_add, f64_sub => f64_sub, f64_mul => f64_mul,
    f64_div => f64_div);

pub fn f32_sqrt(a: u32) -> u32 {
    unsafe { sf::f32_sqrt(sf::float32_t { v: a }).v }
}
pub fn f64_sqrt(a: u64) -> u64 {
    unsafe { sf::f64_sqrt(sf::float64_t { v: a }).v }
}
/// Ordered/unordered comparisons as for F80 (`quiet`: IE only for SNaN).
pub fn f32_lt(a: u32, b: u32, quiet: bool) -> bool {
    let (a, b) = (sf::float32_t { v: a }, sf::float32_t { v: b });
    unsafe {
        if quiet {
            sf::f32_lt_quiet(a, b)
        } else {
            sf::f32_lt(a, b)
        }
    }
}
pub fn f32_eq(a: u32, b: u32, quiet: bool) -> bool {
    let (a, b) = (sf::float32_t { v: a }, sf::float32_t { v: b });
    unsafe {
        if quiet {
            sf::f32_eq(a, b)
        } else {
            sf::f32_eq_signaling(a, b)
        }
    }
}
pub fn f64_lt(a: u64, b: u64, quiet: bool) -> bool {
    let (a, b) = (sf::float64_t { v: a }, sf::float64_t { v: b });
    unsafe {
        if quiet {
            sf::f64_lt_quiet(a, b)
        } else {
            sf::f64_lt(a, b)
        }
    }
}
pub fn f64_eq(a: u64, b: u64, quiet: bool) -> bool {
    let (a, b) = (sf::float64_t { v: a }, sf::float64_t { v: b });
    unsafe {
        if quiet {
            sf::f64_eq(a, b)
        } else {
            sf::f64_eq_signaling(a, b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_rounding_follow_the_x86_encoding() {
        let one = i64_to_f80(1);
        let three = i64_to_f80(3);
        // 1/3 is inexact; round up and round down differ in the last bit.
        let (up, e) = run(2, Precision::Extended, || f80_div(one, three));
        let (down, _) = run(1, Precision::Extended, || f80_div(one, three));
        assert_eq!(e, ex::PE);
        assert_eq!(up.signif, down.signif + 1);
        let (_, e) = run(0, Precision::Extended, || f80_div(one, i64_to_f80(0)));
        assert_eq!(e, ex::ZE);
        // 0/0 gives the real indefinite, negative QNaN with only the top fraction bit.
        let (r, e) = run(0, Precision::Extended, || {
            f80_div(i64_to_f80(0), i64_to_f80(0))
        });
        assert_eq!(e, ex::IE);
        assert_eq!((r.sign_exp, r.signif), (0xFFFF, 0xC000_0000_0000_0000));
    }

    #[test]
    fn precision_control_rounds_the_significand() {
        let (r, _) = run(0, Precision::Single, || {
            f80_div(i64_to_f80(1), i64_to_f80(3))
        });
        assert_eq!(r.signif & 0xFF_FFFF_FFFF, 0, "24-bit significand");
        assert_eq!(f80_to_f32(r), (1.0f32 / 3.0).to_bits());
    }

    #[test]
    fn f32_f64_match_the_host() {
        let (a, b) = (1.1f64, 3.3f64);
        let (r, _) = run(0, Precision::Extended, || f64_mul(a.to_bits(), b.to_bits()));
        assert_eq!(r, (a * b).to_bits());
        let (r, _) = run(0, Precision::Extended, || f32_sqrt(2.0f32.to_bits()));
        assert_eq!(r, 2.0f32.sqrt().to_bits());
        let (r, e) = run(0, Precision::Extended, || {
            f64_to_i32(1e10f64.to_bits(), 0, false)
        });
        assert_eq!((r, e), (i32::MIN, ex::IE));
    }
}
