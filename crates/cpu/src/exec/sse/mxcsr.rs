//! MXCSR and SIMD floating-point arithmetic with exact x86 semantics (SDM Vol.1 10.2.3,
//! 11.5): rounding control, the six sticky exception flags, DAZ and FZ, the masked
//! responses, and #XM (or #UD when CR4.OSXMMEXCPT is clear) for unmasked exceptions.
//! The IEEE arithmetic itself is Berkeley SoftFloat 3 built with its 8086-SSE
//! specialization (x86 NaN propagation and default NaN).

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::{vector, Fault};
use crate::softfloat::{self, Precision};
use crate::state::cr4;

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Ldmxcsr, |_| Some(ldmxcsr));
    t.on(Mnemonic::Stmxcsr, |_| Some(stmxcsr));
}

/// MXCSR bits (SDM Vol.1 Figure 10-3).
pub mod bits {
    pub const IE: u32 = 1 << 0;
    pub const DE: u32 = 1 << 1;
    pub const ZE: u32 = 1 << 2;
    pub const OE: u32 = 1 << 3;
    pub const UE: u32 = 1 << 4;
    pub const PE: u32 = 1 << 5;
    pub const DAZ: u32 = 1 << 6;
    /// The masks IM..PM are the flags shifted left by this.
    pub const MASK_SHIFT: u32 = 7;
    pub const RC_SHIFT: u32 = 13;
    pub const FZ: u32 = 1 << 15;
    /// Bits LDMXCSR accepts (MXCSR_MASK with DAZ; anything else is #GP(0)).
    pub const WRITABLE: u32 = 0xFFFF;
    /// The exceptions detected before the computation (SDM Vol.1 11.5.1).
    pub const PRE: u32 = IE | DE | ZE;
}

/// LDMXCSR m32: #GP(0) for a reserved bit (SDM Vol.2 LDMXCSR).
fn ldmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.simd_begin(e)?;
    let v = cpu.simd_load(bus, e, 4)? as u32;
    if v & !bits::WRITABLE != 0 {
        return Err(Fault::gp(0));
    }
    cpu.sse.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.simd_begin(e)?;
    let v = cpu.sse.mxcsr;
    cpu.simd_store(bus, e, 4, v as u128)
}

/// An IEEE binary format as bits in a u64: single (f32) or double (f64) precision.
pub(crate) trait Float: 'static {
    const BITS: u32;
    const FRAC_BITS: u32;
    const SIGN: u64 = 1 << (Self::BITS - 1);
    const EXP: u64 = ((1 << (Self::BITS - 1)) - 1) & !Self::FRAC;
    const FRAC: u64 = (1 << Self::FRAC_BITS) - 1;
    const QUIET: u64 = 1 << (Self::FRAC_BITS - 1);
    /// The QNaN floating-point indefinite (SDM Vol.1 Table 4-3).
    const INDEFINITE: u64 = Self::SIGN | Self::EXP | Self::QUIET;

    fn add(a: u64, b: u64) -> u64;
    fn sub(a: u64, b: u64) -> u64;
    fn mul(a: u64, b: u64) -> u64;
    fn div(a: u64, b: u64) -> u64;
    fn sqrt(a: u64) -> u64;
    /// To the other format (single <-> double), current rounding mode.
    fn convert(a: u64) -> u64;
    fn from_i64(v: i64) -> u64;
    /// To a signed integer, rounding as the x86 RC field `rc` says (or toward zero if
    /// `truncate`), with the integer indefinite (the most negative value) for NaN and
    /// out of range.
    fn to_i32(a: u64, rc: u8, truncate: bool) -> i32;
    fn to_i64(a: u64, rc: u8, truncate: bool) -> i64;
    /// IEEE less-than and equality on the host's floats (false for NaNs; denormals
    /// compare by value, DAZ is applied before).
    fn lt(a: u64, b: u64) -> bool;
    fn eq(a: u64, b: u64) -> bool;

    #[inline(always)]
    fn is_nan(a: u64) -> bool {
        a & Self::EXP == Self::EXP && a & Self::FRAC != 0
    }
    #[inline(always)]
    fn is_snan(a: u64) -> bool {
        Self::is_nan(a) && a & Self::QUIET == 0
    }
    #[inline(always)]
    fn is_denormal(a: u64) -> bool {
        a & Self::EXP == 0 && a & Self::FRAC != 0
    }
}

pub(crate) struct F32;
pub(crate) struct F64;

// The operations are the shared SoftFloat wrapper's (crate::softfloat).
impl Float for F32 {
    const BITS: u32 = 32;
    const FRAC_BITS: u32 = 23;
    fn add(a: u64, b: u64) -> u64 {
        softfloat::f32_add(a as u32, b as u32) as u64
    }
    fn sub(a: u64, b: u64) -> u64 {
        softfloat::f32_sub(a as u32, b as u32) as u64
    }
    fn mul(a: u64, b: u64) -> u64 {
        softfloat::f32_mul(a as u32, b as u32) as u64
    }
    fn div(a: u64, b: u64) -> u64 {
        softfloat::f32_div(a as u32, b as u32) as u64
    }
    fn sqrt(a: u64) -> u64 {
        softfloat::f32_sqrt(a as u32) as u64
    }
    fn convert(a: u64) -> u64 {
        softfloat::f32_to_f64(a as u32)
    }
    fn from_i64(v: i64) -> u64 {
        softfloat::i64_to_f32(v) as u64
    }
    fn to_i32(a: u64, rc: u8, truncate: bool) -> i32 {
        softfloat::f32_to_i32(a as u32, rc, truncate)
    }
    fn to_i64(a: u64, rc: u8, truncate: bool) -> i64 {
        softfloat::f32_to_i64(a as u32, rc, truncate)
    }
    fn lt(a: u64, b: u64) -> bool {
        f32::from_bits(a as u32) < f32::from_bits(b as u32)
    }
    fn eq(a: u64, b: u64) -> bool {
        f32::from_bits(a as u32) == f32::from_bits(b as u32)
    }
}

impl Float for F64 {
    const BITS: u32 = 64;
    const FRAC_BITS: u32 = 52;
    fn add(a: u64, b: u64) -> u64 {
        softfloat::f64_add(a, b)
    }
    fn sub(a: u64, b: u64) -> u64 {
        softfloat::f64_sub(a, b)
    }
    fn mul(a: u64, b: u64) -> u64 {
        softfloat::f64_mul(a, b)
    }
    fn div(a: u64, b: u64) -> u64 {
        softfloat::f64_div(a, b)
    }
    fn sqrt(a: u64) -> u64 {
        softfloat::f64_sqrt(a)
    }
    fn convert(a: u64) -> u64 {
        softfloat::f64_to_f32(a) as u64
    }
    fn from_i64(v: i64) -> u64 {
        softfloat::i64_to_f64(v)
    }
    fn to_i32(a: u64, rc: u8, truncate: bool) -> i32 {
        softfloat::f64_to_i32(a, rc, truncate)
    }
    fn to_i64(a: u64, rc: u8, truncate: bool) -> i64 {
        softfloat::f64_to_i64(a, rc, truncate)
    }
    fn lt(a: u64, b: u64) -> bool {
        f64::from_bits(a) < f64::from_bits(b)
    }
    fn eq(a: u64, b: u64) -> bool {
        f64::from_bits(a) == f64::from_bits(b)
    }
}

/// One SIMD floating-point instruction in progress: the MXCSR it runs under and the
/// exception flags its lanes raised so far.
pub(crate) struct Fp {
    pub mxcsr: u32,
    pub flags: u32,
}

impl Fp {
    pub fn new(mxcsr: u32) -> Fp {
        Fp { mxcsr, flags: 0 }
    }

    /// MXCSR.RC, in the x86 encoding the SoftFloat wrapper takes.
    pub fn rc(&self) -> u8 {
        (self.mxcsr >> bits::RC_SHIFT) as u8 & 3
    }

    /// A source operand as the computation sees it: a denormal is zero under DAZ and
    /// otherwise counts toward the denormal-operand exception.
    #[inline]
    pub fn operand<F: Float>(&self, a: u64, denormal: &mut bool) -> u64 {
        if F::is_denormal(a) {
            if self.mxcsr & bits::DAZ != 0 {
                return a & F::SIGN;
            }
            *denormal = true;
        }
        a
    }

    /// Run a SoftFloat computation under MXCSR.RC and collect its exception flags
    /// (the wrapper's flags have MXCSR's bit layout).
    #[inline]
    pub fn soft<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let (r, raised) = softfloat::run(self.rc(), Precision::Extended, f);
        self.flags |= raised as u32;
        r
    }

    /// A floating-point result: underflow is also a tiny exact result (SoftFloat only
    /// reports inexact ones), and FZ with underflow masked flushes it to zero with UE
    /// and PE (SDM Vol.1 10.2.3.3).
    #[inline]
    pub fn result<F: Float>(&mut self, r: u64, lane_flags: u32) -> u64 {
        let tiny = lane_flags & bits::UE != 0 || F::is_denormal(r);
        if !tiny {
            return r;
        }
        let um = self.mxcsr & (bits::UE << bits::MASK_SHIFT) != 0;
        if um && self.mxcsr & bits::FZ != 0 {
            self.flags |= bits::UE | bits::PE;
            return r & F::SIGN;
        }
        if !um {
            self.flags |= bits::UE;
        }
        r
    }

    /// An arithmetic operation on 1 or 2 operands (`b` ignored by unary ones): DAZ,
    /// the SoftFloat computation, DE (not for a NaN operand, an invalid operation such as
    /// the square root of a negative denormal, or a division by zero: those take
    /// priority, SDM Vol.1 4.9.2), then underflow and FZ.
    pub fn arith<F: Float>(&mut self, a: u64, b: u64, f: impl FnOnce(u64, u64) -> u64) -> u64 {
        self.arith_to::<F, F>(a, b, f)
    }

    /// [`Fp::arith`] with a result of format `G` (CVTSD2SS and friends).
    pub fn arith_to<F: Float, G: Float>(
        &mut self,
        a: u64,
        b: u64,
        f: impl FnOnce(u64, u64) -> u64,
    ) -> u64 {
        let mut denormal = false;
        let a = self.operand::<F>(a, &mut denormal);
        let b = self.operand::<F>(b, &mut denormal);
        let before = self.flags;
        self.flags = 0;
        let r = self.soft(|| f(a, b));
        let lane = self.flags;
        if denormal && lane & (bits::IE | bits::ZE) == 0 && !F::is_nan(a) && !F::is_nan(b) {
            self.flags |= bits::DE;
        }
        self.flags |= before;
        self.result::<G>(r, lane)
    }

    /// Which exception masks are clear.
    fn unmasked(&self) -> u32 {
        !(self.mxcsr >> bits::MASK_SHIFT) & 0x3F
    }
}

impl Cpu {
    /// Ends a SIMD floating-point instruction (SDM Vol.1 11.5.1): if a pre-computation
    /// exception (IE DE ZE) is unmasked, only those flags are set; otherwise all the
    /// raised flags are. Any unmasked exception then raises #XM (#UD when
    /// CR4.OSXMMEXCPT is clear, SDM Vol.3 6.15) and the caller writes no result.
    pub(crate) fn simd_fp_commit(&mut self, fp: &Fp) -> Result<(), Fault> {
        let unmasked = fp.unmasked() & fp.flags;
        if unmasked & bits::PRE != 0 {
            self.sse.mxcsr |= fp.flags & bits::PRE;
        } else {
            self.sse.mxcsr |= fp.flags;
        }
        if unmasked == 0 {
            return Ok(());
        }
        Err(if self.cr4 & cr4::OSXMMEXCPT != 0 {
            Fault::new(vector::XM)
        } else {
            Fault::ud()
        })
    }
}
