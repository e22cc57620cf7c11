//! Checks the host-CPU oracle (`tests/native`) against facts from the Intel SDM, never against
//! the emulator. Run with `cargo test -p trapeze-cpu --test native_selftest --release`.

mod native;

use native::*;
use std::time::Instant;

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const TF: u64 = 1 << 8;
const IF: u64 = 1 << 9;
const DF: u64 = 1 << 10;
const OF: u64 = 1 << 11;
const NT: u64 = 1 << 14;
const AC: u64 = 1 << 18;
const ID: u64 = 1 << 21;

const ADD_RAX_RBX: [u8; 3] = [0x48, 0x01, 0xD8];

fn run_one(code: &[u8], st: &State) -> Outcome {
    let mut r = run_native(&[(code.to_vec(), st.clone())]);
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

fn completed(o: Outcome) -> State {
    match o {
        Outcome::Completed(s) => s,
        Outcome::Fault(f) => panic!("expected completion, got fault {f:?}"),
    }
}

/// State with distinct, recognisable register values and patterned pages.
fn base_state() -> State {
    let mut st = State::zeroed();
    for (i, r) in st.gpr.iter_mut().enumerate() {
        *r = 0x0101_0000_0000_0000 * (i as u64 + 1) + i as u64; // 0x0101.. .. 0x1010..
    }
    st.gpr[RSP] = STACK_ADDR + 0x800;
    for (i, b) in st.data.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    for (i, b) in st.stack.iter_mut().enumerate() {
        *b = (i * 13 + 5) as u8;
    }
    st
}

/// xorshift64*: deterministic test data without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// ADD r/m64, r64 per the SDM: DEST := DEST + SRC; OF, SF, ZF, AF, CF, PF set per the result.
/// Returns (result, arithmetic flags).
fn sdm_add64(a: u64, b: u64) -> (u64, u64) {
    let (r, carry) = a.overflowing_add(b);
    let mut f = 0;
    if carry {
        f |= CF;
    }
    if (r as u8).count_ones() & 1 == 0 {
        f |= PF; // PF: even number of 1 bits in the low byte of the result
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF; // AF: carry out of bit 3
    }
    if r == 0 {
        f |= ZF;
    }
    if r >> 63 != 0 {
        f |= SF;
    }
    if ((a ^ r) & (b ^ r)) >> 63 != 0 {
        f |= OF; // OF: both operands have the same sign and the result's sign differs
    }
    (r, f)
}

#[test]
fn add_sets_result_and_flags() {
    let mut st = base_state();
    st.gpr[RAX] = u64::MAX;
    st.gpr[RBX] = 1;
    st.rflags = 0;
    let out = completed(run_one(&ADD_RAX_RBX, &st));
    assert_eq!(out.gpr[RAX], 0);
    assert_eq!(out.rflags & INPUT_FLAGS_MASK, CF | ZF | PF | AF);
    // Everything else untouched.
    let mut expect = st.clone();
    expect.gpr[RAX] = 0;
    expect.rflags = out.rflags;
    assert_eq!(out, expect);
    // Bit 1 and IF are always set in what PUSHFQ reports in user mode.
    assert_eq!(out.rflags & !INPUT_FLAGS_MASK, 0x202);
}

#[test]
fn div_by_zero_is_divide_error() {
    let mut st = base_state();
    st.gpr[RCX] = 0;
    assert_eq!(
        run_one(&[0x48, 0xF7, 0xF1], &st),
        Outcome::Fault(Signal::DivideError)
    );
    // Quotient overflow is #DE too: RDX:RAX = 2^64, divisor 1.
    st.gpr[RDX] = 1;
    st.gpr[RAX] = 0;
    st.gpr[RCX] = 1;
    assert_eq!(
        run_one(&[0x48, 0xF7, 0xF1], &st),
        Outcome::Fault(Signal::DivideError)
    );
}

#[test]
fn store_writes_data_page() {
    let mut st = base_state();
    st.gpr[RAX] = 0x0807_0605_0403_0201;
    st.gpr[RSI] = DATA_ADDR + 8;
    let out = completed(run_one(&[0x48, 0x89, 0x06], &st)); // mov [rsi], rax
    let mut expect = st.clone();
    expect.data[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    expect.rflags = out.rflags;
    assert_eq!(out, expect);
}

#[test]
fn push_writes_stack_page() {
    let mut st = base_state();
    st.gpr[RAX] = 0xDEAD_BEEF_CAFE_F00D;
    st.gpr[RSP] = STACK_ADDR + 0x800;
    let out = completed(run_one(&[0x50], &st)); // push rax
    let mut expect = st.clone();
    expect.gpr[RSP] = STACK_ADDR + 0x7F8;
    expect.stack[0x7F8..0x800].copy_from_slice(&0xDEAD_BEEF_CAFE_F00Du64.to_le_bytes());
    expect.rflags = out.rflags;
    assert_eq!(out, expect);
}

#[test]
fn pushfq_sees_the_case_flags() {
    let mut st = base_state();
    st.rflags = u64::MAX; // only 0x0CD5 is taken from the case
    let out = completed(run_one(&[0x9C], &st)); // pushfq
    let pushed = u64::from_le_bytes(out.stack[0x7F8..0x800].try_into().unwrap());
    assert_eq!(pushed, CF | PF | AF | ZF | SF | DF | OF | IF | 0x2);
    assert_eq!(out.gpr[RSP], STACK_ADDR + 0x7F8);
    assert_eq!(out.rflags, pushed);
}

#[test]
fn popfq_all_ones_shows_user_settable_flags() {
    let mut st = base_state();
    st.stack[0x800..0x808].copy_from_slice(&u64::MAX.to_le_bytes());
    // popfq, then a plain add in the same batch to show the harness is still sane.
    let mut add = base_state();
    add.gpr[RAX] = 5;
    add.gpr[RBX] = 7;
    let r = run_native(&[(vec![0x9D], st.clone()), (ADD_RAX_RBX.to_vec(), add)]);
    let out = completed(r[0].clone());
    assert_eq!(out.gpr[RSP], STACK_ADDR + 0x808);
    // SDM POPF, 64-bit mode, CPL 3 > IOPL 0: all non-reserved bits except IF, IOPL, VIP, VIF,
    // VM can be modified; RF is cleared. IF stays 1 (Linux user mode).
    let expect = CF | 0x2 | PF | AF | ZF | SF | TF | IF | DF | OF | NT | AC | ID;
    eprintln!("popfq(all ones) -> rflags {:#x}", out.rflags);
    assert_eq!(out.rflags, expect, "got {:#x}", out.rflags);
    let next = completed(r[1].clone());
    assert_eq!(next.gpr[RAX], 12);
    assert_eq!(
        next.rflags & !INPUT_FLAGS_MASK,
        0x202,
        "TF/AC/NT/ID must not leak into the next case"
    );
}

#[test]
fn segv_then_next_case_still_runs() {
    let mut add = base_state();
    add.gpr[RAX] = 0x7FFF_FFFF_FFFF_FFFF;
    add.gpr[RBX] = 1;
    let cases = vec![
        (vec![0x48, 0x8B, 0x04, 0x25, 0, 0, 0, 0], base_state()), // mov rax, [0]
        (ADD_RAX_RBX.to_vec(), add.clone()),
        (vec![0x48, 0xF7, 0xF1], {
            let mut s = base_state();
            s.gpr[RCX] = 0;
            s
        }), // div rcx
        (ADD_RAX_RBX.to_vec(), add.clone()),
    ];
    let r = run_native(&cases);
    assert_eq!(r[0], Outcome::Fault(Signal::Segv));
    assert_eq!(r[2], Outcome::Fault(Signal::DivideError));
    for o in [&r[1], &r[3]] {
        let out = completed(o.clone());
        assert_eq!(out.gpr[RAX], 0x8000_0000_0000_0000);
        // 0x7fff.. + 1: signed overflow, sign set, carry out of bit 3, no carry; low byte 0 → PF.
        assert_eq!(out.rflags & INPUT_FLAGS_MASK, OF | SF | AF | PF);
        let mut expect = add.clone();
        expect.gpr[RAX] = 0x8000_0000_0000_0000;
        expect.rflags = out.rflags;
        assert_eq!(out, expect);
    }
}

#[test]
fn other_faults() {
    let st = base_state();
    assert_eq!(run_one(&[0x0F, 0x0B], &st), Outcome::Fault(Signal::Ill)); // ud2 → #UD
    assert_eq!(run_one(&[0xCC], &st), Outcome::Fault(Signal::Trap)); // int3 → #BP
    assert_eq!(run_one(&[0xF4], &st), Outcome::Fault(Signal::Segv)); // hlt at CPL 3 → #GP
                                                                     // One byte past the data page is unmapped (DATA_ADDR - 1 too): #PF.
    let mut s = base_state();
    s.gpr[RSI] = DATA_ADDR - 1;
    assert_eq!(run_one(&[0x8A, 0x06], &s), Outcome::Fault(Signal::Segv)); // mov al, [rsi]
                                                                          // Faulting with a garbage RSP: the handler must not need the guest stack.
    let mut s = base_state();
    s.gpr[RSP] = 0;
    assert_eq!(
        run_one(&[0x48, 0x8B, 0x04, 0x25, 0, 0, 0, 0], &s), // mov rax, [0]
        Outcome::Fault(Signal::Segv)
    );
    // Non-canonical stack reference is #SS, which Linux reports as SIGBUS.
    let mut s = base_state();
    s.gpr[RSP] = 0x8000_0000_0000_0000;
    assert_eq!(run_one(&[0x50], &s), Outcome::Fault(Signal::Bus)); // push rax
}

#[test]
fn all_registers_round_trip() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut cases = Vec::new();
    for i in 0..256u64 {
        let mut st = base_state();
        for r in st.gpr.iter_mut() {
            *r = rng.next();
        }
        // RSP may be anything: NOP does not use it, and the harness must not either.
        st.gpr[RSP] = match i % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => 0x8000_0000_0000_0000,
            _ => rng.next(),
        };
        // Every combination of the 7 flags taken from the case (plus junk outside the mask).
        let bits = [CF, PF, AF, ZF, SF, DF, OF];
        st.rflags = bits
            .iter()
            .enumerate()
            .filter(|(b, _)| i >> b & 1 != 0)
            .map(|(_, f)| f)
            .sum::<u64>()
            | (rng.next() & !INPUT_FLAGS_MASK);
        cases.push((vec![0x90], st)); // nop
    }
    let r = run_native(&cases);
    for ((_, st), o) in cases.iter().zip(r) {
        let out = completed(o);
        let mut expect = st.clone();
        expect.rflags = (st.rflags & INPUT_FLAGS_MASK) | 0x202;
        assert_eq!(out, expect);
    }
}

#[test]
fn direction_flag_is_loaded_and_saved() {
    let mut st = base_state();
    st.gpr[RAX] = 0x5A;
    st.gpr[RDI] = DATA_ADDR + 100;
    st.rflags = DF;
    let out = completed(run_one(&[0xAA], &st)); // stosb with DF=1 decrements RDI
    assert_eq!(out.data[100], 0x5A);
    assert_eq!(out.gpr[RDI], DATA_ADDR + 99);
    assert_eq!(out.rflags & DF, DF);
    st.rflags = 0;
    assert_eq!(completed(run_one(&[0xFD], &st)).rflags & DF, DF); // std
    st.rflags = DF | CF;
    assert_eq!(
        completed(run_one(&[0xFC], &st)).rflags & INPUT_FLAGS_MASK,
        CF
    ); // cld
}

#[test]
fn rip_relative_sees_code_addr() {
    let out = completed(run_one(&[0x48, 0x8D, 0x05, 0, 0, 0, 0], &base_state())); // lea rax, [rip]
    assert_eq!(out.gpr[RAX], CODE_ADDR + 7);
}

#[test]
fn empty_batch() {
    assert!(run_native(&[]).is_empty());
}

#[test]
fn child_death_is_retried_then_blamed() {
    let mut add = base_state();
    add.gpr[RAX] = 2;
    add.gpr[RBX] = 3;
    let mut exit = base_state();
    exit.gpr[RAX] = 231; // exit_group(3): the child vanishes in the middle of the batch
    exit.gpr[RDI] = 3;
    let cases = vec![
        (ADD_RAX_RBX.to_vec(), add.clone()),
        (vec![0x0F, 0x05], exit), // syscall
        (ADD_RAX_RBX.to_vec(), add.clone()),
    ];
    let r = run_native(&cases);
    assert_eq!(completed(r[0].clone()).gpr[RAX], 5);
    assert_eq!(r[1], Outcome::Fault(Signal::Other(0)));
    assert_eq!(completed(r[2].clone()).gpr[RAX], 5);
}

#[test]
fn stalled_child_is_killed() {
    let mut pause = base_state();
    pause.gpr[RAX] = 34; // pause(): blocks forever
    let mut add = base_state();
    add.gpr[RAX] = 2;
    add.gpr[RBX] = 3;
    let cases = vec![(vec![0x0F, 0x05], pause), (ADD_RAX_RBX.to_vec(), add)];
    let r = run_native_with_timeout(&cases, std::time::Duration::from_millis(200));
    assert_eq!(r[0], Outcome::Fault(Signal::Other(libc::SIGKILL)));
    assert_eq!(completed(r[1].clone()).gpr[RAX], 5);
}

#[test]
fn ten_thousand_adds() {
    const N: usize = 10_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let page = base_state();
    let mut cases = Vec::with_capacity(N);
    for i in 0..N {
        let mut st = page.clone();
        let pick = |r: &mut Rng| match r.next() % 4 {
            0 => 0,
            1 => u64::MAX,
            2 => 1u64 << 63,
            _ => r.next(),
        };
        st.gpr[RAX] = if i % 3 == 0 {
            pick(&mut rng)
        } else {
            rng.next()
        };
        st.gpr[RBX] = if i % 5 == 0 {
            pick(&mut rng)
        } else {
            rng.next()
        };
        st.gpr[RSP] = rng.next(); // not used by ADD
        st.rflags = rng.next() & INPUT_FLAGS_MASK;
        st.data[i % DATA_SIZE] = i as u8; // pages vary a little per case
        cases.push((ADD_RAX_RBX.to_vec(), st));
    }
    let t = Instant::now();
    let r = run_native(&cases);
    let el = t.elapsed();
    eprintln!(
        "run_native: {N} cases in {:.2} ms = {:.2} µs/case",
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / N as f64
    );
    assert_eq!(r.len(), N);
    for (i, ((_, st), o)) in cases.iter().zip(r).enumerate() {
        let out = completed(o);
        let (sum, flags) = sdm_add64(st.gpr[RAX], st.gpr[RBX]);
        let mut expect = st.clone();
        expect.gpr[RAX] = sum;
        // ADD defines all six arithmetic flags; DF is kept.
        expect.rflags = flags | (st.rflags & DF) | 0x202;
        assert_eq!(
            out, expect,
            "case {i}: {:#x} + {:#x}",
            st.gpr[RAX], st.gpr[RBX]
        );
    }
    // Generous bound (shared CI machines); the target is well under 10 µs/case.
    assert!(
        el.as_secs_f64() / (N as f64) < 100e-6,
        "oracle too slow: {el:?} for {N} cases"
    );
}

/// The FXSAVE image round-trips: FXRSTOR before the instruction, FXSAVE right after it.
#[test]
fn fxsave_image_round_trip() {
    let mut st = base_state();
    for i in 0..16 {
        set_fx_xmm(
            &mut st.fx,
            i,
            0x0123_4567_89AB_CDEF_0F1E_2D3C_4B5A_6978 * (i as u128 + 1),
        );
    }
    // NOP leaves every architectural field as loaded.
    let out = completed(run_one(&[0x90], &st));
    for i in 0..16 {
        assert_eq!(fx_xmm(&out.fx, i), fx_xmm(&st.fx, i), "xmm{i}");
    }
    assert_eq!(fx_mxcsr(&out.fx), 0x1F80);
    assert_eq!(out.fx[fx::FCW..fx::FCW + 2], [0x7F, 0x03]);

    // ADDPS xmm0, xmm1: 1.0 + 2.0 = 3.0 in every lane (0x3F800000 + 0x40000000 = 0x40400000).
    let ones = 0x3F80_0000_3F80_0000_3F80_0000_3F80_0000u128;
    set_fx_xmm(&mut st.fx, 0, ones);
    set_fx_xmm(&mut st.fx, 1, 0x4000_0000_4000_0000_4000_0000_4000_0000);
    let out = completed(run_one(&[0x0F, 0x58, 0xC1], &st));
    assert_eq!(
        fx_xmm(&out.fx, 0),
        0x4040_0000_4040_0000_4040_0000_4040_0000
    );
    assert_eq!(fx_mxcsr(&out.fx), 0x1F80, "exact: no flags");

    // FLD1: TOP 0 -> 7, ST0 = +1.0 (significand 8000..0, exponent 3FFFh), R7 tagged valid.
    let out = completed(run_one(&[0xD9, 0xE8], &State::zeroed()));
    assert_eq!(
        u16::from_le_bytes([out.fx[fx::FSW], out.fx[fx::FSW + 1]]) >> 11 & 7,
        7
    );
    assert_eq!(out.fx[fx::FTW], 0x80);
    assert_eq!(
        out.fx[fx::ST0..fx::ST0 + 10],
        [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F]
    );

    // DIVPS xmm0, xmm1 with xmm1 = 0: masked → ZE (bit 2) set; unmasked ZM (bit 9) → #XM.
    let mut st = State::zeroed();
    set_fx_xmm(&mut st.fx, 0, ones);
    let out = completed(run_one(&[0x0F, 0x5E, 0xC1], &st));
    assert_eq!(fx_mxcsr(&out.fx), 0x1F84);
    set_fx_mxcsr(&mut st.fx, 0x1F80 & !(1 << 9));
    assert_eq!(
        run_one(&[0x0F, 0x5E, 0xC1], &st),
        Outcome::Fault(Signal::SimdFp)
    );
    // A reserved MXCSR bit makes the harness's FXRSTOR raise #GP.
    set_fx_mxcsr(&mut st.fx, 1 << 16);
    assert_eq!(run_one(&[0x90], &st), Outcome::Fault(Signal::Segv));
    // #DE is still told apart from #XM.
    let mut st = base_state();
    st.gpr[RCX] = 0;
    assert_eq!(
        run_one(&[0x48, 0xF7, 0xF1], &st),
        Outcome::Fault(Signal::DivideError)
    );
}
