//! `trapeze debug`: scripted sessions through the real binary, checked against the
//! guests' NASM listings (addresses), their sources (constants) and QEMU's reference
//! output (computed values); and the stepping loop against the fast loop.

mod common;

use std::process::Command;

use common::{expected_value, guests_dir, Listing};
use trapeze_machine::debug::command::WatchKind;
use trapeze_machine::debug::watch::Space;
use trapeze_machine::debug::{Debugger, Goal, Stop};
use trapeze_machine::{Config, Image, Machine, Outcome, Output};

/// Run `trapeze debug --commands` on a guest; the session's stdout.
fn session(guest: &str, script: &str) -> String {
    let dir = std::env::temp_dir().join(format!("trapeze-dbg-{}-{guest}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cmds = dir.join("cmds");
    std::fs::write(&cmds, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .args(["debug", "--memory", "16M", "--debugcon", "none", "--flat"])
        .arg(guests_dir().join(format!("{guest}.bin")))
        .arg("--commands")
        .arg(&cmds)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "session failed:\n{text}");
    text
}

/// The output of the command `cmd` in a session transcript (up to the next prompt).
fn reply<'a>(text: &'a str, cmd: &str) -> &'a str {
    let start = text
        .find(&format!("(trapeze) {cmd}\n"))
        .unwrap_or_else(|| panic!("no '{cmd}' in\n{text}"))
        + "(trapeze) \n".len()
        + cmd.len();
    let end = text[start..]
        .find("(trapeze) ")
        .map_or(text.len(), |e| start + e);
    &text[start..end]
}

/// The "=> cs:ip icount=N  linear ..." line: the linear address of the next instruction.
fn stopped_at(reply: &str) -> u64 {
    let line = reply.lines().find(|l| l.starts_with("=> ")).unwrap();
    let lin = line.split("  ").nth(1).unwrap().trim();
    u64::from_str_radix(lin, 16).unwrap()
}

#[test]
fn scripted_session_on_pmode() {
    let Some(lst) = Listing::of("pmode", 0x7c00) else {
        return;
    };
    let a20_store = lst.addr("mov     dword [0x100500], 0x11111111");
    let after_mul = lst.after("mul     ebx");
    let pm32 = lst.addr("pm32:");
    let pair = lst.addr("pair:");
    let script = format!(
        "disas 0x7c00 1\n\
         catch mode\n\
         continue\n\
         continue\n\
         delete 1\n\
         watch 0x100500 4\n\
         continue\n\
         delete 2\n\
         break {after_mul:#x}\n\
         continue\n\
         regs\n\
         x 0x200ffe 4\n\
         translate 0x200ffe\n\
         gdt\n\
         step\n\
         step\n\
         next\n\
         continue\n"
    );
    let t = session("pmode", &script);

    // The first instruction, by the source: `start: cli`.
    assert!(reply(&t, "disas 0x7c00 1").contains("fa "));
    assert!(reply(&t, "disas 0x7c00 1").ends_with("cli\n"));

    // MOV CR0 sets PE (a mode change in real-mode code), then the far JMP loads CS
    // with CODE_SEL = 8 and lands on pm32 (a second one: 32-bit code).
    let first = &t[t.find("(trapeze) continue\n").unwrap()..];
    let r = reply(first, "continue");
    assert!(r.starts_with("catchpoint 1: mode change"), "{r}");
    assert!(
        r.contains("cr0=60000011"),
        "PE set in CR0 after RESET's 60000010: {r}"
    );
    let second = &first["(trapeze) continue\n".len()..];
    let r = reply(second, "continue");
    assert!(r.contains("changed: cs=8"), "{r}");
    assert_eq!(stopped_at(r), pm32);

    // The watchpoint stops right after the store, with the value the source writes.
    let r = reply(&t, "watch 0x100500 4");
    assert!(
        r.contains("watchpoint 2: write of linear 0x100500 len 4"),
        "{r}"
    );
    let after_watch = &t[t.find("watch 0x100500 4\n").unwrap()..];
    let r = reply(after_watch, "continue");
    assert!(
        r.starts_with("watchpoint 2: write of 4 bytes at 0x100500, value now 11111111"),
        "{r}"
    );
    assert_eq!(
        stopped_at(r),
        lst.after("mov     dword [0x100500], 0x11111111")
    );
    assert!(a20_store < stopped_at(r));

    // At the breakpoint after MUL: EDX:EAX is QEMU's "mul=" value.
    let after_break = &t[t.find(&format!("break {after_mul:#x}\n")).unwrap()..];
    let r = reply(after_break, "continue");
    assert!(r.starts_with("breakpoint 3\n"), "{r}");
    assert_eq!(stopped_at(r), after_mul);
    let mul = expected_value("pmode", "mul").to_lowercase();
    let regs = reply(&t, "regs");
    assert!(
        regs.contains(&format!("rax=00000000{}", &mul[8..])),
        "{regs}"
    );
    assert!(
        regs.contains(&format!("rdx=00000000{}", &mul[..8])),
        "{regs}"
    );
    assert!(regs.contains("cs  =0008"), "{regs}");
    assert!(regs.contains("mode=protected 32-bit"), "{regs}");

    // Memory: the dword QEMU printed as [200FFE], little-endian.
    let v = expected_value("pmode", "[200FFE]").to_lowercase();
    let le: Vec<&str> = (0..4).rev().map(|i| &v[2 * i..2 * i + 2]).collect();
    assert!(
        reply(&t, "x 0x200ffe 4").starts_with(&format!("0000000000200ffe: {}", le.join(" "))),
        "{}",
        reply(&t, "x 0x200ffe 4")
    );
    assert!(reply(&t, "translate 0x200ffe").contains("paging off"));
    assert!(reply(&t, "translate 0x200ffe").contains("-> physical 0x200ffe"));

    // The GDT as pmode.asm writes it: flat 4 GiB code at 8, data at 0x10.
    let gdt = reply(&t, "gdt");
    assert!(gdt.contains("0008: 00cf9b000000ffff code"), "{gdt}");
    assert!(gdt.contains("0010: 00cf93000000ffff data"), "{gdt}");
    assert!(gdt.contains("limit=ffffffff dpl=0 32-bit P"), "{gdt}");

    // `call pair` steps into pair; `pop esi`, then `next` steps over `call puts32`.
    assert_eq!(stopped_at(reply(&t, "step")), pair);
    let r = reply(&t, "next");
    assert_eq!(stopped_at(r), lst.addr("xchg    eax, edx"), "{r}");
    assert!(
        r.contains("rsi="),
        "puts32 advanced ESI past the label: {r}"
    );

    // The end of the run, as QEMU's status 1 says.
    let end = &t[t.rfind("(trapeze) continue\n").unwrap()..];
    assert!(reply(end, "continue")
        .starts_with("guest ended: guest wrote 0x0 to the debug-exit port (status 1)"));
}

#[test]
fn translate_and_trace_in_long_mode() {
    let Some(lst) = Listing::of("long_mode", 0x7c00) else {
        return;
    };
    let long64 = lst.addr("long64:");
    let pml4_511 = lst.addr("mov     dword [es:0x0ff8], 0x11003");
    let trace = std::env::temp_dir().join(format!("trapeze-trace-{}", std::process::id()));
    // long_mode.asm: PML4 at 0x10000, PML4[0] and PML4[511] -> PDPT 0x11000,
    // PDPT[0] -> PD 0x12000, PDPT[1] = 1 GiB page at 0, PD[0] = 2 MiB page at 0.
    let t = session(
        "long_mode",
        &format!(
            "syntax nasm\n\
             disas {pml4_511:#x} 1\n\
             syntax intel\n\
             disas {pml4_511:#x} 1\n\
             until {long64:#x}\n\
             translate 0xffffff8000007c00\n\
             translate 0x40000123\n\
             translate 0x80000000\n\
             regs\n\
             trace on {}\n\
             step 2\n\
             trace off\n",
            trace.display()
        ),
    );
    // Real-mode code in both syntaxes: `mov dword [es:0x0ff8], 0x11003`.
    let nasm = &t[t.find("syntax nasm").unwrap()..];
    assert!(
        reply(nasm, &format!("disas {pml4_511:#x} 1")).ends_with("mov dword [es:0FF8h],11003h\n")
    );
    let intel = &t[t.find("syntax intel").unwrap()..];
    assert!(reply(intel, &format!("disas {pml4_511:#x} 1"))
        .ends_with("mov dword ptr es:[0FF8h],11003h\n"));
    assert_eq!(stopped_at(reply(&t, &format!("until {long64:#x}"))), long64);
    let r = reply(&t, "translate 0xffffff8000007c00");
    assert!(r.contains("paging 4-level, cr3=10000"), "{r}");
    assert!(r.contains("pml4e[511] at 0x10ff8 = 00000000000110"), "{r}");
    assert!(r.contains("pdpte[0] at 0x11000 = 00000000000120"), "{r}");
    assert!(r.contains("pde[0] at 0x12000 = 00000000000000"), "{r}");
    assert!(r.contains("-> physical 0x7c00 (2048 KiB page)"), "{r}");
    let r = reply(&t, "translate 0x40000123");
    assert!(r.contains("pdpte[1] at 0x11008"), "{r}");
    assert!(r.contains("-> physical 0x123 (1048576 KiB page)"), "{r}");
    let r = reply(&t, "translate 0x80000000");
    assert!(
        r.contains("pdpte[2] at 0x11010 = 0000000000000000 []"),
        "{r}"
    );
    assert!(r.contains("-> #PF"), "{r}");
    assert!(reply(&t, "regs").contains("mode=64-bit paging=4-level"));

    // The trace: `mov ax, DATA_SEL` (0x10) then `mov ds, ax`, each with what it changed.
    let text = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("{long64:016x}  66 b8 10 00")),
        "{text}"
    );
    assert!(lines[0].contains("mov ax,10h"), "{text}");
    // EAX held CR0 (RESET's 60000010 | PG | PE); MOV AX replaces its low word.
    assert!(lines[0].ends_with("; rax=e0000010"), "{text}");
    assert!(lines[1].contains("mov ds,ax"), "{text}");
    assert!(lines[1].ends_with("; ds=10"), "{text}");
}

/// Build a machine for a guest, its debug console going to `out`.
fn machine(guest: &str, out: &std::path::Path) -> Machine {
    let image = Image::flat_file(&guests_dir().join(format!("{guest}.bin")), 0x7c00).unwrap();
    Machine::new(&Config {
        debugcon: Output::File(out.to_path_buf()),
        ..Config::quiet(image, 16 << 20)
    })
    .unwrap()
}

/// What a run leaves: the outcome, the architectural state, the instruction count
/// and the guest's output.
fn final_state(
    m: Machine,
    outcome: Outcome,
    out: &std::path::Path,
) -> (Outcome, String, u64, Vec<u8>) {
    let dump = m.cpu.dump();
    let icount = m.cpu.icount;
    drop(m);
    (outcome, dump, icount, std::fs::read(out).unwrap())
}

/// Stepping never changes what the guest computes: single-stepped to the end (plain
/// steps, and steps with a watchpoint armed, which take the debugger's per-instruction
/// path) and at full speed, every guest ends in the same state after the same number
/// of instructions with the same output. pit_irq takes timer interrupts while halted;
/// paging_pf and prot_ring3 take exceptions.
#[test]
fn stepping_matches_full_speed() {
    let limit = Some(50_000_000);
    for guest in [
        "pmode",
        "pit_irq",
        "long_mode",
        "long_syscall",
        "paging_pf",
        "paging_ad",
        "prot_ring3",
        "pci_enum",
        "hello",
    ] {
        let dir = std::env::temp_dir().join(format!("trapeze-step-{}-{guest}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (fast_out, step_out, watch_out) =
            (dir.join("fast"), dir.join("step"), dir.join("watch"));

        let mut m = machine(guest, &fast_out);
        let o = m.run(limit);
        let fast = final_state(m, o, &fast_out);

        let mut d = Debugger::new(machine(guest, &step_out), limit);
        let o = loop {
            match d.resume(Goal::steps(1)) {
                Stop::Stepped => {}
                Stop::Ended(o) => break o,
                s => panic!("{guest}: unexpected stop {s:?}"),
            }
        };
        let stepped = final_state(d.m, o, &step_out);

        let mut d = Debugger::new(machine(guest, &watch_out), limit);
        // A watchpoint nothing touches: every step goes through the debugger's checks.
        d.points
            .add_watch(WatchKind::Access, Space::Physical, 0xF_FFF0, 1);
        let o = loop {
            match d.resume(Goal::steps(1)) {
                Stop::Stepped => {}
                Stop::Ended(o) => break o,
                s => panic!("{guest}: unexpected stop {s:?}"),
            }
        };
        let watched = final_state(d.m, o, &watch_out);
        let _ = std::fs::remove_dir_all(&dir);

        assert!(
            matches!(fast.0, Outcome::DebugExit(_) | Outcome::Halted { .. }),
            "{guest}: {:?}",
            fast.0
        );
        assert_eq!(stepped, fast, "{guest}: stepped run differs");
        assert_eq!(watched, fast, "{guest}: run with a watchpoint differs");
    }
}

/// Ctrl-C (SIGINT) stops a running guest and returns to the prompt, both when it runs
/// free and when it is stepped for a breakpoint; trapeze itself goes on. intloop runs
/// 90 million instructions with no device deadline, so it is still running when the
/// signal comes.
#[test]
fn ctrl_c_stops_a_running_guest() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .args(["debug", "--memory", "16M", "--flat"])
        .arg(guests_dir().join("intloop.bin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let interrupt = |stdin: &mut std::process::ChildStdin, cmd: &str| {
        stdin.write_all(cmd.as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    };
    interrupt(&mut stdin, "continue\n");
    interrupt(&mut stdin, "break 0x1\ncontinue\n");
    stdin.write_all(b"regs\nquit\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\ninterrupted\n").count(), 2, "{text}");
    assert!(!text.contains("guest ended"), "{text}");
    assert!(text.contains("(trapeze) regs\nrax="), "{text}");
}

/// `catch exception 14` stops at each page fault of paging_pf with CR2 as QEMU's
/// reference output prints it; `catch io` stops after the guest's first write to the
/// debug console.
#[test]
fn catch_page_faults_and_ports() {
    let t = session(
        "paging_pf",
        "catch exception 14\ncontinue\ncontinue\ndelete 1\ncatch io 0xe9\ncontinue\n",
    );
    let cr2: Vec<String> = std::fs::read_to_string(guests_dir().join("paging_pf.expected"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("#PF cr2="))
        .map(|l| format!("{:x}", u64::from_str_radix(&l[..8], 16).unwrap()))
        .collect();
    let stops: Vec<&str> = t.split("(trapeze) continue\n").skip(1).collect();
    assert_eq!(stops.len(), 3, "{t}");
    for (stop, cr2) in stops.iter().zip(&cr2[..2]) {
        assert!(stop.starts_with("catchpoint 1: exception 14\n"), "{stop}");
        assert!(
            stop.contains(&format!(" cr2={cr2}")),
            "expected CR2 {cr2}: {stop}"
        );
    }
    // The handler prints "#PF cr2=" with OUT 0xE9: the first such OUT after the
    // second fault (the guest's earlier output was before `catch io`).
    assert!(
        stops[2].starts_with("catchpoint 2: io port 0xe9\n"),
        "{}",
        stops[2]
    );
}
