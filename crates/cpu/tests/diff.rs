//! Differential tests: the emulator's 64-bit user-mode integer and MMX/SSE/SSE2 instructions
//! against the host CPU (an Intel Xeon), through the oracle in `tests/native`.
//!
//! Run: `cargo test --release -p trapeze-cpu --test diff` (use your own `CARGO_TARGET_DIR`).
//! About 25 s on two cores. The SIMD groups are in `diff/sse.rs`.
//!
//! Each `#[test]` is one instruction group: ALU, INC/DEC/NEG/NOT, shifts and rotates,
//! MUL/IMUL/DIV/IDIV, bit instructions, data movement, string instructions, stack instructions,
//! and flag chains (a flag-setting instruction followed by a flag reader: SETcc, CMOVcc,
//! ADC/SBB, RCL/RCR, INC/DEC, CMC, LAHF; single instructions always start from materialized
//! flags, chains exercise the emulator's lazy flags), and the x87 (`diff/x87.rs`: a random
//! x87 state and every D8-DF form but the transcendentals; FXSAVE/FXRSTOR), which also
//! compare FCW, FSW, the tags and ST0-7 of the FXSAVE image. The cases come from a proptest
//! `TestRunner`'s random stream: [`gen::Builder`] encodes a random form with random operands
//! (every operand size via 66h/REX.W, register and memory forms, AH..BH in byte forms, LOCK on
//! read-modify-write memory forms; memory operands by base+disp, base+index*scale+disp,
//! index*scale+disp32, disp32, RIP-relative and 32-bit addressing, inside the data/stack pages
//! and sometimes across the page boundary between them, 1% non-canonical) with register values
//! and input flags biased toward edge values. A group runs its cases on the host in batches (one
//! forked child per batch) and on one emulator CPU, and compares all 16 GPRs, RFLAGS (every
//! defined bit: the flags the SDM calls undefined must match the host too; none needed masking),
//! both memory pages, and for faults the kind of fault (#DE, #UD, and #GP/#SS/#PF alike).
//!
//! Environment:
//! * `TRAPEZE_DIFF_CASES=N`: cases per group (default 10,000, more for the big groups; raise it
//!   for soak runs).
//! * `TRAPEZE_DIFF_SEED=S`: the base seed, a number or `random` (default 0). A failure report
//!   names the seed to reproduce it; the first N cases of a seed do not depend on N.
//!
//! A failure lists, per mnemonic, what differed and how often, then the first mismatches in
//! full: disassembly, bytes, input registers/flags/memory operands, and each differing
//! register, flag and memory range (expected = host, actual = emulator).
//!
//! Not tested here: control transfers (Jcc, LOOP, JRCXZ, CALL, RET...: the oracle runs the
//! given bytes and then jumps back to the harness), and accesses to canonical addresses outside
//! the pages (a #PF on the host, but the emulator has no page tables here: memory outside its
//! RAM is MMIO). Locked operands never cross a cache line: the host kernel throttles split
//! locks, which can stall the oracle.

mod native;

#[path = "diff/check.rs"]
mod check;
#[path = "diff/emu.rs"]
mod emu;
#[path = "diff/gen.rs"]
mod gen;
#[path = "diff/sse.rs"]
mod sse;
#[path = "diff/x87.rs"]
mod x87;

use check::{run_group, DEFAULT_CASES};
use gen::{
    get, Builder, Case, Gen, Loc, Opnd, MEM_HI, MEM_LO, RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP,
};
use native::State;

type Generator = fn(&mut Gen) -> Case;

/// Any operand size.
fn any_size(g: &mut Gen) -> usize {
    g.pick(&[1, 2, 4, 8])
}

/// Sizes of instructions without a byte form.
fn wide_size(g: &mut Gen) -> usize {
    g.pick(&[2, 4, 8])
}

/// The `w` bit of the classic opcodes: 0 for byte forms.
fn w(bytes: usize) -> u8 {
    (bytes != 1) as u8
}

/// The size of an `iz` immediate: 16 bits for 16-bit operands, else 32 (sign-extended to 64).
fn iz(bytes: usize) -> usize {
    bytes.min(4)
}

// ---- (1) ADD ADC SUB SBB CMP AND OR XOR TEST -----------------------------------------------

fn gen_alu(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    let bytes = any_size(b.g);
    if bytes == 1 {
        b.legacy_bytes();
    }
    b.opsize(bytes);
    let wb = w(bytes);
    // 0..7: ADD OR ADC SBB AND SUB XOR CMP (the /digit and opcode row); 8: TEST.
    let op = b.g.below(9) as u8;
    // Everything but CMP and TEST may be locked.
    let lock = op < 7 && b.want_lock();
    if op < 8 {
        match b.g.below(5) {
            0 => {
                b.op(&[op * 8 + wb]);
                let dst = b.rm(bytes, 50);
                b.reg(bytes);
                b.lock(lock, dst);
            }
            1 => {
                b.op(&[op * 8 + 2 + wb]);
                b.reg(bytes);
                b.rm(bytes, 50);
            }
            2 => {
                b.op(&[op * 8 + 4 + wb]);
                let v = b.g.value(iz(bytes));
                b.imm(iz(bytes), v);
            }
            3 => {
                b.op(&[0x80 + wb]).ext(op);
                let dst = b.rm(bytes, 50);
                let v = b.g.value(iz(bytes));
                b.imm(iz(bytes), v);
                b.lock(lock, dst);
            }
            _ => {
                // 83 /digit ib: imm8 sign-extended (byte operands use 80 instead).
                b.op(&[if bytes == 1 { 0x80 } else { 0x83 }]).ext(op);
                let dst = b.rm(bytes, 50);
                let v = b.g.value(1);
                b.imm(1, v);
                b.lock(lock, dst);
            }
        }
    } else {
        match b.g.below(4) {
            0 => {
                b.op(&[0x84 + wb]);
                b.rm(bytes, 50);
                b.reg(bytes);
            }
            1 => {
                b.op(&[0xA8 + wb]);
                let v = b.g.value(iz(bytes));
                b.imm(iz(bytes), v);
            }
            k => {
                // F6/F7 /0, and its alias /1 (which Intel also decodes as TEST).
                let digit = if k == 2 || b.g.pct(70) { 0 } else { 1 };
                b.op(&[0xF6 + wb]).ext(digit);
                b.rm(bytes, 50);
                let v = b.g.value(iz(bytes));
                b.imm(iz(bytes), v);
            }
        }
    }
    b.finish()
}

#[test]
fn alu() {
    run_group("alu", 3 * DEFAULT_CASES, gen_alu);
}

// ---- (2) INC DEC NEG NOT ------------------------------------------------------------------

fn gen_unary(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    let bytes = any_size(b.g);
    if bytes == 1 {
        b.legacy_bytes();
    }
    b.opsize(bytes);
    let wb = w(bytes);
    match b.g.below(4) {
        0 => b.op(&[0xFE + wb]).ext(0), // INC
        1 => b.op(&[0xFE + wb]).ext(1), // DEC
        2 => b.op(&[0xF6 + wb]).ext(2), // NOT
        _ => b.op(&[0xF6 + wb]).ext(3), // NEG
    };
    let lock = b.want_lock();
    let dst = b.rm(bytes, 40);
    b.lock(lock, dst);
    b.finish()
}

#[test]
fn inc_dec_neg_not() {
    run_group("inc_dec_neg_not", DEFAULT_CASES, gen_unary);
}

// ---- (3) shifts and rotates ---------------------------------------------------------------

/// A shift count: concentrated on 0, 1, size-1, size, size+1, 31..33, 63..65, and random.
fn shift_count(g: &mut Gen, bytes: usize) -> u64 {
    let bits = 8 * bytes as u64;
    match g.below(4) {
        0 | 1 => g.pick(&[
            0,
            1,
            2,
            bits - 1,
            bits,
            bits + 1,
            31,
            32,
            33,
            63,
            64,
            65,
            7,
            8,
            9,
            15,
            16,
            17,
        ]),
        2 => g.below(2 * bits + 2),
        _ => g.below(256),
    }
}

/// The count operand: CL (with a random rest of RCX) or an imm8.
fn count_operand(b: &mut Builder, bytes: usize, cl: bool) {
    let c = shift_count(b.g, bytes);
    if cl {
        b.set(Opnd::reg(RCX, 1), c);
    } else {
        b.imm(1, c);
    }
}

fn gen_shift(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    b.avoid |= 1 << RCX;
    if b.g.pct(20) {
        // SHLD / SHRD: 0F A4/A5 (SHLD imm8/CL), 0F AC/AD (SHRD imm8/CL).
        let bytes = wide_size(b.g);
        b.opsize(bytes);
        let cl = b.g.pct(50);
        let base = b.g.pick(&[0xA4u8, 0xAC]);
        b.op(&[0x0F, base + cl as u8]);
        b.rm(bytes, 40);
        b.reg(bytes);
        count_operand(&mut b, bytes, cl);
        return b.finish();
    }
    let bytes = any_size(b.g);
    if bytes == 1 {
        b.legacy_bytes();
    }
    b.opsize(bytes);
    let wb = w(bytes);
    // ROL ROR RCL RCR SHL SHR SAL(alias, /6) SAR
    let digit = if b.g.pct(5) {
        6
    } else {
        b.g.pick(&[0u8, 1, 2, 3, 4, 5, 7])
    };
    match b.g.below(3) {
        0 => {
            b.op(&[0xD0 + wb]).ext(digit);
            b.rm(bytes, 40);
        }
        1 => {
            b.op(&[0xD2 + wb]).ext(digit);
            b.rm(bytes, 40);
            count_operand(&mut b, bytes, true);
        }
        _ => {
            b.op(&[0xC0 + wb]).ext(digit);
            b.rm(bytes, 40);
            count_operand(&mut b, bytes, false);
        }
    }
    b.finish()
}

#[test]
fn shifts_rotates() {
    run_group("shifts_rotates", 3 * DEFAULT_CASES, gen_shift);
}

// ---- (4) MUL IMUL DIV IDIV ----------------------------------------------------------------

/// The implicit dividend (AX; DX:AX; EDX:EAX; RDX:RAX) as (low, high) operands.
fn dividend(bytes: usize) -> (Opnd, Opnd) {
    if bytes == 1 {
        (
            Opnd {
                loc: Loc::Reg(RAX, 0),
                bytes: 1,
            },
            Opnd {
                loc: Loc::Reg(RAX, 8),
                bytes: 1,
            },
        )
    } else {
        (Opnd::reg(RAX, bytes), Opnd::reg(RDX, bytes))
    }
}

fn sext(v: u64, bytes: usize) -> i128 {
    let sh = 64 - 8 * bytes as u32;
    (((v << sh) as i64) >> sh) as i128
}

/// Choose the dividend so that most divisions complete: a random quotient, remainder and
/// (the given) divisor; 15% are left random, and a divisor of 0 is kept sometimes.
fn div_inputs(b: &mut Builder, bytes: usize, divisor: Opnd, signed: bool) {
    let (lo, hi) = dividend(bytes);
    let bits = 8 * bytes as u32;
    if b.g.pct(15) {
        return;
    }
    if b.get(divisor) == 0 && b.g.pct(80) {
        let v = b.g.value(bytes) | 1;
        b.set(divisor, v);
    }
    let d = b.get(divisor);
    if d == 0 {
        return;
    }
    let m = gen::mask(bytes) as u128;
    let dividend: u128 = if !signed {
        let q = b.g.value(bytes) as u128 & m;
        let r = b.g.u64() as u128 % d as u128;
        q * d as u128 + r
    } else if b.g.pct(30) {
        // Dividend sign-extended from the low half.
        let v = sext(b.g.value(bytes), bytes);
        v as u128
    } else {
        let d = sext(d, bytes);
        let q = sext(b.g.value(bytes), bytes);
        let mut r = (b.g.u64() as i128).rem_euclid(d.abs());
        let p = q * d;
        if p < 0 || (p == 0 && b.g.pct(50)) {
            r = -r;
        }
        (p + r) as u128
    };
    let low = dividend as u64;
    let high = (dividend >> bits) as u64;
    b.set(lo, low);
    b.set(hi, high);
}

fn gen_muldiv(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    b.avoid |= 1 << RAX | 1 << RDX;
    match b.g.below(10) {
        0..=5 => {
            // F6/F7 /4 MUL, /5 IMUL, /6 DIV, /7 IDIV
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            let digit = b.g.range(4, 7) as u8;
            b.op(&[0xF6 + w(bytes)]).ext(digit);
            let src = b.rm(bytes, 40);
            if digit >= 6 {
                div_inputs(&mut b, bytes, src, digit == 7);
            }
        }
        6 | 7 => {
            // IMUL r, r/m
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            b.op(&[0x0F, 0xAF]);
            b.reg(bytes);
            b.rm(bytes, 40);
        }
        _ => {
            // IMUL r, r/m, imm8 (6B) / imm16/32 (69)
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let short = b.g.pct(50);
            b.op(&[if short { 0x6B } else { 0x69 }]);
            b.reg(bytes);
            b.rm(bytes, 40);
            let n = if short { 1 } else { iz(bytes) };
            let v = b.g.value(n);
            b.imm(n, v);
        }
    }
    b.finish()
}

#[test]
fn mul_div() {
    run_group("mul_div", 2 * DEFAULT_CASES, gen_muldiv);
}

// ---- (5) BT BTS BTR BTC BSF BSR BSWAP ------------------------------------------------------

fn gen_bits(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    match b.g.below(10) {
        0..=3 => {
            // BT BTS BTR BTC r/m, r: 0F A3 / AB / B3 / BB.
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let k = b.g.below(4) as u8;
            b.op(&[0x0F, 0xA3 + 8 * k]);
            let off = b.reg(bytes);
            let Loc::Reg(r, _) = off.loc else {
                unreachable!()
            };
            b.avoid |= 1 << r;
            // Keep the operand within the pages: the bit offset moves the address by up to
            // 900 bytes either way.
            b.region = (MEM_LO + 1024, MEM_HI - 1024);
            let lock = k > 0 && b.want_lock();
            let dst = if lock {
                // The word accessed is operand-aligned relative to the base: align the base
                // so the locked access stays within a cache line.
                let t = b.target(bytes, 8);
                b.mem_at(t, bytes)
            } else {
                b.rm(bytes, 50)
            };
            if matches!(dst.loc, Loc::Mem(_)) {
                let bit = b.g.range(0, 2 * 8 * 900) as i64 - 8 * 900;
                b.set(off, bit as u64);
            }
            b.lock(lock, dst);
        }
        4..=6 => {
            // 0F BA /4 BT, /5 BTS, /6 BTR, /7 BTC with imm8.
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let digit = b.g.range(4, 7) as u8;
            b.op(&[0x0F, 0xBA]).ext(digit);
            let lock = digit > 4 && b.want_lock();
            let dst = b.rm(bytes, 50);
            let v = b.g.below(256);
            b.imm(1, v);
            b.lock(lock, dst);
        }
        7 | 8 => {
            // BSF 0F BC, BSR 0F BD; a zero source a quarter of the time.
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let opc = b.g.pick(&[0xBCu8, 0xBD]);
            b.op(&[0x0F, opc]);
            b.reg(bytes);
            let src = b.rm(bytes, 40);
            if b.g.pct(25) {
                b.set(src, 0);
            }
        }
        _ => {
            // BSWAP 0F C8+r (the 16-bit form is undefined in the SDM: the host decides).
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            b.op(&[0x0F, 0xC8]);
            b.opreg(bytes);
        }
    }
    b.finish()
}

#[test]
fn bit_ops() {
    run_group("bit_ops", DEFAULT_CASES, gen_bits);
}

// ---- (6) data movement --------------------------------------------------------------------

const CMOV_SETCC_ROWS: u8 = 16;

fn gen_data(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    match b.g.below(21) {
        0 => {
            // MOV 88/89 r/m, r and 8A/8B r, r/m
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            if b.g.pct(50) {
                b.op(&[0x88 + w(bytes)]);
                b.rm(bytes, 50);
                b.reg(bytes);
            } else {
                b.op(&[0x8A + w(bytes)]);
                b.reg(bytes);
                b.rm(bytes, 50);
            }
        }
        1 => {
            // MOV r/m, imm: C6 /0 ib, C7 /0 iz
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            b.op(&[0xC6 + w(bytes)]).ext(0);
            b.rm(bytes, 50);
            let v = b.g.value(iz(bytes));
            b.imm(iz(bytes), v);
        }
        2 => {
            // MOV r, imm: B0+r ib, B8+r iw/id/iq
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            b.op(&[if bytes == 1 { 0xB0 } else { 0xB8 }]);
            b.opreg(bytes);
            let v = b.g.value(bytes);
            b.imm(bytes, v);
        }
        3 => {
            // MOV AL/eAX, moffs (A0/A1) and moffs, AL/eAX (A2/A3): 64-bit absolute address,
            // or 32-bit with 67h.
            let bytes = any_size(b.g);
            b.opsize(bytes);
            let t = b.target(bytes, 1);
            let v = b.g.value(bytes);
            gen::put(
                &mut b.st,
                Opnd {
                    loc: Loc::Mem(t),
                    bytes,
                },
                v,
            );
            let store = b.g.pct(50) as u8;
            let a32 = b.g.pct(20);
            if a32 {
                b.addr32();
            }
            b.op(&[0xA0 + 2 * store + w(bytes)]);
            b.imm(if a32 { 4 } else { 8 }, t);
        }
        4 => {
            // MOVZX 0F B6/B7, MOVSX 0F BE/BF
            let src = b.g.pick(&[1usize, 2]);
            let dst = if src == 1 {
                any_size(b.g).max(2)
            } else {
                b.g.pick(&[2usize, 4, 8])
            };
            if src == 1 && dst < 8 {
                b.legacy_bytes();
            }
            b.opsize(dst);
            let sx = b.g.pct(50) as u8;
            b.op(&[0x0F, 0xB6 + 8 * sx + (src == 2) as u8]);
            b.reg(dst);
            b.rm(src, 50);
        }
        5 => {
            // MOVSXD 63 /r: r64, r/m32 with REX.W; r32, r/m32; r16, r/m16.
            let dst = wide_size(b.g);
            b.opsize(dst);
            b.op(&[0x63]);
            b.reg(dst);
            b.rm(dst.min(4), 50);
        }
        6 => {
            // XCHG 86/87 r/m, r
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            b.op(&[0x86 + w(bytes)]);
            // XCHG with memory is locked: no split locks (see `Builder::want_lock`).
            b.no_split();
            b.rm(bytes, 50);
            b.reg(bytes);
        }
        7 => {
            // XCHG eAX, r: 90+r (90 alone is NOP)
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            b.op(&[0x90]);
            b.opreg(bytes);
        }
        8 => {
            // XADD 0F C0/C1
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.opsize(bytes);
            b.op(&[0x0F, 0xC0 + w(bytes)]);
            let lock = b.want_lock();
            let dst = b.rm(bytes, 50);
            b.reg(bytes);
            b.lock(lock, dst);
        }
        9 => {
            // CMPXCHG 0F B0/B1; half the time the accumulator equals the destination.
            let bytes = any_size(b.g);
            if bytes == 1 {
                b.legacy_bytes();
            }
            b.avoid |= 1 << RAX;
            b.opsize(bytes);
            b.op(&[0x0F, 0xB0 + w(bytes)]);
            let lock = b.want_lock();
            let dst = b.rm(bytes, 50);
            b.reg(bytes);
            if b.g.pct(50) {
                let v = b.get(dst);
                b.set(Opnd::reg(RAX, bytes), v);
            }
            b.lock(lock, dst);
        }
        10 => {
            // CMPXCHG8B / CMPXCHG16B (REX.W) 0F C7 /1 m64/m128; 16B needs 16-byte alignment.
            let wide = b.g.pct(50);
            let bytes = if wide { 16 } else { 8 };
            b.avoid |= 1 << RAX | 1 << RDX;
            if wide {
                b.rex_w();
            }
            b.op(&[0x0F, 0xC7]).ext(1);
            let lock = b.want_lock();
            if b.g.pct(1) {
                // A register operand is #UD.
                b.rm_reg(8);
            } else {
                let align = if b.g.pct(95) { 16 } else { 1 };
                let t = b.target(bytes, align);
                let m = b.mem_at(t, bytes);
                let half = bytes / 2;
                for (k, r) in [RAX, RDX].into_iter().enumerate() {
                    let part = Opnd {
                        loc: Loc::Mem(t + (k * half) as u64),
                        bytes: half,
                    };
                    let v = b.g.value(half);
                    b.set(part, v);
                    if b.g.pct(70) {
                        b.set(Opnd::reg(r, half), v);
                    }
                }
                b.lock(lock, m);
            }
        }
        11 => {
            // LEA 8D /r: no memory access, so any base/index values will do.
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            b.op(&[0x8D]);
            b.reg(bytes);
            let t = b.g.value(8);
            b.mem_at(t, 1);
        }
        12 => {
            // CBW/CWDE/CDQE (98), CWD/CDQ/CQO (99)
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let opc = b.g.pick(&[0x98u8, 0x99]);
            b.op(&[opc]);
        }
        13 => {
            // LAHF 9F, SAHF 9E
            let opc = b.g.pick(&[0x9Eu8, 0x9F]);
            b.op(&[opc]);
        }
        14 | 15 => {
            // CMOVcc 0F 40+cc
            let bytes = wide_size(b.g);
            b.opsize(bytes);
            let cc = b.g.below(CMOV_SETCC_ROWS as u64) as u8;
            b.op(&[0x0F, 0x40 + cc]);
            b.reg(bytes);
            b.rm(bytes, 50);
        }
        16 | 17 => {
            // SETcc 0F 90+cc /0
            b.legacy_bytes();
            let cc = b.g.below(CMOV_SETCC_ROWS as u64) as u8;
            b.op(&[0x0F, 0x90 + cc]).ext(0);
            b.rm(1, 40);
        }
        18 => {
            // XLAT D7: AL = [RBX + AL] (EBX with 67h)
            let a32 = b.g.pct(30);
            if a32 {
                b.addr32();
            }
            if b.g.pct(20) {
                b.rex_w();
            }
            b.op(&[0xD7]);
            let t = b.g.range(MEM_LO, MEM_HI - 256);
            let upper = if a32 && b.g.pct(50) {
                b.g.u64() << 32
            } else {
                0
            };
            b.st.gpr[RBX] = t | upper;
        }
        _ => {
            // MOV with a 16-bit operand, and MOV r/m, imm with 64-bit sign extension.
            let bytes = b.g.pick(&[2usize, 8]);
            b.opsize(bytes);
            b.op(&[0xC7]).ext(0);
            b.rm(bytes, 50);
            let v = b.g.value(iz(bytes));
            b.imm(iz(bytes), v);
        }
    }
    b.finish()
}

#[test]
fn data_movement() {
    run_group("data_movement", 2 * DEFAULT_CASES, gen_data);
}

// ---- (7) string instructions --------------------------------------------------------------

/// One element address of a string operand: `i` steps from `start` in the direction DF says.
fn element(start: u64, i: u64, bytes: usize, down: bool) -> u64 {
    let step = i * bytes as u64;
    if down {
        start.wrapping_sub(step)
    } else {
        start.wrapping_add(step)
    }
}

fn gen_string(g: &mut Gen) -> Case {
    let mut b = Builder::new(g);
    // A4 MOVS, A6 CMPS, AA STOS, AC LODS, AE SCAS (+1 for the wider forms)
    let op = b.g.pick(&[0xA4u8, 0xA6, 0xAA, 0xAC, 0xAE]);
    let bytes = any_size(b.g);
    let rep = b.g.pick(&[None, Some(0xF3u8), Some(0xF2)]);
    if let Some(p) = rep {
        b.prefix(p);
    }
    if b.g.pct(10) {
        // Segment overrides other than FS/GS are ignored in 64-bit mode.
        let s = b.g.pick(&[0x26u8, 0x2E, 0x36, 0x3E]);
        b.prefix(s);
    }
    let a32 = b.g.pct(15);
    if a32 {
        b.addr32();
    }
    b.opsize(bytes);
    b.op(&[op + w(bytes)]);
    let count = if b.g.pct(10) { 0 } else { b.g.range(1, 10) };
    let down = b.st.rflags & (1 << 10) != 0;
    let margin = 16 * 8;
    let si = b.g.range(MEM_LO + margin, MEM_HI - margin);
    let di = if b.g.pct(20) {
        si.wrapping_add(b.g.range(0, 32)).wrapping_sub(16)
    } else {
        b.g.range(MEM_LO + margin, MEM_HI - margin)
    };
    let upper = |b: &mut Builder| {
        if a32 && b.g.pct(50) {
            b.g.u64() << 32
        } else {
            0
        }
    };
    let u = upper(&mut b);
    b.st.gpr[RSI] = si | u;
    let u = upper(&mut b);
    b.st.gpr[RDI] = di | u;
    if rep.is_some() {
        let u = upper(&mut b);
        b.st.gpr[RCX] = count | u;
    }
    let n = count.max(1);
    match op {
        0xA6 if b.g.pct(70) => {
            // CMPS: make the strings equal up to a random element.
            let diff_at = b.g.below(n + 1);
            for i in 0..n {
                let s = Opnd {
                    loc: Loc::Mem(element(si, i, bytes, down)),
                    bytes,
                };
                let d = Opnd {
                    loc: Loc::Mem(element(di, i, bytes, down)),
                    bytes,
                };
                let v = if i == diff_at {
                    b.g.value(bytes)
                } else {
                    b.get(s)
                };
                b.set(d, v);
            }
        }
        0xAE if b.g.pct(70) => {
            // SCAS: the accumulator matches a random prefix (REPE) or one element (REPNE).
            let acc = get(&b.st, Opnd::reg(RAX, bytes));
            let k = b.g.below(n + 1);
            let one = b.g.pct(50);
            for i in 0..n {
                let d = Opnd {
                    loc: Loc::Mem(element(di, i, bytes, down)),
                    bytes,
                };
                if (one && i == k) || (!one && i < k) {
                    b.set(d, acc);
                }
            }
        }
        _ => {}
    }
    b.finish()
}

#[test]
fn strings() {
    run_group("strings", DEFAULT_CASES, gen_string);
}

// ---- (8) PUSH POP PUSHF POPF ENTER LEAVE --------------------------------------------------

/// RSP somewhere inside the pages, usually 8-byte aligned.
fn place_sp(b: &mut Builder) {
    let sp = b.g.range(MEM_LO + 512, MEM_HI - 16);
    b.st.gpr[RSP] = if b.g.pct(80) { sp & !7 } else { sp };
    b.pin(RSP);
}

fn gen_stack(g: &mut Gen) -> Case {
    loop {
        let mut b = Builder::new(g);
        // Memory operands well inside the pages; RSP-relative ones are allowed when RSP is
        // not pinned first.
        b.region = (MEM_LO + 512, MEM_HI - 256);
        let form = b.g.below(12);
        let memory_form = (2..=5).contains(&form);
        if !memory_form || b.g.pct(70) {
            place_sp(&mut b);
        }
        // PUSH/POP default to 64 bits; 66h makes them 16-bit.
        let bytes = b.g.pick(&[8usize, 8, 8, 2]);
        match form {
            0 => {
                b.opsize64(bytes);
                b.op(&[0x50]);
                b.opreg(bytes);
            }
            1 => {
                b.opsize64(bytes);
                b.op(&[0x58]);
                b.opreg(bytes);
            }
            2 | 3 => {
                // PUSH r/m (FF /6)
                b.opsize64(bytes);
                b.op(&[0xFF]).ext(6);
                b.rm(bytes, 70);
            }
            4 | 5 => {
                // POP r/m (8F /0)
                b.opsize64(bytes);
                b.op(&[0x8F]).ext(0);
                b.rm(bytes, 70);
            }
            6 => {
                // PUSH imm8 (6A, sign-extended) / imm32 (68; imm16 with 66h)
                b.opsize64(bytes);
                if b.g.pct(50) {
                    b.op(&[0x6A]);
                    let v = b.g.value(1);
                    b.imm(1, v);
                } else {
                    b.op(&[0x68]);
                    let n = bytes.min(4);
                    let v = b.g.value(n);
                    b.imm(n, v);
                }
            }
            7 => {
                b.opsize64(bytes);
                b.op(&[0x9C]); // PUSHFQ / PUSHF
            }
            8 | 9 => {
                b.opsize64(bytes);
                b.op(&[0x9D]); // POPFQ / POPF
            }
            10 => {
                // ENTER iw, ib: RBP inside the pages (levels read below it)
                let bp = b.g.range(MEM_LO + 512, MEM_HI - 16);
                b.st.gpr[RBP] = if b.g.pct(80) { bp & !7 } else { bp };
                b.pin(RBP);
                b.opsize64(bytes);
                b.op(&[0xC8]);
                let level = match b.g.below(3) {
                    0 => b.g.below(4),
                    1 => b.g.below(32),
                    _ => b.g.below(256),
                };
                // The host probes the final RSP (a #PF outside the pages, which the
                // emulator's flat RAM cannot show): keep it inside.
                let sp = b.st.gpr[RSP];
                let room = sp.saturating_sub(MEM_LO + 8 * (level % 32 + 1) + 8);
                let size = match b.g.below(4) {
                    0 => 0,
                    1 => 8 * b.g.below(8),
                    2 => b.g.below(64),
                    _ => b.g.below(0x1_0000),
                }
                .min(room);
                b.imm(2, size);
                b.imm(1, level);
            }
            _ => {
                // LEAVE
                let bp = b.g.range(MEM_LO + 512, MEM_HI - 16);
                b.st.gpr[RBP] = if b.g.pct(80) { bp & !7 } else { bp };
                b.pin(RBP);
                b.opsize64(bytes);
                b.op(&[0xC9]);
            }
        }
        if !b.is_pinned(RSP) {
            place_sp(&mut b);
        }
        let sp = b.st.gpr[RSP];
        if !(MEM_LO + 256..=MEM_HI - 16).contains(&sp) {
            continue;
        }
        // The slot at RSP: sometimes a flags-like value for POPF.
        if b.g.pct(50) {
            let v = b.g.u64() & check::FLAGS_COMPARED;
            gen::put(
                &mut b.st,
                Opnd {
                    loc: Loc::Mem(sp),
                    bytes: 8,
                },
                v,
            );
        }
        return b.finish();
    }
}

#[test]
fn stack() {
    run_group("stack", DEFAULT_CASES, gen_stack);
}

// ---- flag chains: a flag-setting instruction, then one that reads the flags --------------

/// A register-only instruction that reads the flags the previous one left (lazily, in the
/// emulator): SETcc, CMOVcc, ADC/SBB, RCL/RCR, INC/DEC (keep CF), CMC, LAHF.
fn flag_consumer(g: &mut Gen) -> Vec<u8> {
    let (reg, rm) = (g.below(16) as u8, g.below(16) as u8);
    // [66] REX opcode ModRM(register form) [imm]. There is always a REX, so byte registers
    // 4..7 are SPL..DIL (AH..BH are covered by the single-instruction groups).
    let enc = |bytes: usize, opcode: &[u8], reg: u8, imm: &[u8]| {
        let mut c = Vec::new();
        if bytes == 2 {
            c.push(0x66);
        }
        c.push(0x40 | ((bytes == 8) as u8) << 3 | (reg >> 3) << 2 | rm >> 3);
        c.extend_from_slice(opcode);
        c.push(0xC0 | (reg & 7) << 3 | (rm & 7));
        c.extend_from_slice(imm);
        c
    };
    let bytes = any_size(g);
    match g.below(10) {
        0 | 1 => {
            let cc = g.below(16) as u8;
            enc(1, &[0x0F, 0x90 + cc], 0, &[]) // SETcc r/m8
        }
        2 | 3 => {
            let cc = g.below(16) as u8;
            enc(bytes.max(2), &[0x0F, 0x40 + cc], reg, &[]) // CMOVcc r, r/m
        }
        4 | 5 => {
            // ADC 10/11, SBB 18/19 (r/m, r), and 80/83 /2 (ADC), /3 (SBB) ib
            let sbb = g.pct(50) as u8;
            if g.pct(70) {
                enc(bytes, &[0x10 + 8 * sbb + w(bytes)], reg, &[])
            } else {
                let v = g.value(1) as u8;
                enc(bytes, &[0x80 + 3 * w(bytes)], 2 + sbb, &[v])
            }
        }
        6 => {
            // RCL /2, RCR /3 by 1 or imm8
            let digit = g.pick(&[2u8, 3]);
            if g.pct(50) {
                enc(bytes, &[0xD0 + w(bytes)], digit, &[])
            } else {
                let c = shift_count(g, bytes) as u8;
                enc(bytes, &[0xC0 + w(bytes)], digit, &[c])
            }
        }
        7 => {
            let digit = g.pick(&[0u8, 1]);
            enc(bytes, &[0xFE + w(bytes)], digit, &[]) // INC /0, DEC /1
        }
        8 => vec![0xF5], // CMC
        _ => vec![0x9F], // LAHF
    }
}

fn gen_flag_chain(g: &mut Gen) -> Case {
    let producers: [Generator; 6] = [
        gen_alu, gen_unary, gen_shift, gen_muldiv, gen_bits, gen_string,
    ];
    let (mut code, st) = g.pick(&producers)(g);
    code.extend(flag_consumer(g));
    (code, st)
}

#[test]
fn flag_chains() {
    run_group("flag_chains", 2 * DEFAULT_CASES, gen_flag_chain);
}

/// The comparison sees what it should: equal runs agree, and a different instruction on the
/// emulator side shows up as register, flag, memory and fault differences.
#[test]
fn harness_reports_differences() {
    let mut st = State::zeroed();
    st.gpr[RAX] = 5;
    st.gpr[RBX] = native::DATA_ADDR;
    st.gpr[RCX] = 7;
    let mut zero = st.clone();
    zero.gpr[RCX] = 0;
    let add = vec![0x48, 0x01, 0xC8]; // add rax, rcx
    let sub = vec![0x48, 0x29, 0xC8]; // sub rax, rcx
    let store = vec![0x88, 0x03]; // mov [rbx], al
    let store1 = vec![0x88, 0x43, 0x01]; // mov [rbx+1], al
    let div = vec![0x48, 0xF7, 0xF1]; // div rcx
    let host = native::run_native(&[
        (add.clone(), st.clone()),
        (add.clone(), st.clone()),
        (store.clone(), st.clone()),
        (div.clone(), zero.clone()),
    ]);
    let mut emu = emu::Emu::new();
    let diffs = |h: &native::Outcome, code: &[u8], s: &State, emu: &mut emu::Emu| {
        check::differences(h, &emu.run(code, s))
    };
    assert_eq!(diffs(&host[0], &add, &st, &mut emu), Vec::<String>::new());
    let d = diffs(&host[1], &sub, &st, &mut emu);
    assert!(
        d.contains(&"rax".to_string()) && d.iter().any(|k| k.starts_with("flags")),
        "{d:?}"
    );
    assert_eq!(diffs(&host[2], &store1, &st, &mut emu), vec!["memory"]);
    assert_eq!(diffs(&host[3], &add, &zero, &mut emu), vec!["fault"]);
    assert_eq!(diffs(&host[3], &div, &zero, &mut emu), Vec::<String>::new());
}

/// The generators encode what they mean: every case decodes to one instruction of exactly
/// its length, or is one of the rare deliberately invalid ones.
#[test]
fn generators_encode_single_instructions() {
    let gens: [(&str, Generator); 9] = [
        ("alu", gen_alu),
        ("unary", gen_unary),
        ("shift", gen_shift),
        ("muldiv", gen_muldiv),
        ("bits", gen_bits),
        ("data", gen_data),
        ("string", gen_string),
        ("stack", gen_stack),
        ("flag_chain", gen_flag_chain),
    ];
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::XorShift,
    );
    let mut g = Gen::new(&mut rng);
    for (name, f) in gens {
        let mut invalid = 0;
        for _ in 0..2000 {
            let (code, _) = f(&mut g);
            let insns = check::decode(&code);
            if insns.iter().any(|i| i.is_invalid()) {
                // Only the deliberate #UD cases (LOCK on a register, CMPXCHG8B with a
                // register operand) are invalid.
                invalid += 1;
                assert!(
                    invalid < 40,
                    "{name}: too many invalid encodings, e.g. {code:02x?}"
                );
                continue;
            }
            let chain = name == "flag_chain";
            assert_eq!(insns.len(), 1 + chain as usize, "{name}: {code:02x?}");
            let len: usize = insns.iter().map(|i| i.len()).sum();
            assert_eq!(len, code.len(), "{name}: {code:02x?} decodes as {insns:?}");
        }
    }
}

// ---- x87 -------------------------------------------------------------------------------

/// Every x87 form but the transcendentals, on random states (diff/x87.rs).
#[test]
fn x87() {
    run_group("x87", 3 * DEFAULT_CASES, |g| x87::gen_x87_insn(g, false));
}

#[test]
fn x87_fxsave() {
    run_group("x87_fxsave", DEFAULT_CASES / 5, x87::gen_fxsave);
}
