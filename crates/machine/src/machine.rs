//! The VMM run loop: build the PC, run the CPU in slices, handle each exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use trapeze_cpu::{sreg, Cpu, Exit};
use trapeze_devices::debug_exit::{self, DebugExit, ExitCode};
use trapeze_devices::debugcon::{self, DebugCon};
use trapeze_devices::sysctrl::{self, SystemControlA};
use trapeze_devices::PortBus;
use trapeze_mmu::{Mmu, PhysMem};

use crate::config::{Config, Image, MachineError, Output};
use crate::platform::Platform;

/// RAM above this goes above 4 GiB, leaving the top of the 32-bit space for firmware
/// and MMIO as on a PC.
const LOW_RAM_MAX: u64 = 0xC000_0000;
const FOUR_GIB: u64 = 1 << 32;

/// Instructions per call to `Cpu::run`: how often the VMM looks up from the guest.
const SLICE: u64 = 1 << 22;

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
    /// The guest pulsed a reset line (port 0x92 bit 0).
    Reset,
}

impl Outcome {
    /// The host exit status: QEMU's (V << 1) | 1 for debug-exit (always odd), 0 for a
    /// halt, and even codes for the rest.
    pub fn exit_status(&self) -> i32 {
        match *self {
            Outcome::DebugExit(v) => debug_exit::status(v),
            Outcome::Halted { .. } | Outcome::Reset => 0,
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
            Outcome::Reset => "guest requested a reset".into(),
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
    exit_code: ExitCode,
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
        };

        let exit_code = ExitCode::default();
        let mut ports = PortBus::new();
        ports.register(
            debugcon::PORT,
            1,
            Box::new(DebugCon::new(open_output(&cfg.debugcon)?)),
        )?;
        ports.register(
            debug_exit::PORT,
            debug_exit::LEN,
            Box::new(DebugExit::new(exit_code.clone())),
        )?;
        ports.register(sysctrl::PORT, 1, Box::new(SystemControlA::new(true)))?;

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
        Ok(Machine {
            cpu,
            platform: Platform {
                ports,
                mmio_unclaimed: 0,
            },
            exit_code,
            stats: RunStats::default(),
        })
    }

    /// Run until the guest ends the run, or `limit` instructions have retired.
    pub fn run(&mut self, limit: Option<u64>) -> Outcome {
        let started = Instant::now();
        let first = self.cpu.icount;
        let outcome = loop {
            let left = limit.map_or(u64::MAX, |l| l.saturating_sub(self.cpu.icount));
            if left == 0 {
                break Outcome::InstructionLimit;
            }
            let exit = self.cpu.run(&mut self.platform, left.min(SLICE));
            *self.stats.exits.entry(exit_name(exit)).or_default() += 1;
            match exit {
                Exit::Budget => continue,
                // Nothing in this machine can raise an interrupt yet, so a halt is final.
                Exit::Halt => {
                    break Outcome::Halted {
                        interrupts_enabled: self.cpu.rflags() & trapeze_cpu::rf::IF != 0,
                    }
                }
                Exit::Shutdown => break Outcome::TripleFault,
                Exit::Stop => match self.exit_code.lock().ok().and_then(|mut c| c.take()) {
                    Some(v) => break Outcome::DebugExit(v),
                    None => break Outcome::Reset,
                },
            }
        };
        self.stats.instructions += self.cpu.icount - first;
        self.stats.wall += started.elapsed();
        outcome
    }

    /// The `--stats` report.
    pub fn report(&self) -> String {
        let s = &self.stats;
        let c = &self.cpu.stats;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<24}{v}\n"));
        line("instructions retired", s.instructions.to_string());
        line("wall time", format!("{:.3} s", s.wall.as_secs_f64()));
        line("guest MIPS", format!("{:.1}", s.mips()));
        let exits: Vec<String> = s.exits.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line("VMM exits", exits.join(", "));
        line(
            "traps",
            format!(
                "port I/O {}, MMIO {}",
                c.io_exits,
                c.mmio_exits + self.platform.mmio_unclaimed
            ),
        );
        let ports: Vec<String> = self
            .platform
            .ports
            .stats()
            .into_iter()
            .filter(|(_, p)| p.reads + p.writes > 0)
            .map(|(n, p)| format!("{n} {}r/{}w", p.reads, p.writes))
            .collect();
        line(
            "port traps by device",
            if ports.is_empty() {
                "none".into()
            } else {
                ports.join(", ")
            },
        );
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

fn exit_name(e: Exit) -> &'static str {
    match e {
        Exit::Budget => "slice-end",
        Exit::Halt => "hlt",
        Exit::Shutdown => "shutdown",
        Exit::Stop => "device-stop",
    }
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
