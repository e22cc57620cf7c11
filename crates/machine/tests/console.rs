//! The serial console on a terminal: trapeze runs on the slave side of a
//! pseudo-terminal, as it would in an xterm, and the test types on the master side.

mod pty;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pty::Terminal;

/// Run serial_echo.bin on a terminal, type `keys` (a pause before each), and return
/// (exit status, what appeared on the terminal); the terminal's settings must be back.
fn on_terminal(keys: &[&[u8]]) -> (i32, String) {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/guests/serial_echo.bin");
    let mut t = Terminal::run(
        Command::new(env!("CARGO_BIN_EXE_trapeze"))
            .args([
                "run",
                "--memory",
                "16M",
                "--max-instructions",
                "100000000000",
                "--flat",
            ])
            .arg(&guest),
    );
    // Typed before the guest set up COM1, a byte waits in the UART (no FIFO reset).
    for k in keys {
        std::thread::sleep(Duration::from_millis(300));
        t.type_keys(k);
    }
    t.finish(Duration::from_secs(60))
}

/// Raw mode: the keys reach the guest one by one (no line buffering: there is no
/// Enter) and the terminal does not echo them; the guest's upper-case echo appears.
#[test]
fn typing_reaches_the_guest_unbuffered_and_unechoed() {
    let (status, out) = on_terminal(&[b"abc."]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("ABC"), "{out}");
    assert!(
        !out.contains("abc"),
        "the host terminal echoed the keys: {out}"
    );
}

/// Ctrl-A x ends the run (QEMU's escape), with the terminal restored.
#[test]
fn ctrl_a_x_quits() {
    let (status, out) = on_terminal(&[b"ab", b"\x01x"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("AB"), "{out}");
    assert!(out.contains("quit from the console"), "{out}");
}
