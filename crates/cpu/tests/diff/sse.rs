//! MMX/SSE/SSE2 groups of the differential tests: each form of a family is encoded from a
//! table row (mandatory prefix, opcode after 0Fh, ModRM.reg and ModRM.r/m operand kinds,
//! memory operand size, imm8) with random registers, memory operands (16-byte aligned
//! but for 8% of them), XMM and MMX values biased toward the special floating-point values
//! and integer edges, and a random MXCSR (rounding mode, DAZ, FZ, sticky flags, and in a
//! quarter of the cases some exceptions unmasked). Host and emulator must agree on XMM,
//! MMX/x87 state, MXCSR, GPRs, flags, memory and faults (#UD, #GP, #XM, #MF).

use crate::check::{run_group, DEFAULT_CASES};
use crate::gen::{put, Builder, Case, Gen, Loc, Opnd};
use crate::native::{fx, set_fx_mxcsr, set_fx_xmm, State};

/// An operand kind in the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    /// XMM register.
    X,
    /// MMX register.
    M,
    /// 32-bit GPR.
    G4,
    /// 32- or 64-bit GPR (REX.W chosen at random).
    G,
    /// `/digit` in ModRM.reg.
    D(u8),
    /// No ModRM byte.
    None,
}

/// One instruction form: `pre 0F op /r [ib]`. `mem`: bytes of the r/m memory form (0:
/// register only); `mem_only`: r/m must be memory.
#[derive(Clone, Copy)]
struct Form {
    pre: u8,
    op: u8,
    reg: K,
    rm: K,
    mem: usize,
    mem_only: bool,
    imm: Imm,
}

/// What an imm8 looks like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Imm {
    No,
    /// Any byte.
    Any,
    /// A shift count: mostly 0..=70.
    Count,
    /// A CMPPS predicate: mostly 0..=7.
    Pred,
}

const fn f(pre: u8, op: u8, reg: K, rm: K, mem: usize) -> Form {
    Form {
        pre,
        op,
        reg,
        rm,
        mem,
        mem_only: false,
        imm: Imm::No,
    }
}

impl Form {
    const fn imm(mut self, i: Imm) -> Form {
        self.imm = i;
        self
    }
    const fn mem_only(mut self) -> Form {
        self.mem_only = true;
        self
    }
}

use K::*;

/// The MMX form (no prefix, mm, mm/m64) and the SSE2 form (66h, xmm, xmm/m128) of a
/// packed integer opcode.
const fn mmx_sse2(op: u8) -> [Form; 2] {
    [f(0, op, M, M, 8), f(0x66, op, X, X, 16)]
}

/// Packed integer arithmetic, comparison, logic and shifts.
const INT_OPS: &[u8] = &[
    0x64, 0x65, 0x66, 0x74, 0x75, 0x76, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC,
    0xDD, 0xDE, 0xDF, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE,
    0xEF, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE,
];

/// PACK*/PUNPCK* with MMX and SSE2 forms.
const SHUFFLE_OPS: &[u8] = &[0x60, 0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B];

fn int_forms() -> Vec<Form> {
    let mut v: Vec<Form> = INT_OPS.iter().flat_map(|&op| mmx_sse2(op)).collect();
    for (op, digits) in [(0x71, [2, 4, 6]), (0x72, [2, 4, 6]), (0x73, [2, 6, 6])] {
        for d in digits {
            v.push(f(0, op, D(d), M, 0).imm(Imm::Count));
            v.push(f(0x66, op, D(d), X, 0).imm(Imm::Count));
        }
    }
    // ANDPS ANDNPS ORPS XORPS and the PD forms.
    for op in 0x54..=0x57 {
        v.push(f(0, op, X, X, 16));
        v.push(f(0x66, op, X, X, 16));
    }
    v
}

fn shuffle_forms() -> Vec<Form> {
    let mut v: Vec<Form> = SHUFFLE_OPS.iter().flat_map(|&op| mmx_sse2(op)).collect();
    v.extend([
        f(0x66, 0x6C, X, X, 16),
        f(0x66, 0x6D, X, X, 16),
        f(0, 0x14, X, X, 16),
        f(0, 0x15, X, X, 16),
        f(0x66, 0x14, X, X, 16),
        f(0x66, 0x15, X, X, 16),
        f(0, 0x70, M, M, 8).imm(Imm::Any),
        f(0x66, 0x70, X, X, 16).imm(Imm::Any),
        f(0xF3, 0x70, X, X, 16).imm(Imm::Any),
        f(0xF2, 0x70, X, X, 16).imm(Imm::Any),
        f(0, 0xC6, X, X, 16).imm(Imm::Any),
        f(0x66, 0xC6, X, X, 16).imm(Imm::Any),
        f(0x66, 0x73, D(3), X, 0).imm(Imm::Count),
        f(0x66, 0x73, D(7), X, 0).imm(Imm::Count),
        f(0, 0xC4, M, G4, 2).imm(Imm::Any),
        f(0x66, 0xC4, X, G4, 2).imm(Imm::Any),
        f(0, 0xC5, G, M, 0).imm(Imm::Any),
        f(0x66, 0xC5, G, X, 0).imm(Imm::Any),
        f(0, 0xD7, G, M, 0),
        f(0x66, 0xD7, G, X, 0),
        f(0, 0x50, G, X, 0),
        f(0x66, 0x50, G, X, 0),
    ]);
    v
}

fn move_forms() -> Vec<Form> {
    let mut v = vec![
        // MOVD/MOVQ between MMX/XMM and GPRs or memory.
        f(0, 0x6E, M, G, 4),
        f(0x66, 0x6E, X, G, 4),
        f(0, 0x7E, M, G, 4),
        f(0x66, 0x7E, X, G, 4),
        f(0xF3, 0x7E, X, X, 8),
        f(0, 0x6F, M, M, 8),
        f(0, 0x7F, M, M, 8),
        f(0x66, 0xD6, X, X, 8),
        f(0xF3, 0xD6, X, M, 0),
        f(0xF2, 0xD6, M, X, 0),
        // MOVDQA/MOVDQU, MOVAPS/MOVAPD, MOVUPS/MOVUPD, MOVSS/MOVSD.
        f(0x66, 0x6F, X, X, 16),
        f(0x66, 0x7F, X, X, 16),
        f(0xF3, 0x6F, X, X, 16),
        f(0xF3, 0x7F, X, X, 16),
        f(0, 0x28, X, X, 16),
        f(0, 0x29, X, X, 16),
        f(0x66, 0x28, X, X, 16),
        f(0x66, 0x29, X, X, 16),
        f(0, 0x10, X, X, 16),
        f(0, 0x11, X, X, 16),
        f(0x66, 0x10, X, X, 16),
        f(0x66, 0x11, X, X, 16),
        f(0xF3, 0x10, X, X, 4),
        f(0xF3, 0x11, X, X, 4),
        f(0xF2, 0x10, X, X, 8),
        f(0xF2, 0x11, X, X, 8),
        // MOVLPS/MOVHLPS, MOVHPS/MOVLHPS, MOVLPD, MOVHPD.
        f(0, 0x12, X, X, 8),
        f(0, 0x13, X, X, 8).mem_only(),
        f(0, 0x16, X, X, 8),
        f(0, 0x17, X, X, 8).mem_only(),
        f(0x66, 0x12, X, X, 8).mem_only(),
        f(0x66, 0x13, X, X, 8).mem_only(),
        f(0x66, 0x16, X, X, 8).mem_only(),
        f(0x66, 0x17, X, X, 8).mem_only(),
        // Non-temporal stores.
        f(0, 0x2B, X, X, 16).mem_only(),
        f(0x66, 0x2B, X, X, 16).mem_only(),
        f(0x66, 0xE7, X, X, 16).mem_only(),
        f(0, 0xE7, M, M, 8).mem_only(),
        f(0, 0xC3, G, G, 4).mem_only(),
        // MASKMOVQ/MASKMOVDQU (to [rdi]), LDMXCSR/STMXCSR, EMMS.
        f(0, 0xF7, M, M, 0),
        f(0x66, 0xF7, X, X, 0),
        f(0, 0xAE, D(3), X, 4).mem_only(),
        f(0, 0xAE, D(2), X, 4).mem_only(),
    ];
    v.push(f(0, 0x77, D(0), None, 0));
    // PREFETCHh, CLFLUSH, and LFENCE/MFENCE/SFENCE (0F AE E8/F0/F8).
    v.extend((0..4).map(|d| f(0, 0x18, D(d), X, 1).mem_only()));
    v.push(f(0, 0xAE, D(7), X, 1).mem_only());
    v.extend([5, 6, 7].map(|d| f(0, 0xAE, D(d), M, 0)));
    v
}

fn arith_forms() -> Vec<Form> {
    // SQRT ADD MUL SUB MIN DIV MAX in PS PD SS SD forms.
    [0x51, 0x58, 0x59, 0x5C, 0x5D, 0x5E, 0x5F]
        .iter()
        .flat_map(|&op| {
            [
                f(0, op, X, X, 16),
                f(0x66, op, X, X, 16),
                f(0xF3, op, X, X, 4),
                f(0xF2, op, X, X, 8),
            ]
        })
        .collect()
}

fn compare_forms() -> Vec<Form> {
    vec![
        f(0, 0xC2, X, X, 16).imm(Imm::Pred),
        f(0x66, 0xC2, X, X, 16).imm(Imm::Pred),
        f(0xF3, 0xC2, X, X, 4).imm(Imm::Pred),
        f(0xF2, 0xC2, X, X, 8).imm(Imm::Pred),
        f(0, 0x2E, X, X, 4),
        f(0, 0x2F, X, X, 4),
        f(0x66, 0x2E, X, X, 8),
        f(0x66, 0x2F, X, X, 8),
    ]
}

fn convert_forms() -> Vec<Form> {
    vec![
        f(0, 0x2A, X, M, 8),
        f(0x66, 0x2A, X, M, 8),
        f(0xF3, 0x2A, X, G, 4),
        f(0xF2, 0x2A, X, G, 4),
        f(0, 0x2C, M, X, 8),
        f(0, 0x2D, M, X, 8),
        f(0x66, 0x2C, M, X, 16),
        f(0x66, 0x2D, M, X, 16),
        f(0xF3, 0x2C, G, X, 4),
        f(0xF3, 0x2D, G, X, 4),
        f(0xF2, 0x2C, G, X, 8),
        f(0xF2, 0x2D, G, X, 8),
        f(0, 0x5A, X, X, 8),
        f(0x66, 0x5A, X, X, 16),
        f(0xF3, 0x5A, X, X, 4),
        f(0xF2, 0x5A, X, X, 8),
        f(0, 0x5B, X, X, 16),
        f(0x66, 0x5B, X, X, 16),
        f(0xF3, 0x5B, X, X, 16),
        f(0x66, 0xE6, X, X, 16),
        f(0xF3, 0xE6, X, X, 8),
        f(0xF2, 0xE6, X, X, 16),
    ]
}

/// What the lanes of the vector registers and memory operands hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Values {
    Int,
    Float,
    /// Floats near the integer conversion limits, and small integers.
    Convert,
}

/// A single-precision value: the specials of SDM Vol.1 4.8 and ordinary numbers.
fn f32_value(g: &mut Gen, v: Values) -> u32 {
    let sign = (g.below(2) as u32) << 31;
    let frac = g.u64() as u32 & 0x7F_FFFF;
    if v == Values::Convert && g.pct(60) {
        let x: f64 = match g.below(6) {
            0 => 2f64.powi(31) - g.below(3) as f64 * 64.0,
            1 => -(2f64.powi(31)) - g.below(3) as f64 * 128.0,
            2 => 2f64.powi(63) - g.below(2) as f64 * 2f64.powi(40),
            3 => g.below(8) as f64 * 0.25 - 1.0,
            4 => (g.u64() as i32) as f64,
            _ => (g.u64() as i64) as f64,
        };
        return (x as f32).to_bits();
    }
    match g.below(16) {
        0 => sign,
        1 => sign | 0x3F80_0000,
        2 => sign | 0x7F80_0000,
        3 => sign | 0x7FC0_0000 | frac,
        4 => sign | 0x7F80_0000 | (frac >> 1).max(1),
        5 | 6 => sign | frac.max(1),
        7 => sign | 0x0080_0000 | (frac & 0xF),
        8 => sign | (0x7F7F_FFFF - (frac & 0xF)),
        9 => sign | (g.range(0x0080_0000 >> 23, 0x0C) as u32) << 23 | frac,
        10 => sign | (g.range(0xF0, 0xFE) as u32) << 23 | frac,
        11 => (g.below(64) as f32 * 0.5 - 16.0).to_bits(),
        _ => sign | (g.range(0x60, 0x9F) as u32) << 23 | frac,
    }
}

fn f64_value(g: &mut Gen, v: Values) -> u64 {
    let sign = g.below(2) << 63;
    let frac = g.u64() & 0xF_FFFF_FFFF_FFFF;
    if v == Values::Convert && g.pct(60) {
        let x: f64 = match g.below(6) {
            0 => 2f64.powi(31) - g.below(3) as f64 * 0.5,
            1 => -(2f64.powi(31)) - g.below(3) as f64 * 0.5,
            2 => 2f64.powi(63) - g.below(2) as f64 * 1024.0,
            3 => g.below(8) as f64 * 0.25 - 1.0,
            4 => (g.u64() as i32) as f64 + 0.5,
            _ => -(2f64.powi(63)) - g.below(2) as f64 * 2048.0,
        };
        return x.to_bits();
    }
    match g.below(16) {
        0 => sign,
        1 => sign | 0x3FF0_0000_0000_0000,
        2 => sign | 0x7FF0_0000_0000_0000,
        3 => sign | 0x7FF8_0000_0000_0000 | frac,
        4 => sign | 0x7FF0_0000_0000_0000 | (frac >> 1).max(1),
        5 | 6 => sign | frac.max(1),
        7 => sign | 0x0010_0000_0000_0000 | (frac & 0xF),
        8 => sign | (0x7FEF_FFFF_FFFF_FFFF - (frac & 0xF)),
        // Near the single-precision limits too (CVTPD2PS overflow and underflow).
        9 => sign | g.range(0x360, 0x381) << 52 | frac,
        10 => sign | g.range(0x47C, 0x480) << 52 | frac,
        11 => (g.below(64) as f64 * 0.5 - 16.0).to_bits(),
        12 => sign | g.range(0x001, 0x00C) << 52 | frac,
        13 => sign | g.range(0x7F0, 0x7FE) << 52 | frac,
        _ => sign | g.range(0x3C0, 0x43F) << 52 | frac,
    }
}

/// A 128-bit value: integer edge lanes, or single/double floats.
fn vector(g: &mut Gen, v: Values) -> u128 {
    match (v, g.below(2)) {
        (Values::Int, _) => {
            let lane = g.pick(&[1, 2, 4, 8]);
            (0..16 / lane).fold(0u128, |r, i| {
                r | ((g.value(lane) & crate::gen::mask(lane)) as u128) << (i * lane * 8)
            })
        }
        (_, 0) => (0..4).fold(0, |r, i| r | (f32_value(g, v) as u128) << (32 * i)),
        _ => (0..2).fold(0, |r, i| r | (f64_value(g, v) as u128) << (64 * i)),
    }
}

/// A random MXCSR: any rounding mode, DAZ and FZ a quarter of the time each, some
/// sticky flags, and all exceptions masked but in a quarter of the cases.
fn mxcsr(g: &mut Gen) -> u32 {
    let flags = if g.pct(30) { g.below(64) as u32 } else { 0 };
    let masks = if g.pct(75) { 0x3F } else { g.below(64) as u32 };
    (g.below(4) as u32) << 13
        | (g.pct(25) as u32) << 15
        | (g.pct(25) as u32) << 6
        | masks << 7
        | flags
}

/// Random XMM, MMX (as x87 registers, with a random TOP and tags) and MXCSR state; 2% of
/// the cases have an unmasked x87 exception pending (FSW.ES), which MMX instructions
/// raise as #MF.
fn vector_state(g: &mut Gen, st: &mut State, v: Values) {
    for i in 0..16 {
        let x = vector(g, v);
        set_fx_xmm(&mut st.fx, i, x);
    }
    for i in 0..8 {
        let o = fx::ST0 + 16 * i;
        let x = vector(g, v) as u64;
        st.fx[o..o + 8].copy_from_slice(&x.to_le_bytes());
        let e = if g.pct(50) { 0xFFFF } else { g.u64() as u16 };
        st.fx[o + 8..o + 10].copy_from_slice(&e.to_le_bytes());
    }
    let top = g.below(8) as u16;
    let pending = g.pct(2);
    // A pending exception: IE flagged and unmasked in FCW.
    let (es, fcw) = if pending {
        (0x81u16, 0x037Eu16)
    } else {
        (0, 0x037F)
    };
    st.fx[fx::FSW..fx::FSW + 2].copy_from_slice(&(top << 11 | es).to_le_bytes());
    st.fx[fx::FCW..fx::FCW + 2].copy_from_slice(&fcw.to_le_bytes());
    st.fx[fx::FTW] = g.u64() as u8;
    set_fx_mxcsr(&mut st.fx, mxcsr(g));
}

/// Fill `bytes` of memory at `o` with a vector value.
fn fill(b: &mut Builder, o: Opnd, bytes: usize, v: Values) {
    let x = vector(b.g, v);
    for k in (0..bytes).step_by(8) {
        let Loc::Mem(a) = o.loc else { return };
        let n = (bytes - k).min(8);
        put(
            &mut b.st,
            Opnd {
                loc: Loc::Mem(a + k as u64),
                bytes: n,
            },
            (x >> (8 * k)) as u64,
        );
    }
}

/// A register number of a kind: XMM0..15, MM0..7.
fn vec_reg(g: &mut Gen, k: K) -> u8 {
    if k == M {
        g.below(8) as u8
    } else {
        g.below(16) as u8
    }
}

fn encode(g: &mut Gen, forms: &[Form], v: Values) -> Case {
    let form = forms[g.below(forms.len() as u64) as usize];
    let mut b = Builder::new(g);
    vector_state(b.g, &mut b.st, v);
    if form.pre != 0 {
        b.prefix(form.pre);
    }
    // 64-bit integer forms (MOVQ r64, CVTSI2SS r/m64...) by REX.W.
    let wide = [form.reg, form.rm].contains(&G) && b.g.pct(50);
    let gpr = if wide { 8 } else { 4 };
    if wide {
        b.rex_w();
    }
    b.op(&[0x0F, form.op]);
    match form.reg {
        D(d) => {
            b.ext(d);
        }
        G | G4 => {
            b.reg(if form.reg == G { gpr } else { 4 });
        }
        k => {
            let n = vec_reg(b.g, k);
            b.ext(n);
        }
    }
    let use_mem = form.mem > 0 && (form.mem_only || b.g.pct(35));
    if use_mem {
        let bytes = if form.rm == G { gpr } else { form.mem };
        let o = b.mem_aligned(bytes, 16, 8);
        fill(&mut b, o, bytes, v);
    } else if form.rm == None {
    } else if matches!(form.rm, G | G4) {
        b.rm_reg(if form.rm == G { gpr } else { 4 });
    } else {
        let n = vec_reg(b.g, form.rm);
        b.rm_vec(n);
    }
    match form.imm {
        Imm::No => {}
        Imm::Any => {
            let i = b.g.u64() & 0xFF;
            b.imm(1, i);
        }
        Imm::Count => {
            let i = if b.g.pct(90) {
                b.g.below(71)
            } else {
                b.g.u64() & 0xFF
            };
            b.imm(1, i);
        }
        Imm::Pred => {
            let i = if b.g.pct(90) {
                b.g.below(8)
            } else {
                b.g.u64() & 0xFF
            };
            b.imm(1, i);
        }
    }
    // MASKMOVQ/MASKMOVDQU store to [rdi]: point it into the pages.
    if form.op == 0xF7 {
        let t = b.target(16, 1);
        b.st.gpr[crate::gen::RDI] = t;
    }
    b.finish()
}

/// Shift counts in XMM/MMX sources are 64-bit values: make small ones common.
fn small_counts(case: &mut Case, g: &mut Gen) {
    if g.pct(50) {
        for i in 0..16 {
            let o = fx::XMM0 + 16 * i;
            if g.pct(50) {
                let c = g.below(70);
                case.1.fx[o..o + 8].copy_from_slice(&c.to_le_bytes());
            }
        }
        for i in 0..8 {
            let o = fx::ST0 + 16 * i;
            if g.pct(50) {
                let c = g.below(70);
                case.1.fx[o..o + 8].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
}

fn gen_int(g: &mut Gen) -> Case {
    let mut c = encode(g, &int_forms(), Values::Int);
    small_counts(&mut c, g);
    c
}

fn gen_shuffle(g: &mut Gen) -> Case {
    encode(g, &shuffle_forms(), Values::Int)
}

fn gen_move(g: &mut Gen) -> Case {
    let v = if g.pct(50) {
        Values::Int
    } else {
        Values::Float
    };
    encode(g, &move_forms(), v)
}

fn gen_arith(g: &mut Gen) -> Case {
    encode(g, &arith_forms(), Values::Float)
}

fn gen_compare(g: &mut Gen) -> Case {
    encode(g, &compare_forms(), Values::Float)
}

fn gen_convert(g: &mut Gen) -> Case {
    encode(g, &convert_forms(), Values::Convert)
}

#[test]
fn simd_moves() {
    run_group("simd_moves", DEFAULT_CASES, gen_move);
}

#[test]
fn simd_packed_integer() {
    run_group("simd_packed_integer", DEFAULT_CASES, gen_int);
}

#[test]
fn simd_shuffle_pack_unpack() {
    run_group("simd_shuffle_pack_unpack", DEFAULT_CASES, gen_shuffle);
}

#[test]
fn simd_fp_arithmetic() {
    run_group("simd_fp_arithmetic", DEFAULT_CASES, gen_arith);
}

#[test]
fn simd_fp_compare() {
    run_group("simd_fp_compare", DEFAULT_CASES, gen_compare);
}

#[test]
fn simd_conversions() {
    run_group("simd_conversions", DEFAULT_CASES, gen_convert);
}

/// RCPPS/RCPSS/RSQRTPS/RSQRTSS return implementation-specific approximations (SDM Vol.2
/// RCPPS: relative error at most 1.5 * 2^-12), so they are not compared bit for bit: a
/// lane the host returns as zero, infinity or NaN must come back identical, any other
/// lane within the architectural bound of the exact value; everything else (other lanes,
/// other registers, MXCSR, faults) must match exactly. Register sources only: the memory
/// forms share their operand access with every other SSE instruction.
#[test]
fn simd_rcp_rsqrt_within_bound() {
    use crate::emu::{Emu, EmuResult};
    use crate::native::{fx_xmm, run_native, set_fx_xmm, Outcome};
    let forms = [
        f(0, 0x53, X, X, 0),
        f(0xF3, 0x53, X, X, 0),
        f(0, 0x52, X, X, 0),
        f(0xF3, 0x52, X, X, 0),
    ];
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::XorShift,
    );
    let mut g = Gen::new(&mut rng);
    let cases: Vec<Case> = (0..DEFAULT_CASES)
        .map(|_| encode(&mut g, &forms, Values::Float))
        .collect();
    let host = run_native(&cases);
    let mut emu = Emu::new();
    let mut approximated = 0;
    for ((code, st), h) in cases.iter().zip(&host) {
        let insn = crate::check::decode(code)[0];
        let mut e = emu.run(code, st);
        if let (Outcome::Completed(hs), EmuResult::Done(Outcome::Completed(es))) = (h, &mut e) {
            let d = insn.op0_register().number();
            let src = fx_xmm(&st.fx, insn.op1_register().number());
            use iced_x86::Mnemonic::*;
            let lanes = if matches!(insn.mnemonic(), Rcpss | Rsqrtss) {
                1
            } else {
                4
            };
            let rsqrt = matches!(insn.mnemonic(), Rsqrtps | Rsqrtss);
            let (hv, mut ev) = (fx_xmm(&hs.fx, d), fx_xmm(&es.fx, d));
            for i in 0..lanes {
                let sh = 32 * i;
                let (hl, el) = ((hv >> sh) as u32, (ev >> sh) as u32);
                let hf = f32::from_bits(hl);
                if hf == 0.0 || !hf.is_finite() {
                    assert_eq!(hl, el, "{insn}: lane {i}: special result");
                    continue;
                }
                let x = f32::from_bits((src >> sh) as u32) as f64;
                let exact = if rsqrt { 1.0 / x.sqrt() } else { 1.0 / x };
                let err = ((f32::from_bits(el) as f64 - exact) / exact).abs();
                assert!(
                    err <= 1.5 * 2f64.powi(-12),
                    "{insn}: lane {i} of {x}: {} is off by {err}",
                    f32::from_bits(el)
                );
                ev = ev & !((u32::MAX as u128) << sh) | (hl as u128) << sh;
                approximated += 1;
            }
            set_fx_xmm(&mut es.fx, d, ev);
        }
        let d = crate::check::differences(h, &e);
        assert!(d.is_empty(), "{insn}: {d:?}");
    }
    assert!(
        approximated > DEFAULT_CASES,
        "too few ordinary lanes: {approximated}"
    );
}
