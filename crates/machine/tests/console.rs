//! The serial console on a terminal: trapeze runs on the slave side of a
//! pseudo-terminal, as it would in an xterm, and the test types on the master side.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A pseudo-terminal pair: (master, slave).
fn openpty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors we then own.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both are fresh descriptors owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

fn termios(fd: &OwnedFd) -> libc::termios {
    use std::os::fd::AsRawFd;
    // SAFETY: tcgetattr on an open terminal descriptor into a zeroed termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t
    }
}

fn same(a: &libc::termios, b: &libc::termios) -> bool {
    (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_cc)
        == (b.c_iflag, b.c_oflag, b.c_cflag, b.c_lflag, b.c_cc)
}

/// Run serial_echo.bin on a terminal, type `keys` (a pause before each), and return (exit status, what
/// appeared on the terminal); also checks the terminal's settings came back.
fn on_terminal(keys: &[&[u8]]) -> (i32, String) {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/guests/serial_echo.bin");
    let (mut master, slave) = openpty();
    let before = termios(&slave);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trapeze"))
        .args([
            "run",
            "--memory",
            "16M",
            "--max-instructions",
            "100000000000",
            "--flat",
        ])
        .arg(&guest)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .expect("trapeze runs");
    // Typed before the guest set up COM1, a byte waits in the UART (no FIFO reset).
    for k in keys {
        std::thread::sleep(Duration::from_millis(300));
        master.write_all(k).unwrap();
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "trapeze did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        same(&before, &termios(&slave)),
        "terminal settings not restored"
    );
    drop(slave);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Everything trapeze wrote is buffered on the master side; EIO once it is read.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    )
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
