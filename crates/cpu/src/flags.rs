//! RFLAGS and the lazy arithmetic flags (DESIGN.md §2).
//!
//! The common ALU operations (ADD/ADC, SUB/SBB/CMP/NEG, logic, INC/DEC) record their
//! operands and result; CF PF AF ZF SF OF are computed only when something reads them.
//! Everything else (shifts, multiply, BCD...) computes its flags at once and stores them
//! in `rflags` with the lazy state set to `Op::None`.

/// RFLAGS bits (SDM Vol.1 3.4.3).
pub mod rf {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six status flags the lazy machinery owns.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// What the last flag-setting operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Flags are materialized in `rflags`.
    None,
    /// ADD and ADC: `res = a + b (+ CF)`.
    Add,
    /// SUB, SBB, CMP, NEG: `res = a - b (- CF)`.
    Sub,
    /// AND, OR, XOR, TEST: CF = OF = 0, AF = 0.
    Logic,
    /// INC: like ADD with b = 1, CF kept in `rflags`.
    Inc,
    /// DEC: like SUB with b = 1, CF kept in `rflags`.
    Dec,
}

#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    pub op: Op,
    /// Operand size in bits: 8, 16, 32 or 64.
    pub bits: u32,
    pub a: u64,
    pub b: u64,
    pub res: u64,
}

impl Default for Lazy {
    fn default() -> Self {
        Lazy {
            op: Op::None,
            bits: 8,
            a: 0,
            b: 0,
            res: 0,
        }
    }
}

#[inline(always)]
fn msb(v: u64, bits: u32) -> bool {
    (v >> (bits - 1)) & 1 != 0
}

#[inline(always)]
fn mask(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

/// PF: set when the low byte of the result has an even number of 1 bits.
#[inline(always)]
pub fn parity(v: u64) -> bool {
    (v as u8).count_ones().is_multiple_of(2)
}

impl Lazy {
    #[inline(always)]
    pub fn cf(&self, rflags: u64) -> bool {
        let (a, b, r) = (self.a, self.b, self.res);
        match self.op {
            Op::None | Op::Inc | Op::Dec => rflags & rf::CF != 0,
            // The carry out of the top bit, from the carry vector of a full adder.
            Op::Add => msb((a & b) | ((a | b) & !r), self.bits),
            Op::Sub => msb((!a & b) | ((!a | b) & r), self.bits),
            Op::Logic => false,
        }
    }

    #[inline(always)]
    pub fn zf(&self, rflags: u64) -> bool {
        match self.op {
            Op::None => rflags & rf::ZF != 0,
            _ => self.res & mask(self.bits) == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self, rflags: u64) -> bool {
        match self.op {
            Op::None => rflags & rf::SF != 0,
            _ => msb(self.res, self.bits),
        }
    }

    #[inline(always)]
    pub fn of(&self, rflags: u64) -> bool {
        let (a, b, r) = (self.a, self.b, self.res);
        match self.op {
            Op::None => rflags & rf::OF != 0,
            Op::Add | Op::Inc => msb((a ^ r) & (b ^ r), self.bits),
            Op::Sub | Op::Dec => msb((a ^ b) & (a ^ r), self.bits),
            Op::Logic => false,
        }
    }

    #[inline(always)]
    pub fn pf(&self, rflags: u64) -> bool {
        match self.op {
            Op::None => rflags & rf::PF != 0,
            _ => parity(self.res),
        }
    }

    #[inline(always)]
    pub fn af(&self, rflags: u64) -> bool {
        match self.op {
            Op::None => rflags & rf::AF != 0,
            Op::Logic => false,
            _ => (self.a ^ self.b ^ self.res) & 0x10 != 0,
        }
    }

    /// Evaluate condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes,
    /// SDM Vol.1 B.1). After CMP/SUB the answer comes straight from the operands.
    #[inline(always)]
    pub fn cond(&self, cc: u8, rflags: u64) -> bool {
        if self.op == Op::Sub {
            let m = mask(self.bits);
            let (a, b) = (self.a & m, self.b & m);
            let shift = 64 - self.bits;
            let (sa, sb) = (
                ((a << shift) as i64) >> shift,
                ((b << shift) as i64) >> shift,
            );
            // Only SBB/SUB results differ from a - b when a borrow came in; CMP, SUB,
            // NEG and CMPS/SCAS record res = a - b exactly.
            if self.res & m == a.wrapping_sub(b) & m {
                match cc {
                    0x2 => return a < b,
                    0x3 => return a >= b,
                    0x4 => return a == b,
                    0x5 => return a != b,
                    0x6 => return a <= b,
                    0x7 => return a > b,
                    0xC => return sa < sb,
                    0xD => return sa >= sb,
                    0xE => return sa <= sb,
                    0xF => return sa > sb,
                    _ => {}
                }
            }
        }
        let r = match cc >> 1 {
            0 => self.of(rflags),
            1 => self.cf(rflags),
            2 => self.zf(rflags),
            3 => self.cf(rflags) || self.zf(rflags),
            4 => self.sf(rflags),
            5 => self.pf(rflags),
            6 => self.sf(rflags) != self.of(rflags),
            _ => self.zf(rflags) || self.sf(rflags) != self.of(rflags),
        };
        r != (cc & 1 != 0)
    }

    /// The six status flags as RFLAGS bits.
    pub fn arith(&self, rflags: u64) -> u64 {
        if self.op == Op::None {
            return rflags & rf::ARITH;
        }
        let bit = |on: bool, f: u64| if on { f } else { 0 };
        bit(self.cf(rflags), rf::CF)
            | bit(self.pf(rflags), rf::PF)
            | bit(self.af(rflags), rf::AF)
            | bit(self.zf(rflags), rf::ZF)
            | bit(self.sf(rflags), rf::SF)
            | bit(self.of(rflags), rf::OF)
    }
}

/// ZF, SF and PF of a result, for the handlers that compute flags eagerly.
#[inline]
pub fn szp(res: u64, bits: u32) -> u64 {
    let mut f = 0;
    if res & mask(bits) == 0 {
        f |= rf::ZF;
    }
    if msb(res, bits) {
        f |= rf::SF;
    }
    if parity(res) {
        f |= rf::PF;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy(op: Op, bits: u32, a: u64, b: u64, res: u64) -> Lazy {
        Lazy {
            op,
            bits,
            a,
            b,
            res,
        }
    }

    // Cases from the SDM's definitions of ADD and SUB (Vol.2A/2B), computed by hand.
    #[test]
    fn add_flags() {
        let l = lazy(Op::Add, 8, 0xFF, 0x01, 0x00);
        assert_eq!(l.arith(0), rf::CF | rf::PF | rf::AF | rf::ZF);
        let l = lazy(Op::Add, 8, 0x7F, 0x01, 0x80);
        assert_eq!(l.arith(0), rf::AF | rf::SF | rf::OF);
        let l = lazy(Op::Add, 32, 0x8000_0000, 0x8000_0000, 0);
        assert_eq!(l.arith(0), rf::CF | rf::PF | rf::ZF | rf::OF);
    }

    #[test]
    fn sub_flags() {
        // 0 - 1 = 0xFFFF: borrow, sign, AF (borrow from bit 4), parity of 0xFF even.
        let l = lazy(Op::Sub, 16, 0, 1, 0xFFFF);
        assert_eq!(l.arith(0), rf::CF | rf::PF | rf::AF | rf::SF);
        // 0x80 - 1 = 0x7F: signed overflow.
        let l = lazy(Op::Sub, 8, 0x80, 1, 0x7F);
        assert_eq!(l.arith(0), rf::AF | rf::OF);
    }

    #[test]
    fn conditions_after_cmp_agree_with_the_flags() {
        // Every cc, for a spread of operand pairs: the operand shortcut must give what
        // the flag formulas of SDM Vol.1 B.1 give.
        let vals = [
            0u64,
            1,
            0x7F,
            0x80,
            0xFF,
            0x7FFF,
            0x8000,
            0xFFFF_FFFF,
            u64::MAX,
        ];
        for bits in [8, 16, 32, 64] {
            for &a in &vals {
                for &b in &vals {
                    let l = lazy(Op::Sub, bits, a, b, a.wrapping_sub(b));
                    let f = l.arith(0);
                    let (cf, zf, sf, of, pf) = (
                        f & rf::CF != 0,
                        f & rf::ZF != 0,
                        f & rf::SF != 0,
                        f & rf::OF != 0,
                        f & rf::PF != 0,
                    );
                    let want = [
                        of,
                        !of,
                        cf,
                        !cf,
                        zf,
                        !zf,
                        cf || zf,
                        !(cf || zf),
                        sf,
                        !sf,
                        pf,
                        !pf,
                        sf != of,
                        sf == of,
                        zf || sf != of,
                        !(zf || sf != of),
                    ];
                    for (cc, w) in want.iter().enumerate() {
                        assert_eq!(
                            l.cond(cc as u8, 0),
                            *w,
                            "cc {cc:x} a {a:x} b {b:x} bits {bits}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn inc_dec_keep_cf() {
        let l = lazy(Op::Inc, 8, 0xFF, 1, 0);
        assert!(l.cf(rf::CF));
        assert!(!l.cf(0));
        assert!(l.zf(0));
    }
}
