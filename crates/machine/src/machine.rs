//! The VMM run loop: build the PC, run the CPU in slices, handle each exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use trapeze_cpu::{sreg, Cpu, Exit};
use trapeze_devices::debug_exit;
use trapeze_devices::Nanos;
use trapeze_mmu::{Mmu, PhysMem};

use crate::clock::{NS_PER_INSN, TSC_PER_INSN};
use crate::config::{Config, Image, MachineError, Output};
use crate::console::Console;
use crate::platform::{Platform, PlatformConfig};

/// RAM above this goes above 4 GiB, leaving the top of the 32-bit space for firmware
/// and MMIO as on a PC.
const LOW_RAM_MAX: u64 = 0xC000_0000;
const FOUR_GIB: u64 = 1 << 32;

/// Most instructions per call to `Cpu::run`: how often the VMM looks up from the guest
/// when no device deadline comes sooner.
const SLICE: u64 = 1 << 22;
/// The same with the host's clock, where deadlines are estimates: about 1 ms of host
/// time at this interpreter's speed.
const REALTIME_SLICE: u64 = 1 << 17;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this value to the debug-exit port.
    DebugExit(u32),
    /// HLT with nothing that could ever wake the CPU.
    Halted { interrupts_enabled: bool },
    /// Triple fault: the CPU shut down.
    TripleFault,
    /// `--max-instructions` reached.
    InstructionLimit,
    /// The guest pulsed a reset line (port 0x92 bit 0, 0xCF9, the i8042): a reboot.
    Reset,
    /// The user ended the run from the console (Ctrl-A x).
    Quit,
    /// The guest entered ACPI S5 (PM1a_CNT.SLP_EN): power off.
    PowerOff,
}

impl Outcome {
    /// The host exit status: QEMU's (V << 1) | 1 for debug-exit (always odd), 0 for a
    /// halt, and even codes for the rest.
    pub fn exit_status(&self) -> i32 {
        match *self {
            Outcome::DebugExit(v) => debug_exit::status(v),
            Outcome::Halted { .. } | Outcome::Reset | Outcome::Quit | Outcome::PowerOff => 0,
            Outcome::TripleFault => 4,
            Outcome::InstructionLimit => 6,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Outcome::DebugExit(v) => format!(
                "guest wrote {v:#x} to the debug-exit port (status {})",
                self.exit_status()
            ),
            Outcome::Halted {
                interrupts_enabled: false,
            } => "CPU halted with interrupts disabled; nothing can wake it".into(),
            Outcome::Halted {
                interrupts_enabled: true,
            } => "CPU halted and no device can raise an interrupt".into(),
            Outcome::TripleFault => "triple fault: the CPU shut down".into(),
            Outcome::InstructionLimit => "instruction limit reached".into(),
            Outcome::Reset => "guest requested a reset (reboot); the run ends here".into(),
            Outcome::Quit => "quit from the console (Ctrl-A x)".into(),
            Outcome::PowerOff => "guest powered off (ACPI S5)".into(),
        }
    }
}

/// What a run cost, for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub instructions: u64,
    pub wall: Duration,
    /// VMM exits by reason.
    pub exits: BTreeMap<&'static str, u64>,
}

impl RunStats {
    pub fn mips(&self) -> f64 {
        self.instructions as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
    }
}

pub struct Machine {
    pub cpu: Cpu,
    pub platform: Platform,
    /// Host input for COM1 (`--serial stdio`).
    console: Option<Console>,
    /// The instruction count at which the slice in progress ends (`advance`).
    slice_end: Option<u64>,
    pub stats: RunStats,
}

impl Machine {
    pub fn new(cfg: &Config) -> Result<Self, MachineError> {
        let mut phys = PhysMem::new();
        let low = cfg.memory.min(LOW_RAM_MAX);
        phys.add_ram(0, low)?;
        if cfg.memory > low {
            phys.add_ram(FOUR_GIB, cfg.memory - low)?;
        }
        let start = match &cfg.image {
            Image::Flat { data, load } => {
                let size = data.len() as u64;
                if *load >= 0x10_0000 {
                    return Err(MachineError::LoadAddress(*load));
                }
                if load + size > low {
                    return Err(MachineError::ImageTooLarge {
                        size,
                        load: *load,
                        memory: cfg.memory,
                    });
                }
                phys.write_bytes(*load, data)?;
                Some(*load)
            }
            Image::Bios { data } => {
                // The whole image below 4 GiB; its last 128 KiB also end at 0xFFFFF
                // (the legacy BIOS area), as QEMU's -bios maps it.
                phys.add_rom(FOUR_GIB - data.len() as u64, data)?;
                let low_part = &data[data.len().saturating_sub(0x2_0000)..];
                phys.add_rom(0x10_0000 - low_part.len() as u64, low_part)?;
                None
            }
            Image::Multiboot(_) | Image::Linux(_) => None,
        };
        let multiboot = match &cfg.image {
            Image::Multiboot(mb) => Some(mb.load(&mut phys, low, cfg.memory - low)?),
            _ => None,
        };
        let linux = match &cfg.image {
            Image::Linux(l) => {
                let rsdp = crate::acpi::install(&mut phys)?;
                Some(l.load(&mut phys, low, cfg.memory - low, rsdp)?)
            }
            _ => None,
        };

        let platform = Platform::new(PlatformConfig {
            below_4g: low,
            above_4g: cfg.memory - low,
            debugcon: open_output(&cfg.debugcon)?,
            serial: open_output(&cfg.serial)?,
            realtime: cfg.realtime,
        })?;

        let mut cpu = Cpu::new(Mmu::new(phys));
        cpu.pg_strict = cfg.pg_strict;
        if let Some(load) = start {
            // Flat images start at 0000:load like a boot sector (segment:offset
            // split for loads at or above 64 KiB), with the boot drive in DL.
            let (cs, ip) = if load < 0x1_0000 {
                (0, load as u16)
            } else {
                ((load >> 4) as u16, (load & 0xF) as u16)
            };
            cpu.set_real_mode_entry(cs, ip);
            cpu.gpr[trapeze_cpu::gpr::RDX] = 0x80;
            debug_assert_eq!(cpu.seg[sreg::CS].base + ip as u64, load);
        }
        if let Some(boot) = &multiboot {
            crate::multiboot::enter(&mut cpu, boot);
        }
        if let Some(boot) = &linux {
            crate::linux::enter(&mut cpu, boot);
        }
        // The TSC counts on the machine's clock (clock.rs).
        cpu.tsc_per_insn = TSC_PER_INSN;
        let console = (cfg.serial == Output::Stdout && cfg.serial_input).then(Console::stdin);
        Ok(Machine {
            cpu,
            platform,
            console,
            slice_end: None,
            stats: RunStats::default(),
        })
    }

    /// Machine time now.
    pub fn now(&self) -> Nanos {
        self.platform.clock.now(self.cpu.icount)
    }

    /// Instruction times from now until machine time `t` (at least 1).
    fn insns_until(&self, t: Nanos) -> u64 {
        self.platform.clock.insns_until(self.cpu.icount, t)
    }

    /// Instruction times passed: retired, plus skipped while halted.
    fn elapsed(&self) -> u64 {
        self.cpu
            .icount
            .saturating_add(self.platform.clock.skipped())
    }

    /// Bring the devices to the current time, host input to COM1, and the CPU's INTR
    /// and NMI inputs up to date.
    fn sync(&mut self) {
        let now = self.now();
        if self.platform.clock.realtime() {
            // The TSC follows the host clock too; it never goes back.
            let behind = now.0.saturating_sub(self.cpu.tsc());
            self.cpu.tsc_offset = self.cpu.tsc_offset.wrapping_add(behind);
        }
        if let Some(c) = &mut self.console {
            c.poll();
            let p = &mut self.platform;
            p.now = p.now.max(now);
            c.deliver(|b| p.serial_input(b));
        }
        if self.platform.next_deadline().is_some_and(|d| d <= now) || self.platform.now < now {
            self.platform.advance(now);
        }
        let pending = self.platform.interrupt_pending();
        self.cpu.intr = pending;
        self.platform.intr = pending;
        if std::mem::take(&mut self.platform.nmi) {
            self.cpu.nmi = true;
        }
    }

    /// Run until the guest ends the run, or `limit` instruction times have passed
    /// (retired instructions plus halted time skipped).
    pub fn run(&mut self, limit: Option<u64>) -> Outcome {
        let started = Instant::now();
        let outcome = loop {
            if let Some(o) = self.advance(limit, u64::MAX) {
                break o;
            }
        };
        self.platform.flush_output();
        self.stats.wall += started.elapsed();
        outcome
    }

    /// Run at most `max` instructions of the current slice (starting one if none is in
    /// progress), then handle the CPU's exit if the slice ended. The debugger steps
    /// with a small `max`: a slice's boundaries, and so the time devices see, do not
    /// depend on how many calls it takes (DESIGN.md §2, §6), so stepping never changes
    /// what the guest computes. The caller accounts the wall time (`stats.wall`).
    pub fn advance(&mut self, limit: Option<u64>, max: u64) -> Option<Outcome> {
        let first = self.cpu.icount;
        let outcome = self.advance_inner(limit, max);
        self.stats.instructions += self.cpu.icount - first;
        outcome
    }

    /// Instruction times left before `limit`.
    fn left(&self, limit: Option<u64>) -> u64 {
        limit.map_or(u64::MAX, |l| l.saturating_sub(self.elapsed()))
    }

    fn advance_inner(&mut self, limit: Option<u64>, max: u64) -> Option<Outcome> {
        let end = match self.slice_end {
            Some(end) => end,
            None => {
                let left = self.left(limit);
                if left == 0 {
                    return Some(Outcome::InstructionLimit);
                }
                if self.console.as_ref().is_some_and(|c| c.quit) {
                    return Some(Outcome::Quit);
                }
                self.sync();
                let slice = if self.platform.clock.realtime() {
                    REALTIME_SLICE
                } else {
                    SLICE
                };
                let mut budget = left.min(slice);
                if let Some(d) = self.platform.next_deadline() {
                    budget = budget.min(self.insns_until(d));
                }
                let end = self.cpu.icount + budget;
                self.slice_end = Some(end);
                end
            }
        };
        let exit = self
            .cpu
            .run(&mut self.platform, (end - self.cpu.icount).min(max));
        if exit == Exit::Budget && self.cpu.icount < end {
            return None;
        }
        self.slice_end = None;
        *self.stats.exits.entry(exit_name(exit)).or_default() += 1;
        match exit {
            Exit::Budget => None,
            Exit::Halt => {
                let if_set = self.cpu.rflags() & trapeze_cpu::rf::IF != 0;
                self.sync();
                if self.cpu.nmi || (if_set && self.cpu.intr) {
                    return None;
                }
                let left = self.left(limit);
                if if_set && self.idle(self.platform.next_deadline(), left) {
                    return None;
                }
                Some(Outcome::Halted {
                    interrupts_enabled: if_set,
                })
            }
            Exit::Shutdown => Some(Outcome::TripleFault),
            Exit::Stop => {
                if let Some(v) = self
                    .platform
                    .exit_code
                    .lock()
                    .ok()
                    .and_then(|mut c| c.take())
                {
                    return Some(Outcome::DebugExit(v));
                }
                if std::mem::take(&mut self.platform.reset) {
                    return Some(Outcome::Reset);
                }
                if std::mem::take(&mut self.platform.power_off) {
                    return Some(Outcome::PowerOff);
                }
                // An interrupt-state change: the next sync updates INTR.
                None
            }
        }
    }

    /// The CPU halted with interrupts enabled: let time pass until `deadline` or until
    /// console input arrives. In virtual time the clock jumps to the deadline at once
    /// (deterministic); with the host clock, or a person at the terminal, idle time
    /// passes at the host's pace and typing wakes the guest. With no deadline, only
    /// streamed input (a terminal, a pipe) can wake it: wait for that. False if nothing
    /// can ever wake the CPU.
    fn idle(&mut self, deadline: Option<Nanos>, left: u64) -> bool {
        self.platform.flush_output();
        let realtime = self.platform.clock.realtime();
        let interactive = self.console.as_ref().is_some_and(Console::interactive);
        let streaming = self.console.as_ref().is_some_and(Console::streaming);
        let skip = match deadline {
            Some(d) if !realtime && !interactive => self.insns_until(d),
            None if !streaming => return false,
            _ => {
                let now = self.now();
                let timeout = deadline.map(|d| Duration::from_nanos(d.0.saturating_sub(now.0)));
                let started = Instant::now();
                match &mut self.console {
                    Some(c) => c.wait(timeout),
                    None => std::thread::sleep(timeout.unwrap_or_default()),
                }
                let waited = started.elapsed().as_nanos() as u64 / NS_PER_INSN;
                deadline.map_or(waited, |d| waited.min(self.insns_until(d)))
            }
        };
        if !realtime {
            let skip = skip.min(left);
            self.platform.clock.skip(skip);
            self.cpu.tsc_offset = self
                .cpu
                .tsc_offset
                .wrapping_add(skip.wrapping_mul(self.cpu.tsc_per_insn));
        }
        true
    }

    /// The `--stats` report: host timing, then `counters`.
    pub fn report(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<24}{v}\n"));
        line("wall time", format!("{:.3} s", s.wall.as_secs_f64()));
        line("guest MIPS", format!("{:.1}", s.mips()));
        out + &self.counters()
    }

    /// What the guest did, by count: the same on every run of a guest (the
    /// debugger's `stats`).
    pub fn counters(&self) -> String {
        let s = &self.stats;
        let c = &self.cpu.stats;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<24}{v}\n"));
        line("instructions retired", s.instructions.to_string());
        let exits: Vec<String> = s.exits.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line("VMM exits", exits.join(", "));
        line(
            "traps",
            format!("port I/O {}, MMIO {}", c.io_exits, c.mmio_exits),
        );
        line(
            "port traps by device",
            by_device(self.platform.ports.stats()),
        );
        line(
            "MMIO traps by device",
            by_device(self.platform.mmio.stats()),
        );
        line("virtual time", format!("{} ns", self.now().0));
        let exc: Vec<String> = c
            .exceptions
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(v, n)| format!("#{v} {n}"))
            .collect();
        line(
            "exceptions",
            if exc.is_empty() {
                "none".into()
            } else {
                exc.join(", ")
            },
        );
        line("interrupts", c.interrupts.to_string());
        let sens: Vec<String> = trapeze_cpu::classify::Class::STAT_NAMES
            .iter()
            .zip(c.sensitive)
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        line("sensitive instructions", sens.join(", "));
        let dc = self.cpu.cache_stats();
        line(
            "decode cache",
            format!(
                "{} block lookups, {} decoded, {} invalidated ({} SMC writes)",
                dc.hits + dc.misses,
                dc.misses,
                dc.invalidated_blocks,
                c.code_invalidations
            ),
        );
        out
    }
}

/// The VMM exit reasons by the names `--stats` and `catch exit` use.
pub const EXIT_NAMES: [&str; 4] = ["slice-end", "hlt", "shutdown", "device-stop"];

fn exit_name(e: Exit) -> &'static str {
    EXIT_NAMES[match e {
        Exit::Budget => 0,
        Exit::Halt => 1,
        Exit::Shutdown => 2,
        Exit::Stop => 3,
    }]
}

fn open_output(o: &Output) -> Result<Box<dyn Write + Send>, MachineError> {
    Ok(match o {
        Output::Stdout => Box::new(std::io::stdout()),
        Output::None => Box::new(std::io::sink()),
        Output::File(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |source| MachineError::Output {
                path: p.clone(),
                source,
            },
        )?)),
    })
}

/// "name 3r/5w, ..." for the devices that saw any access, or "none".
fn by_device(stats: Vec<(&'static str, trapeze_devices::bus::AccessStats)>) -> String {
    let busy: Vec<String> = stats
        .into_iter()
        .filter(|(_, p)| p.reads + p.writes > 0)
        .map(|(n, p)| format!("{n} {}r/{}w", p.reads, p.writes))
        .collect();
    if busy.is_empty() {
        "none".into()
    } else {
        busy.join(", ")
    }
}
