//! The `trapeze` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trapeze_machine::{
    parse_addr, parse_size, Config, Image, Machine, Outcome, Output, BENCH_GUEST, DEFAULT_GUEST,
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
    Run(Box<RunArgs>),
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
#[command(group(clap::ArgGroup::new("kernel_image").args(["kernel", "multiboot"])))]
struct RunArgs {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
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

fn run(args: RunArgs) -> Result<i32, trapeze_machine::MachineError> {
    let image = match (&args.flat, &args.bios) {
        _ if args.multiboot.is_some() => {
            let k = args.multiboot.as_deref().unwrap();
            let img = Image::multiboot_file(k, &args.module, args.append.as_deref())?;
            if let Image::Multiboot(mb) = &img {
                for n in &mb.notes {
                    eprintln!("trapeze: note: {n}");
                }
            }
            img
        }
        _ if args.kernel.is_some() => Image::linux_file(
            args.kernel.as_deref().unwrap(),
            args.initrd.as_deref(),
            args.append.as_deref(),
        )?,
        (Some(f), _) => Image::flat_file(f, args.load)?,
        (None, Some(b)) => Image::bios_file(b)?,
        (None, None) => Image::Flat {
            data: DEFAULT_GUEST.to_vec(),
            load: 0x7c00,
        },
    };
    let cfg = Config {
        memory: args.memory,
        image,
        debugcon: args.debugcon,
        serial: args.serial,
        serial_input: true,
        pg_strict: args.pg_strict,
        realtime: args.realtime,
    };
    let mut m = Machine::new(&cfg)?;
    let outcome = m.run(args.max_instructions);
    eprintln!("trapeze: {}", outcome.describe());
    if outcome == Outcome::TripleFault {
        eprint!("{}", m.cpu.dump());
    }
    if args.stats {
        eprint!("trapeze: stats\n{}", m.report());
    }
    Ok(outcome.exit_status())
}

fn bench(runs: u32) -> Result<i32, trapeze_machine::MachineError> {
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
