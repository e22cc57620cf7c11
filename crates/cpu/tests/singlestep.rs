//! The SingleStepTests 80286 real-mode conformance run (testdata/singlestep-80286, see its
//! README): hardware-captured single-instruction tests from a Harris 80C286, each run on a
//! fresh trapeze CPU over 16 MiB of RAM and compared as the README's "Comparing" says.
//!
//! `cargo test --release -p trapeze-cpu --test singlestep`; `SINGLESTEP_FILTER=F7.6,D3`
//! runs only the files whose names start with one of the prefixes; `SINGLESTEP_VERBOSE=1`
//! prints every failure (not just the first few of each file) and every excluded test.
//!
//! Trapeze emulates a modern x86, so where a 386+ architecturally differs from the 286
//! the test is excluded by `EXCLUSIONS`, and counted.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::read::GzDecoder;
use iced_x86::{
    Decoder, DecoderOptions, EncodingKind, Instruction, InstructionInfoFactory, OpKind, Register,
    UsedMemory,
};
use serde_json::Value;
use trapeze_cpu::{gpr, sreg, Cpu, Exit, Mmu, NullBus, PhysMem, Segment};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/singlestep-80286"
);
const RAM_SIZE: u64 = 16 << 20;
/// Instructions one test may retire before it counts as a runaway: the REP tests have
/// CX <= 63, so a correct run needs far fewer.
const MAX_INSNS: u64 = 1024;
/// Instructions per `Cpu::run` call.
const BUDGET: u64 = 64;
/// Failures listed per file unless SINGLESTEP_VERBOSE is set.
const FAILURES_SHOWN: usize = 3;
/// The 286 forces FLAGS bits 12-15 to zero in real mode; a 386+ keeps IOPL and NT there,
/// so they are masked out of every FLAGS value (README, "Comparing").
const FLAGS_286: u16 = 0x0FFF;
/// FLAGS bit names, for diffs.
const FLAG_NAMES: [(u16, &str); 9] = [
    (0x001, "CF"),
    (0x004, "PF"),
    (0x010, "AF"),
    (0x040, "ZF"),
    (0x080, "SF"),
    (0x100, "TF"),
    (0x200, "IF"),
    (0x400, "DF"),
    (0x800, "OF"),
];

// ---- the tests' register file --------------------------------------------------------

#[derive(Clone, Copy)]
enum Loc {
    Gpr(usize),
    Seg(usize),
    Ip,
    Flags,
}

/// The registers a test names, with where trapeze keeps them.
const REGS: [(&str, Loc); 14] = [
    ("ax", Loc::Gpr(gpr::RAX)),
    ("bx", Loc::Gpr(gpr::RBX)),
    ("cx", Loc::Gpr(gpr::RCX)),
    ("dx", Loc::Gpr(gpr::RDX)),
    ("si", Loc::Gpr(gpr::RSI)),
    ("di", Loc::Gpr(gpr::RDI)),
    ("bp", Loc::Gpr(gpr::RBP)),
    ("sp", Loc::Gpr(gpr::RSP)),
    ("cs", Loc::Seg(sreg::CS)),
    ("ds", Loc::Seg(sreg::DS)),
    ("es", Loc::Seg(sreg::ES)),
    ("ss", Loc::Seg(sreg::SS)),
    ("ip", Loc::Ip),
    ("flags", Loc::Flags),
];
const SP: usize = 7;
const CS: usize = 8;
const SS: usize = 11;
const IP: usize = 12;
const FLAGS: usize = 13;

type Regs = [u16; 14];

fn read_regs(cpu: &Cpu) -> Regs {
    REGS.map(|(_, loc)| match loc {
        Loc::Gpr(n) => cpu.gpr[n] as u16,
        Loc::Seg(s) => cpu.seg[s].selector,
        Loc::Ip => cpu.rip as u16,
        Loc::Flags => cpu.rflags() as u16,
    })
}

fn load_regs(cpu: &mut Cpu, r: &Regs) {
    for (&(_, loc), &v) in REGS.iter().zip(r) {
        match loc {
            Loc::Gpr(n) => cpu.gpr[n] = v as u64,
            Loc::Seg(s) if s != sreg::CS => cpu.seg[s] = Segment::real(v),
            _ => {}
        }
    }
    cpu.set_real_mode_entry(r[CS], r[IP]);
    cpu.set_rflags((r[FLAGS] & FLAGS_286) as u64);
}

/// The value of a 16-bit GPR named by iced, from a test's registers.
fn gpr16(r: &Regs, reg: Register) -> Option<u16> {
    let n = reg.number();
    REGS.iter()
        .position(|&(_, loc)| matches!(loc, Loc::Gpr(g) if g == n))
        .map(|i| r[i])
}

// ---- test records ---------------------------------------------------------------------

struct Test {
    idx: u64,
    name: String,
    bytes: Vec<u8>,
    initial: Regs,
    /// The initial registers with the test's changes applied.
    expected: Regs,
    ram: Vec<(u32, u8)>,
    /// Every byte the test names, with its final value.
    expected_ram: BTreeMap<u32, u8>,
    /// The interrupt the 286 took. (Its `flag_address` is not used: see `pushed_flags`.)
    exception: Option<u8>,
    hash: String,
}

impl Test {
    /// Where the interrupt frame's FLAGS word went: SS:SP-2 of the initial state (a
    /// faulting instruction commits nothing, so the frame starts at the initial SP). The
    /// data's `flag_address` says the same for an even SP but is rounded down to even for
    /// an odd one.
    fn pushed_flags(&self) -> Option<u32> {
        self.exception
            .map(|_| ((self.initial[SS] as u32) << 4) + self.initial[SP].wrapping_sub(2) as u32)
    }
}

fn u64_of(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("singlestep data: {what} is not a number: {v}"))
}

fn ram_of(v: &Value) -> Vec<(u32, u8)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        u64_of(&e[0], "ram address") as u32,
                        u64_of(&e[1], "ram byte") as u8,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse_test(v: &Value) -> Test {
    let regs = |state: &Value, base: Option<&Regs>| -> Regs {
        let mut r = base.copied().unwrap_or([0; 14]);
        for (i, (name, _)) in REGS.iter().enumerate() {
            match &state["regs"][*name] {
                Value::Null if base.is_some() => {}
                x => r[i] = u64_of(x, name) as u16,
            }
        }
        r
    };
    let initial = regs(&v["initial"], None);
    let ram = ram_of(&v["initial"]["ram"]);
    let mut expected_ram: BTreeMap<u32, u8> = ram.iter().copied().collect();
    expected_ram.extend(ram_of(&v["final"]["ram"]));
    Test {
        idx: u64_of(&v["idx"], "idx"),
        name: v["name"].as_str().unwrap_or("?").to_string(),
        bytes: v["bytes"]
            .as_array()
            .map(|a| a.iter().map(|b| u64_of(b, "byte") as u8).collect())
            .unwrap_or_default(),
        expected: regs(&v["final"], Some(&initial)),
        initial,
        ram,
        expected_ram,
        exception: v
            .get("exception")
            .map(|e| u64_of(&e["number"], "exception number") as u8),
        hash: v["hash"].as_str().unwrap_or("").to_string(),
    }
}

fn load_file(path: &Path) -> Vec<Test> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_reader(std::io::BufReader::new(GzDecoder::new(f)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v.as_array()
        .map(|a| a.iter().map(parse_test).collect())
        .unwrap_or_default()
}

/// The opcode's undefined-flag mask from metadata.json (`XX.R` files: per reg field).
fn flags_mask(meta: &Value, stem: &str) -> u16 {
    let (op, reg) = stem
        .split_once('.')
        .map_or((stem, None), |(o, r)| (o, Some(r)));
    let entry = &meta["opcodes"][op];
    let entry = reg.map_or(entry, |r| &entry["reg"][r]);
    entry["flags-mask"].as_u64().map_or(0xFFFF, |m| m as u16) & FLAGS_286
}

// ---- where a 386+ differs from the 286 --------------------------------------------------

/// A test with its instruction decoded, for the rules below and the run.
struct Case<'a> {
    test: &'a Test,
    /// The instruction decoded without iced's validity checks (which reject what the
    /// 286 accepts, such as LOCK on anything).
    insn: Instruction,
    /// And with them, as trapeze decodes it.
    strict: Instruction,
    used_memory: Vec<UsedMemory>,
}

impl<'a> Case<'a> {
    fn new(test: &'a Test, info: &mut InstructionInfoFactory) -> Self {
        let decode =
            |opts| Decoder::with_ip(16, &test.bytes, test.initial[IP] as u64, opts).decode();
        let insn = decode(DecoderOptions::NO_INVALID_CHECK);
        Case {
            test,
            used_memory: info.info(&insn).used_memory().to_vec(),
            strict: decode(DecoderOptions::NONE),
            insn,
        }
    }

    /// Index of the first exclusion rule that applies.
    fn excluded(&self) -> Option<usize> {
        EXCLUSIONS.iter().position(|x| (x.applies)(self))
    }

    /// Flags to compare: the file's mask less what `UNDEFINED` adds.
    fn flags_mask(&self, stem: &str, file_mask: u16) -> u16 {
        UNDEFINED
            .iter()
            .filter(|u| stem.starts_with(u.files) && (u.applies)(&self.insn))
            .fold(file_mask, |m, u| m & !u.flags)
    }
}

struct Exclusion {
    reason: &'static str,
    applies: fn(&Case) -> bool,
}

/// Cases where a modern x86, which trapeze emulates, architecturally differs from the
/// 286 that produced the data. The first rule that applies to a test excludes it.
const EXCLUSIONS: [Exclusion; 6] = [
    Exclusion {
        reason: "LOCK on an instruction that is not a locked memory read-modify-write: the 286 \
                 runs it, a 386+ raises #UD (i386 PRM 14.8.1; SDM Vol.2A LOCK)",
        applies: |c| {
            c.insn.has_lock_prefix()
                && c.strict.is_invalid()
                && !c.insn.is_invalid()
                && c.test.exception != Some(6)
        },
    },
    Exclusion {
        reason: "MOV to/from FS or GS: the 286 has no FS/GS and raises #UD; the 386 added them \
                 (SDM Vol.1 3.4.2)",
        applies: |c| {
            (0..c.insn.op_count()).any(|n| {
                c.insn.op_kind(n) == OpKind::Register
                    && matches!(c.insn.op_register(n), Register::FS | Register::GS)
            })
        },
    },
    Exclusion {
        reason: "instruction longer than 10 bytes (redundant prefixes): the 286 raises \
                 interrupt 13, a 386+ allows 15 bytes (80286 PRM; i386 PRM 14.7)",
        applies: |c| {
            c.insn.encoding() == EncodingKind::Legacy && !c.insn.is_invalid() && c.insn.len() > 10
        },
    },
    Exclusion {
        reason: "SS operand crossing offset FFFFh: the 286 raises interrupt 13, a 386+ \
                 raises #SS, interrupt 12 (i386 PRM 14.7, operand crossing offset 65535)",
        applies: |c| {
            c.used_memory
                .iter()
                .any(|m| m.segment() == Register::SS && crosses_segment_end(m, &c.test.initial))
        },
    },
    Exclusion {
        // Real-mode interrupt 13 on a string instruction can only be a segment overrun of
        // one of its elements (the length rule above took the rest).
        reason: "string element crossing offset FFFFh: the 286 steps SI/DI (and CX) before its \
                 interrupt 13, a 386+ fault leaves them as they were (SDM Vol.3 6.5)",
        applies: |c| c.insn.is_string_instruction() && c.test.exception == Some(13),
    },
    Exclusion {
        // The 286 rig had no 80287: its ESC opcodes only computed their address (and
        // ran the bus cycle), changing nothing else. trapeze models a CPU with an
        // integrated x87 (CPUID.FPU), whose ESC instructions load and store x87 state
        // (FSTP writes memory, FNSTSW AX writes AX), so the captures do not apply.
        reason: "x87 escape (D8-DF): the capture is of a 286 without an 80287; trapeze has an x87",
        applies: |c| {
            let prefixes = [
                0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3,
            ];
            let opcode = c.test.bytes.iter().find(|b| !prefixes.contains(b));
            opcode.is_some_and(|b| (0xD8..=0xDF).contains(b))
        },
    },
];

/// Flags the SDM leaves undefined that metadata.json does not mask, so the 286 and a
/// 386+ may both be right and still disagree.
struct Undefined {
    /// Test files (name prefix) the rule covers.
    files: &'static str,
    flags: u16,
    applies: fn(&Instruction) -> bool,
}

const UNDEFINED: [Undefined; 1] = [
    // SDM Vol.2B RCL/RCR/ROL/ROR and SAL/SAR/SHL/SHR: OF is defined for 1-bit shifts only.
    // metadata.json masks it for C1 and D2/D3 but not for C0.
    Undefined {
        files: "C0.",
        flags: 0x800,
        applies: |i| i.immediate8() & 31 > 1,
    },
];

/// Does this access run past offset FFFFh of its segment?
fn crosses_segment_end(m: &UsedMemory, r: &Regs) -> bool {
    let off = m.virtual_address(0, |reg, _, _| {
        if reg.is_segment_register() {
            Some(0)
        } else {
            gpr16(r, reg).map(u64::from)
        }
    });
    off.is_some_and(|o| o + m.memory_size().size() as u64 > 0x1_0000)
}

// ---- running and comparing ---------------------------------------------------------------

/// How the run of one test ended, when it did not reach the HLT.
enum Stuck {
    Runaway,
    Shutdown,
    Stop,
    Unimplemented(String),
    Panic(String),
}

/// Run `f`, turning a panic into its message and location: trapeze panicking on a guest
/// is a bug to report for that test, not a reason to stop the run.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    thread_local!(static LAST: RefCell<String> = const { RefCell::new(String::new()) });
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        LAST.with(|l| *l.borrow_mut() = info.to_string().replace('\n', " "))
    }));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(hook);
    r.map_err(|_| LAST.with(|l| l.take()))
}

/// The state a run ended in.
struct Outcome {
    regs: Regs,
    /// The bytes the test names.
    ram: BTreeMap<u32, u8>,
    /// Exceptions raised, by vector (`CpuStats::exceptions`).
    raised: [u64; 32],
}

/// Run one test on a fresh CPU, to its HLT.
fn run(c: &Case) -> Result<Outcome, Stuck> {
    let (t, strict) = (c.test, &c.strict);
    // A valid instruction without a handler would only log and raise #UD: say so instead,
    // unless #UD is what the 286 did too.
    if !strict.is_invalid() && !trapeze_cpu::exec::implemented(strict) && t.exception != Some(6) {
        return Err(Stuck::Unimplemented(format!("{:?}", strict.code())));
    }
    let mut phys = PhysMem::new();
    phys.add_ram(0, RAM_SIZE).expect("16 MiB of test RAM");
    for &(a, b) in &t.ram {
        phys.write_bytes(a as u64, &[b])
            .expect("test RAM address below 16 MiB");
    }
    let mut cpu = Cpu::new(Mmu::new(phys));
    load_regs(&mut cpu, &t.initial);
    // Nothing on the bus: IN reads all ones, as on the rig that captured the tests.
    let bus = &mut NullBus;
    catch(|| loop {
        match cpu.run(bus, BUDGET) {
            Exit::Halt => return Ok(()),
            Exit::Budget if cpu.icount < MAX_INSNS => {}
            Exit::Budget => return Err(Stuck::Runaway),
            Exit::Shutdown => return Err(Stuck::Shutdown),
            Exit::Stop => return Err(Stuck::Stop),
        }
    })
    .map_err(Stuck::Panic)??;
    let mut ram = BTreeMap::new();
    for &a in t.expected_ram.keys() {
        let mut b = [0u8];
        cpu.mmu
            .phys
            .read_bytes(a as u64, &mut b)
            .expect("test RAM address below 16 MiB");
        ram.insert(a, b[0]);
    }
    Ok(Outcome {
        regs: read_regs(&cpu),
        ram,
        raised: cpu.stats.exceptions,
    })
}

fn flag_names(bits: u16) -> String {
    let names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|&(_, n)| n)
        .collect();
    names.join(" ")
}

/// Compare a run with the test; each difference is one line of the returned list.
fn compare(c: &Case, mask: u16) -> Vec<String> {
    let t = c.test;
    let Outcome { regs, ram, raised } = match run(c) {
        Ok(r) => r,
        Err(stuck) => {
            return vec![match stuck {
                Stuck::Runaway => format!("no HLT within {MAX_INSNS} instructions"),
                Stuck::Shutdown => "shutdown (triple fault)".to_string(),
                Stuck::Stop => "the bus stopped the run".to_string(),
                Stuck::Unimplemented(code) => format!("no handler for {code}"),
                Stuck::Panic(msg) => format!("panicked: {msg}"),
            }]
        }
    };
    let mut diffs = Vec::new();
    for (i, (name, _)) in REGS.iter().enumerate() {
        let m = if i == FLAGS { mask } else { 0xFFFF };
        let (want, got) = (t.expected[i] & m, regs[i] & m);
        if want != got {
            let mut d = format!("{name}: expected {want:#06x}, got {got:#06x}");
            if i == FLAGS {
                let _ = write!(d, " ({} differ; mask {mask:#06x})", flag_names(want ^ got));
            }
            diffs.push(d);
        }
    }
    let pushed_flags = t.pushed_flags();
    for (&a, &want) in &t.expected_ram {
        let got = ram[&a];
        if Some(a) == pushed_flags {
            let word = |lo: u8, hi: Option<&u8>| {
                (lo as u16 | (hi.copied().unwrap_or(0) as u16) << 8) & mask
            };
            let (w, g) = (
                word(want, t.expected_ram.get(&(a + 1))),
                word(got, ram.get(&(a + 1))),
            );
            if w != g {
                diffs.push(format!(
                    "pushed FLAGS at {a:#x}: expected {w:#06x}, got {g:#06x} ({} differ)",
                    flag_names(w ^ g)
                ));
            }
        } else if pushed_flags.map(|fa| fa + 1) != Some(a) && want != got {
            diffs.push(format!(
                "ram[{a:#07x}]: expected {want:#04x}, got {got:#04x}"
            ));
        }
    }
    if !diffs.is_empty() {
        let vectors: Vec<String> = (0..32)
            .filter(|&v| raised[v] != 0)
            .map(|v| format!("{v}"))
            .collect();
        if !vectors.is_empty() {
            diffs.push(format!("trapeze raised exception {}", vectors.join(", ")));
        }
    }
    diffs
}

fn describe(stem: &str, t: &Test) -> String {
    let bytes: Vec<String> = t.bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut s = format!("{stem} #{} `{}` [{}]", t.idx, t.name, bytes.join(" "));
    if let (Some(n), Some(fa)) = (t.exception, t.pushed_flags()) {
        let _ = write!(s, " (the 286 took interrupt {n}, FLAGS pushed at {fa:#x})");
    }
    s
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    excluded: usize,
    revoked: usize,
}

/// The report goes straight to stderr: it is the point of this test, so the harness's
/// output capture must not swallow it.
fn report(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

#[test]
fn singlestep_80286_real_mode() {
    let data = PathBuf::from(DATA);
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("metadata.json")).expect("metadata.json"),
    )
    .expect("metadata.json is JSON");
    let revoked: Vec<String> = std::fs::read_to_string(data.join("revocation_list.txt"))
        .expect("revocation_list.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let filter: Vec<String> = std::env::var("SINGLESTEP_FILTER")
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_uppercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let verbose = std::env::var("SINGLESTEP_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0");

    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(data.join("v1_real_mode"))
        .expect("testdata/singlestep-80286/v1_real_mode")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let stem = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json.gz")?
                .to_string();
            Some((stem, path))
        })
        .filter(|(stem, _)| {
            filter.is_empty() || filter.iter().any(|f| stem.starts_with(f.as_str()))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no test file matches SINGLESTEP_FILTER={filter:?}"
    );

    let start = Instant::now();
    let mut info = InstructionInfoFactory::new();
    let mut total = Tally::default();
    let mut by_reason = [0usize; EXCLUSIONS.len()];
    let mut failing: Vec<String> = Vec::new();
    let mut undefined_masked = 0;
    report(&format!(
        "{:<6} {:>6} {:>6} {:>6}",
        "file", "pass", "fail", "excl"
    ));
    for (stem, path) in &files {
        let file_mask = flags_mask(&meta, stem);
        let mut tally = Tally::default();
        let mut shown = String::new();
        for t in load_file(path) {
            if revoked.contains(&t.hash) {
                tally.revoked += 1;
                continue;
            }
            let case = Case::new(&t, &mut info);
            if let Some(x) = case.excluded() {
                tally.excluded += 1;
                by_reason[x] += 1;
                if verbose {
                    let _ = writeln!(shown, "  excluded {}: rule {}", describe(stem, &t), x + 1);
                }
                continue;
            }
            let mask = case.flags_mask(stem, file_mask);
            if mask != file_mask {
                undefined_masked += 1;
            }
            let diffs = compare(&case, mask);
            if diffs.is_empty() {
                tally.passed += 1;
                continue;
            }
            tally.failed += 1;
            if verbose || tally.failed <= FAILURES_SHOWN {
                let _ = writeln!(shown, "  FAIL {}", describe(stem, &t));
                for d in diffs {
                    let _ = writeln!(shown, "       {d}");
                }
            }
        }
        report(&format!(
            "{stem:<6} {:>6} {:>6} {:>6}",
            tally.passed, tally.failed, tally.excluded
        ));
        if !shown.is_empty() {
            let _ = write!(std::io::stderr(), "{shown}");
        }
        if tally.failed > 0 {
            failing.push(format!("{stem} ({})", tally.failed));
        }
        total.passed += tally.passed;
        total.failed += tally.failed;
        total.excluded += tally.excluded;
        total.revoked += tally.revoked;
    }

    report("exclusions:");
    for (x, n) in EXCLUSIONS.iter().zip(by_reason) {
        report(&format!("  {n:>6}  {}", x.reason));
    }
    report(&format!(
        "  ({undefined_masked} tests compared with an undefined flag masked beyond metadata.json)"
    ));
    report(&format!(
        "TOTAL  passed {}  failed {}  excluded {}  revoked {}  ({} files, {:.1} s)",
        total.passed,
        total.failed,
        total.excluded,
        total.revoked,
        files.len(),
        start.elapsed().as_secs_f64()
    ));
    assert!(
        total.failed == 0,
        "{} of {} singlestep tests failed, in {} files: {}",
        total.failed,
        total.passed + total.failed,
        failing.len(),
        failing.join(", ")
    );
}
