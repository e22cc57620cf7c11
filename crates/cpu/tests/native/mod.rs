//! Host-CPU oracle for differential tests of 64-bit user-mode instructions.
//!
//! [`run_native`] executes instruction bytes on the real CPU of this (x86-64 Linux) host, from a
//! register + RFLAGS + x87/SSE + memory state given by the caller, and reports the state
//! afterwards (or the signal the instruction raised). Integration tests compare that against the
//! emulator.
//!
//! # How a batch runs
//!
//! * The parent creates one `MAP_SHARED` anonymous mapping for the results and forks ONE child
//!   for the whole batch (the cases are read by the child from its copy-on-write copy of the
//!   parent's memory; nothing is serialised).
//! * The child maps three pages at fixed addresses (`MAP_FIXED_NOREPLACE`): data at
//!   [`DATA_ADDR`], stack at [`STACK_ADDR`] and an RWX code page at [`CODE_ADDR`]. The pages
//!   around them stay unmapped, so accesses just outside fault.
//! * Per case the child copies the data/stack contents in, writes the instruction bytes at
//!   [`CODE_ADDR`] followed by an absolute `jmp [rip+disp]` back to the harness, and calls
//!   `trapeze_native_enter` (assembly below). That stub saves the host's x87/SSE state
//!   (FXSAVE64), loads the case's FXSAVE image (FXRSTOR64), RFLAGS and all 16 GPRs (RSP
//!   included) and jumps to the code page. `trapeze_native_exit` first FXSAVE64s the x87/SSE
//!   state (nothing of the harness has run yet), stores all 16 GPRs with RIP-relative moves (the
//!   guest RSP may be anything), switches to the host stack, and only then executes PUSHFQ. Both
//!   ways back to Rust FXRSTOR64 the host state.
//! * A fault (SIGFPE for #DE, SIGSEGV, SIGBUS, SIGILL, SIGTRAP) is caught by an `SA_SIGINFO`
//!   handler running on an alternate signal stack (the guest RSP is not usable); it rewrites the
//!   ucontext's RIP/RSP/RFLAGS to `trapeze_native_recover`, which returns to Rust as from a
//!   normal call, and the batch goes on with the next case.
//! * Results: each case writes a fixed-size record into the shared mapping; memory is reported
//!   as the span of bytes that differ from the input page (copied into a bump arena in the same
//!   mapping), and the parent rebuilds full pages from the input. A progress counter is published
//!   after each case.
//! * The parent waits on the child (pidfd + poll, or a sleeping `waitpid(WNOHANG)` loop) and
//!   builds the outcomes of finished cases while the child runs the next ones. If the
//!   child dies, or makes no progress for the stall timeout (then it is SIGKILLed), the remaining
//!   cases are run again in a new child. A case that was running when two children died is
//!   reported as `Fault(Signal::Other(n))`, see [`Signal::Other`].
//!
//! # RFLAGS
//!
//! Only [`INPUT_FLAGS_MASK`] = 0x0CD5 = CF|PF|AF|ZF|SF|DF|OF is taken from the case; the stub
//! loads `(rflags & 0x0CD5) | 0x202` (bit 1 is reserved-1, IF=1 is what user mode always has and
//! POPFQ cannot change it at CPL 3). TF, AC, NT, ID etc. are never set from the case.
//!
//! The reported `rflags` is the raw PUSHFQ value after the instruction, so bit 1 and IF (0x200)
//! are always set. If the instruction itself sets TF (POPFQ), the resulting single-step trap is
//! absorbed by the handler and TF (0x100) is put back into the reported value; AC/NT/ID set by a
//! POPFQ show up as well (the harness restores clean flags before returning to Rust).
//! Compare `rflags & INPUT_FLAGS_MASK` (or the flags an instruction defines) against the emulator.
//!
//! # Limits
//!
//! The instruction must not transfer control (caller's guarantee). It must not change FS/GS
//! bases or segment registers the host relies on. Instructions that read RIP (RIP-relative
//! operands, `lea r, [rip]`) see the code at [`CODE_ADDR`]; the bytes after the instruction are
//! the harness's return jump. The host's x87/SSE state is restored after every case.
//!
//! # x87/SSE state
//!
//! [`State::fx`] is a 512-byte FXSAVE64 image (SDM Vol.1 Table 10-2): FCW at 0, FSW at 2, the
//! abridged FTW at 4, MXCSR at 24, ST0..ST7 in 16-byte slots from 32, XMM0..XMM15 from 160. The
//! default is the state after FNINIT with MXCSR = 1F80h and all registers zero. A case whose
//! MXCSR has reserved bits set makes FXRSTOR raise #GP (reported as `Fault(Segv)`). MXCSR_MASK
//! (bytes 28..31, the host's) and bytes 464..511 (not written by FXSAVE) are reported as the
//! input had them, so an instruction that changes no x87/SSE state reports its input image.
//!
//! # Host notes (Intel Xeon, Linux 6.x, checked by `native_selftest`)
//!
//! * POPFQ of all ones at CPL 3 yields RFLAGS = 0x244FD7: CF PF AF ZF SF TF IF DF OF NT AC ID
//!   and bit 1. IOPL stays 0, IF stays 1, RF/VM/VIF/VIP stay 0, as the SDM says for CPL > IOPL.
//! * User mode CAN set AC, and Linux runs with CR0.AM=1, so after a guest POPFQ with AC every
//!   misaligned access faults (#AC → SIGBUS); the harness's own accesses are all aligned.
//! * Linux reports #SS (e.g. a stack access with non-canonical RSP) as SIGBUS, not SIGSEGV;
//!   #GP (HLT, CLI, non-canonical data address) and #PF are SIGSEGV.
#![allow(dead_code)]

use std::cell::UnsafeCell;
use std::mem::{offset_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One 4 KiB data page, mapped at this fixed address in the child.
pub const DATA_ADDR: u64 = 0x1000_0000;
pub const DATA_SIZE: usize = 4096;
/// One 4 KiB stack page right after the data page (RSP for tests points inside it).
pub const STACK_ADDR: u64 = 0x1000_1000;
pub const STACK_SIZE: usize = 4096;
/// The instruction bytes are placed at this address (relevant for RIP-relative operands).
/// Pages between the stack page and this one are left unmapped as a guard.
pub const CODE_ADDR: u64 = 0x1001_0000;
/// Longest return jump appended after the instruction bytes: `jmp [rip+disp8]` (6 bytes), up to
/// 7 padding bytes, 8-byte address.
const TRAMPOLINE_LEN: usize = 21;
/// Longest accepted instruction byte sequence.
pub const MAX_CODE_LEN: usize = 4096 - TRAMPOLINE_LEN;
/// The RFLAGS bits taken from the case: CF|PF|AF|ZF|SF|DF|OF.
pub const INPUT_FLAGS_MASK: u64 = 0x0CD5;
/// How long a child may run without finishing a case before it is killed.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

const RFLAGS_TF: u64 = 1 << 8;
/// Exception vectors #MF and #XM (as `REG_TRAPNO` in the signal's ucontext).
const TRAP_MF: u32 = 16;
const TRAP_XM: u32 = 19;
/// Bit 1 (reserved, always 1) and IF (always 1 in Linux user mode).
const RFLAGS_FIXED: u64 = 0x202;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// RAX RCX RDX RBX RSP RBP RSI RDI R8..R15 (x86 encoding order).
    pub gpr: [u64; 16],
    pub rflags: u64,
    /// Contents of the page at [`DATA_ADDR`], [`DATA_SIZE`] bytes.
    pub data: Vec<u8>,
    /// Contents of the page at [`STACK_ADDR`], [`STACK_SIZE`] bytes.
    pub stack: Vec<u8>,
    /// x87/MMX/SSE state as an FXSAVE64 image (see the module documentation).
    pub fx: Box<[u8; FX_SIZE]>,
}

impl State {
    /// All registers zero, flags zero, both pages zero, x87/SSE as after FNINIT.
    pub fn zeroed() -> State {
        State {
            gpr: [0; 16],
            rflags: 0,
            data: vec![0; DATA_SIZE],
            stack: vec![0; STACK_SIZE],
            fx: Box::new(fx_init()),
        }
    }
}

/// Size of an FXSAVE image.
pub const FX_SIZE: usize = 512;
/// Byte offsets in the FXSAVE image (SDM Vol.1 Table 10-2).
pub mod fx {
    pub const FCW: usize = 0;
    pub const FSW: usize = 2;
    pub const FTW: usize = 4;
    pub const MXCSR: usize = 24;
    pub const MXCSR_MASK: usize = 28;
    pub const ST0: usize = 32;
    pub const XMM0: usize = 160;
}

/// The FXSAVE image after FNINIT (FCW 037Fh, every register empty) with MXCSR = 1F80h and
/// all data registers zero.
pub fn fx_init() -> [u8; FX_SIZE] {
    let mut img = [0u8; FX_SIZE];
    img[fx::FCW..fx::FCW + 2].copy_from_slice(&0x037Fu16.to_le_bytes());
    img[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&0x1F80u32.to_le_bytes());
    img
}

/// XMMi in an FXSAVE image.
pub fn fx_xmm(img: &[u8; FX_SIZE], i: usize) -> u128 {
    let o = fx::XMM0 + 16 * i;
    u128::from_le_bytes(img[o..o + 16].try_into().unwrap())
}

pub fn set_fx_xmm(img: &mut [u8; FX_SIZE], i: usize, v: u128) {
    let o = fx::XMM0 + 16 * i;
    img[o..o + 16].copy_from_slice(&v.to_le_bytes());
}

pub fn fx_mxcsr(img: &[u8; FX_SIZE]) -> u32 {
    u32::from_le_bytes(img[fx::MXCSR..fx::MXCSR + 4].try_into().unwrap())
}

pub fn set_fx_mxcsr(img: &mut [u8; FX_SIZE], v: u32) {
    img[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&v.to_le_bytes());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGFPE from #DE (divide error / quotient overflow).
    DivideError,
    /// SIGFPE from #MF (unmasked x87 exception).
    X87Fp,
    /// SIGFPE from #XM (unmasked SIMD floating-point exception).
    SimdFp,
    /// SIGSEGV: #PF, #GP (also privileged instructions such as HLT/CLI in user mode).
    Segv,
    /// SIGBUS: #AC, and on Linux also #SS (e.g. a stack access with a non-canonical RSP).
    Bus,
    /// SIGILL: #UD.
    Ill,
    /// SIGTRAP: #BP (INT3) or an INT1/#DB raised by the instruction.
    Trap,
    /// The harness could not catch it: the child process died (or stalled and was killed) twice
    /// while running this case. The value is the signal that killed the child (9 = SIGKILL after
    /// a stall), or 0 if the child exited (e.g. the case was an `exit` system call).
    Other(i32),
}

impl Signal {
    /// `trapno`: the exception vector the kernel reports with the signal.
    fn from_signo(sig: i32, trapno: u32) -> Signal {
        match sig {
            libc::SIGFPE if trapno == TRAP_MF => Signal::X87Fp,
            libc::SIGFPE if trapno == TRAP_XM => Signal::SimdFp,
            libc::SIGFPE => Signal::DivideError,
            libc::SIGSEGV => Signal::Segv,
            libc::SIGBUS => Signal::Bus,
            libc::SIGILL => Signal::Ill,
            libc::SIGTRAP => Signal::Trap,
            other => Signal::Other(other),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed(State),
    Fault(Signal),
}

/// Runs every case natively (one forked child for the whole batch) and returns one outcome per
/// case, in order. Panics (with a message) only on invalid input or if the child cannot set up
/// its fixed mappings.
pub fn run_native(cases: &[(Vec<u8>, State)]) -> Vec<Outcome> {
    run_native_with_timeout(cases, DEFAULT_STALL_TIMEOUT)
}

/// [`run_native`] with a custom stall timeout (time without a finished case before the child is
/// killed and the batch resumed in a new child).
pub fn run_native_with_timeout(cases: &[(Vec<u8>, State)], stall: Duration) -> Vec<Outcome> {
    for (i, (code, st)) in cases.iter().enumerate() {
        assert!(
            !code.is_empty() && code.len() <= MAX_CODE_LEN,
            "native oracle: case {i}: instruction length {} not in 1..={MAX_CODE_LEN}",
            code.len()
        );
        assert_eq!(
            st.data.len(),
            DATA_SIZE,
            "native oracle: case {i}: data must be {DATA_SIZE} bytes"
        );
        assert_eq!(
            st.stack.len(),
            STACK_SIZE,
            "native oracle: case {i}: stack must be {STACK_SIZE} bytes"
        );
    }
    let n = cases.len();
    if n == 0 {
        return Vec::new();
    }
    let shm = Shared::new(n);
    // Results in case order, appended while the child runs (records below `done` are final).
    // Only reserved here: pages written before fork() would be copied on write afterwards.
    let mut out: Vec<Outcome> = Vec::with_capacity(n);
    // Per case: how many children died while it was the next case to finish.
    let mut strikes = vec![0u8; n];
    // Children that died before even finishing their setup.
    let mut setup_deaths = 0;
    let mut start = 0;
    while start < n {
        let h = shm.header();
        h.done.store(start as u64, Ordering::Relaxed);
        h.arena_used
            .store(shm.committed_arena(start) as u64, Ordering::Relaxed);
        h.setup_error.store(0, Ordering::Relaxed);
        h.started.store(0, Ordering::Relaxed);

        // SAFETY: the child only runs `child_main`, which performs raw system calls, memory
        // copies and the assembly stub (no allocation, no locks) and ends with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            panic!(
                "native oracle: fork failed: {}",
                std::io::Error::last_os_error()
            );
        }
        if pid == 0 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                child_main(cases, start, &shm)
            }));
            let _ = r;
            unsafe { libc::_exit(EXIT_CHILD_PANIC) };
        }

        // Decode finished records while the child works on the next ones (the page copies
        // into fresh Vecs cost as much as running the cases).
        let status = wait_child(pid, h, stall, &mut |done| {
            while out.len() < done {
                out.push(decode(&shm, cases, out.len()));
            }
        });
        let done = h.done.load(Ordering::Acquire) as usize;
        let setup_error = h.setup_error.load(Ordering::Relaxed);
        if setup_error != 0 {
            let stage = SETUP_STAGES
                .get((setup_error >> 32) as usize)
                .copied()
                .unwrap_or("?");
            panic!(
                "native oracle: child setup failed at {stage}: {}",
                std::io::Error::from_raw_os_error((setup_error & 0xffff_ffff) as i32)
            );
        }
        while out.len() < done {
            out.push(decode(&shm, cases, out.len()));
        }
        if done >= n {
            break; // everything finished (whatever happened afterwards is irrelevant)
        }
        let (signo, how) = if libc::WIFSIGNALED(status) {
            (
                libc::WTERMSIG(status),
                format!("killed by signal {}", libc::WTERMSIG(status)),
            )
        } else if libc::WIFEXITED(status) {
            (
                0,
                format!("exited with status {}", libc::WEXITSTATUS(status)),
            )
        } else {
            (0, format!("wait status {status:#x}"))
        };
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_CHILD_PANIC {
            panic!("native oracle: child panicked (harness bug) before case {done}");
        }
        if h.started.load(Ordering::Relaxed) == 0 {
            setup_deaths += 1;
            assert!(
                setup_deaths < 3,
                "native oracle: child died during setup ({how})"
            );
            continue;
        }
        // Case `done` was running (or about to) when the child died: retry it once, then blame it.
        strikes[done] += 1;
        if strikes[done] >= 2 {
            debug_assert_eq!(out.len(), done);
            out.push(Outcome::Fault(Signal::Other(signo)));
            start = done + 1;
        } else {
            start = done;
        }
    }

    assert_eq!(out.len(), n, "native oracle: missing results");
    out
}

/// Builds the outcome of case `i` from its committed record and the case's input pages.
fn decode(shm: &Shared, cases: &[(Vec<u8>, State)], i: usize) -> Outcome {
    // SAFETY: record i was committed (the child published done > i with Release, and the
    // caller loaded it with Acquire); nobody writes it any more.
    let r = unsafe { ptr::read(shm.record(i)) };
    match r.kind {
        KIND_COMPLETED => {
            let input = &cases[i].1;
            let mut data = input.data.clone();
            let mut stack = input.stack.clone();
            let (dlo, dl) = (r.data_lo as usize, r.data_len as usize);
            let (slo, sl) = (r.stack_lo as usize, r.stack_len as usize);
            assert!(dlo + dl <= DATA_SIZE && slo + sl <= STACK_SIZE);
            let d0 = r.arena_off as usize;
            // SAFETY: the spans were checked against the page sizes; the arena holds
            // dl + sl bytes at d0 (within the mapping, sized for the worst case).
            unsafe {
                let arena = shm.arena();
                ptr::copy_nonoverlapping(arena.add(d0), data.as_mut_ptr().add(dlo), dl);
                ptr::copy_nonoverlapping(arena.add(d0 + dl), stack.as_mut_ptr().add(slo), sl);
            }
            Outcome::Completed(State {
                gpr: r.gpr,
                rflags: r.rflags,
                data,
                stack,
                fx: Box::new(r.fx.0),
            })
        }
        KIND_FAULT => Outcome::Fault(Signal::from_signo(r.signo, r.trapno)),
        k => panic!("native oracle: case {i} has no result (record kind {k})"),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared result mapping (parent <-> child)

const KIND_COMPLETED: u32 = 1;
const KIND_FAULT: u32 = 2;
const EXIT_SETUP_FAILED: i32 = 101;
const EXIT_CHILD_PANIC: i32 = 102;
const SETUP_STAGES: [&str; 7] = [
    "?",
    "mmap data page at DATA_ADDR",
    "mmap stack page at STACK_ADDR",
    "mmap code page at CODE_ADDR",
    "mmap signal stack",
    "sigaltstack",
    "sigaction",
];

#[repr(C)]
struct Header {
    /// Number of cases finished (all records below it are valid). Written by the child.
    done: AtomicU64,
    /// Bytes of the arena used by finished cases.
    arena_used: AtomicU64,
    /// (stage << 32) | errno if the child could not set itself up.
    setup_error: AtomicU64,
    /// 1 once the child finished its setup.
    started: AtomicU64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Record {
    kind: u32,
    signo: i32,
    trapno: u32,
    gpr: [u64; 16],
    rflags: u64,
    /// Changed byte span of the data page: offset and length; bytes at `arena_off`.
    data_lo: u32,
    data_len: u32,
    /// Changed byte span of the stack page; bytes at `arena_off + data_len`.
    stack_lo: u32,
    stack_len: u32,
    arena_off: u64,
    fx: FxArea,
}

/// An FXSAVE/FXRSTOR memory operand (16-byte aligned).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct FxArea([u8; FX_SIZE]);

struct Shared {
    base: *mut u8,
    len: usize,
    n: usize,
    records_off: usize,
    arena_off: usize,
}

impl Shared {
    fn new(n: usize) -> Shared {
        let records_off = 64;
        let arena_off = (records_off + n * size_of::<Record>()).next_multiple_of(4096);
        // Worst case every case rewrites both pages completely.
        let len = arena_off + n * (DATA_SIZE + STACK_SIZE);
        // SAFETY: plain anonymous mapping; NORESERVE because the arena is normally tiny.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            panic!(
                "native oracle: cannot map {len} bytes of shared result memory: {}",
                std::io::Error::last_os_error()
            );
        }
        Shared {
            base: p as *mut u8,
            len,
            n,
            records_off,
            arena_off,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a zero-initialised Header (all atomics).
        unsafe { &*(self.base as *const Header) }
    }

    fn record(&self, i: usize) -> *mut Record {
        assert!(i < self.n);
        // SAFETY: in bounds of the mapping; Record is 8-aligned, the offset too.
        unsafe { (self.base.add(self.records_off) as *mut Record).add(i) }
    }

    /// Arena capacity: enough for every case rewriting both pages completely.
    fn arena_capacity(&self) -> usize {
        self.len - self.arena_off
    }

    fn arena(&self) -> *mut u8 {
        // SAFETY: in bounds of the mapping.
        unsafe { self.base.add(self.arena_off) }
    }

    /// End of the arena bytes used by the completed records below `upto`.
    fn committed_arena(&self, upto: usize) -> usize {
        (0..upto)
            .map(|i| unsafe { ptr::read(self.record(i)) })
            .filter(|r| r.kind == KIND_COMPLETED)
            .map(|r| r.arena_off as usize + r.data_len as usize + r.stack_len as usize)
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Waits for the child, calling `progress(done)` whenever more cases have finished; kills the
/// child if it finishes no case for `stall`. Returns the wait status.
fn wait_child(
    pid: libc::pid_t,
    h: &Header,
    stall: Duration,
    progress: &mut dyn FnMut(usize),
) -> i32 {
    // pidfd becomes readable when the child exits: no polling latency. Fallback: short sleeps.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let mut last_done = h.done.load(Ordering::Acquire);
    let mut last_progress = Instant::now();
    let mut status = 0;
    loop {
        let d = h.done.load(Ordering::Acquire);
        let busy = d != last_done;
        if busy {
            last_done = d;
            last_progress = Instant::now();
            progress(d as usize);
        } else if last_progress.elapsed() > stall {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EINTR),
                    "native oracle: waitpid failed: {e}"
                );
            }
            break;
        }
        // While results are streaming in, just glance at the child; otherwise wait a while.
        let timeout_ms = if busy { 0 } else { 1 };
        if pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        } else if !busy {
            std::thread::sleep(Duration::from_micros(200));
        }
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                panic!("native oracle: waitpid({pid}) failed: {e}");
            }
        }
    }
    if pidfd >= 0 {
        unsafe { libc::close(pidfd) };
    }
    status
}

// ---------------------------------------------------------------------------------------------
// Child side: the context block shared with the assembly stubs and the signal handler.

/// Everything the stubs touch lives in this static, addressed RIP-relatively: while the guest
/// runs, no register (not even RSP) can be trusted to point at anything of ours.
#[repr(C, align(64))]
struct Ctx {
    in_gpr: [u64; 16],  // 0
    in_rflags: u64,     // 128
    out_gpr: [u64; 16], // 136
    out_rflags: u64,    // 264
    host_rsp: u64,      // 272: RSP of the harness after saving callee-saved registers
    code: u64,          // 280: where the stub jumps (CODE_ADDR)
    armed: u64,         // 288: 1 while guest state is live (faults then belong to the case)
    fault_sig: i64,     // signal caught by the handler (0 = none)
    fault_trap: u64,    // its exception vector (REG_TRAPNO)
    tf_trapped: u64,    // 1 if the instruction set TF and the handler absorbed the trap
    fault_rip: u64,     // RIP of the faulting instruction (diagnostics)
    in_fx: FxArea,      // the case's x87/SSE state, FXRSTOR64ed before entry
    out_fx: FxArea,     // FXSAVE64d right after the instruction
    host_fx: FxArea,    // the harness's own x87/SSE state
}

// The offsets hard-coded in the assembly below.
const _: () = {
    assert!(offset_of!(Ctx, in_gpr) == 0);
    assert!(offset_of!(Ctx, in_rflags) == 128);
    assert!(offset_of!(Ctx, out_gpr) == 136);
    assert!(offset_of!(Ctx, out_rflags) == 264);
    assert!(offset_of!(Ctx, host_rsp) == 272);
    assert!(offset_of!(Ctx, code) == 280);
    assert!(offset_of!(Ctx, armed) == 288);
};

#[repr(transparent)]
struct CtxCell(UnsafeCell<Ctx>);
// SAFETY: only used in the (single-threaded) forked child.
unsafe impl Sync for CtxCell {}

static CTX: CtxCell = CtxCell(UnsafeCell::new(Ctx {
    in_gpr: [0; 16],
    in_rflags: 0,
    out_gpr: [0; 16],
    out_rflags: 0,
    host_rsp: 0,
    code: 0,
    armed: 0,
    fault_sig: 0,
    fault_trap: 0,
    tf_trapped: 0,
    fault_rip: 0,
    in_fx: FxArea([0; FX_SIZE]),
    out_fx: FxArea([0; FX_SIZE]),
    host_fx: FxArea([0; FX_SIZE]),
}));

fn ctx() -> *mut Ctx {
    CTX.0.get()
}

extern "C" {
    /// Runs the prepared case. Returns 0 if the instruction completed, 1 if it faulted.
    fn trapeze_native_enter() -> u64;
    /// Target of the return jump appended to the instruction bytes (not callable).
    fn trapeze_native_exit();
    /// Where the signal handler resumes after a fault (not callable).
    fn trapeze_native_recover();
}

core::arch::global_asm!(
    ".pushsection .text.trapeze_native,\"ax\",@progbits",
    ".p2align 4",
    ".globl trapeze_native_enter",
    "trapeze_native_enter:",
    // SysV callee-saved registers: the guest overwrites all of them.
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "fxsave64 [rip + {ctx} + {host_fx}]",
    // The exit stub and the signal handler come back to this stack pointer.
    "mov qword ptr [rip + {ctx} + 272], rsp",
    "mov qword ptr [rip + {ctx} + 288], 1",
    // May #GP (reserved MXCSR bits): armed, so that is the case's fault.
    "fxrstor64 [rip + {ctx} + {in_fx}]",
    // POPFQ needs a valid stack, so RFLAGS is loaded while RSP is still ours. Nothing below
    // modifies flags (MOV and an indirect JMP only).
    "push qword ptr [rip + {ctx} + 128]",
    "popfq",
    "mov rax, qword ptr [rip + {ctx} + 0]",
    "mov rcx, qword ptr [rip + {ctx} + 8]",
    "mov rdx, qword ptr [rip + {ctx} + 16]",
    "mov rbx, qword ptr [rip + {ctx} + 24]",
    "mov rbp, qword ptr [rip + {ctx} + 40]",
    "mov rsi, qword ptr [rip + {ctx} + 48]",
    "mov rdi, qword ptr [rip + {ctx} + 56]",
    "mov r8,  qword ptr [rip + {ctx} + 64]",
    "mov r9,  qword ptr [rip + {ctx} + 72]",
    "mov r10, qword ptr [rip + {ctx} + 80]",
    "mov r11, qword ptr [rip + {ctx} + 88]",
    "mov r12, qword ptr [rip + {ctx} + 96]",
    "mov r13, qword ptr [rip + {ctx} + 104]",
    "mov r14, qword ptr [rip + {ctx} + 112]",
    "mov r15, qword ptr [rip + {ctx} + 120]",
    // Guest RSP last; from here on the stack belongs to the guest.
    "mov rsp, qword ptr [rip + {ctx} + 32]",
    // Memory-indirect jump: needs no register.
    "jmp qword ptr [rip + {ctx} + 280]",
    //
    // Reached by the `jmp [rip+disp]` placed right after the instruction bytes.
    ".p2align 4",
    ".globl trapeze_native_exit",
    "trapeze_native_exit:",
    // Before anything else can touch the x87/SSE state.
    "fxsave64 [rip + {ctx} + {out_fx}]",
    // The guest RSP may point anywhere, so store everything with RIP-relative moves first.
    "mov qword ptr [rip + {ctx} + 136], rax",
    "mov qword ptr [rip + {ctx} + 144], rcx",
    "mov qword ptr [rip + {ctx} + 152], rdx",
    "mov qword ptr [rip + {ctx} + 160], rbx",
    "mov qword ptr [rip + {ctx} + 168], rsp",
    "mov qword ptr [rip + {ctx} + 176], rbp",
    "mov qword ptr [rip + {ctx} + 184], rsi",
    "mov qword ptr [rip + {ctx} + 192], rdi",
    "mov qword ptr [rip + {ctx} + 200], r8",
    "mov qword ptr [rip + {ctx} + 208], r9",
    "mov qword ptr [rip + {ctx} + 216], r10",
    "mov qword ptr [rip + {ctx} + 224], r11",
    "mov qword ptr [rip + {ctx} + 232], r12",
    "mov qword ptr [rip + {ctx} + 240], r13",
    "mov qword ptr [rip + {ctx} + 248], r14",
    "mov qword ptr [rip + {ctx} + 256], r15",
    // Back on the host stack (MOV does not touch flags); now PUSHFQ has a valid stack.
    "mov rsp, qword ptr [rip + {ctx} + 272]",
    "pushfq",
    "pop qword ptr [rip + {ctx} + 264]",
    "mov qword ptr [rip + {ctx} + 288], 0",
    "mov eax, 0",
    "jmp 2f",
    //
    // The signal handler sets RIP here and RSP to the saved host RSP.
    ".p2align 4",
    ".globl trapeze_native_recover",
    "trapeze_native_recover:",
    "mov rsp, qword ptr [rip + {ctx} + 272]",
    "mov qword ptr [rip + {ctx} + 288], 0",
    "mov eax, 1",
    "2:",
    // Clean flags for Rust (DF=0 per the ABI; TF/AC/NT from a guest POPFQ cleared).
    "push 0x202",
    "popfq",
    "fxrstor64 [rip + {ctx} + {host_fx}]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    ".popsection",
    ctx = sym CTX,
    in_fx = const offset_of!(Ctx, in_fx),
    out_fx = const offset_of!(Ctx, out_fx),
    host_fx = const offset_of!(Ctx, host_fx),
);

/// SA_SIGINFO handler (runs on the alternate signal stack: the guest RSP may be garbage).
extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext; CTX is only used by this thread.
    unsafe {
        let uc = &mut *(uc as *mut libc::ucontext_t);
        let g = &mut uc.uc_mcontext.gregs;
        let c = ctx();
        let efl = g[libc::REG_EFL as usize] as u64;
        if sig == libc::SIGTRAP && efl & RFLAGS_TF != 0 {
            // The instruction set TF (POPFQ): this is the single-step trap after the next
            // instruction of the harness. Clear TF, remember it, and carry on.
            g[libc::REG_EFL as usize] = (efl & !RFLAGS_TF) as i64;
            ptr::write_volatile(ptr::addr_of_mut!((*c).tf_trapped), 1);
            return;
        }
        if ptr::read_volatile(ptr::addr_of!((*c).armed)) == 0 {
            // Not raised by a case: a harness bug. Die of it so the parent sees it.
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
            return;
        }
        ptr::write_volatile(ptr::addr_of_mut!((*c).armed), 0);
        ptr::write_volatile(ptr::addr_of_mut!((*c).fault_sig), sig as i64);
        ptr::write_volatile(
            ptr::addr_of_mut!((*c).fault_trap),
            g[libc::REG_TRAPNO as usize] as u64,
        );
        ptr::write_volatile(
            ptr::addr_of_mut!((*c).fault_rip),
            g[libc::REG_RIP as usize] as u64,
        );
        g[libc::REG_RIP as usize] = trapeze_native_recover as *const () as usize as i64;
        g[libc::REG_RSP as usize] = ptr::read_volatile(ptr::addr_of!((*c).host_rsp)) as i64;
        g[libc::REG_EFL as usize] = RFLAGS_FIXED as i64;
    }
}

fn setup_fail(h: &Header, stage: u64) -> ! {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64;
    h.setup_error
        .store((stage << 32) | errno, Ordering::Relaxed);
    unsafe { libc::_exit(EXIT_SETUP_FAILED) }
}

/// Maps one page at a fixed address without replacing anything already there.
unsafe fn map_fixed(addr: u64, len: usize, prot: i32) -> bool {
    let p = libc::mmap(
        addr as *mut libc::c_void,
        len,
        prot,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return false;
    }
    if p as u64 != addr {
        // Kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint.
        libc::munmap(p, len);
        *libc::__errno_location() = libc::EEXIST;
        return false;
    }
    true
}

/// Body of the forked child: no allocation, no locks; ends with `_exit`.
unsafe fn child_main(cases: &[(Vec<u8>, State)], start: usize, shm: &Shared) -> ! {
    let h = shm.header();
    // No core dumps for children killed by a stray signal; die with the parent.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);

    let rw = libc::PROT_READ | libc::PROT_WRITE;
    if !map_fixed(DATA_ADDR, DATA_SIZE, rw) {
        setup_fail(h, 1);
    }
    if !map_fixed(STACK_ADDR, STACK_SIZE, rw) {
        setup_fail(h, 2);
    }
    if !map_fixed(CODE_ADDR, 4096, rw | libc::PROT_EXEC) {
        setup_fail(h, 3);
    }
    // Alternate signal stack, generous for large XSAVE frames (AVX-512).
    const ALT_SIZE: usize = 256 * 1024;
    let alt = libc::mmap(
        ptr::null_mut(),
        ALT_SIZE,
        rw,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if alt == libc::MAP_FAILED {
        setup_fail(h, 4);
    }
    let ss = libc::stack_t {
        ss_sp: alt,
        ss_flags: 0,
        ss_size: ALT_SIZE,
    };
    if libc::sigaltstack(&ss, ptr::null_mut()) != 0 {
        setup_fail(h, 5);
    }
    let mut sa: libc::sigaction = std::mem::zeroed();
    sa.sa_sigaction = on_signal as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    libc::sigemptyset(&mut sa.sa_mask);
    let mut unblock: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut unblock);
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
    ] {
        if libc::sigaction(sig, &sa, ptr::null_mut()) != 0 {
            setup_fail(h, 6);
        }
        libc::sigaddset(&mut unblock, sig);
    }
    libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, ptr::null_mut());
    h.started.store(1, Ordering::Relaxed);

    let c = ctx();
    let code_page = CODE_ADDR as *mut u8;
    let data_page = DATA_ADDR as *mut u8;
    let stack_page = STACK_ADDR as *mut u8;
    let exit_addr = (trapeze_native_exit as *const () as usize as u64).to_le_bytes();
    let arena = shm.arena();
    let arena_cap = shm.arena_capacity();
    let mut arena_pos = h.arena_used.load(Ordering::Relaxed) as usize;

    for (i, (code, st)) in cases.iter().enumerate().skip(start) {
        ptr::copy_nonoverlapping(st.data.as_ptr(), data_page, DATA_SIZE);
        ptr::copy_nonoverlapping(st.stack.as_ptr(), stack_page, STACK_SIZE);
        // Instruction bytes, then `jmp qword ptr [rip+disp32]` through the absolute address of
        // trapeze_native_exit (the code page may be out of rel32 reach of the harness). The
        // address slot is 8-byte aligned: a guest POPFQ may have set AC, and a misaligned load
        // would then raise #AC (SIGBUS) in the harness.
        ptr::copy_nonoverlapping(code.as_ptr(), code_page, code.len());
        let jmp_end = code.len() + 6;
        let slot = jmp_end.next_multiple_of(8);
        let disp = ((slot - jmp_end) as u32).to_le_bytes();
        let tramp = code_page.add(code.len());
        let jmp = [0xFF, 0x25, disp[0], disp[1], disp[2], disp[3]];
        ptr::copy_nonoverlapping(jmp.as_ptr(), tramp, 6);
        ptr::write_bytes(code_page.add(jmp_end), 0xCC, slot - jmp_end); // never executed
        ptr::copy_nonoverlapping(exit_addr.as_ptr(), code_page.add(slot), 8);

        ptr::write_volatile(ptr::addr_of_mut!((*c).in_gpr), st.gpr);
        ptr::write_volatile(
            ptr::addr_of_mut!((*c).in_rflags),
            (st.rflags & INPUT_FLAGS_MASK) | RFLAGS_FIXED,
        );
        ptr::write_volatile(ptr::addr_of_mut!((*c).code), CODE_ADDR);
        ptr::write_volatile(ptr::addr_of_mut!((*c).tf_trapped), 0);
        ptr::write_volatile(ptr::addr_of_mut!((*c).fault_sig), 0);
        ptr::write_volatile(ptr::addr_of_mut!((*c).in_fx), FxArea(*st.fx));
        // FXSAVE leaves bytes 464..511 alone: they come back as given.
        ptr::write_volatile(ptr::addr_of_mut!((*c).out_fx), FxArea(*st.fx));

        let faulted = trapeze_native_enter() != 0;

        let rec = shm.record(i);
        if faulted {
            ptr::write(
                rec,
                Record {
                    kind: KIND_FAULT,
                    signo: ptr::read_volatile(ptr::addr_of!((*c).fault_sig)) as i32,
                    trapno: ptr::read_volatile(ptr::addr_of!((*c).fault_trap)) as u32,
                    gpr: [0; 16],
                    rflags: 0,
                    data_lo: 0,
                    data_len: 0,
                    stack_lo: 0,
                    stack_len: 0,
                    arena_off: arena_pos as u64,
                    fx: FxArea([0; FX_SIZE]),
                },
            );
        } else {
            let mut rflags = ptr::read_volatile(ptr::addr_of!((*c).out_rflags));
            if ptr::read_volatile(ptr::addr_of!((*c).tf_trapped)) != 0 {
                rflags |= RFLAGS_TF;
            }
            let off = arena_pos;
            if arena_pos + DATA_SIZE + STACK_SIZE > arena_cap {
                // Cannot happen unless the bookkeeping was corrupted (e.g. by a wild guest
                // store); dying makes the parent retry instead of writing out of bounds.
                libc::abort();
            }
            let (dlo, dlen) = changed_span(data_page, &st.data);
            ptr::copy_nonoverlapping(data_page.add(dlo), arena.add(arena_pos), dlen);
            arena_pos += dlen;
            let (slo, slen) = changed_span(stack_page, &st.stack);
            ptr::copy_nonoverlapping(stack_page.add(slo), arena.add(arena_pos), slen);
            arena_pos += slen;
            ptr::write(
                rec,
                Record {
                    kind: KIND_COMPLETED,
                    signo: 0,
                    trapno: 0,
                    gpr: ptr::read_volatile(ptr::addr_of!((*c).out_gpr)),
                    rflags,
                    data_lo: dlo as u32,
                    data_len: dlen as u32,
                    stack_lo: slo as u32,
                    stack_len: slen as u32,
                    arena_off: off as u64,
                    fx: reported_fx(ptr::read_volatile(ptr::addr_of!((*c).out_fx)), &st.fx),
                },
            );
        }
        h.arena_used.store(arena_pos as u64, Ordering::Relaxed);
        // Publishes the record (and the arena bytes) to the parent.
        h.done.store(i as u64 + 1, Ordering::Release);
    }
    libc::_exit(0)
}

/// The image FXSAVE stored, with MXCSR_MASK (a property of the host, ignored by FXRSTOR) put
/// back as the case gave it: an instruction that changes no x87/SSE state reports its input.
fn reported_fx(mut out: FxArea, input: &[u8; FX_SIZE]) -> FxArea {
    out.0[fx::MXCSR_MASK..fx::MXCSR_MASK + 4]
        .copy_from_slice(&input[fx::MXCSR_MASK..fx::MXCSR_MASK + 4]);
    out
}

/// The smallest span `(offset, len)` of the page at `page` that differs from `orig`.
unsafe fn changed_span(page: *const u8, orig: &[u8]) -> (usize, usize) {
    let now = std::slice::from_raw_parts(page, orig.len());
    if now == orig {
        return (0, 0);
    }
    let lo = now.iter().zip(orig).position(|(a, b)| a != b).unwrap_or(0);
    let hi = now
        .iter()
        .zip(orig)
        .rposition(|(a, b)| a != b)
        .map_or(lo, |p| p + 1);
    (lo, hi - lo)
}
