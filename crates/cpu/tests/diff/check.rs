//! The driver shared by every group: generate the cases, run them on the host (one
//! `run_native` batch per chunk) and on the emulator, compare, and report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, NasmFormatter, OpKind, Register};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::emu::{Emu, EmuResult};
use crate::gen::{Case, Gen, INPUT_FLAGS};
use crate::native::{
    fx, run_native, Outcome, Signal, State, CODE_ADDR, DATA_ADDR, DATA_SIZE, FX_SIZE,
};

/// Cases per group unless `TRAPEZE_DIFF_CASES` says otherwise.
pub const DEFAULT_CASES: usize = 10_000;
/// Cases per `run_native` batch (bounds memory: a case holds two 4 KiB pages, twice).
const CHUNK: usize = 4096;
/// Mismatches described in full in a failure report.
const SHOWN: usize = 10;
/// Rows of the (mnemonic, difference) summary, most frequent first.
const SUMMARY_ROWS: usize = 40;

/// RFLAGS bits compared: every defined bit, CF..ID. The oracle's value is the raw PUSHFQ
/// (bit 1 and IF always set), the emulator's `Cpu::rflags()` has them too.
pub const FLAGS_COMPARED: u64 = 0x3F_7FD7;

const FLAG_NAMES: [(u64, &str); 14] = [
    (1 << 0, "CF"),
    (1 << 2, "PF"),
    (1 << 4, "AF"),
    (1 << 6, "ZF"),
    (1 << 7, "SF"),
    (1 << 8, "TF"),
    (1 << 9, "IF"),
    (1 << 10, "DF"),
    (1 << 11, "OF"),
    (3 << 12, "IOPL"),
    (1 << 14, "NT"),
    (1 << 16, "RF"),
    (1 << 18, "AC"),
    (1 << 21, "ID"),
];

const REG_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

fn flag_names(bits: u64) -> String {
    let v: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|&(_, n)| n)
        .collect();
    v.join(" ")
}

fn env_usize(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// The base seed: `TRAPEZE_DIFF_SEED` (a number, or `random`), else 0. Each group mixes
/// its name in, so the groups draw different streams from one base.
fn base_seed() -> u64 {
    match std::env::var("TRAPEZE_DIFF_SEED") {
        Err(_) => 0,
        Ok(v) if v == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TRAPEZE_DIFF_SEED={v:?}: a number or \"random\"")),
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// The instructions of a case (most cases are one instruction; flag chains are two).
pub fn decode(code: &[u8]) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, code, CODE_ADDR, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let insn = d.decode();
        out.push(insn);
        if insn.is_invalid() {
            break;
        }
    }
    out
}

fn disasm(code: &[u8]) -> String {
    let mut f = NasmFormatter::new();
    let parts: Vec<String> = decode(code)
        .iter()
        .map(|insn| {
            let mut s = String::new();
            if insn.is_invalid() {
                s.push_str("(invalid)");
            } else {
                f.format(insn, &mut s);
            }
            s
        })
        .collect();
    parts.join(" ; ")
}

/// "Add", or "Sub+Setb" for a chain: the key of the per-mnemonic summary.
fn mnemonics(code: &[u8]) -> String {
    let parts: Vec<String> = decode(code)
        .iter()
        .map(|insn| {
            if insn.is_invalid() {
                "(invalid)".to_string()
            } else {
                format!("{:?}", insn.mnemonic())
            }
        })
        .collect();
    parts.join("+")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Signals that mean the same thing here: Linux reports #SS as SIGBUS and #GP/#PF as
/// SIGSEGV, and which of those a bad access raises is not what these tests are about.
fn same_fault(a: Signal, b: Signal) -> bool {
    let class = |s| match s {
        Signal::Bus => Signal::Segv,
        s => s,
    };
    class(a) == class(b)
}

/// One difference between host and emulator.
struct Diff {
    /// Short form for the summary ("flags CF OF", "rax", "memory", "fault").
    key: String,
    text: String,
}

/// What differs between a host outcome and an emulator result, as short keys ("rax",
/// "flags CF", "memory", "fault", ...).
pub fn differences(host: &Outcome, emu: &EmuResult) -> Vec<String> {
    compare(host, emu).into_iter().map(|d| d.key).collect()
}

fn compare(host: &Outcome, emu: &EmuResult) -> Vec<Diff> {
    let d = |key: &str, text: String| Diff {
        key: key.to_string(),
        text,
    };
    let emu = match emu {
        EmuResult::Done(o) => o,
        EmuResult::Stuck => return vec![d("stuck", "emulator: instruction never finished".into())],
        EmuResult::Panic(m) => return vec![d("panic", format!("emulator panicked: {m}"))],
    };
    match (host, emu) {
        (Outcome::Fault(h), Outcome::Fault(e)) if same_fault(*h, *e) => vec![],
        (Outcome::Completed(h), Outcome::Completed(e)) => {
            let mut out = Vec::new();
            for ((name, hv), ev) in REG_NAMES.iter().zip(h.gpr).zip(e.gpr) {
                if hv != ev {
                    out.push(d(
                        name,
                        format!(
                            "{name}: expected {hv:#018x} actual {ev:#018x} (xor {:#x})",
                            hv ^ ev
                        ),
                    ));
                }
            }
            let (hf, ef) = (h.rflags & FLAGS_COMPARED, e.rflags & FLAGS_COMPARED);
            if hf != ef {
                let which = flag_names(hf ^ ef);
                out.push(d(
                    &format!("flags {which}"),
                    format!(
                        "rflags: expected {hf:#x} [{}] actual {ef:#x} [{}]; differ in {which}",
                        flag_names(hf),
                        flag_names(ef)
                    ),
                ));
            }
            out.extend(
                fx_differences(&h.fx, &e.fx)
                    .into_iter()
                    .map(|(k, t)| d(&k, t)),
            );
            let hm = [&h.data[..], &h.stack[..]].concat();
            let em = [&e.data[..], &e.stack[..]].concat();
            if hm != em {
                out.push(d("memory", memory_diff(&hm, &em)));
            }
            out
        }
        (h, e) => vec![d(
            "fault",
            format!(
                "outcome: expected {}, actual {}",
                outcome_name(h),
                outcome_name(e)
            ),
        )],
    }
}

/// The architectural fields of two FXSAVE images that differ, as (key, text): FCW, FSW, the
/// abridged FTW, MXCSR, ST0..ST7 (80 bits each) and XMM0..XMM15. FIP/FDP/FOP and MXCSR_MASK
/// describe the harness and the host, not the instruction.
fn fx_differences(h: &[u8; FX_SIZE], e: &[u8; FX_SIZE]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, usize, usize)> = vec![
        ("fcw".into(), fx::FCW, 2),
        ("fsw".into(), fx::FSW, 2),
        ("ftw".into(), fx::FTW, 1),
        ("mxcsr".into(), fx::MXCSR, 4),
    ];
    fields.extend((0..8).map(|i| (format!("st{i}"), fx::ST0 + 16 * i, 10)));
    fields.extend((0..16).map(|i| (format!("xmm{i}"), fx::XMM0 + 16 * i, 16)));
    fields
        .into_iter()
        .filter(|&(_, o, n)| h[o..o + n] != e[o..o + n])
        .map(|(name, o, n)| {
            let hex = |b: &[u8]| {
                b.iter()
                    .rev()
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
            };
            let text = format!(
                "{name}: expected {} actual {}",
                hex(&h[o..o + n]),
                hex(&e[o..o + n])
            );
            (name, text)
        })
        .collect()
}

fn outcome_name(o: &Outcome) -> String {
    match o {
        Outcome::Completed(_) => "completed".into(),
        Outcome::Fault(s) => format!("fault {s:?}"),
    }
}

/// Differing byte ranges of the data+stack pages (at most 4, 16 bytes each shown).
fn memory_diff(h: &[u8], e: &[u8]) -> String {
    let mut s = String::from("memory:");
    let mut i = 0;
    let mut shown = 0;
    while i < h.len() {
        if h[i] == e[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < h.len() && (h[i] != e[i] || (i + 1 < h.len() && h[i + 1] != e[i + 1])) {
            i += 1;
        }
        if shown < 4 {
            let end = i.min(start + 16);
            let _ = write!(
                s,
                "\n      {:#x}..+{}: expected [{}] actual [{}]",
                DATA_ADDR + start as u64,
                i - start,
                hex(&h[start..end]),
                hex(&e[start..end])
            );
        }
        shown += 1;
    }
    if shown > 4 {
        let _ = write!(s, "\n      ... {} more ranges", shown - 4);
    }
    s
}

/// The input of a case, for a report: registers, flags, and the bytes at each memory
/// operand's address.
fn describe_input(code: &[u8], st: &State) -> String {
    let mut s = String::new();
    for (names, values) in REG_NAMES.chunks(4).zip(st.gpr.chunks(4)) {
        s.push_str("   ");
        for (name, v) in names.iter().zip(values) {
            let _ = write!(s, " {name:>3}={v:#018x}");
        }
        s.push('\n');
    }
    let f = st.rflags & INPUT_FLAGS;
    let _ = writeln!(s, "    rflags={f:#x} [{}]", flag_names(f));
    for insn in decode(code) {
        describe_memory(&mut s, &insn, st);
    }
    s
}

/// The input bytes at each memory operand of `insn`.
fn describe_memory(s: &mut String, insn: &Instruction, st: &State) {
    for op in 0..insn.op_count() {
        if insn.op_kind(op) != OpKind::Memory {
            continue;
        }
        let addr = insn.virtual_address(op, 0, |reg: Register, _, _| {
            if reg.is_segment_register() {
                return Some(0); // segment bases (no FS/GS here)
            }
            let full = reg.full_register();
            if full == Register::RIP {
                return Some(insn.next_ip());
            }
            let n = full.number();
            let v = st.gpr[n];
            Some(match reg.size() {
                4 => v & 0xFFFF_FFFF,
                2 => v & 0xFFFF,
                _ => v,
            })
        });
        let Some(addr) = addr else { continue };
        let size = insn.memory_size().size().clamp(1, 16);
        let mut bytes = Vec::new();
        for k in 0..size as u64 {
            let a = addr.wrapping_add(k);
            let off = a.wrapping_sub(DATA_ADDR) as usize;
            if off < 2 * DATA_SIZE {
                bytes.push(if off < DATA_SIZE {
                    st.data[off]
                } else {
                    st.stack[off - DATA_SIZE]
                });
            }
        }
        let _ = writeln!(s, "    memory operand at {addr:#x}: [{}]", hex(&bytes));
    }
}

/// Runs `cases` cases of one group and panics with a report if host and emulator differ.
pub fn run_group(group: &str, default_cases: usize, gen: fn(&mut Gen) -> Case) {
    let n = env_usize("TRAPEZE_DIFF_CASES").unwrap_or(default_cases);
    let base = base_seed();
    let seed = base ^ fnv(group);
    let mut seed_bytes = [0u8; 16];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..].copy_from_slice(&(!seed).to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: n as u32,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::XorShift, &seed_bytes),
    );
    let t0 = Instant::now();
    let mut emu = Emu::new();
    let mut report = String::new();
    let mut mismatches = 0usize;
    // (mnemonic, what differed) -> count, and per mnemonic how many cases ran.
    let mut summary: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_mnemonic: BTreeMap<String, usize> = BTreeMap::new();
    let mut host_faults = 0usize;
    let mut done = 0;
    while done < n {
        let m = CHUNK.min(n - done);
        let mut g = Gen::new(runner.rng());
        let cases: Vec<Case> = (0..m).map(|_| gen(&mut g)).collect();
        let host = run_native(&cases);
        for (k, ((code, st), h)) in cases.iter().zip(&host).enumerate() {
            let e = emu.run(code, st);
            let diffs = compare(h, &e);
            let mn = mnemonics(code);
            *per_mnemonic.entry(mn.clone()).or_default() += 1;
            if matches!(h, Outcome::Fault(_)) {
                host_faults += 1;
            }
            if diffs.is_empty() {
                continue;
            }
            mismatches += 1;
            for d in &diffs {
                *summary.entry((mn.clone(), d.key.clone())).or_default() += 1;
            }
            if mismatches <= SHOWN {
                let _ = writeln!(
                    report,
                    "--- mismatch {mismatches}: case {} `{}` [{}]",
                    done + k,
                    disasm(code),
                    hex(code)
                );
                report.push_str(&describe_input(code, st));
                for d in &diffs {
                    let _ = writeln!(report, "    {}", d.text);
                }
            }
        }
        done += m;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "diff {group}: {n} cases ({host_faults} faulted on the host), {mismatches} mismatches, \
         {secs:.2} s, TRAPEZE_DIFF_SEED={base}"
    );
    if mismatches == 0 {
        return;
    }
    let mut s = format!(
        "diff {group}: {mismatches} of {n} cases differ (expected = host, actual = emulator)\n\
         Reproduce with TRAPEZE_DIFF_SEED={base} (and at least as many TRAPEZE_DIFF_CASES).\n\n\
         By mnemonic and difference:\n"
    );
    let mut rows: Vec<_> = summary.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for ((mn, key), c) in rows.iter().take(SUMMARY_ROWS) {
        let total = per_mnemonic.get(mn).copied().unwrap_or(0);
        let _ = writeln!(s, "  {mn:<16} {key:<24} {c:>6} of {total}");
    }
    if rows.len() > SUMMARY_ROWS {
        let _ = writeln!(s, "  ... {} more rows", rows.len() - SUMMARY_ROWS);
    }
    let _ = writeln!(s, "\nFirst {}:", SHOWN.min(mismatches));
    s.push_str(&report);
    panic!("{s}");
}
