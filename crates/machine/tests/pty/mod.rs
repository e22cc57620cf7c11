//! A pseudo-terminal for tests: trapeze runs on its slave side, as in an xterm, and the
//! test types on the master side and reads what appears.
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Terminal {
    master: std::fs::File,
    slave: OwnedFd,
    before: libc::termios,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: tcgetattr on an open terminal descriptor into a zeroed termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t
    }
}

impl Terminal {
    /// Start `cmd` with stdin, stdout and stderr on a new pseudo-terminal.
    pub fn run(cmd: &mut Command) -> Terminal {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty fills two descriptors that we then own.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        // SAFETY: both are fresh descriptors owned by nobody else.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let before = termios(&slave);
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()))
            .spawn()
            .expect("trapeze runs");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let (mut rd, sink) = (master.try_clone().unwrap(), screen.clone());
        // Reads until EIO, which comes once every slave descriptor is closed.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            master,
            slave,
            before,
            child,
            screen,
            reader,
        }
    }

    pub fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Everything that appeared so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Wait until `text` appears after the first `after` bytes; false on timeout.
    pub fn wait_for(&self, text: &str, after: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.screen().get(after..).is_some_and(|s| s.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Wait for trapeze to end; its exit status and the whole screen. Panics if it
    /// did not end in `timeout` or left the terminal's settings changed.
    pub fn finish(mut self, timeout: Duration) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("trapeze did not end:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let after = termios(&self.slave);
        assert!(
            (
                after.c_iflag,
                after.c_oflag,
                after.c_cflag,
                after.c_lflag,
                after.c_cc
            ) == (
                self.before.c_iflag,
                self.before.c_oflag,
                self.before.c_cflag,
                self.before.c_lflag,
                self.before.c_cc
            ),
            "terminal settings not restored"
        );
        let screen = self.screen.clone();
        drop(self.slave);
        self.reader.join().unwrap();
        let text = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        (status.code().unwrap_or(-1), text)
    }
}
