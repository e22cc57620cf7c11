//! Booting Debian 12's stock kernel (issue 5). The guest comes from
//! scripts/debian-guest.sh (apt-get download of the kernel and busybox-static); when the
//! Debian archive cannot be reached the boot tests skip with a loud message, except in
//! CI, where they fail.
//!
//! The oracle is the kernel itself: what it logs about the tables and memory map it was
//! given, and what /init prints from inside the guest (uname, /proc).

mod pty;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pty::Terminal;

const TRAPEZE: &str = env!("CARGO_BIN_EXE_trapeze");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Guest {
    kernel: PathBuf,
    initrd: PathBuf,
    /// "6.1.0-56-amd64": from the package name linux-image-6.1.0-56-amd64.
    release: String,
}

/// Build the guest with `commands` as /init's command list (or none: a shell).
fn guest(name: &str, commands: Option<&str>) -> Option<Guest> {
    // The tests of this file run in parallel; the script's cache is shared (the script
    // also takes a lock on it).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("trapeze-linux-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(repo().join("scripts/debian-guest.sh"));
    if let Some(c) = commands {
        let f = dir.join("commands");
        std::fs::write(&f, c).unwrap();
        cmd.arg("-c").arg(f);
    }
    cmd.arg("-o").arg(dir.join("initrd.img"));
    let out = cmd.output().expect("run scripts/debian-guest.sh");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to build the Debian guest:\n{why}"
        );
        eprintln!(
            "\n******** SKIPPED: cannot build the Debian guest here ********\n{why}\n*************************************************************\n"
        );
        return None;
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no '{key}' line in the script's output:\n{stdout}"))
    };
    let kernel = path("kernel ");
    let release = kernel
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    Some(Guest {
        kernel,
        initrd: path("initrd "),
        release,
    })
}

struct Run {
    status: i32,
    serial: String,
    stderr: String,
}

fn boot(g: &Guest, append: &str, extra: &[&str]) -> Run {
    let serial = g.initrd.with_extension("serial");
    let out = Command::new(TRAPEZE)
        .args(["run", "--kernel"])
        .arg(&g.kernel)
        .arg("--initrd")
        .arg(&g.initrd)
        .args(["--append", append, "--stats"])
        .arg(format!("--serial=file:{}", serial.display()))
        .args(extra)
        .output()
        .unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        serial: std::fs::read_to_string(&serial).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The acceptance run of issue 5: the stock kernel boots with what the Linux boot
/// protocol, the e820 map and the ACPI tables gave it, /init runs the command list and
/// powers off.
#[test]
fn debian_boots_runs_commands_and_powers_off() {
    let commands = "uname -a\ncat /proc/cpuinfo\ncat /proc/interrupts\nls /dev\necho answer=$((6*7))\npoweroff -f\n";
    let Some(g) = guest("full", Some(commands)) else {
        return;
    };
    let r = boot(&g, "console=ttyS0", &[]);
    let log = &r.serial;
    assert_eq!(r.status, 0, "{}\n{log}", r.stderr);
    assert!(r.stderr.contains("powered off"), "{}", r.stderr);
    assert!(
        log.contains(&format!("Linux (none) {} #1 SMP", g.release)),
        "{log}"
    );
    assert!(log.contains("x86_64 GNU/Linux"), "{log}");
    for want in [
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] reserved",
        "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
        "ACPI: RSDP 0x00000000000E0000 000024 (v02 TRAPEZ)",
        "ACPI: FACP 0x",
        "ACPI: DSDT 0x",
        "ACPI: APIC 0x",
        "ACPI: PM-Timer IO Port: 0x608",
        "IOAPIC[0]: apic_id 0, version 17, address 0xfec00000, GSI 0-23",
        "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)",
        "ACPI: INT_SRC_OVR (bus 0 bus_irq 9 global_irq 9 high level)",
        "RAMDISK: [mem 0x",
    ] {
        assert!(
            log.contains(want),
            "missing '{want}' in the boot log:\n{log}"
        );
    }
    assert!(!log.contains("ACPI BIOS Error"), "{log}");

    let flags = log
        .lines()
        .find_map(|l| l.strip_prefix("flags\t\t: "))
        .unwrap_or_else(|| panic!("no /proc/cpuinfo flags:\n{log}"));
    for f in [
        "fpu", "tsc", "msr", "pae", "cx8", "apic", "cmov", "fxsr", "sse", "sse2", "lm", "nx",
    ] {
        assert!(
            flags.split(' ').any(|x| x == f),
            "cpuinfo lacks {f}: {flags}"
        );
    }
    assert!(log.contains("IO-APIC"), "/proc/interrupts: {log}");
    assert!(log.contains("ttyS0"), "ls /dev: {log}");
    assert!(log.contains("answer=42"), "{log}");
    for bad in ["Oops", "Kernel panic", "invalid opcode", "BUG:"] {
        assert!(!log.contains(bad), "'{bad}' in the boot log:\n{log}");
    }
    // The clocksource watchdog marks a clocksource it distrusts as unstable.
    assert!(
        !log.lines()
            .any(|l| l.contains("clocksource") && l.contains("unstable")),
        "{log}"
    );
    assert!(
        !r.stderr.contains("unimplemented instruction"),
        "{}",
        r.stderr
    );

    // Virtual time: a second run is the same, to the byte and the instruction.
    let again = boot(&g, "console=ttyS0", &[]);
    assert_eq!(&again.serial, log);
    let count = |s: &str| {
        s.lines()
            .find(|l| l.contains("instructions retired"))
            .map(str::to_string)
    };
    assert_eq!(count(&again.stderr), count(&r.stderr));
}

/// Without a command list /init starts a busybox shell on the console. On a terminal:
/// a command typed with a mistake fixed by Backspace runs (the guest's line editing,
/// the host's terminal in raw mode), Ctrl-C reaches the guest and interrupts a
/// foreground `sleep`, `poweroff -f` ends the run with status 0, and the terminal's
/// settings are back afterwards.
#[test]
fn interactive_shell_on_a_terminal() {
    let Some(g) = guest("shell", None) else {
        return;
    };
    let mut t = Terminal::run(
        Command::new(TRAPEZE)
            .args(["run", "--kernel"])
            .arg(&g.kernel)
            .arg("--initrd")
            .arg(&g.initrd)
            .args(["--append", "console=ttyS0 quiet"]),
    );
    let boot = Duration::from_secs(600);
    assert!(
        t.wait_for("# ", 0, boot),
        "no shell prompt:\n{}",
        t.screen()
    );
    let mark = t.screen().len();
    t.type_keys(b"echo sum=$((40+3X\x7f-1))\r");
    assert!(
        t.wait_for("sum=42", mark, Duration::from_secs(120)),
        "{}",
        t.screen()
    );
    let mark = t.screen().len();
    t.type_keys(b"sleep 1000\r");
    std::thread::sleep(Duration::from_secs(2));
    t.type_keys(b"\x03");
    // SIGINT ended sleep: the shell reports status 130 (128 + SIGINT).
    t.type_keys(b"echo status=$?\r");
    assert!(
        t.wait_for("status=130", mark, Duration::from_secs(120)),
        "{}",
        t.screen()
    );
    t.type_keys(b"poweroff -f\r");
    let (status, screen) = t.finish(Duration::from_secs(120));
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains("powered off"), "{screen}");
}

#[test]
fn a_file_that_is_not_a_bzimage_is_a_clear_error() {
    let f = std::env::temp_dir().join(format!("trapeze-notlinux-{}", std::process::id()));
    std::fs::write(&f, vec![0x90u8; 8192]).unwrap();
    let out = Command::new(TRAPEZE)
        .args(["run", "--kernel"])
        .arg(&f)
        .output()
        .unwrap();
    std::fs::remove_file(&f).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Linux bzImage"), "{err}");
}
