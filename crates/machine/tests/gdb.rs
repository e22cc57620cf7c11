//! `trapeze run --gdb`: the real gdb (Debian package `gdb`) in batch mode drives a
//! guest through the stub. Addresses come from the guest's NASM listing, values from
//! its source and QEMU's reference output.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guests_dir, Listing};

fn have_gdb() -> bool {
    Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `trapeze run --gdb 127.0.0.1:0` on a guest: the process and the address the stub
/// listens on, from its first line on stderr ("... target remote ADDR)"), and that
/// stderr, which must stay open while trapeze runs (it still writes there).
fn start_with_gdb(
    guest: &str,
    stdout: Stdio,
) -> (
    std::process::Child,
    String,
    BufReader<std::process::ChildStderr>,
) {
    let mut trapeze = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .args(["run", "--memory", "16M", "--gdb", "127.0.0.1:0", "--flat"])
        .arg(guests_dir().join(format!("{guest}.bin")))
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(trapeze.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("target remote ")
        .nth(1)
        .map(|s| s.trim_end().trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no address in '{line}'"));
    (trapeze, addr, stderr)
}

#[test]
fn gdb_drives_pmode() {
    if !have_gdb() {
        eprintln!(
            "\n*** SKIPPED: gdb is not installed (apt-get install gdb); CI installs it ***\n"
        );
        return;
    }
    let Some(lst) = Listing::of("pmode", 0x7c00) else {
        return;
    };
    let pm32 = lst.addr("pm32:");
    let after_pm32 = lst.after("pm32:");
    let after_store = lst.after("mov     dword [0x100500], 0x11111111");

    let (mut trapeze, addr, _stderr) = start_with_gdb("pmode", Stdio::piped());

    let gdb = Command::new("gdb")
        .args(["-nx", "-batch"])
        .args(["-ex", "set pagination off"])
        .args(["-ex", &format!("target remote {addr}")])
        .args(["-ex", "monitor disas 0x7c00 3"])
        .args(["-ex", &format!("break *{pm32:#x}")])
        .args(["-ex", "continue"])
        .args(["-ex", "info registers"])
        .args(["-ex", "x/4i $pc"])
        .args(["-ex", "stepi"])
        .args(["-ex", "print/x $pc"])
        .args(["-ex", "delete"])
        .args(["-ex", "watch *(unsigned int *)0x100500"])
        .args(["-ex", "continue"])
        .args(["-ex", "print/x $pc"])
        .args(["-ex", "monitor translate 0x100500"])
        .args(["-ex", "monitor stats"])
        .args(["-ex", "delete"])
        .args(["-ex", "detach"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&gdb.stdout).into_owned() + &String::from_utf8_lossy(&gdb.stderr);

    // After detach the guest runs on to the end, with QEMU's output and status.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = trapeze.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = trapeze.kill();
            panic!("trapeze did not finish after gdb detached; gdb said:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = Vec::new();
    trapeze
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    let expected = std::fs::read(guests_dir().join("pmode.expected")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected),
        "gdb said:\n{text}"
    );
    assert_eq!(status.code(), Some(1), "QEMU's isa-debug-exit status");

    // Waiting before the first instruction: at 0000:7C00 (`start: cli`); `monitor
    // disas` decodes with the CPU's code size (the far JMP is real-mode code).
    assert!(text.contains("0x0000000000007c00 in ?? ()"), "{text}");
    assert!(text.contains("0000000000007c02  ea 07 7c 00 00"), "{text}");
    assert!(text.contains("jmp far 7C07h,0"), "{text}");
    // The breakpoint at pm32, after MOV CR0 (RESET's 60000010 | PE) and the far JMP
    // to CODE_SEL = 8.
    assert!(
        text.contains(&format!("Breakpoint 1, {pm32:#018x} in ?? ()")),
        "{text}"
    );
    let reg = |name: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(reg("rip"), format!("{pm32:#x}"));
    assert_eq!(reg("rax"), "0x60000011");
    assert_eq!(reg("cs"), "0x8");
    assert_eq!(reg("cr0"), "0x60000011");
    assert_eq!(reg("cs_base"), "0x0");
    // pm32: `mov ax, DATA_SEL` (0x10), then `mov ds, ax` (AT&T syntax).
    assert!(
        text.contains(&format!("=> {pm32:#x}:\tmov    $0x10,%ax")),
        "{text}"
    );
    assert!(text.contains("mov    %eax,%ds"), "{text}");
    // stepi: one instruction on.
    assert!(text.contains(&format!("$1 = {after_pm32:#x}")), "{text}");
    // The watchpoint: the store of 0x11111111 (286331153), stopped after it.
    assert!(
        text.contains("Hardware watchpoint 2: *(unsigned int *)0x100500"),
        "{text}"
    );
    assert!(
        text.contains("Old value = 0\nNew value = 286331153"),
        "{text}"
    );
    assert!(text.contains(&format!("$2 = {after_store:#x}")), "{text}");
    // monitor commands: the debugger's views.
    assert!(text.contains("linear 0x100500, paging off"), "{text}");
    assert!(text.contains("-> physical 0x100500"), "{text}");
    assert!(text.contains("instructions retired"), "{text}");
    assert!(text.contains("[Inferior 1 (process 1) detached]"), "{text}");
}

/// Send one RSP packet and return the stub's reply packet's data (acking it).
fn packet(s: &mut std::net::TcpStream, data: &str) -> String {
    use std::io::Write;
    let sum = data.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    write!(s, "${data}#{sum:02x}").unwrap();
    reply(s)
}

/// Read up to the end of the next packet ("$...#xx"), skipping acks; ack it.
fn reply(s: &mut std::net::TcpStream) -> String {
    use std::io::Write;
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        s.read_exact(&mut b).unwrap();
        buf.push(b[0]);
        if buf.len() >= 3 && buf[buf.len() - 3] == b'#' && buf.contains(&b'$') {
            break;
        }
    }
    s.write_all(b"+").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let start = text.find('$').unwrap() + 1;
    // Undo run-length encoding: "X*n" is X repeated n - 29 more times.
    let mut out = String::new();
    let mut chars = text[start..text.len() - 3].chars();
    while let Some(c) = chars.next() {
        if c == '*' {
            let last = out.chars().last().unwrap();
            let n = chars.next().unwrap() as usize - 29;
            (0..n).for_each(|_| out.push(last));
        } else {
            out.push(c);
        }
    }
    out
}

/// Ctrl-C from gdb (the 0x03 byte) stops a running guest with SIGINT, at the protocol
/// level (no gdb needed): intloop runs 90 million instructions, so it is still running.
#[test]
fn interrupt_byte_stops_a_running_guest() {
    use std::io::Write;
    let (mut trapeze, addr, _stderr) = start_with_gdb("intloop", Stdio::null());
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Before the first instruction: stopped with SIGTRAP (5).
    assert!(packet(&mut s, "?").starts_with("T05"));
    let sum = b'c';
    write!(s, "$c#{sum:02x}").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&[0x03]).unwrap();
    let stop = reply(&mut s);
    assert!(
        stop.starts_with("T02") || stop.starts_with("S02"),
        "SIGINT: {stop}"
    );
    // The guest is mid-loop, not at its start: RIP (after 16 GPRs of 8 bytes, in hex)
    // is no longer 0x7c00.
    let regs = packet(&mut s, "g");
    let rip = &regs[16 * 8 * 2..17 * 8 * 2];
    assert_ne!(rip, "007c000000000000", "{regs}");
    let _ = trapeze.kill();
    let _ = trapeze.wait();
}
