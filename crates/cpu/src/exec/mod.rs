//! Instruction handlers, one module per instruction family (like Bochs' arith32.cc,
//! shift32.cc, ...), and the table that gives each decoded instruction its handler.
//!
//! Each module registers `(Mnemonic, Select)` pairs; `Select` looks at one decoded
//! instruction (once, at decode time) and returns the monomorphized handler for its
//! operand size and form. The hot loop then only calls `Entry::exec`.

use std::sync::OnceLock;

use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::fault::Fault;
use crate::state::Word;

pub mod arith;
pub mod bcd;
pub mod bit;
pub mod control;
pub mod data;
pub mod descriptor;
pub mod fastcall;
pub mod io;
pub mod muldiv;
pub mod shift;
pub mod stack;
pub mod string;
pub mod system;

pub type Handler = fn(&mut Cpu, &mut dyn Bus, &Entry) -> Result<(), Fault>;
pub type Select = fn(&Instruction) -> Option<Handler>;

/// Handler registrations, by mnemonic.
pub struct Table(Vec<Option<Select>>);

impl Table {
    pub fn on(&mut self, m: Mnemonic, s: Select) {
        let slot = &mut self.0[m as usize];
        assert!(slot.is_none(), "{m:?} registered twice");
        *slot = Some(s);
    }
    pub fn on_all(&mut self, ms: &[Mnemonic], s: Select) {
        for &m in ms {
            self.on(m, s);
        }
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Table(vec![None; Mnemonic::values().count()]);
        arith::register(&mut t);
        bcd::register(&mut t);
        bit::register(&mut t);
        control::register(&mut t);
        data::register(&mut t);
        descriptor::register(&mut t);
        fastcall::register(&mut t);
        io::register(&mut t);
        muldiv::register(&mut t);
        shift::register(&mut t);
        stack::register(&mut t);
        string::register(&mut t);
        system::register(&mut t);
        // UD0/UD1/UD2 exist to raise #UD; they are implemented, not missing.
        t.on_all(&[Mnemonic::Ud0, Mnemonic::Ud1, Mnemonic::Ud2], |_| Some(invalid));
        t
    })
}

/// The handler for a decoded instruction: #UD for invalid encodings, and #UD plus a
/// log line for valid ones trapeze does not implement.
pub fn select(i: &Instruction) -> Handler {
    if i.is_invalid() {
        return invalid;
    }
    table().0[i.mnemonic() as usize]
        .and_then(|s| s(i))
        .unwrap_or(unimplemented)
}

/// Is there a handler for this instruction?
pub fn implemented(i: &Instruction) -> bool {
    !i.is_invalid() && table().0[i.mnemonic() as usize].and_then(|s| s(i)).is_some()
}

/// A privileged instruction at CPL > 0 (or, in strict mode, a sensitive one): #GP(0)
/// (SDM Vol.3 5.9).
pub(crate) fn privileged_fault(_: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    Err(Fault::gp(0))
}

/// Count a sensitive instruction by class, then run it.
pub(crate) fn count_sensitive(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.stats.sensitive[e.class_stat as usize] += 1;
    (e.inner)(cpu, bus, e)
}

fn invalid(_: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    Err(Fault::ud())
}

/// Logs once per instruction form, so a guest looping over one cannot flood the log.
fn unimplemented(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    if !cpu.unimplemented_seen.insert(e.insn.code()) {
        return Err(Fault::ud());
    }
    eprintln!(
        "trapeze: unimplemented instruction {:?} at {:04x}:{:x} (#UD)",
        e.insn.code(),
        cpu.seg[crate::state::sreg::CS].selector,
        cpu.rip
    );
    Err(Fault::ud())
}

/// Does this instruction end a basic block? Control transfers do, and so does
/// anything that can change how the following instructions decode or execute
/// (mode, paging, interrupt flag and shadow, A20 or a device behind a port), and a
/// REP string instruction, which restarts itself by leaving `next_ip` at its own IP.
pub fn ends_block(i: &Instruction) -> bool {
    use Mnemonic::*;
    if i.flow_control() != FlowControl::Next || string::repeats(i) {
        return true;
    }
    match i.mnemonic() {
        Hlt | Sti | Cli | Popf | Popfd | Popfq | Lgdt | Lidt | Lldt | Ltr | Lmsw | Clts | Wrmsr
        | Invlpg | In | Out | Insb | Insw | Insd | Outsb | Outsw | Outsd => true,
        Mov | Pop => writes_system_register(i),
        _ => false,
    }
}

/// MOV to CRn/DRn/Sreg, POP Sreg.
fn writes_system_register(i: &Instruction) -> bool {
    i.op_count() > 0 && i.op0_kind() == OpKind::Register && {
        let r = i.op0_register();
        r.is_cr() || r.is_dr() || r.is_segment_register()
    }
}

/// Size in bytes of operand `n` (register or memory; for immediates, of operand 0).
pub fn op_size(i: &Instruction, n: u32) -> usize {
    match i.op_kind(n) {
        OpKind::Register => i.op_register(n).size(),
        OpKind::Memory => i.memory_size().size(),
        _ if n > 0 => op_size(i, 0),
        _ => 0,
    }
}

/// `by_size!(f)` / `by_size!(f, Op)`: a `Select` that picks `f::<u8|u16|u32|u64, ..>`
/// from the size of operand 0.
#[macro_export]
macro_rules! by_size {
    ($f:ident $(, $g:ty)*) => {
        |i: &iced_x86::Instruction| -> Option<$crate::exec::Handler> {
            Some(match $crate::exec::op_size(i, 0) {
                1 => $f::<u8 $(, $g)*>,
                2 => $f::<u16 $(, $g)*>,
                4 => $f::<u32 $(, $g)*>,
                8 => $f::<u64 $(, $g)*>,
                _ => return None,
            })
        }
    };
}

impl Cpu {
    /// Read operand `n`: register, memory or immediate.
    #[inline(always)]
    pub fn read_op<T: Word>(&mut self, bus: &mut dyn Bus, e: &Entry, n: u32) -> Result<T, Fault> {
        match e.insn.op_kind(n) {
            OpKind::Register => Ok(self.reg::<T>(e.insn.op_register(n))),
            OpKind::Memory => {
                let off = self.ea(&e.mem);
                self.read_mem::<T>(bus, e.mem.seg as usize, off)
            }
            _ => Ok(T::from_u64(e.insn.immediate(n))),
        }
    }

    /// Write operand `n` (register or memory).
    #[inline(always)]
    pub fn write_op<T: Word>(&mut self, bus: &mut dyn Bus, e: &Entry, n: u32, v: T) -> Result<(), Fault> {
        match e.insn.op_kind(n) {
            OpKind::Register => {
                self.set_reg::<T>(e.insn.op_register(n), v);
                Ok(())
            }
            _ => {
                let off = self.ea(&e.mem);
                self.write_mem::<T>(bus, e.mem.seg as usize, off, v)
            }
        }
    }

    /// Read-modify-write operand 0: `f` gets the old value and returns the new one
    /// (or None to write nothing). The write happens before anything else is
    /// committed, so a fault leaves no trace.
    #[inline(always)]
    pub fn rmw<T: Word>(
        &mut self,
        bus: &mut dyn Bus,
        e: &Entry,
        f: impl FnOnce(&mut Self, T) -> Option<T>,
    ) -> Result<(), Fault> {
        if e.insn.op0_kind() == OpKind::Register {
            let r = e.insn.op0_register();
            let old = self.reg::<T>(r);
            if let Some(v) = f(self, old) {
                self.set_reg::<T>(r, v);
            }
            return Ok(());
        }
        let off = self.ea(&e.mem);
        let lin = self.linear(e.mem.seg as usize, off, T::BYTES)?;
        if let Some(p) = self.mmu.rmw_ptr(lin, T::BYTES) {
            // SAFETY: rmw_ptr vouches for T::BYTES bytes of writable RAM at p.
            let old = unsafe { std::ptr::read_unaligned(p as *const T) };
            if let Some(v) = f(self, old) {
                unsafe { std::ptr::write_unaligned(p as *mut T, v) };
            }
            return Ok(());
        }
        let old = self.mmu.read::<T>(bus, lin)?;
        // Probe before f runs: f may commit flags or other registers.
        self.mmu.probe_write(lin, T::BYTES)?;
        if let Some(v) = f(self, old) {
            self.mmu.write::<T>(bus, lin, v)?;
        }
        Ok(())
    }
}
