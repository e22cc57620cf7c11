//! `trapeze debug`: a step debugger over the machine's own run loop.
//!
//! The debugger runs the guest with `Machine::advance`, which keeps the fast loop's
//! slices (and so the virtual time every device sees) whatever the number of
//! instructions per call: stepping, breakpoints and tracing never change what the guest
//! computes. Each step first lets the CPU take a pending interrupt at the instruction
//! boundary (a zero-instruction call, as the fast loop does at a block boundary), then
//! checks breakpoints at CS:RIP, then retires one instruction.

pub mod command;
pub mod trace;
pub mod view;
pub mod watch;

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use iced_x86::{Mnemonic, OpKind};
use trapeze_cpu::debug_api::MemAccess;
use trapeze_cpu::{gpr, Cpu};

use crate::machine::{Machine, Outcome};
use command::{Addr, Catch, Command, Seg, Syntax};
use view::Snapshot;
use watch::{Points, Space};

/// Instructions per call while running free (no breakpoint, watchpoint, catch or
/// trace): how often Ctrl-C is looked at.
const FREE_CHUNK: u64 = 1 << 16;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on Ctrl-C (SIGINT) stops a running guest instead of ending trapeze.
pub fn catch_ctrl_c() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Ctrl-C ends trapeze again.
pub fn release_ctrl_c() {
    // SAFETY: restoring the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Has Ctrl-C been pressed since the last call?
pub fn take_interrupt() -> bool {
    INTERRUPTED.swap(false, Ordering::Relaxed)
}

/// Why the guest stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The requested number of steps ran.
    Stepped,
    Breakpoint(u32),
    Watch {
        id: u32,
        access: MemAccess,
        write: bool,
    },
    Catch(u32, String),
    /// `until` / `next` reached its address.
    Reached,
    Interrupted,
    /// The guest's run ended.
    Ended(Outcome),
}

/// What to stop at besides the debugger's points.
#[derive(Clone, Copy, Default)]
pub struct Goal {
    /// Instructions to retire (None: no limit).
    pub steps: Option<u64>,
    /// Stop when CS:RIP's linear address is this.
    pub until: Option<u64>,
    /// Run the first instruction even if a breakpoint is on it (resuming from a
    /// breakpoint passes it).
    pub pass_first: bool,
}

impl Goal {
    pub fn steps(n: u64) -> Goal {
        Goal {
            steps: Some(n),
            until: None,
            pass_first: true,
        }
    }

    pub fn until(lin: Option<u64>) -> Goal {
        Goal {
            steps: None,
            until: lin,
            pass_first: true,
        }
    }
}

pub struct Debugger {
    pub m: Machine,
    /// `--max-instructions`.
    pub limit: Option<u64>,
    pub points: Points,
    pub syntax: Syntax,
    trace: Option<trace::Trace>,
    /// The registers at the last stop.
    last: Snapshot,
    pub ended: Option<Outcome>,
}

impl Debugger {
    pub fn new(m: Machine, limit: Option<u64>) -> Self {
        let last = Snapshot::of(&m.cpu);
        Debugger {
            m,
            limit,
            points: Points::default(),
            syntax: Syntax::Intel,
            trace: None,
            last,
            ended: None,
        }
    }

    /// Run towards `goal`, stopping at breakpoints, watchpoints, catches, the end
    /// of the run, or Ctrl-C. With no point, trace or `until`, the guest runs in
    /// chunks of the fast loop.
    pub fn resume(&mut self, goal: Goal) -> Stop {
        if let Some(o) = self.ended {
            return Stop::Ended(o);
        }
        let free = self.points.is_empty() && self.trace.is_none() && goal.until.is_none();
        let start = self.m.cpu.icount;
        let started = std::time::Instant::now();
        let stop = loop {
            if take_interrupt() {
                break Stop::Interrupted;
            }
            let done = self.m.cpu.icount - start;
            let left = goal.steps.map_or(u64::MAX, |n| n.saturating_sub(done));
            if left == 0 {
                break Stop::Stepped;
            }
            if free {
                if let Some(o) = self.m.advance(self.limit, left.min(FREE_CHUNK)) {
                    break Stop::Ended(o);
                }
                continue;
            }
            if let Some(s) = self.step_one(done > 0 || !goal.pass_first, goal.until) {
                break s;
            }
        };
        self.m.stats.wall += started.elapsed();
        if let Stop::Ended(o) = stop {
            self.ended = Some(o);
        }
        if let Some(t) = &mut self.trace {
            let _ = t.flush();
        }
        stop
    }

    /// Bring the CPU to an instruction boundary where it will execute: pending
    /// interrupts taken, halted time skipped.
    fn boundary(&mut self) -> Result<(), Stop> {
        loop {
            if let Some(o) = self.m.advance(self.limit, 0) {
                return Err(Stop::Ended(o));
            }
            if !self.m.cpu.halted() {
                return Ok(());
            }
            if take_interrupt() {
                return Err(Stop::Interrupted);
            }
            // Halted with a device deadline ahead: the slice ends and time skips.
            if let Some(o) = self.m.advance(self.limit, 1) {
                return Err(Stop::Ended(o));
            }
        }
    }

    /// One instruction; `Some` if something made the guest stop.
    fn step_one(&mut self, check_points: bool, until: Option<u64>) -> Option<Stop> {
        if let Err(s) = self.boundary() {
            return Some(s);
        }
        let cpu = &self.m.cpu;
        let lin = cpu.pc_linear();
        if check_points {
            if until == Some(lin) {
                return Some(Stop::Reached);
            }
            if let Some(id) = self.points.break_hit(cpu) {
                return Some(Stop::Breakpoint(id));
            }
        }
        // Decode the instruction only for what needs it: watchpoints, I/O catches, the
        // trace.
        let catches_port = self
            .points
            .catches
            .iter()
            .any(|c| matches!(c.what, Catch::Port(_)));
        let catches_exit = self
            .points
            .catches
            .iter()
            .any(|c| matches!(c.what, Catch::Exit(_)));
        let insn = (!self.points.watches.is_empty() || catches_port || self.trace.is_some())
            .then(|| cpu.next_instruction());
        let accesses = match &insn {
            Some(i) if !self.points.watches.is_empty() => cpu.memory_accesses(i),
            _ => Vec::new(),
        };
        let port = insn.as_ref().and_then(|i| io_port(cpu, i));
        let mode = (cpu.mode_name(), cpu.mmu.paging().mode);
        let exceptions = cpu.stats.exceptions;
        let interrupts = cpu.stats.interrupts;
        let exits = catches_exit.then(|| self.m.stats.exits.clone());
        let before = self.trace.as_ref().map(|_| Snapshot::of(cpu));

        let icount = self.m.cpu.icount;
        let mut ended = None;
        while self.m.cpu.icount == icount {
            if let Some(o) = self.m.advance(self.limit, 1) {
                ended = Some(o);
                break;
            }
        }

        let cpu = &self.m.cpu;
        let vector = (0..32).find(|&v| cpu.stats.exceptions[v] != exceptions[v]);
        if let (Some(t), Some(before), Some(insn)) = (&mut self.trace, before, &insn) {
            let mut bytes = vec![0u8; insn.len()];
            let _ = cpu.peek(lin, &mut bytes);
            let event = vector
                .map(|v| format!("exception #{v}, then the handler's first instruction"))
                .or_else(|| {
                    (cpu.stats.interrupts != interrupts).then(|| "interrupt taken".to_string())
                });
            let _ = t.line(
                lin,
                insn,
                &bytes,
                self.syntax,
                &before,
                &Snapshot::of(cpu),
                event.as_deref(),
            );
        }
        if let Some(o) = ended {
            return Some(Stop::Ended(o));
        }
        for c in &self.points.catches {
            let hit = match &c.what {
                Catch::Exception(v) => vector == Some(*v as usize),
                Catch::Port(p) => port.is_some_and(|(lo, n)| (lo..lo + n).contains(p)),
                Catch::Exit(r) => exits
                    .as_ref()
                    .is_some_and(|e| self.m.stats.exits.get(r.as_str()) != e.get(r.as_str())),
                Catch::Mode => mode != (cpu.mode_name(), cpu.mmu.paging().mode),
            };
            if hit {
                return Some(Stop::Catch(c.id, c.what.to_string()));
            }
        }
        if vector.is_none() {
            if let Some(h) = self.points.watch_hit(cpu, &accesses) {
                return Some(Stop::Watch {
                    id: h.id,
                    access: h.access,
                    write: h.access.write && h.kind != command::WatchKind::Read,
                });
            }
        }
        None
    }

    /// The linear address of a user address; physical ones stay as they are.
    pub fn resolve(&self, a: Addr) -> Result<(Space, u64), String> {
        let cpu = &self.m.cpu;
        Ok(match a {
            Addr::Linear(l) => (Space::Linear, l),
            Addr::Physical(p) => (Space::Physical, p),
            Addr::SegOff(Seg::Reg(r), off) => (Space::Linear, cpu.seg[r].base.wrapping_add(off)),
            Addr::SegOff(Seg::Selector(sel), off) => {
                let base = if !cpu.protected() || cpu.v86() {
                    (sel as u64) << 4
                } else {
                    selector_base(cpu, sel)?
                };
                (Space::Linear, base.wrapping_add(off))
            }
        })
    }

    /// Read memory at a user address.
    fn read(&self, a: Addr, out: &mut [u8]) -> Result<(Space, u64), String> {
        let (space, at) = self.resolve(a)?;
        match space {
            Space::Linear => self.m.cpu.peek(at, out),
            Space::Physical => self.m.cpu.mmu.phys.read_bytes(at, out).map_err(|_| at),
        }
        .map_err(|bad| format!("cannot read {space} {bad:#x}"))?;
        Ok((space, at))
    }

    /// The report of a stop: why, what changed, and the next instruction.
    pub fn stop_report(&mut self, stop: &Stop) -> String {
        let mut s = match stop {
            Stop::Stepped => String::new(),
            Stop::Breakpoint(id) => format!("breakpoint {id}\n"),
            Stop::Watch { id, access, write } => {
                let mut v = vec![0u8; access.len as usize];
                let val = match self.m.cpu.peek(access.lin, &mut v) {
                    Ok(()) => v
                        .iter()
                        .rev()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    Err(_) => "?".into(),
                };
                format!(
                    "watchpoint {id}: {} of {} bytes at {:#x}, value now {val}\n",
                    if *write { "write" } else { "read" },
                    access.len,
                    access.lin
                )
            }
            Stop::Catch(id, what) => format!("catchpoint {id}: {what}\n"),
            Stop::Reached => "reached\n".into(),
            Stop::Interrupted => "interrupted\n".into(),
            Stop::Ended(o) => format!("guest ended: {}\n", o.describe()),
        };
        let now = Snapshot::of(&self.m.cpu);
        let changes = self.last.changes(&now);
        if !changes.is_empty() {
            let _ = writeln!(s, "changed: {changes}");
        }
        self.last = now;
        s += &self.where_line();
        s
    }

    /// "=> cs:rip  linear  bytes  text" for the next instruction.
    pub fn where_line(&self) -> String {
        let cpu = &self.m.cpu;
        let (line, _) = view::disas_at(cpu, cpu.pc_linear(), cpu.rip, self.syntax);
        format!(
            "=> {:04x}:{:x} icount={}  {line}\n",
            cpu.seg[trapeze_cpu::sreg::CS].selector,
            cpu.rip,
            cpu.icount
        )
    }

    /// Run one command; the text to print, or `Err` for a bad command. `Ok(None)`: quit.
    pub fn execute(&mut self, c: Command) -> Result<Option<String>, String> {
        let cpu = &self.m.cpu;
        let out = match c {
            Command::Step(n) => {
                let stop = self.resume(Goal::steps(n));
                self.stop_report(&stop)
            }
            Command::Next => {
                let insn = cpu.next_instruction();
                let over = insn.mnemonic() == Mnemonic::Call
                    || insn.has_rep_prefix()
                    || insn.has_repe_prefix()
                    || insn.has_repne_prefix();
                let goal = if over {
                    Goal::until(Some(cpu.pc_linear().wrapping_add(insn.len() as u64)))
                } else {
                    Goal::steps(1)
                };
                let stop = self.resume(goal);
                self.stop_report(&stop)
            }
            Command::Continue => {
                let stop = self.resume(Goal::until(None));
                self.stop_report(&stop)
            }
            Command::Until(a) => {
                let (space, at) = self.resolve(a)?;
                if space == Space::Physical {
                    return Err("until takes a linear or seg:off address".into());
                }
                let stop = self.resume(Goal::until(Some(at)));
                self.stop_report(&stop)
            }
            Command::Break(a, cond) => {
                let (space, at) = self.resolve(a)?;
                let id = self.points.add_break(space, at, cond);
                format!("breakpoint {id} at {space} {at:#x}\n")
            }
            Command::Watch(kind, a, len) => {
                let (space, at) = self.resolve(a)?;
                let id = self.points.add_watch(kind, space, at, len);
                format!("watchpoint {id}: {kind} of {space} {at:#x} len {len}\n")
            }
            Command::Catch(what) => {
                if let Catch::Exit(r) = &what {
                    if !crate::machine::EXIT_NAMES.contains(&r.as_str()) {
                        return Err(format!(
                            "exit reason '{r}': expected one of {}",
                            crate::machine::EXIT_NAMES.join(", ")
                        ));
                    }
                }
                let text = what.to_string();
                let id = self.points.add_catch(what);
                format!("catchpoint {id}: {text}\n")
            }
            Command::Delete(id) => {
                if !self.points.delete(id) {
                    return Err(format!("no breakpoint, watchpoint or catchpoint {id}"));
                }
                format!("deleted {id}\n")
            }
            Command::InfoBreakpoints => watch::list(&self.points),
            Command::InfoDevices => view::devices(&self.m.platform),
            Command::Regs => view::regs(cpu),
            Command::Fpu => view::fpu(cpu),
            Command::Sse => view::sse(cpu),
            Command::Msr(i) => view::msr(cpu, i),
            Command::Gdt => view::gdt(cpu),
            Command::Idt => view::idt(cpu),
            Command::Tlb => view::tlb(cpu),
            Command::Translate(lin) => view::translate(cpu, lin),
            Command::Examine(a, n) => {
                let mut buf = vec![0u8; n.min(1 << 16) as usize];
                let (space, at) = self.read(a, &mut buf)?;
                view::hexdump(at, &buf, space == Space::Physical)
            }
            Command::Disas(a, n) => {
                let (space, mut lin) = match a {
                    Some(a) => self.resolve(a)?,
                    None => (Space::Linear, cpu.pc_linear()),
                };
                if space == Space::Physical {
                    return Err("disas takes a linear or seg:off address".into());
                }
                // IP for relative targets: the offset in CS of the linear address.
                let cs_base = cpu.seg[trapeze_cpu::sreg::CS].base;
                let mut s = String::new();
                for _ in 0..n.min(1000) {
                    let (line, len) =
                        view::disas_at(cpu, lin, lin.wrapping_sub(cs_base), self.syntax);
                    s += &line;
                    s.push('\n');
                    lin = lin.wrapping_add(len as u64);
                }
                s
            }
            Command::Set(r, v) => {
                view::set_reg(&mut self.m.cpu, &r, v)?;
                self.last = Snapshot::of(&self.m.cpu);
                format!("{r} = {v:#x}\n")
            }
            Command::Write(a, bytes) => {
                let (space, at) = self.resolve(a)?;
                let phys = match space {
                    Space::Physical => at,
                    Space::Linear => {
                        // Byte by byte: the range may cross into another page.
                        for (k, b) in bytes.iter().enumerate() {
                            let p = linear_to_phys(&self.m.cpu, at + k as u64)?;
                            self.m.cpu.write_phys(p, &[*b]).map_err(|e| e.to_string())?;
                        }
                        return Ok(Some(format!("wrote {} bytes\n", bytes.len())));
                    }
                };
                self.m
                    .cpu
                    .write_phys(phys, &bytes)
                    .map_err(|e| e.to_string())?;
                format!("wrote {} bytes\n", bytes.len())
            }
            Command::TraceOn(path) => {
                let t =
                    trace::Trace::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                self.trace = Some(t);
                format!("tracing to {}\n", path.display())
            }
            Command::TraceOff => {
                if let Some(mut t) = self.trace.take() {
                    t.flush().map_err(|e| e.to_string())?;
                }
                "trace off\n".into()
            }
            Command::Stats => self.m.counters(),
            Command::Syntax(s) => {
                self.syntax = s;
                String::new()
            }
            Command::Help => command::HELP.to_string(),
            Command::Quit => return Ok(None),
        };
        Ok(Some(out))
    }

    /// The command loop: read lines from `input` until EOF or `quit`. With `echo`
    /// each command is printed after the prompt (a script's output then reads like a
    /// session). Returns false if any command failed.
    pub fn repl(&mut self, input: &mut dyn BufRead, out: &mut dyn Write, echo: bool) -> bool {
        let mut ok = true;
        let _ = write!(out, "{}", self.where_line());
        loop {
            let _ = write!(out, "(trapeze) ");
            let _ = out.flush();
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = writeln!(out);
                    break;
                }
                Ok(_) => {}
            }
            if echo {
                let _ = writeln!(out, "{}", line.trim_end());
            }
            let cmd = match command::parse(&line) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    let _ = writeln!(out, "error: {e}");
                    ok = false;
                    continue;
                }
            };
            match self.execute(cmd) {
                Ok(Some(text)) => {
                    let _ = write!(out, "{text}");
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = writeln!(out, "error: {e}");
                    ok = false;
                }
            }
        }
        if let Some(t) = &mut self.trace {
            let _ = t.flush();
        }
        ok
    }
}

/// The base of the descriptor a selector names in the GDT or LDT.
fn selector_base(cpu: &Cpu, sel: u16) -> Result<u64, String> {
    let table = if sel & 4 != 0 {
        cpu.ldtr.base
    } else {
        cpu.gdtr.base
    };
    let mut b = [0u8; 8];
    cpu.peek(table + (sel & !7) as u64, &mut b)
        .map_err(|_| format!("selector {sel:#x}: descriptor unreadable"))?;
    let d = u64::from_le_bytes(b);
    Ok(((d >> 16) & 0xFF_FFFF) | ((d >> 56) << 24))
}

pub fn linear_to_phys(cpu: &Cpu, lin: u64) -> Result<u64, String> {
    cpu.mmu
        .inspect(lin)
        .1
        .map(|w| w.phys)
        .map_err(|_| format!("linear {lin:#x} is not mapped"))
}

/// The ports an IN/OUT/INS/OUTS is about to access: (first port, count).
fn io_port(cpu: &Cpu, insn: &iced_x86::Instruction) -> Option<(u16, u16)> {
    use Mnemonic::*;
    let (port_op, size_op) = match insn.mnemonic() {
        In | Insb | Insw | Insd => (1, 0),
        Out | Outsb | Outsw | Outsd => (0, 1),
        _ => return None,
    };
    let port = match insn.op_kind(port_op) {
        OpKind::Immediate8 => insn.immediate8() as u16,
        _ => cpu.gpr[gpr::RDX] as u16,
    };
    let size = match insn.op_kind(size_op) {
        OpKind::Register => insn.op_register(size_op).size(),
        _ => insn.memory_size().size(),
    };
    Some((port, size.max(1) as u16))
}
