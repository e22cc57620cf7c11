//! Packed integer arithmetic, comparison, logic and shifts on MMX and XMM registers
//! (SDM Vol.1 9.4, 10.4.7, 11.4.3), and the bitwise logic of SSE/SSE2 (ANDPS...).

use super::{lanes, map2, Lane};
use crate::exec::Table;

/// Saturate to a narrower lane.
pub(crate) fn sat_i8(x: i16) -> i8 {
    x.clamp(i8::MIN as i16, i8::MAX as i16) as i8
}
pub(crate) fn sat_u8(x: i16) -> u8 {
    x.clamp(0, u8::MAX as i16) as u8
}
pub(crate) fn sat_i16(x: i32) -> i16 {
    x.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// All ones for true (PCMPEQ/PCMPGT).
fn mask<T: Lane + From<bool> + std::ops::Neg<Output = T>>(c: bool) -> T {
    -T::from(c)
}

/// Logical shift of every `T` lane by the count in the low 64 bits of the source (or an
/// imm8); counts past the lane width give 0 (SDM Vol.2 PSLLW).
fn shift_left<T: Lane>(a: u128, count: u128, bits: u32) -> u128 {
    let c = count as u64;
    let m = super::low_mask(bits);
    (0..lanes::<T>()).fold(0, |r, i| {
        let x = (T::get(a, i).bits() & m) as u64;
        let y = if c >= bits as u64 { 0 } else { x << c };
        T::get(y as u128, 0).put(r, i)
    })
}

fn shift_right<T: Lane>(a: u128, count: u128, bits: u32, arithmetic: bool) -> u128 {
    let c = count as u64;
    let m = super::low_mask(bits);
    (0..lanes::<T>()).fold(0, |r, i| {
        let x = (T::get(a, i).bits() & m) as u64;
        let y = if arithmetic {
            // Sign-extend, then shift by at most width - 1 (fills with the sign).
            let s = 64 - bits;
            (((x << s) as i64) >> (s as u64 + c.min(bits as u64 - 1))) as u64
        } else if c >= bits as u64 {
            0
        } else {
            x >> c
        };
        T::get(y as u128, 0).put(r, i)
    })
}

/// PSADBW: per 64-bit group, the sum of absolute byte differences in the low word.
fn sad(a: u128, b: u128) -> u128 {
    (0..2).fold(0, |r, q| {
        let s: u16 = (0..8)
            .map(|i| u8::get(a, q * 8 + i).abs_diff(u8::get(b, q * 8 + i)) as u16)
            .sum();
        (s as u64).put(r, q)
    })
}

/// PMADDWD: per dword, a0*b0 + a1*b1 of signed words (wrapping: only 8000h*8000h*2
/// overflows, giving 8000_0000h).
fn madd(a: u128, b: u128) -> u128 {
    (0..4).fold(0, |r, d| {
        let p = |i| i16::get(a, i) as i32 * i16::get(b, i) as i32;
        p(2 * d).wrapping_add(p(2 * d + 1)).put(r, d)
    })
}

/// PMULUDQ: unsigned low dword of each qword, full 64-bit product.
fn mul_udq(a: u128, b: u128) -> u128 {
    (0..2).fold(0, |r, q| {
        (u32::get(a, 2 * q) as u64 * u32::get(b, 2 * q) as u64).put(r, q)
    })
}

pub(crate) fn register(t: &mut Table) {
    ops!(t;
        Paddb => |a, b, n, imm| map2::<u8>(a, b, u8::wrapping_add);
        Paddw => |a, b, n, imm| map2::<u16>(a, b, u16::wrapping_add);
        Paddd => |a, b, n, imm| map2::<u32>(a, b, u32::wrapping_add);
        Paddq => |a, b, n, imm| map2::<u64>(a, b, u64::wrapping_add);
        Paddsb => |a, b, n, imm| map2::<i8>(a, b, i8::saturating_add);
        Paddsw => |a, b, n, imm| map2::<i16>(a, b, i16::saturating_add);
        Paddusb => |a, b, n, imm| map2::<u8>(a, b, u8::saturating_add);
        Paddusw => |a, b, n, imm| map2::<u16>(a, b, u16::saturating_add);
        Psubb => |a, b, n, imm| map2::<u8>(a, b, u8::wrapping_sub);
        Psubw => |a, b, n, imm| map2::<u16>(a, b, u16::wrapping_sub);
        Psubd => |a, b, n, imm| map2::<u32>(a, b, u32::wrapping_sub);
        Psubq => |a, b, n, imm| map2::<u64>(a, b, u64::wrapping_sub);
        Psubsb => |a, b, n, imm| map2::<i8>(a, b, i8::saturating_sub);
        Psubsw => |a, b, n, imm| map2::<i16>(a, b, i16::saturating_sub);
        Psubusb => |a, b, n, imm| map2::<u8>(a, b, u8::saturating_sub);
        Psubusw => |a, b, n, imm| map2::<u16>(a, b, u16::saturating_sub);
        Pmullw => |a, b, n, imm| map2::<u16>(a, b, u16::wrapping_mul);
        Pmulhw => |a, b, n, imm| map2::<i16>(a, b, |x, y| ((x as i32 * y as i32) >> 16) as i16);
        Pmulhuw => |a, b, n, imm| map2::<u16>(a, b, |x, y| ((x as u32 * y as u32) >> 16) as u16);
        Pmuludq => |a, b, n, imm| mul_udq(a, b);
        Pmaddwd => |a, b, n, imm| madd(a, b);
        Psadbw => |a, b, n, imm| sad(a, b);
        Pavgb => |a, b, n, imm| map2::<u8>(a, b, |x, y| ((x as u16 + y as u16 + 1) >> 1) as u8);
        Pavgw => |a, b, n, imm| map2::<u16>(a, b, |x, y| ((x as u32 + y as u32 + 1) >> 1) as u16);
        Pminub => |a, b, n, imm| map2::<u8>(a, b, u8::min);
        Pmaxub => |a, b, n, imm| map2::<u8>(a, b, u8::max);
        Pminsw => |a, b, n, imm| map2::<i16>(a, b, i16::min);
        Pmaxsw => |a, b, n, imm| map2::<i16>(a, b, i16::max);
        Pcmpeqb => |a, b, n, imm| map2::<i8>(a, b, |x, y| mask(x == y));
        Pcmpeqw => |a, b, n, imm| map2::<i16>(a, b, |x, y| mask(x == y));
        Pcmpeqd => |a, b, n, imm| map2::<i32>(a, b, |x, y| mask(x == y));
        Pcmpgtb => |a, b, n, imm| map2::<i8>(a, b, |x, y| mask(x > y));
        Pcmpgtw => |a, b, n, imm| map2::<i16>(a, b, |x, y| mask(x > y));
        Pcmpgtd => |a, b, n, imm| map2::<i32>(a, b, |x, y| mask(x > y));
        Pand => |a, b, n, imm| a & b;
        Pandn => |a, b, n, imm| !a & b;
        Por => |a, b, n, imm| a | b;
        Pxor => |a, b, n, imm| a ^ b;
        Andps => |a, b, n, imm| a & b;
        Andnps => |a, b, n, imm| !a & b;
        Orps => |a, b, n, imm| a | b;
        Xorps => |a, b, n, imm| a ^ b;
        Andpd => |a, b, n, imm| a & b;
        Andnpd => |a, b, n, imm| !a & b;
        Orpd => |a, b, n, imm| a | b;
        Xorpd => |a, b, n, imm| a ^ b;
        Psllw => |a, b, n, imm| shift_left::<u16>(a, b, 16);
        Pslld => |a, b, n, imm| shift_left::<u32>(a, b, 32);
        Psllq => |a, b, n, imm| shift_left::<u64>(a, b, 64);
        Psrlw => |a, b, n, imm| shift_right::<u16>(a, b, 16, false);
        Psrld => |a, b, n, imm| shift_right::<u32>(a, b, 32, false);
        Psrlq => |a, b, n, imm| shift_right::<u64>(a, b, 64, false);
        Psraw => |a, b, n, imm| shift_right::<u16>(a, b, 16, true);
        Psrad => |a, b, n, imm| shift_right::<u32>(a, b, 32, true);
    );
}
