//! Breakpoints, watchpoints and catchpoints. They live in the debugger, not in the
//! guest's DR0-7: the guest cannot see or disturb them.

use std::fmt;

use trapeze_cpu::debug_api::MemAccess;
use trapeze_cpu::Cpu;

use super::command::{Catch, Cond, WatchKind};
use super::view::reg_value;

/// Where a breakpoint or watchpoint is: a linear or a physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Linear,
    Physical,
}

pub struct Break {
    pub id: u32,
    pub space: Space,
    pub addr: u64,
    pub cond: Option<Cond>,
    pub hits: u64,
}

pub struct Watch {
    pub id: u32,
    pub kind: WatchKind,
    pub space: Space,
    pub addr: u64,
    pub len: u64,
}

pub struct CatchPoint {
    pub id: u32,
    pub what: Catch,
}

#[derive(Default)]
pub struct Points {
    next_id: u32,
    pub breaks: Vec<Break>,
    pub watches: Vec<Watch>,
    pub catches: Vec<CatchPoint>,
}

/// A watchpoint that an instruction triggered.
pub struct WatchHit {
    pub id: u32,
    pub kind: WatchKind,
    pub access: MemAccess,
}

impl Points {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub fn is_empty(&self) -> bool {
        self.breaks.is_empty() && self.watches.is_empty() && self.catches.is_empty()
    }

    pub fn add_break(&mut self, space: Space, addr: u64, cond: Option<Cond>) -> u32 {
        let id = self.id();
        self.breaks.push(Break {
            id,
            space,
            addr,
            cond,
            hits: 0,
        });
        id
    }

    pub fn add_watch(&mut self, kind: WatchKind, space: Space, addr: u64, len: u64) -> u32 {
        let id = self.id();
        self.watches.push(Watch {
            id,
            kind,
            space,
            addr,
            len,
        });
        id
    }

    pub fn add_catch(&mut self, what: Catch) -> u32 {
        let id = self.id();
        self.catches.push(CatchPoint { id, what });
        id
    }

    pub fn delete(&mut self, id: u32) -> bool {
        let n = self.breaks.len() + self.watches.len() + self.catches.len();
        self.breaks.retain(|b| b.id != id);
        self.watches.retain(|w| w.id != id);
        self.catches.retain(|c| c.id != id);
        n != self.breaks.len() + self.watches.len() + self.catches.len()
    }

    /// Remove a breakpoint by place (the gdb stub's z packets).
    pub fn remove_break_at(&mut self, space: Space, addr: u64) -> bool {
        let n = self.breaks.len();
        if let Some(i) = self
            .breaks
            .iter()
            .position(|b| b.space == space && b.addr == addr)
        {
            self.breaks.remove(i);
        }
        n != self.breaks.len()
    }

    pub fn remove_watch_at(&mut self, kind: WatchKind, addr: u64, len: u64) -> bool {
        let n = self.watches.len();
        if let Some(i) = self
            .watches
            .iter()
            .position(|w| w.kind == kind && w.addr == addr && w.len == len)
        {
            self.watches.remove(i);
        }
        n != self.watches.len()
    }

    /// The breakpoint at CS:RIP whose condition holds, if any.
    pub fn break_hit(&mut self, cpu: &Cpu) -> Option<u32> {
        let lin = cpu.pc_linear();
        let phys = cpu.mmu.inspect(lin).1.ok().map(|w| w.phys);
        let b = self.breaks.iter_mut().find(|b| {
            let at = match b.space {
                Space::Linear => Some(b.addr) == Some(lin),
                Space::Physical => Some(b.addr) == phys,
            };
            at && b.cond.as_ref().is_none_or(|c| holds(c, cpu))
        })?;
        b.hits += 1;
        Some(b.id)
    }

    /// The first watchpoint that one of `accesses` (made by a retired instruction)
    /// triggers.
    pub fn watch_hit(&self, cpu: &Cpu, accesses: &[MemAccess]) -> Option<WatchHit> {
        for a in accesses {
            for w in &self.watches {
                let kind_ok = match w.kind {
                    WatchKind::Read => a.read,
                    WatchKind::Write => a.write,
                    WatchKind::Access => true,
                };
                let start = match w.space {
                    Space::Linear => Some(a.lin),
                    Space::Physical => cpu.mmu.inspect(a.lin).1.ok().map(|t| t.phys),
                };
                let overlaps = start.is_some_and(|s| s < w.addr + w.len && w.addr < s + a.len);
                if kind_ok && overlaps {
                    return Some(WatchHit {
                        id: w.id,
                        kind: w.kind,
                        access: *a,
                    });
                }
            }
        }
        None
    }
}

fn holds(c: &Cond, cpu: &Cpu) -> bool {
    match c {
        Cond::Cpl(n) => cpu.cpl() == *n,
        Cond::Reg(r, v) => reg_value(cpu, r) == Some(*v),
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Space::Linear => "linear",
            Space::Physical => "physical",
        })
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Cond::Cpl(n) => write!(f, "cpl=={n}"),
            Cond::Reg(r, v) => write!(f, "{r}=={v:#x}"),
        }
    }
}

impl fmt::Display for WatchKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            WatchKind::Read => "read",
            WatchKind::Write => "write",
            WatchKind::Access => "access",
        })
    }
}

impl fmt::Display for Catch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Catch::Exception(v) => write!(f, "exception {v}"),
            Catch::Port(p) => write!(f, "io port {p:#x}"),
            Catch::Exit(r) => write!(f, "exit {r}"),
            Catch::Mode => f.write_str("mode change"),
        }
    }
}

/// `info breakpoints`.
pub fn list(p: &Points) -> String {
    let mut s = String::new();
    for b in &p.breaks {
        s += &format!("{:<3} break   {} {:#x}", b.id, b.space, b.addr);
        if let Some(c) = &b.cond {
            s += &format!(" if {c}");
        }
        s += &format!(" (hit {} times)\n", b.hits);
    }
    for w in &p.watches {
        s += &format!(
            "{:<3} watch   {} {} {:#x} len {}\n",
            w.id, w.kind, w.space, w.addr, w.len
        );
    }
    for c in &p.catches {
        s += &format!("{:<3} catch   {}\n", c.id, c.what);
    }
    if s.is_empty() {
        s = "no breakpoints, watchpoints or catchpoints\n".into();
    }
    s
}
