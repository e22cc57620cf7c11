//! The host side of the serial console: what is typed on the terminal, or piped into
//! stdin, goes to COM1's receive line. While the guest runs, a terminal is in raw mode
//! (no line editing, echo or signals on the host side: Ctrl-C, Ctrl-Z and the arrow
//! keys go to the guest) and is restored on every way out: a normal exit, an error, a
//! panic, and SIGTERM/SIGHUP.
//!
//! As in QEMU's `-nographic`, Ctrl-A is an escape on a terminal: Ctrl-A x ends the run,
//! Ctrl-A Ctrl-A sends one Ctrl-A to the guest.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::OnceLock;
use std::time::Duration;

const ESCAPE: u8 = 0x01;

enum Input {
    Bytes(Vec<u8>),
    Quit,
}

/// Where the bytes come from.
enum Source {
    /// A regular file on stdin, read as the UART makes room: the guest sees the same
    /// bytes at the same instructions on every run.
    File(std::fs::File),
    /// A terminal or a pipe, read by a thread as the bytes come.
    Stream(Receiver<Input>),
    /// Nothing more will come.
    Closed,
}

pub struct Console {
    source: Source,
    /// Bytes the UART has not taken yet (its input buffer was full).
    pending: VecDeque<u8>,
    /// The user asked to end the run (Ctrl-A x).
    pub quit: bool,
    /// Holds the terminal in raw mode; restores it when dropped.
    raw: Option<RawTerminal>,
}

impl Console {
    /// Input from stdin: a terminal goes to raw mode.
    pub fn stdin() -> Console {
        let raw = RawTerminal::enable();
        let file = (raw.is_none() && stdin_is_file())
            .then(|| std::io::stdin().as_fd().try_clone_to_owned().ok())
            .flatten();
        let source = match file {
            Some(fd) => Source::File(std::fs::File::from(fd)),
            None => Source::Stream(spawn_reader(raw.is_some())),
        };
        Console {
            source,
            pending: VecDeque::new(),
            quit: false,
            raw,
        }
    }

    /// A person at a terminal (not a pipe or a file): idle time then passes at the
    /// host's pace.
    pub fn interactive(&self) -> bool {
        self.raw.is_some()
    }

    /// Whether input may still arrive on its own (a terminal or a pipe not at its end).
    pub fn streaming(&self) -> bool {
        matches!(self.source, Source::Stream(_))
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Bytes(b) => self.pending.extend(b),
            Input::Quit => self.quit = true,
        }
    }

    /// Collect what arrived, without blocking (a file: the next chunk once the UART took
    /// the last one).
    pub fn poll(&mut self) {
        match &mut self.source {
            Source::File(f) => {
                if self.pending.is_empty() {
                    let mut buf = [0u8; 256];
                    match f.read(&mut buf) {
                        Ok(n) if n > 0 => self.pending.extend(&buf[..n]),
                        _ => self.source = Source::Closed,
                    }
                }
            }
            Source::Stream(rx) => {
                let mut got = Vec::new();
                let closed = loop {
                    match rx.try_recv() {
                        Ok(i) => got.push(i),
                        Err(TryRecvError::Empty) => break false,
                        Err(TryRecvError::Disconnected) => break true,
                    }
                };
                for i in got {
                    self.take(i);
                }
                if closed {
                    self.source = Source::Closed;
                }
            }
            Source::Closed => {}
        }
    }

    /// Block until streamed input arrives, for at most `timeout` (`None`: as long as it
    /// takes); sleeps out the timeout when nothing can stream.
    pub fn wait(&mut self, timeout: Option<Duration>) {
        let got = match (&self.source, timeout) {
            (Source::Stream(rx), Some(t)) => rx.recv_timeout(t),
            (Source::Stream(rx), None) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            (_, t) => {
                std::thread::sleep(t.unwrap_or_default());
                return;
            }
        };
        match got {
            Ok(i) => self.take(i),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.source = Source::Closed,
        }
    }

    /// Offer the waiting bytes to `receive`, which returns how many it took.
    pub fn deliver(&mut self, receive: impl FnOnce(&[u8]) -> usize) {
        if self.pending.is_empty() {
            return;
        }
        let n = receive(self.pending.make_contiguous());
        self.pending.drain(..n);
    }
}

fn stdin_is_file() -> bool {
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.is_file())
}

/// A thread that reads stdin as bytes come; on a terminal it also handles the Ctrl-A
/// escape.
fn spawn_reader(escapes: bool) -> Receiver<Input> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        let mut escaped = false;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut bytes = Vec::with_capacity(n);
            for &b in &buf[..n] {
                match (escapes, escaped, b) {
                    (true, false, ESCAPE) => escaped = true,
                    (true, true, b'x' | b'X') => {
                        let _ = tx.send(Input::Quit);
                        return;
                    }
                    (true, true, _) => {
                        escaped = false;
                        if b == ESCAPE {
                            bytes.push(b);
                        }
                    }
                    _ => bytes.push(b),
                }
            }
            if !bytes.is_empty() && tx.send(Input::Bytes(bytes)).is_err() {
                return;
            }
        }
    });
    rx
}

/// The terminal's settings before raw mode, for the restore on exit or on a signal.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

struct RawTerminal;

impl RawTerminal {
    /// Raw input on stdin if it is a terminal (POSIX termios, as cfmakeraw minus the
    /// output flags: OPOST stays on, so the host's newline handling is unchanged).
    fn enable() -> Option<RawTerminal> {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a valid termios buffer.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = *SAVED.get_or_init(|| t);
            let mut raw = saved;
            raw.c_iflag &= !(libc::IGNBRK
                | libc::BRKINT
                | libc::PARMRK
                | libc::ISTRIP
                | libc::INLCR
                | libc::IGNCR
                | libc::ICRNL
                | libc::IXON);
            raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
            raw.c_cc[libc::VMIN] = 1;
            raw.c_cc[libc::VTIME] = 0;
            for sig in [libc::SIGTERM, libc::SIGHUP] {
                libc::signal(
                    sig,
                    restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
        }
        Some(RawTerminal)
    }
}

fn restore() {
    if let Some(t) = SAVED.get() {
        // SAFETY: tcsetattr is async-signal-safe; `t` is a termios tcgetattr filled.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, t);
        }
    }
}

/// SIGTERM/SIGHUP while the terminal is raw: restore it, then die of the signal.
extern "C" fn restore_and_die(sig: libc::c_int) {
    restore();
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore();
    }
}
