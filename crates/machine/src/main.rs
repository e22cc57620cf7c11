//! The `trapeze` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;

use trapeze_machine::debug::command::Syntax;
use trapeze_machine::debug::Debugger;
use trapeze_machine::{
    gdb, parse_addr, parse_size, Config, Image, Machine, Outcome, Output, BENCH_GUEST,
    DEFAULT_GUEST,
};

#[derive(Parser)]
#[command(
    name = "trapeze",
    version,
    about = "A pure-software x86 PC: trap-and-emulate VMM, step debugger and emulation meter"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a guest (with no image: the embedded default guest).
    Run(Box<MachineArgs>),
    /// Boot a guest under the step debugger: an interactive prompt, or commands from
    /// stdin or --commands FILE (see `help` at the prompt).
    Debug(Box<DebugArgs>),
    /// Print the Popek–Goldberg class of every instruction.
    Classify {
        /// One JSON object per iced-x86 Code.
        #[arg(long)]
        json: bool,
    },
    /// Run the integer-loop benchmark guest and report guest MIPS.
    Bench {
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
}

#[derive(clap::Args)]
struct DebugArgs {
    #[command(flatten)]
    machine: MachineArgs,
    /// Read debugger commands from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    commands: Option<PathBuf>,
    /// Disassembly syntax.
    #[arg(long, value_name = "SYNTAX", default_value = "intel", value_parser = ["intel", "nasm"])]
    syntax: String,
}

/// The machine options `run` and `debug` share.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("kernel_image").args(["kernel", "multiboot"])))]
struct MachineArgs {
    /// A raw image (e.g. a 512-byte boot sector), started in real mode at 0000:ADDR with DL=0x80.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bios", "multiboot"])]
    flat: Option<PathBuf>,
    /// Where --flat loads its image.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr, default_value = "0x7c00")]
    load: u64,
    /// A firmware ROM, mapped to end at 0xFFFFF (and at 4 GiB) and started at F000:FFF0.
    #[arg(long, value_name = "FILE", conflicts_with = "multiboot")]
    bios: Option<PathBuf>,
    /// A multiboot v1 kernel (ELF32 or a.out kludge), entered in 32-bit protected mode
    /// with EAX=0x2BADB002 and EBX=the multiboot information.
    #[arg(long, value_name = "FILE")]
    multiboot: Option<PathBuf>,
    /// A multiboot module, loaded page-aligned after the kernel; its string is
    /// "FILE CMDLINE". Repeatable.
    #[arg(long, value_name = "FILE[,CMDLINE]", requires = "multiboot")]
    module: Vec<String>,
    /// A Linux bzImage, booted through the Linux boot protocol (64-bit entry, e820 map,
    /// ACPI tables).
    #[arg(long, value_name = "BZIMAGE", conflicts_with_all = ["flat", "bios", "multiboot"])]
    kernel: Option<PathBuf>,
    /// The initrd (initramfs) for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// The kernel command line: for --kernel as given, for --multiboot passed as
    /// "FILE CMDLINE" (as GRUB and QEMU do).
    #[arg(long, value_name = "CMDLINE", requires = "kernel_image")]
    append: Option<String>,
    /// Guest RAM (K/M/G suffixes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256M")]
    memory: u64,
    /// Stop after this many instructions (exit status 6).
    #[arg(long, value_name = "N")]
    max_instructions: Option<u64>,
    /// Print instructions retired, guest MIPS and exits by reason on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Where port 0xE9 output goes: stdio, none or file:PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio")]
    debugcon: Output,
    /// Where COM1 (0x3F8) output goes: stdio, none or file:PATH.
    #[arg(long, value_name = "WHERE", default_value = "stdio")]
    serial: Output,
    /// Make every sensitive instruction fault (#GP) at CPL > 0: a classically
    /// virtualizable x86 (Popek–Goldberg Theorem 1).
    #[arg(long)]
    pg_strict: bool,
    /// Follow the host's clock (timers, TSC, RTC date) instead of virtual time; runs
    /// are then no longer reproducible.
    #[arg(long)]
    realtime: bool,
    /// Serve the GDB remote protocol on HOST:PORT: the guest waits for gdb before its
    /// first instruction and runs on when gdb detaches (under `debug`, the prompt
    /// takes over).
    #[arg(long, value_name = "HOST:PORT")]
    gdb: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Debug(args) => debug(*args),
        Command::Bench { runs } => bench(runs),
        Command::Classify { json } => {
            let table = if json {
                trapeze_machine::classify::json()
            } else {
                trapeze_machine::classify::text()
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), table.as_bytes());
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("trapeze: error: {e}");
            ExitCode::from(2)
        }
    }
}

impl MachineArgs {
    /// The machine to build; `serial_input` says whether COM1 reads stdin (not under
    /// `debug`, whose prompt reads it).
    fn config(&self, serial_input: bool) -> Result<Config, trapeze_machine::MachineError> {
        let image = match (&self.flat, &self.bios) {
            _ if self.multiboot.is_some() => {
                let k = self.multiboot.as_deref().unwrap();
                let img = Image::multiboot_file(k, &self.module, self.append.as_deref())?;
                if let Image::Multiboot(mb) = &img {
                    for n in &mb.notes {
                        eprintln!("trapeze: note: {n}");
                    }
                }
                img
            }
            _ if self.kernel.is_some() => Image::linux_file(
                self.kernel.as_deref().unwrap(),
                self.initrd.as_deref(),
                self.append.as_deref(),
            )?,
            (Some(f), _) => Image::flat_file(f, self.load)?,
            (None, Some(b)) => Image::bios_file(b)?,
            (None, None) => Image::Flat {
                data: DEFAULT_GUEST.to_vec(),
                load: 0x7c00,
            },
        };
        Ok(Config {
            memory: self.memory,
            image,
            debugcon: self.debugcon.clone(),
            serial: self.serial.clone(),
            serial_input,
            pg_strict: self.pg_strict,
            realtime: self.realtime,
        })
    }
}

/// How a run ended, on stderr, and the exit status.
fn finish(m: &Machine, outcome: Outcome, stats: bool) -> i32 {
    eprintln!("trapeze: {}", outcome.describe());
    if outcome == Outcome::TripleFault {
        eprint!("{}", m.cpu.dump());
    }
    if stats {
        eprint!("trapeze: stats\n{}", m.report());
    }
    outcome.exit_status()
}

fn run(args: MachineArgs) -> Result<i32, Box<dyn std::error::Error>> {
    let mut m = Machine::new(&args.config(true)?)?;
    if let Some(addr) = &args.gdb {
        let (mut d, end) = gdb::serve(Debugger::new(m, args.max_instructions), addr)?;
        let outcome = match end {
            gdb::End::Ended(o) => o,
            // gdb detached: the guest runs on.
            gdb::End::Detached => d.m.run(args.max_instructions),
            gdb::End::Killed => {
                eprintln!("trapeze: gdb killed the guest");
                return Ok(0);
            }
        };
        return Ok(finish(&d.m, outcome, args.stats));
    }
    let outcome = m.run(args.max_instructions);
    Ok(finish(&m, outcome, args.stats))
}

fn debug(args: DebugArgs) -> Result<i32, Box<dyn std::error::Error>> {
    let machine = &args.machine;
    let m = Machine::new(&machine.config(false)?)?;
    let mut d = Debugger::new(m, machine.max_instructions);
    d.syntax = if args.syntax == "nasm" {
        Syntax::Nasm
    } else {
        Syntax::Intel
    };
    if let Some(addr) = &machine.gdb {
        let (back, end) = gdb::serve(d, addr)?;
        if end == gdb::End::Killed {
            return Ok(0);
        }
        d = back;
    }
    trapeze_machine::debug::catch_ctrl_c();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let ok = match &args.commands {
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            d.repl(&mut std::io::BufReader::new(f), &mut out, true)
        }
        None => {
            let stdin = std::io::stdin();
            let echo = !stdin.is_terminal();
            d.repl(&mut stdin.lock(), &mut out, echo)
        }
    };
    if machine.stats {
        eprint!("trapeze: stats\n{}", d.m.report());
    }
    Ok(if ok { 0 } else { 1 })
}

fn bench(runs: u32) -> Result<i32, Box<dyn std::error::Error>> {
    let cfg = Config::quiet(
        Image::Flat {
            data: BENCH_GUEST.to_vec(),
            load: 0x7c00,
        },
        16 << 20,
    );
    let mut best: Option<trapeze_machine::RunStats> = None;
    for _ in 0..runs.max(1) {
        let mut m = Machine::new(&cfg)?;
        let outcome = m.run(None);
        if outcome != Outcome::DebugExit(0) {
            eprintln!(
                "trapeze: bench guest did not finish: {}",
                outcome.describe()
            );
            return Ok(1);
        }
        if best.as_ref().is_none_or(|b| m.stats.wall < b.wall) {
            best = Some(m.stats.clone());
        }
    }
    let b = best.expect("at least one run");
    println!("intloop (32-bit ALU loop, 9 instructions x 10,000,000): {} instructions in {:.3} s = {:.1} guest MIPS", b.instructions, b.wall.as_secs_f64(), b.mips());
    Ok(0)
}
