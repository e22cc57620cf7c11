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
use crate::decode_cache::{opnd, Entry};
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
pub mod sse;
pub mod stack;
pub mod string;
pub mod system;
pub mod x87;
pub mod x87_env;

pub type Handler = fn(&mut Cpu, &mut dyn Bus, &Entry) -> Result<(), Fault>;
pub type Select = fn(&Instruction) -> Option<Handler>;

/// Handler registrations, by mnemonic.
pub struct Table(Vec<Vec<Select>>);

impl Table {
    pub fn on(&mut self, m: Mnemonic, s: Select) {
        let slot = &mut self.0[m as usize];
        assert!(slot.is_empty(), "{m:?} registered twice");
        slot.push(s);
    }
    /// A mnemonic that names two instruction families (MOVSD and CMPSD: string and
    /// SSE2): each family's `Select` accepts only its own forms; the first that
    /// accepts an instruction wins.
    pub fn share(&mut self, m: Mnemonic, s: Select) {
        self.0[m as usize].push(s);
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
        let mut t = Table(vec![Vec::new(); Mnemonic::values().count()]);
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
        x87::register(&mut t);
        x87_env::register(&mut t);
        // After `string`: MOVSD and CMPSD are shared with it.
        sse::register(&mut t);
        // UD0/UD1/UD2 exist to raise #UD; they are implemented, not missing.
        t.on_all(&[Mnemonic::Ud0, Mnemonic::Ud1, Mnemonic::Ud2], |_| {
            Some(invalid)
        });
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
        .iter()
        .find_map(|s| s(i))
        .unwrap_or(unimplemented)
}

/// Is there a handler for this instruction?
pub fn implemented(i: &Instruction) -> bool {
    !i.is_invalid()
        && table().0[i.mnemonic() as usize]
            .iter()
            .any(|s| s(i).is_some())
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

/// Are operands 0 and 1 registers or immediates only (no memory, nothing exotic)?
pub fn register_form(e: &Entry) -> bool {
    e.ops
        .iter()
        .zip(0..e.insn.op_count())
        .all(|(&o, _)| o < opnd::MEM || o == opnd::IMM)
}

/// `by_form!(mem_f, reg_f, Op)`: like `by_size!`, but picks `reg_f` for instructions
/// whose operands are all registers or immediates. The register forms take no bus and
/// cannot fault, so they compile to small leaf functions: the common case stays cheap.
#[macro_export]
macro_rules! by_form {
    ($m:ident, $r:ident $(, $g:ty)*) => {
        |i: &iced_x86::Instruction| -> Option<$crate::exec::Handler> {
            let probe = $crate::decode_cache::Entry::new(
                $crate::exec::privileged_fault, $crate::exec::privileged_fault, 0, 0, *i);
            if $crate::exec::register_form(&probe) {
                $crate::by_size!($r $(, $g)*)(i)
            } else {
                $crate::by_size!($m $(, $g)*)(i)
            }
        }
    };
}

impl Cpu {
    /// Operand `n` of a register-form instruction (`by_form!`): a GPR or the immediate.
    #[inline(always)]
    pub fn reg_operand<T: Word>(&self, e: &Entry, n: usize) -> T {
        match e.ops[n] {
            r @ 0..=15 => T::from_u64(self.gpr[r as usize]),
            r @ 0x10..=0x13 => T::from_u64(self.gpr[(r & 3) as usize] >> 8),
            _ => T::from_u64(e.imm),
        }
    }

    /// Write operand `n` of a register-form instruction.
    #[inline(always)]
    pub fn set_reg_operand<T: Word>(&mut self, e: &Entry, n: usize, v: T) {
        match e.ops[n] {
            r @ 0..=15 => self.set_gpr::<T>(r as usize, v),
            r => {
                let slot = &mut self.gpr[(r & 3) as usize];
                *slot = (*slot & !0xFF00) | (v.to_u64() & 0xFF) << 8;
            }
        }
    }

    /// Read operand `n` (0 or 1): register, memory or immediate.
    #[inline(always)]
    pub fn read_op<T: Word>(&mut self, bus: &mut dyn Bus, e: &Entry, n: u32) -> Result<T, Fault> {
        match e.ops.get(n as usize).copied().unwrap_or(opnd::OTHER) {
            0..=0x13 | opnd::IMM => Ok(self.reg_operand::<T>(e, n as usize)),
            opnd::MEM => {
                let off = self.ea(&e.mem);
                self.read_mem::<T>(bus, e.mem.seg as usize, off)
            }
            _ => match e.insn.op_kind(n) {
                OpKind::Register => Ok(self.reg::<T>(e.insn.op_register(n))),
                _ => Ok(T::from_u64(e.insn.immediate(n))),
            },
        }
    }

    /// Write operand `n` (0 or 1; register or memory).
    #[inline(always)]
    pub fn write_op<T: Word>(
        &mut self,
        bus: &mut dyn Bus,
        e: &Entry,
        n: u32,
        v: T,
    ) -> Result<(), Fault> {
        match e.ops.get(n as usize).copied().unwrap_or(opnd::OTHER) {
            r @ 0..=15 => {
                self.set_gpr::<T>(r as usize, v);
                Ok(())
            }
            0x10..=0x13 => {
                self.set_reg_operand::<T>(e, n as usize, v);
                Ok(())
            }
            opnd::MEM => {
                let off = self.ea(&e.mem);
                self.write_mem::<T>(bus, e.mem.seg as usize, off, v)
            }
            _ => {
                self.set_reg::<T>(e.insn.op_register(n), v);
                Ok(())
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
        if e.ops[0] != opnd::MEM {
            let old = self.read_op::<T>(bus, e, 0)?;
            if let Some(v) = f(self, old) {
                self.write_op::<T>(bus, e, 0, v)?;
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
