//! `--gdb HOST:PORT`: a GDB remote serial protocol stub (the gdbstub crate) over the
//! debugger's stepping engine. gdb works in linear addresses: `$pc` is CS.base + RIP,
//! memory goes through the guest's current page tables, breakpoints and watchpoints
//! are the debugger's own (invisible to the guest), and `monitor` runs the debugger's
//! views (translate, tlb, stats, regs, gdt, idt, info devices, msr).

mod regs;

use std::net::{TcpListener, TcpStream};

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::debug::command::{self, Command, WatchKind as Kind};
use crate::debug::watch::Space;
use crate::debug::{self as dbg, Debugger, Goal, Stop};
use crate::machine::Outcome;
pub use regs::TrapezeX86;

/// Instructions per resume while gdb continues: how often the stub looks for a
/// Ctrl-C from gdb.
const CHUNK: u64 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("--gdb {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("gdb connection: {0}")]
    Protocol(String),
}

/// How a gdb session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// gdb detached (or the connection closed): the guest may run on.
    Detached,
    /// The guest's run ended under gdb.
    Ended(Outcome),
    /// gdb killed the guest.
    Killed,
}

/// Wait for gdb on `addr`, then serve it until it detaches or the guest ends; the
/// debugger comes back with the guest where gdb left it.
pub fn serve(d: Debugger, addr: &str) -> Result<(Debugger, End), GdbError> {
    let listen = |source| GdbError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    eprintln!("trapeze: waiting for gdb on {local} (target remote {local})");
    let (stream, peer) = listener.accept().map_err(listen)?;
    let _ = stream.set_nodelay(true);
    eprintln!("trapeze: gdb connected from {peer}");
    dbg::catch_ctrl_c();
    let mut target = GdbTarget {
        d,
        action: Action::Stay,
    };
    let result = GdbStub::new(stream).run_blocking::<EventLoop>(&mut target);
    dbg::release_ctrl_c();
    let end = match result {
        Ok(DisconnectReason::Disconnect) => {
            eprintln!("trapeze: gdb detached");
            End::Detached
        }
        Ok(DisconnectReason::Kill) => End::Killed,
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {
            target.d.ended.map_or(End::Detached, End::Ended)
        }
        Err(e) => return Err(GdbError::Protocol(e.to_string())),
    };
    Ok((target.d, end))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Stay,
    Step,
    Continue,
}

struct GdbTarget {
    d: Debugger,
    action: Action,
}

impl Target for GdbTarget {
    type Arch = TrapezeX86;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut regs::Regs) -> TargetResult<(), Self> {
        *regs = regs::Regs::from_cpu(&self.d.m.cpu);
        Ok(())
    }

    fn write_registers(&mut self, regs: &regs::Regs) -> TargetResult<(), Self> {
        regs.to_cpu(&mut self.d.m.cpu);
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        // Page by page: a read that runs into an unmapped page returns what it got.
        let mut done = 0;
        while done < data.len() {
            let at = start.wrapping_add(done as u64);
            let n = ((0x1000 - (at & 0xFFF)) as usize).min(data.len() - done);
            if self.d.m.cpu.peek(at, &mut data[done..done + n]).is_err() {
                break;
            }
            done += n;
        }
        if done == 0 {
            return Err(TargetError::NonFatal);
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        for (k, b) in data.iter().enumerate() {
            let phys = dbg::linear_to_phys(&self.d.m.cpu, start.wrapping_add(k as u64))
                .map_err(|_| TargetError::NonFatal)?;
            self.d
                .m
                .cpu
                .write_phys(phys, &[*b])
                .map_err(|_| TargetError::NonFatal)?;
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("trapeze cannot resume with a signal".into());
        }
        self.action = Action::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            return Err("trapeze cannot step with a signal".into());
        }
        self.action = Action::Step;
        Ok(())
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// Software breakpoints are kept by the stub, not written into guest memory, so they
/// are the same as hardware ones: both are the debugger's linear breakpoints.
impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.d.points.add_break(Space::Linear, addr, None);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.d.points.remove_break_at(Space::Linear, addr))
    }
}

impl HwBreakpoint for GdbTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, kind: usize) -> TargetResult<bool, Self> {
        self.add_sw_breakpoint(addr, kind)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, kind: usize) -> TargetResult<bool, Self> {
        self.remove_sw_breakpoint(addr, kind)
    }
}

fn kind(k: WatchKind) -> Kind {
    match k {
        WatchKind::Write => Kind::Write,
        WatchKind::Read => Kind::Read,
        WatchKind::ReadWrite => Kind::Access,
    }
}

impl HwWatchpoint for GdbTarget {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, k: WatchKind) -> TargetResult<bool, Self> {
        self.d
            .points
            .add_watch(kind(k), Space::Linear, addr, len.max(1));
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        k: WatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.d.points.remove_watch_at(kind(k), addr, len.max(1)))
    }
}

impl MonitorCmd for GdbTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let text = match std::str::from_utf8(cmd)
            .map_err(|e| e.to_string())
            .and_then(command::parse)
        {
            Ok(Some(
                c @ (Command::Translate(_)
                | Command::Tlb
                | Command::Stats
                | Command::Regs
                | Command::Fpu
                | Command::Sse
                | Command::Msr(_)
                | Command::Gdt
                | Command::Idt
                | Command::InfoDevices
                | Command::Examine(..)
                | Command::Disas(..)),
            )) => match self.d.execute(c) {
                Ok(t) => t.unwrap_or_default(),
                Err(e) => format!("error: {e}\n"),
            },
            Ok(_) => "monitor commands: translate ADDR, tlb, stats, regs, fpu, sse, msr N, \
                      gdt, idt, info devices, x ADDR [N], disas [ADDR] [N]\n"
                .into(),
            Err(e) => format!("error: {e}\n"),
        };
        out.write_raw(text.as_bytes());
        Ok(())
    }
}

enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut TcpStream,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<String, std::io::Error>,
    > {
        let action = std::mem::replace(&mut target.action, Action::Stay);
        loop {
            let stop = match action {
                Action::Step => target.d.resume(Goal::steps(1)),
                _ => target.d.resume(Goal {
                    steps: Some(CHUNK),
                    until: None,
                    // gdb lifts its breakpoint at PC and steps over it itself.
                    pass_first: false,
                }),
            };
            let reason = match stop {
                Stop::Stepped if action == Action::Step => SingleThreadStopReason::DoneStep,
                Stop::Stepped | Stop::Reached => {
                    if conn
                        .peek()
                        .map_err(run_blocking::WaitForStopReasonError::Connection)?
                        .is_some()
                    {
                        let byte = conn
                            .read()
                            .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                        return Ok(run_blocking::Event::IncomingData(byte));
                    }
                    continue;
                }
                Stop::Breakpoint(_) => SingleThreadStopReason::SwBreak(()),
                Stop::Watch { access, write, .. } => SingleThreadStopReason::Watch {
                    tid: (),
                    kind: if write {
                        WatchKind::Write
                    } else {
                        WatchKind::Read
                    },
                    addr: access.lin,
                },
                Stop::Catch(..) => SingleThreadStopReason::Signal(Signal::SIGTRAP),
                Stop::Interrupted => SingleThreadStopReason::Signal(Signal::SIGINT),
                Stop::Ended(o) => SingleThreadStopReason::Exited(o.exit_status() as u8),
            };
            return Ok(run_blocking::Event::TargetStopped(reason));
        }
    }

    fn on_interrupt(_target: &mut GdbTarget) -> Result<Option<Self::StopReason>, String> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}
