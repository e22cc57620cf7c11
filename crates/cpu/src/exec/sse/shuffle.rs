//! Data rearrangement (SDM Vol.1 9.4.6-9.4.7, 10.4.4, 11.4.4): PACK*, PUNPCK*,
//! UNPCK*PS/PD, PSHUF*, SHUFPS/PD, PSLLDQ/PSRLDQ, PEXTRW/PINSRW, PMOVMSKB and
//! MOVMSKPS/PD.

use super::int::{sat_i16, sat_i8, sat_u8};
use super::Lane;
use crate::exec::Table;

/// PUNPCKL*/PUNPCKH*: interleave the low (or high) halves of `a` and `b` in `T` lanes,
/// over an operand of `n` bytes.
fn unpack<T: Lane>(a: u128, b: u128, n: usize, high: bool) -> u128 {
    let half = n * 8 / T::BITS as usize / 2;
    let base = if high { half } else { 0 };
    (0..half).fold(0, |r, i| {
        let r = T::get(a, base + i).put(r, 2 * i);
        T::get(b, base + i).put(r, 2 * i + 1)
    })
}

/// PACK*: the lanes of `a`, then those of `b`, each narrowed by `f`.
fn pack<S: Lane, D: Lane>(a: u128, b: u128, n: usize, f: impl Fn(S) -> D) -> u128 {
    let k = n * 8 / S::BITS as usize;
    (0..k).fold(0, |r, i| {
        let r = f(S::get(a, i)).put(r, i);
        f(S::get(b, i)).put(r, k + i)
    })
}

/// Four `T` lanes from `src` starting at lane `base`, chosen by the 2-bit fields of `imm`.
fn shuffle4<T: Lane>(r: u128, src: u128, base: usize, imm: u8) -> u128 {
    (0..4).fold(r, |r, i| {
        T::get(src, base + (imm >> (2 * i) & 3) as usize).put(r, base + i)
    })
}

/// Bit i = the sign bit of `T` lane i, for the lanes of an `n`-byte operand.
pub(crate) fn sign_mask<T: Lane>(v: u128, n: usize) -> u128 {
    (0..n * 8 / T::BITS as usize).fold(0, |m, i| {
        m | ((T::get(v, i).bits() >> (T::BITS - 1)) & 1) << i
    })
}

/// PSLLDQ/PSRLDQ: byte shifts of the whole register (counts over 15 clear it).
fn byte_shift(a: u128, count: u8, left: bool) -> u128 {
    match (count, left) {
        (16.., _) => 0,
        (c, true) => a << (c as u32 * 8),
        (c, false) => a >> (c as u32 * 8),
    }
}

pub(crate) fn register(t: &mut Table) {
    ops!(t;
        Punpcklbw => |a, b, n, imm| unpack::<u8>(a, b, n, false);
        Punpcklwd => |a, b, n, imm| unpack::<u16>(a, b, n, false);
        Punpckldq => |a, b, n, imm| unpack::<u32>(a, b, n, false);
        Punpcklqdq => |a, b, n, imm| unpack::<u64>(a, b, n, false);
        Punpckhbw => |a, b, n, imm| unpack::<u8>(a, b, n, true);
        Punpckhwd => |a, b, n, imm| unpack::<u16>(a, b, n, true);
        Punpckhdq => |a, b, n, imm| unpack::<u32>(a, b, n, true);
        Punpckhqdq => |a, b, n, imm| unpack::<u64>(a, b, n, true);
        Unpcklps => |a, b, n, imm| unpack::<u32>(a, b, n, false);
        Unpckhps => |a, b, n, imm| unpack::<u32>(a, b, n, true);
        Unpcklpd => |a, b, n, imm| unpack::<u64>(a, b, n, false);
        Unpckhpd => |a, b, n, imm| unpack::<u64>(a, b, n, true);
        Packsswb => |a, b, n, imm| pack::<i16, i8>(a, b, n, sat_i8);
        Packuswb => |a, b, n, imm| pack::<i16, u8>(a, b, n, sat_u8);
        Packssdw => |a, b, n, imm| pack::<i32, i16>(a, b, n, sat_i16);
        Pshufw => |a, b, n, imm| shuffle4::<u16>(0, b, 0, imm);
        Pshufd => |a, b, n, imm| shuffle4::<u32>(0, b, 0, imm);
        Pshuflw => |a, b, n, imm| shuffle4::<u16>(b, b, 0, imm);
        Pshufhw => |a, b, n, imm| shuffle4::<u16>(b, b, 4, imm);
        Shufps => |a, b, n, imm| {
            let lo = shuffle4::<u32>(0, a, 0, imm) as u64 as u128;
            lo | (shuffle4::<u32>(0, b, 0, imm >> 4) as u64 as u128) << 64
        };
        Shufpd => |a, b, n, imm| {
            u64::get(b, (imm >> 1 & 1) as usize).put(a >> (64 * (imm & 1) as u32) & u64::MAX as u128, 1)
        };
        Pslldq => |a, b, n, imm| byte_shift(a, imm, true);
        Psrldq => |a, b, n, imm| byte_shift(a, imm, false);
        Pextrw => |a, b, n, imm| u16::get(b, imm as usize % (n / 2)) as u128;
        Pinsrw => |a, b, n, imm| (b as u16).put(a, imm as usize % (n / 2));
        Pmovmskb => |a, b, n, imm| sign_mask::<u8>(b, n);
        Movmskps => |a, b, n, imm| sign_mask::<u32>(b, 16);
        Movmskpd => |a, b, n, imm| sign_mask::<u64>(b, 16);
    );
}
