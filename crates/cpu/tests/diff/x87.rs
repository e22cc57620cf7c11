//! The x87 groups: a random x87 state (control word with random masks, rounding and
//! precision; TOP, condition codes, tags; register values biased toward the special
//! encodings: zeros, denormals, pseudo-denormals, infinities, QNaNs, SNaNs, the
//! indefinite, unnormals, pseudo-NaNs, integers near the FIST limits) and one x87
//! instruction in any of its forms: every D8-DF register form and memory form with
//! operands of the same bias, FLDENV/FNSTENV/FRSTOR/FNSAVE in both operand sizes, and
//! FXSAVE/FXRSTOR(64).

use crate::gen::{put, Builder, Case, Gen, Loc, Opnd};
use crate::native::fx;

/// An F80 (significand, sign/exponent) biased toward the special encodings.
pub fn f80(g: &mut Gen) -> (u64, u16) {
    let sign = (g.pct(50) as u16) << 15;
    let j = 1u64 << 63;
    let frac = g.u64() >> g.below(64) as u32;
    let near_one = 0x3FFF + g.range(0, 140) as u16 - 70;
    let (signif, exp) = match g.below(16) {
        0 => (0, 0),
        1 => (frac & !j, 0),
        2 => (frac | j, 0),
        3 => (j, 0x7FFF),
        4 => (j | 1 << 62 | (frac & ((1 << 62) - 1)), 0x7FFF),
        5 => (j | ((frac >> 2).max(1)), 0x7FFF),
        6 => (j | 1 << 62, 0x7FFF),
        7 => (frac & !j, near_one),
        8 => (g.u64() & !j, 0x7FFF),
        // Small integers and values near the 16/32/64-bit integer limits.
        9 => {
            let bits = g.pick(&[0u16, 3, 15, 31, 63]);
            let v = g.u64() >> (63 - bits as u32);
            let lz = v.leading_zeros().min(63);
            ((v | 1) << lz, 0x3FFF + 63 - lz as u16)
        }
        10 => (j | frac, g.range(1, 0x7FFE) as u16),
        11 => (j | (g.u64() & 0xFFFF_FF00_0000_0000), near_one),
        _ => (j | frac, near_one),
    };
    (signif, sign | exp)
}

/// An f32 or f64 (`bits` 32 or 64) biased the same way.
fn float(g: &mut Gen, bits: u32) -> u64 {
    let (ebits, fbits) = if bits == 32 { (8, 23) } else { (11, 52) };
    let sign = (g.pct(50) as u64) << (bits - 1);
    let emax = (1u64 << ebits) - 1;
    let frac = (g.u64() >> (64 - fbits)) >> g.below(fbits) as u32;
    let qbit = 1u64 << (fbits - 1);
    let (e, f) = match g.below(10) {
        0 => (0, 0),
        1 => (0, frac.max(1)),
        2 => (emax, 0),
        3 => (emax, qbit | frac),
        4 => (emax, (frac & !qbit).max(1)),
        5 => (g.range(1, emax - 1), frac),
        _ => (g.range((emax >> 1) - 40, (emax >> 1) + 40), frac),
    };
    sign | e << fbits | f
}

/// Memory operand kinds by (opcode - D8, ModRM.reg); None: no memory form here (FISTTP
/// is SSE3, the rest are invalid encodings).
#[derive(Clone, Copy, PartialEq, Eq)]
enum M {
    F32,
    F64,
    F80,
    I16,
    I32,
    I64,
    Bcd,
    Word,
    Env,
    Save,
}

const MEM_FORMS: [[Option<M>; 8]; 8] = {
    use M::*;
    [
        [Some(F32); 8],
        [
            Some(F32),
            None,
            Some(F32),
            Some(F32),
            Some(Env),
            Some(Word),
            Some(Env),
            Some(Word),
        ],
        [Some(I32); 8],
        [
            Some(I32),
            None,
            Some(I32),
            Some(I32),
            None,
            Some(F80),
            None,
            Some(F80),
        ],
        [Some(F64); 8],
        [
            Some(F64),
            None,
            Some(F64),
            Some(F64),
            Some(Save),
            None,
            Some(Save),
            Some(Word),
        ],
        [Some(I16); 8],
        [
            Some(I16),
            None,
            Some(I16),
            Some(I16),
            Some(Bcd),
            Some(I64),
            Some(Bcd),
            Some(I64),
        ],
    ]
};

/// Register forms whose results the x87 computes to 64 bits and trapeze through
/// binary64 (F2XM1 FYL2X FPTAN FPATAN FYL2XP1 FSINCOS FSIN FCOS): the `x87_trans` group
/// compares them with a tolerance instead.
pub fn transcendental(op: u8, modrm: u8) -> bool {
    op == 0xD9 && matches!(modrm, 0xF0..=0xF3 | 0xF9 | 0xFB | 0xFE | 0xFF)
}

/// A random x87 state in the case's FXSAVE image.
fn x87_state(b: &mut Builder) {
    let g = &mut *b.g;
    // OM and UM stay set: trapeze stores the masked response where the x87 stores a
    // bias-adjusted result for an unmasked overflow or underflow (README, x87 FPU).
    let masks = if g.pct(80) {
        0x3F
    } else {
        g.u64() as u16 & 0x3F | 0x18
    };
    let pc = g.pick(&[0u16, 2, 3, 3]);
    let rc = g.below(4) as u16;
    let cw = 0x40 | masks | pc << 8 | rc << 10;
    let top = g.below(8) as u16;
    let cc = g.u64() as u16 & 0x4700;
    let flags = if g.pct(80) { 0 } else { g.u64() as u16 & 0x7F };
    let es = if flags & !masks & 0x3F != 0 {
        0x8080
    } else {
        0
    };
    let sw = cc | top << 11 | flags | es;
    let ftw = match g.below(4) {
        0 | 1 => 0xFF,
        2 => g.u64() as u8,
        _ => !(1u8 << g.below(8)) & !(1u8 << g.below(8)),
    };
    let img = &mut b.st.fx;
    img[fx::FCW..fx::FCW + 2].copy_from_slice(&cw.to_le_bytes());
    img[fx::FSW..fx::FSW + 2].copy_from_slice(&sw.to_le_bytes());
    img[fx::FTW] = ftw;
    for i in 0..8 {
        let (s, e) = f80(b.g);
        let o = fx::ST0 + 16 * i;
        b.st.fx[o..o + 8].copy_from_slice(&s.to_le_bytes());
        b.st.fx[o + 8..o + 10].copy_from_slice(&e.to_le_bytes());
    }
}

/// Give a memory operand a value of its kind.
fn fill(b: &mut Builder, o: Opnd, m: M) {
    let Loc::Mem(a) = o.loc else { return };
    let at = |k: u64, bytes| Opnd {
        loc: Loc::Mem(a + k),
        bytes,
    };
    match m {
        M::F32 => {
            let v = float(b.g, 32);
            put(&mut b.st, at(0, 4), v);
        }
        M::F64 => {
            let v = float(b.g, 64);
            put(&mut b.st, at(0, 8), v);
        }
        M::F80 => {
            let (s, e) = f80(b.g);
            put(&mut b.st, at(0, 8), s);
            put(&mut b.st, at(8, 2), e as u64);
        }
        M::Bcd => {
            let digits = b.g.range(0, 18) as u32;
            let mut v = 0u64;
            for _ in 0..digits {
                let radix = if b.g.pct(97) { 10 } else { 16 };
                v = v << 4 | b.g.below(radix);
            }
            put(&mut b.st, at(0, 8), v);
            let top = if b.g.pct(97) { 100 } else { 256 };
            let hi = b.g.below(top) | (b.g.pct(50) as u64) << 15;
            put(&mut b.st, at(8, 2), hi);
        }
        _ => {}
    }
}

/// One x87 instruction (D8-DF) over a random x87 state; `trans` picks the
/// transcendental register forms only, otherwise they are left out.
pub fn gen_x87_insn(g: &mut Gen, trans: bool) -> Case {
    let mut b = Builder::new(g);
    x87_state(&mut b);
    if trans {
        let modrm =
            b.g.pick(&[0xF0u8, 0xF1, 0xF2, 0xF3, 0xF9, 0xFB, 0xFE, 0xFF]);
        b.op(&[0xD9, modrm]);
        return b.finish();
    }
    loop {
        let op = 0xD8 + b.g.below(8) as u8;
        let digit = b.g.below(8) as u8;
        if b.g.pct(55) {
            let modrm = 0xC0 | digit << 3 | b.g.below(8) as u8;
            if transcendental(op, modrm) {
                continue;
            }
            if op == 0xD9 && modrm & 0xF8 == 0xD8 {
                // FSTPNCE of an empty ST(0) copies what the host keeps in an empty
                // register, which is not architectural: give it a value.
                let top = (b.st.fx[fx::FSW + 1] >> 3) & 7;
                b.st.fx[fx::FTW] |= 1 << top;
            }
            b.op(&[op, modrm]);
            return b.finish();
        }
        let Some(m) = MEM_FORMS[(op - 0xD8) as usize][digit as usize] else {
            continue;
        };
        let size = match m {
            M::F32 | M::I32 => 4,
            M::F64 | M::I64 => 8,
            M::F80 | M::Bcd => 10,
            M::I16 | M::Word => 2,
            M::Env | M::Save => {
                let small = b.g.pct(30);
                if small {
                    b.prefix(0x66);
                }
                (if m == M::Env { 14 } else { 94 }) + if small { 0 } else { 14 }
            }
        };
        b.op(&[op]).ext(digit);
        let o = b.mem(size);
        fill(&mut b, o, m);
        return b.finish();
    }
}

/// FXSAVE/FXRSTOR (and REX.W forms) on a random state: often aligned, sometimes not
/// (#GP), an image with a valid MXCSR most of the time.
pub fn gen_fxsave(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    x87_state(&mut b);
    let restore = b.g.pct(50);
    if b.g.pct(50) {
        b.rex_w();
    }
    b.op(&[0x0F, 0xAE]).ext(restore as u8);
    let t = b.target(512, 16) + if b.g.pct(10) { b.g.range(1, 15) } else { 0 };
    let o = b.mem_at(t, 512);
    if restore {
        let mxcsr = if b.g.pct(90) {
            b.g.u64() & 0xFFFF
        } else {
            b.g.u64() & 0xFFFF_FFFF
        };
        let at = |k: u64, bytes| Opnd {
            loc: match o.loc {
                Loc::Mem(a) => Loc::Mem(a + k),
                l => l,
            },
            bytes,
        };
        put(&mut b.st, at(24, 4), mxcsr);
        for i in 0..8 {
            let (s, e) = f80(b.g);
            put(&mut b.st, at(32 + 16 * i, 8), s);
            put(&mut b.st, at(40 + 16 * i, 2), e as u64);
        }
    }
    b.finish()
}
