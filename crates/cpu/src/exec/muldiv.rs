//! Multiply and divide: MUL, IMUL (one, two and three operands), DIV, IDIV (SDM Vol.2A
//! "MUL", "IMUL", "DIV", "IDIV").
//!
//! The one-operand forms work on the accumulator pair: AH:AL for bytes, else rDX:rAX.
//! Flags the SDM leaves undefined are what an Intel host produces (probed on a Xeon,
//! family 6 model 207, all sizes, random operands and input flags):
//! - MUL/IMUL: SF = top bit of the low half of the product, PF = its parity, ZF = 0,
//!   AF = 0 (CF = OF = "the high half is significant", as defined).
//! - DIV/IDIV: all six status flags keep their values.

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::{parity, rf};
use crate::state::{gpr, Word};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Mul, by_size!(mul, Unsigned));
    t.on(Mnemonic::Imul, |i| match i.op_count() {
        1 => by_size!(mul, Signed)(i),
        _ => by_size!(imul_explicit)(i),
    });
    t.on(Mnemonic::Div, by_size!(div, Unsigned));
    t.on(Mnemonic::Idiv, by_size!(div, Signed));
}

/// Unsigned (MUL, DIV) or signed (IMUL, IDIV) arithmetic on T-sized operands; `hi`,
/// `lo` and `d` are T-sized values in the low bits of a u64.
pub(crate) trait Sign {
    /// The double-width product as (high half, low half) and whether it fits in T.
    fn mul<T: Word>(a: u64, b: u64) -> (u64, u64, bool);
    /// (quotient, remainder) of hi:lo by d; None for a zero divisor or a quotient
    /// that does not fit in T.
    fn div<T: Word>(hi: u64, lo: u64, d: u64) -> Option<(u64, u64)>;
}

pub(crate) struct Unsigned;
pub(crate) struct Signed;

impl Sign for Unsigned {
    fn mul<T: Word>(a: u64, b: u64) -> (u64, u64, bool) {
        let p = a as u128 * b as u128;
        let hi = (p >> T::BITS) as u64;
        (hi, p as u64 & T::MASK, hi == 0)
    }
    fn div<T: Word>(hi: u64, lo: u64, d: u64) -> Option<(u64, u64)> {
        let n = ((hi as u128) << T::BITS) | lo as u128;
        let d = d as u128;
        let q = n.checked_div(d)?;
        (q <= T::MASK as u128).then(|| (q as u64, (n % d) as u64))
    }
}

/// T-sized `v` sign-extended to i128.
#[inline(always)]
fn sext<T: Word>(v: u64) -> i128 {
    T::from_u64(v).sext() as i64 as i128
}

impl Sign for Signed {
    fn mul<T: Word>(a: u64, b: u64) -> (u64, u64, bool) {
        let p = sext::<T>(a) * sext::<T>(b);
        let lo = p as u64 & T::MASK;
        ((p >> T::BITS) as u64 & T::MASK, lo, p == sext::<T>(lo))
    }
    fn div<T: Word>(hi: u64, lo: u64, d: u64) -> Option<(u64, u64)> {
        // hi:lo sign-extended from 2 * BITS bits.
        let shift = 128 - 2 * T::BITS;
        let n = ((((hi as u128) << T::BITS) | lo as u128) << shift) as i128 >> shift;
        let d = sext::<T>(d);
        // checked_div fails for a zero divisor and for i128::MIN / -1.
        let q = n.checked_div(d)?;
        let half = 1i128 << (T::BITS - 1);
        (-half..half)
            .contains(&q)
            .then(|| (q as u64 & T::MASK, (n % d) as u64 & T::MASK))
    }
}

/// A product as (high half, low half, flags). CF = OF = the high half is significant;
/// SF and PF from the low half, ZF = AF = 0 (Intel host, see the module comment).
pub(crate) fn product<T: Word, S: Sign>(a: u64, b: u64) -> (u64, u64, u64) {
    let (hi, lo, fits) = S::mul::<T>(a, b);
    let mut flags = if fits { 0 } else { rf::CF | rf::OF };
    if lo >> (T::BITS - 1) != 0 {
        flags |= rf::SF;
    }
    if parity(lo) {
        flags |= rf::PF;
    }
    (hi, lo, flags)
}

/// The accumulator pair as (high, low): AH:AL for bytes, else rDX:rAX.
#[inline(always)]
fn acc<T: Word>(cpu: &Cpu) -> (u64, u64) {
    let a = cpu.gpr[gpr::RAX];
    if T::BITS == 8 {
        ((a >> 8) & 0xFF, a & 0xFF)
    } else {
        (cpu.gpr[gpr::RDX] & T::MASK, a & T::MASK)
    }
}

#[inline(always)]
fn set_acc<T: Word>(cpu: &mut Cpu, hi: u64, lo: u64) {
    if T::BITS == 8 {
        cpu.set_gpr::<u16>(gpr::RAX, ((hi << 8) | (lo & 0xFF)) as u16);
    } else {
        cpu.set_gpr::<T>(gpr::RAX, T::from_u64(lo));
        cpu.set_gpr::<T>(gpr::RDX, T::from_u64(hi));
    }
}

/// MUL r/m and IMUL r/m: the double-width product of the accumulator and the operand.
fn mul<T: Word, S: Sign>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let b = cpu.read_op::<T>(bus, e, 0)?.to_u64();
    let (hi, lo, flags) = product::<T, S>(acc::<T>(cpu).1, b);
    set_acc::<T>(cpu, hi, lo);
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

/// IMUL r, r/m and IMUL r, r/m, imm: the product truncated to the destination.
fn imul_explicit<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (x, y) = if e.insn.op_count() == 3 {
        (1, 2)
    } else {
        (0, 1)
    };
    let a = cpu.read_op::<T>(bus, e, x)?.to_u64();
    let b = cpu.read_op::<T>(bus, e, y)?.to_u64();
    let (_, lo, flags) = product::<T, Signed>(a, b);
    cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(lo));
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

/// DIV and IDIV r/m: quotient to AL/rAX, remainder to AH/rDX; #DE for a zero divisor
/// or a quotient that does not fit (IDIV of the most negative value by -1 included).
/// Flags are unchanged.
fn div<T: Word, S: Sign>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let d = cpu.read_op::<T>(bus, e, 0)?.to_u64();
    let (hi, lo) = acc::<T>(cpu);
    let (q, r) = S::div::<T>(hi, lo, d).ok_or(Fault::de())?;
    set_acc::<T>(cpu, r, q);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::vector;
    use crate::testutil::{long_mode, real_mode};
    use crate::NullBus;

    const CF: u64 = rf::CF;
    const OF: u64 = rf::OF;
    const SF: u64 = rf::SF;
    const PF: u64 = rf::PF;

    // SDM Vol.2A MUL: CF = OF = 0 when the upper half of the product is 0.
    #[test]
    fn mul_flags_say_whether_the_high_half_is_used() {
        // 0x10 * 0x10 = 0x100: AH = 1 → CF OF; low byte 0 → PF (even).
        assert_eq!(product::<u8, Unsigned>(0x10, 0x10), (1, 0, CF | OF | PF));
        // 0x7F * 1 = 0x7F: fits; SF clear; 7 bits → PF clear.
        assert_eq!(product::<u8, Unsigned>(0x7F, 1), (0, 0x7F, 0));
        assert_eq!(
            product::<u64, Unsigned>(u64::MAX, u64::MAX),
            (u64::MAX - 1, 1, CF | OF)
        );
    }

    // SDM Vol.2A IMUL: CF = OF = 0 when the product sign-extended from the low half
    // equals the full product.
    #[test]
    fn imul_flags_say_whether_the_product_fits_signed() {
        // -1 * -1 = 1 fits.
        assert_eq!(product::<u16, Signed>(0xFFFF, 0xFFFF), (0, 1, 0));
        // -128 * 1 = -128 fits: high byte all ones; SF; 0x80 one bit → PF clear.
        assert_eq!(product::<u8, Signed>(0x80, 1), (0xFF, 0x80, SF));
        // -128 * -1 = 128 does not fit in i8: low byte 0x80.
        assert_eq!(product::<u8, Signed>(0x80, 0xFF), (0, 0x80, CF | OF | SF));
        assert_eq!(
            product::<u64, Signed>(1 << 62, 2),
            (0, 1 << 63, CF | OF | SF | PF)
        );
        // 2^30 * -2 = -2^31 fits in i32.
        assert_eq!(
            product::<u32, Signed>(0x4000_0000, 0xFFFF_FFFE),
            (0xFFFF_FFFF, 0x8000_0000, SF | PF)
        );
    }

    #[test]
    fn divide_by_zero_and_quotient_overflow_fail() {
        assert_eq!(Unsigned::div::<u8>(0, 100, 0), None);
        // 0x100 / 1 = 0x100 does not fit in a byte.
        assert_eq!(Unsigned::div::<u8>(1, 0, 1), None);
        // Most negative / -1.
        assert_eq!(Signed::div::<u16>(0x8000, 0, 0xFFFF), None);
        assert_eq!(Signed::div::<u64>(1 << 63, 0, u64::MAX), None);
        assert_eq!(Unsigned::div::<u64>(u64::MAX, 0, u64::MAX), None);
        assert_eq!(Signed::div::<u64>(0, 0, 0), None);
    }

    // SDM Vol.2A DIV/IDIV: truncation toward zero; the remainder has the dividend's sign.
    #[test]
    fn divide_truncates_toward_zero() {
        assert_eq!(Unsigned::div::<u8>(0, 100, 7), Some((14, 2)));
        // -7 / 2 = -3 rem -1.
        assert_eq!(
            Signed::div::<u16>(0xFFFF, 0xFFF9, 2),
            Some((0xFFFD, 0xFFFF))
        );
        // 7 / -2 = -3 rem 1.
        assert_eq!(
            Signed::div::<u32>(0, 7, 0xFFFF_FFFE),
            Some((0xFFFF_FFFD, 1))
        );
        // -128 / 1 fits (286 and later).
        assert_eq!(Signed::div::<u8>(0xFF, 0x80, 1), Some((0x80, 0)));
        assert_eq!(Unsigned::div::<u64>(1, 0, 2), Some((1 << 63, 0)));
        // 2^127 / (2^64 - 1) = 2^63 rem 2^63 (the dividend's top bit is set).
        assert_eq!(
            Unsigned::div::<u64>(1 << 63, 0, u64::MAX),
            Some((1 << 63, 1 << 63))
        );
        // -2^63 / 2 = -2^62.
        assert_eq!(
            Signed::div::<u64>(u64::MAX, 1 << 63, 2),
            Some((0xC000_0000_0000_0000, 0))
        );
    }

    #[test]
    fn byte_forms_use_ah_al() {
        // mul bl ; div bl ; hlt
        let mut cpu = real_mode(&[0xF6, 0xE3, 0xF6, 0xF3, 0xF4]);
        cpu.gpr[gpr::RAX] = 0xAB_FF;
        cpu.gpr[gpr::RBX] = 0x03;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x02FD); // 255 * 3 = 765
        assert!(cpu.cf() && cpu.of());
        cpu.gpr[gpr::RAX] = 0x0101; // 257 / 3 = 85 rem 2
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x0255);
    }

    #[test]
    fn word_forms_use_dx_ax_and_keep_the_upper_bits() {
        // imul cx (16-bit, real mode): 0x4000 * 4 = 0x1_0000.
        let mut cpu = real_mode(&[0xF7, 0xE9]);
        cpu.gpr[gpr::RAX] = 0xDEAD_4000;
        cpu.gpr[gpr::RDX] = 0xBEEF_1234;
        cpu.gpr[gpr::RCX] = 4;
        cpu.run(&mut NullBus, 1);
        assert_eq!(
            (cpu.gpr[gpr::RDX], cpu.gpr[gpr::RAX]),
            (0xBEEF_0001, 0xDEAD_0000)
        );
        assert!(cpu.cf());
    }

    #[test]
    fn imul_two_and_three_operand_forms() {
        // imul eax,ecx,-3 (6B /r ib) in 64-bit mode; then imul rax,rcx (REX.W 0F AF).
        let mut cpu = long_mode(&[0x6B, 0xC1, 0xFD, 0x48, 0x0F, 0xAF, 0xC1]);
        cpu.gpr[gpr::RAX] = u64::MAX;
        cpu.gpr[gpr::RCX] = 5;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0xFFFF_FFF1); // -15, zero-extended
        assert!(!cpu.cf());
        cpu.gpr[gpr::RCX] = 1 << 32;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0xFFFF_FFF1 << 32);
        assert!(cpu.cf() && cpu.of());
    }

    #[test]
    fn div_by_zero_faults_without_touching_the_registers() {
        // div ecx with ecx = 0 in 64-bit mode.
        let mut cpu = long_mode(&[0xF7, 0xF1]);
        cpu.gpr[gpr::RAX] = 0x1234;
        cpu.gpr[gpr::RDX] = 0x5678;
        cpu.set_rflags(CF);
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.stats.exceptions[vector::DE as usize], 1);
        assert_eq!((cpu.gpr[gpr::RAX], cpu.gpr[gpr::RDX]), (0x1234, 0x5678));
    }
}
