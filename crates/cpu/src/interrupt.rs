//! Exception and interrupt delivery (SDM Vol.3 ch. 6; real mode: 20.1.4; virtual-8086
//! mode: 20.3), the stack primitives it shares with PUSH/POP/CALL, the double/triple-
//! fault rules, NMI, and the debug exceptions of SDM Vol.3 ch. 18 (single-step, DR0-3
//! instruction and data breakpoints).

use iced_x86::{InstructionInfoFactory, OpAccess, Register};
use trapeze_mmu::Bus;

use crate::cpu::{canonical, Cpu};
use crate::decode_cache::{seg_index, Entry};
use crate::fault::{self, vector, Fault};
use crate::flags::rf;
use crate::segment::{null_segment, selector, sys, Descriptor, Load};
use crate::state::{gpr, sreg, Segment, Word};

/// How an event arose: decides the EXT bit of error codes, the gate-DPL check and the
/// virtual-8086 IOPL check (SDM Vol.3 6.4.2, 6.12.1.1, 6.13; Vol.2 INT n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A processor exception, or INT1/ICEBP (a "privileged software exception",
    /// delivered like a hardware one: no gate-DPL check, EXT = 1).
    Exception,
    /// INTR or NMI.
    External,
    /// INT n: gate DPL >= CPL, and #GP(0) in virtual-8086 mode with IOPL < 3.
    IntN,
    /// INT3 and INTO: gate DPL >= CPL.
    Int3,
}

impl Source {
    /// EXT: set unless the event is a software interrupt (SDM Vol.3 6.13).
    fn ext(self) -> bool {
        matches!(self, Source::Exception | Source::External)
    }
    fn software(self) -> bool {
        matches!(self, Source::IntN | Source::Int3)
    }
}

/// DR6 and DR7 fields (SDM Vol.3 18.2.3, 18.2.4).
pub mod dr {
    /// DR6 B0-B3: breakpoint n matched.
    pub const B_ALL: u64 = 0xF;
    /// DR6 BS: single-step.
    pub const BS: u64 = 1 << 14;
    /// DR6 BT: task switch to a TSS with T set.
    pub const BT: u64 = 1 << 15;
    /// DR6 BD: a MOV DRn met DR7.GD.
    pub const BD: u64 = 1 << 13;
    /// DR7 GD: general detect, fault on any MOV DRn.
    pub const GD: u64 = 1 << 13;
    /// DR6 bits that read as 1 (4-11, 16-31; RTM absent) and DR7 bit 10 (SDM Vol.3 18.2).
    pub const DR6_FIXED1: u64 = 0xFFFF_0FF0;
    pub const DR7_FIXED1: u64 = 1 << 10;
    /// DR7 bits that read as 0: 11, 12, 14, 15.
    pub const DR7_FIXED0: u64 = 0xD800;
    /// DR7 L0 G0 .. L3 G3: a breakpoint is armed if either of its bits is.
    pub const ENABLE: u64 = 0xFF;
    /// DR7 R/Wn (bits 16 + 4n): break on execution, writes, I/O, reads or writes.
    pub const RW_EXEC: u64 = 0;
    pub const RW_WRITE: u64 = 1;
    pub const RW_ACCESS: u64 = 3;
    /// DR7 LENn (bits 18 + 4n) → bytes covered.
    pub const LEN_BYTES: [u64; 4] = [1, 2, 8, 4];
}

/// The IDT bit of an error code that names a gate (SDM Vol.3 6.13).
const IDT_BIT: u32 = 2;

/// Fault-class exceptions (SDM Vol.3 Table 6-1): delivering one pushes RF = 1, so the
/// return does not retrigger an instruction breakpoint (SDM Vol.3 18.3.1.1). #DB is
/// left out: only its instruction-breakpoint form is a fault, and that pushes RF as is.
const FAULT_CLASS: u32 = 1 << vector::DE
    | 1 << vector::BR
    | 1 << vector::UD
    | 1 << vector::NM
    | 1 << vector::TS
    | 1 << vector::NP
    | 1 << vector::SS
    | 1 << vector::GP
    | 1 << vector::PF
    | 1 << vector::MF
    | 1 << vector::AC
    | 1 << vector::XM;

impl Cpu {
    // ---- the stack ---------------------------------------------------------------

    /// The stack-pointer width: RSP in 64-bit mode, ESP with a big (B=1) SS, else SP.
    #[inline(always)]
    pub fn stack_mask(&self) -> u64 {
        if self.long64() {
            u64::MAX
        } else if self.seg[sreg::SS].attr & crate::state::attr::DB != 0 && self.protected() {
            0xFFFF_FFFF
        } else {
            0xFFFF
        }
    }

    /// Write the stack pointer at the stack width, leaving the rest of RSP alone.
    #[inline(always)]
    pub fn set_sp(&mut self, v: u64) {
        let m = self.stack_mask();
        self.gpr[gpr::RSP] = (self.gpr[gpr::RSP] & !m) | (v & m);
    }

    #[inline(always)]
    pub fn push<T: Word>(&mut self, bus: &mut dyn Bus, v: T) -> Result<(), Fault> {
        let sp = self.gpr[gpr::RSP].wrapping_sub(T::BYTES as u64) & self.stack_mask();
        self.write_mem::<T>(bus, sreg::SS, sp, v)?;
        self.set_sp(sp);
        Ok(())
    }

    #[inline(always)]
    pub fn pop<T: Word>(&mut self, bus: &mut dyn Bus) -> Result<T, Fault> {
        let m = self.stack_mask();
        let sp = self.gpr[gpr::RSP] & m;
        let v = self.read_mem::<T>(bus, sreg::SS, sp)?;
        self.set_sp(sp.wrapping_add(T::BYTES as u64));
        Ok(v)
    }

    /// The T-sized stack slot `k` slots above the stack pointer, without popping it.
    pub(crate) fn stack_slot<T: Word>(&mut self, bus: &mut dyn Bus, k: u64) -> Result<u64, Fault> {
        let sp = self.gpr[gpr::RSP].wrapping_add(k * T::BYTES as u64) & self.stack_mask();
        Ok(self.read_mem::<T>(bus, sreg::SS, sp)?.to_u64())
    }

    /// Push `v` as a `width`-byte slot (2, 4 or 8): frames whose width the gate or
    /// TSS decides, not the instruction.
    pub(crate) fn push_width(
        &mut self,
        bus: &mut dyn Bus,
        width: usize,
        v: u64,
    ) -> Result<(), Fault> {
        match width {
            2 => self.push::<u16>(bus, v as u16),
            4 => self.push::<u32>(bus, v as u32),
            _ => self.push::<u64>(bus, v),
        }
    }

    /// Run `f`, restoring RSP if it fails: multi-push sequences (interrupt frames, far
    /// calls) either complete or leave the stack pointer as it was.
    pub fn stack_transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        let rsp = self.gpr[gpr::RSP];
        let r = f(self);
        if r.is_err() {
            self.gpr[gpr::RSP] = rsp;
        }
        r
    }

    /// Run a far transfer: if `f` fails, the segment registers and RSP are put back,
    /// so a fault in the middle of a stack switch leaves no trace (precise faults,
    /// DESIGN.md §2). `f` changes RFLAGS only once nothing can fail.
    pub(crate) fn far_transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, Fault>,
    ) -> Result<R, Fault> {
        let (segs, rsp) = (self.seg, self.gpr[gpr::RSP]);
        let r = f(self);
        if r.is_err() {
            self.seg = segs;
            self.gpr[gpr::RSP] = rsp;
            self.sync_privilege();
        }
        r
    }

    /// Switch to stack `ss`:`sp` and check that `bytes` can be pushed there; if not,
    /// #SS(selector) (SDM Vol.2 CALL, INT n: "new stack does not have room").
    pub(crate) fn switch_stack(&mut self, ss: Segment, sp: u64, bytes: u64) -> Result<(), Fault> {
        self.seg[sreg::SS] = ss;
        self.gpr[gpr::RSP] = sp;
        let top = self.gpr[gpr::RSP].wrapping_sub(bytes) & self.stack_mask();
        if !self.long64() && self.linear(sreg::SS, top, bytes as usize).is_err() {
            return Err(Fault::ss(selector::error_code(ss.selector)));
        }
        Ok(())
    }

    // ---- events ------------------------------------------------------------------

    /// Deliver an exception raised by the instruction at RIP, applying the
    /// double-fault rules (SDM Vol.3 6.15, Table 6-5): a second fault while delivering
    /// becomes #DF or is delivered serially; a fault while delivering #DF shuts down.
    pub(crate) fn raise(&mut self, bus: &mut dyn Bus, mut f: Fault) {
        let mut first: Option<u8> = None;
        loop {
            self.stats.exceptions[(f.vector & 31) as usize] += 1;
            if f.vector == vector::PF {
                self.cr2 = f.cr2;
            }
            match first {
                Some(vector::DF) => {
                    self.shutdown = true;
                    return;
                }
                Some(a) if fault::is_double_fault(a, f.vector) => {
                    f = Fault::with_code(vector::DF, 0)
                }
                _ => {}
            }
            if f.vector < 32 && FAULT_CLASS & 1 << f.vector != 0 {
                self.rflags |= rf::RF;
            }
            let ret = self.rip;
            match self.deliver(bus, f.vector, Source::Exception, f.error_code(), ret) {
                Ok(()) => return,
                Err(f2) => {
                    first = Some(f.vector);
                    f = f2;
                }
            }
        }
    }

    /// INT n / INT3 / INTO / INT1: a software interrupt returns to the next
    /// instruction. In virtual-8086 mode with IOPL < 3, INT n is #GP(0) for the
    /// monitor to emulate (SDM Vol.3 20.3.3; CR4.VME is not implemented).
    pub fn software_interrupt(
        &mut self,
        bus: &mut dyn Bus,
        v: u8,
        src: Source,
    ) -> Result<(), Fault> {
        if src == Source::IntN && self.v86() && self.rflags & rf::IOPL != rf::IOPL {
            return Err(Fault::gp(0));
        }
        let ret = self.next_ip;
        self.deliver(bus, v, src, None, ret)
    }

    /// Take a pending external interrupt (INTR) at an instruction boundary.
    pub(crate) fn take_interrupt(&mut self, bus: &mut dyn Bus) {
        let Some(v) = bus.acknowledge_interrupt() else {
            return;
        };
        self.halted = false;
        self.stats.interrupts += 1;
        let ret = self.rip;
        if let Err(f) = self.deliver(bus, v, Source::External, None, ret) {
            self.raise(bus, f);
        }
    }

    /// Take a pending NMI: further NMIs are blocked until the next IRET (SDM Vol.3
    /// 6.7.1).
    pub(crate) fn take_nmi(&mut self, bus: &mut dyn Bus) {
        self.nmi = false;
        self.nmi_blocked = true;
        self.halted = false;
        let ret = self.rip;
        if let Err(f) = self.deliver(bus, vector::NMI, Source::External, None, ret) {
            self.raise(bus, f);
        }
    }

    /// Transfer control to the handler for vector `v`, returning to `ret`. On success
    /// RIP and the pending next IP point at the handler. Any event discards the debug
    /// traps of the instruction it interrupts (they resume on return). A fault while
    /// delivering a non-software event carries EXT in its error code (SDM Vol.3 6.13).
    pub(crate) fn deliver(
        &mut self,
        bus: &mut dyn Bus,
        v: u8,
        src: Source,
        error: Option<u32>,
        ret: u64,
    ) -> Result<(), Fault> {
        self.pending_db = 0;
        let r = if !self.protected() {
            self.deliver_real(bus, v, ret)
        } else if self.ia32e() {
            self.deliver_long(bus, v, src, error, ret)
        } else {
            self.deliver_protected(bus, v, src, error, ret)
        };
        match r {
            Ok(()) => {
                self.halted = false;
                Ok(())
            }
            Err(f) if src.ext() => Err(f.with_ext()),
            Err(f) => Err(f),
        }
    }

    /// Continue at `ip` (the handler; or the new task's EIP).
    fn enter(&mut self, ip: u64) {
        self.rip = ip;
        self.next_ip = ip;
    }

    /// Real mode: FLAGS, CS, IP on the stack; CS:IP from the IVT (SDM Vol.3 20.1.4).
    fn deliver_real(&mut self, bus: &mut dyn Bus, v: u8, ret: u64) -> Result<(), Fault> {
        let off = v as u64 * 4;
        if off + 3 > self.idtr.limit as u64 {
            return Err(Fault::gp(0));
        }
        let lin = self.idtr.base.wrapping_add(off);
        let ip = self.sys_read::<u16>(bus, lin)?;
        let cs = self.sys_read::<u16>(bus, lin.wrapping_add(2))?;
        let flags = self.rflags() as u16;
        let old_cs = self.seg[sreg::CS].selector;
        self.stack_transaction(|c| {
            c.push::<u16>(bus, flags)?;
            c.push::<u16>(bus, old_cs)?;
            c.push::<u16>(bus, ret as u16)
        })?;
        self.rflags &= !(rf::IF | rf::TF | rf::AC | rf::RF);
        self.load_real_cs(cs);
        self.enter(ip as u64);
        Ok(())
    }

    /// The IDT entry for vector `v` (8 bytes; 16 in IA-32e mode). Outside the IDT
    /// limit: #GP(vector * 8 + 2).
    fn idt_gate(&mut self, bus: &mut dyn Bus, v: u8) -> Result<Descriptor, Fault> {
        let size = if self.ia32e() { 16 } else { 8 };
        let off = v as u64 * size;
        if off + size - 1 > self.idtr.limit as u64 {
            return Err(Fault::gp((v as u32) << 3 | IDT_BIT));
        }
        let lin = self.idtr.base.wrapping_add(off);
        let lo = self.sys_read::<u64>(bus, lin)?;
        let hi = if size == 16 {
            self.sys_read::<u64>(bus, lin.wrapping_add(8))?
        } else {
            0
        };
        Ok(Descriptor { lo, hi })
    }

    /// The gate checks shared by every protected-mode delivery: a gate of an allowed
    /// type, gate DPL >= CPL for software interrupts, present (SDM Vol.2 INT n).
    fn check_gate(&self, g: &Descriptor, v: u8, src: Source, types: &[u8]) -> Result<(), Fault> {
        let code = (v as u32) << 3 | IDT_BIT;
        if !g.system() || !types.contains(&g.kind()) {
            return Err(Fault::gp(code));
        }
        if src.software() && g.dpl() < self.cpl() {
            return Err(Fault::gp(code));
        }
        if !g.present() {
            return Err(Fault::np(code));
        }
        Ok(())
    }

    /// The handler's code segment named by an interrupt or trap gate, checked, and the
    /// CPL it runs at: the segment's DPL for a non-conforming segment more privileged
    /// than the CPL, else the CPL.
    fn handler_segment(
        &mut self,
        bus: &mut dyn Bus,
        g: &Descriptor,
    ) -> Result<(Segment, u8), Fault> {
        let sel = g.gate_selector();
        if selector::is_null(sel) {
            return Err(Fault::gp(0));
        }
        let cpl = self.cpl();
        let d = self.descriptor_or(bus, sel, vector::GP)?;
        let cs = self.check_descriptor(bus, sel, &d, Load::GateCode, cpl, vector::GP)?;
        let new_cpl = if !d.conforming() && d.dpl() < cpl {
            d.dpl()
        } else {
            cpl
        };
        // From virtual-8086 mode only a ring-0 non-conforming handler will do.
        if self.v86() && new_cpl != 0 {
            return Err(Fault::gp(selector::error_code(sel)));
        }
        if self.ia32e() && !d.code64() {
            return Err(Fault::gp(selector::error_code(sel)));
        }
        Ok((cs, new_cpl))
    }

    /// Protected mode through an interrupt, trap or task gate (SDM Vol.3 6.12, 20.3.1;
    /// Vol.2 INT n).
    fn deliver_protected(
        &mut self,
        bus: &mut dyn Bus,
        v: u8,
        src: Source,
        error: Option<u32>,
        ret: u64,
    ) -> Result<(), Fault> {
        let g = self.idt_gate(bus, v)?;
        const TYPES: [u8; 5] = [
            sys::TASK_GATE,
            sys::INT_GATE16,
            sys::TRAP_GATE16,
            sys::INT_GATE32,
            sys::TRAP_GATE32,
        ];
        self.check_gate(&g, v, src, &TYPES)?;
        let error = error.filter(|_| fault::has_error_code(v));
        if g.is(sys::TASK_GATE) {
            self.task_switch(bus, g.gate_selector(), crate::task::Switch::Gate, ret)?;
            if let Some(e) = error {
                // SDM Vol.3 6.12.2: the error code goes on the new task's stack.
                let width = if self.tr.attr as u8 & sys::WIDE != 0 {
                    4
                } else {
                    2
                };
                self.stack_transaction(|c| c.push_width(bus, width, e as u64))?;
            }
            return Ok(());
        }
        let (cs, new_cpl) = self.handler_segment(bus, &g)?;
        let ip = g.gate_offset();
        self.check_entry(&cs, ip)?;
        let width = g.gate_width(false);
        let (v86, flags, cpl) = (self.v86(), self.rflags(), self.cpl());
        let mut frame = Frame::default();
        if v86 {
            for s in [sreg::GS, sreg::FS, sreg::DS, sreg::ES] {
                frame.push(self.seg[s].selector as u64);
            }
        }
        if new_cpl < cpl {
            frame.push(self.seg[sreg::SS].selector as u64);
            frame.push(self.gpr[gpr::RSP]);
        }
        frame.push(flags);
        frame.push(self.seg[sreg::CS].selector as u64);
        frame.push(ret);
        if let Some(e) = error {
            frame.push(e as u64);
        }
        self.far_transaction(|c| {
            if new_cpl < cpl {
                let (ss, sp) = c.inner_stack(bus, new_cpl)?;
                c.switch_stack(ss, sp, (frame.len * width) as u64)?;
            }
            // The frame goes on the handler's stack with the handler's privilege.
            c.set_cs(cs, new_cpl);
            frame
                .values()
                .iter()
                .try_for_each(|&x| c.push_width(bus, width, x))
        })?;
        if v86 {
            for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
                self.seg[s] = null_segment(0);
            }
        }
        self.leave_flags(&g);
        self.enter(ip);
        Ok(())
    }

    /// IA-32e mode through a 64-bit interrupt or trap gate (SDM Vol.3 6.14): 16-byte
    /// gates, 64-bit handlers only, SS:RSP always pushed, the new RSP aligned to 16
    /// bytes, taken from the TSS on a privilege change or from the IST when the gate
    /// names one; a privilege change loads SS with a null selector.
    fn deliver_long(
        &mut self,
        bus: &mut dyn Bus,
        v: u8,
        src: Source,
        error: Option<u32>,
        ret: u64,
    ) -> Result<(), Fault> {
        let g = self.idt_gate(bus, v)?;
        self.check_gate(&g, v, src, &[sys::INT_GATE32, sys::TRAP_GATE32])?;
        let (cs, new_cpl) = self.handler_segment(bus, &g)?;
        let ip = g.gate_offset();
        if !canonical(ip) {
            return Err(Fault::gp(0));
        }
        let cpl = self.cpl();
        let rsp = if g.ist() != 0 {
            self.tss64_stack(bus, crate::task::tss64::IST1 + 8 * (g.ist() - 1))?
        } else if new_cpl < cpl {
            self.tss64_stack(bus, crate::task::tss64::RSP0 + 8 * new_cpl as usize)?
        } else {
            self.gpr[gpr::RSP]
        };
        if !canonical(rsp) {
            return Err(Fault::ss(0));
        }
        let mut frame = Frame::default();
        frame.push(self.seg[sreg::SS].selector as u64);
        frame.push(self.gpr[gpr::RSP]);
        frame.push(self.rflags());
        frame.push(self.seg[sreg::CS].selector as u64);
        frame.push(ret);
        if let Some(e) = error.filter(|_| fault::has_error_code(v)) {
            frame.push(e as u64);
        }
        self.far_transaction(|c| {
            c.set_cs(cs, new_cpl);
            if new_cpl < cpl {
                c.seg[sreg::SS] = null_segment(new_cpl as u16);
            }
            c.gpr[gpr::RSP] = rsp & !0xF;
            frame
                .values()
                .iter()
                .try_for_each(|&x| c.push::<u64>(bus, x))
        })?;
        self.leave_flags(&g);
        self.enter(ip);
        Ok(())
    }

    /// RFLAGS on entry to a handler: TF NT RF VM cleared, and IF too through an
    /// interrupt gate (trap gates have type bit 0 set; SDM Vol.3 6.12.1.3).
    fn leave_flags(&mut self, g: &Descriptor) {
        self.rflags &= !(rf::TF | rf::NT | rf::RF | rf::VM);
        if g.kind() & 1 == 0 {
            self.rflags &= !rf::IF;
        }
    }

    /// A stack pointer from the 64-bit TSS (RSPn or ISTn at `off`); outside the TSS
    /// limit: #TS(TR).
    pub(crate) fn tss64_stack(&mut self, bus: &mut dyn Bus, off: usize) -> Result<u64, Fault> {
        if off as u64 + 7 > self.tr.limit as u64 {
            return Err(crate::fault::Fault::ts(selector::error_code(
                self.tr.selector,
            )));
        }
        self.sys_read::<u64>(bus, self.tr.base.wrapping_add(off as u64))
    }

    // ---- debug exceptions --------------------------------------------------------

    /// Breakpoints among DR0-3 that DR7 arms for an access of `kind` to `len` bytes at
    /// `lin`, as DR6 B0-B3 bits.
    fn breakpoint_hits(&self, lin: u64, len: u64, kind: Watch) -> u64 {
        let dr7 = self.dr[7];
        (0..4)
            .filter(|&n| {
                let armed = dr7 >> (2 * n) & 3 != 0;
                let cond = dr7 >> (16 + 4 * n) & 3;
                let size = dr::LEN_BYTES[(dr7 >> (18 + 4 * n) & 3) as usize];
                let start = self.dr[n] & !(size - 1);
                let overlaps = lin < start.wrapping_add(size) && start < lin.wrapping_add(len);
                let hit = match kind {
                    Watch::Exec => cond == dr::RW_EXEC && self.dr[n] == lin,
                    Watch::Write => (cond == dr::RW_WRITE || cond == dr::RW_ACCESS) && overlaps,
                    Watch::Read => cond == dr::RW_ACCESS && overlaps,
                };
                armed && hit
            })
            .fold(0, |m, n| m | 1 << n)
    }

    /// The data accesses instruction `e` is about to make, as (linear, length, kind):
    /// explicit operands and implicit stack and string accesses, computed from the
    /// registers before it runs (iced-x86's instruction info).
    fn data_accesses(&self, e: &Entry) -> Vec<(u64, u64, Watch)> {
        let mut factory = InstructionInfoFactory::new();
        let info = factory.info(&e.insn);
        info.used_memory()
            .iter()
            .filter_map(|m| {
                let kind = match m.access() {
                    OpAccess::Read | OpAccess::CondRead => Watch::Read,
                    OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite => Watch::Write,
                    _ => return None,
                };
                let lin = m.try_virtual_address(0, |r, _, _| Some(self.register_for_address(r)))?;
                Some((lin, m.memory_size().size() as u64, kind))
            })
            .collect()
    }

    /// A register's value for an address computation; for a segment register its base.
    pub(crate) fn register_for_address(&self, r: Register) -> u64 {
        if r.is_segment_register() {
            let s = seg_index(r) as usize;
            return if self.long64() && s < sreg::FS {
                0
            } else {
                self.seg[s].base
            };
        }
        if r.is_ip() {
            return 0;
        }
        let bits = r.size() as u32 * 8;
        self.reg::<u64>(r) & (u64::MAX >> (64 - bits))
    }

    /// Run one instruction with the debug machinery on (SDM Vol.3 18.3): the run loop
    /// comes here while TF or RF is set or DR7 arms a breakpoint. An instruction
    /// breakpoint faults before the instruction unless RF is set; RF is then cleared;
    /// single-step and data-breakpoint traps follow a completed instruction, except
    /// after MOV SS/POP SS, which hold them back one instruction (SDM Vol.3 6.8.3),
    /// and after any event delivery, which discards them.
    pub(crate) fn step_debug(&mut self, bus: &mut dyn Bus) {
        let armed = self.dr[7] & dr::ENABLE != 0;
        if armed && self.rflags & rf::RF == 0 {
            let lin = (self.seg[sreg::CS].base.wrapping_add(self.rip))
                & if self.long64() { u64::MAX } else { 0xFFFF_FFFF };
            let hits = self.breakpoint_hits(lin, 1, Watch::Exec);
            if hits != 0 {
                self.dr[6] = (self.dr[6] & !dr::B_ALL) | hits;
                self.raise(bus, Fault::new(vector::DB));
                return;
            }
        }
        self.rflags &= !rf::RF;
        if self.rflags & rf::TF != 0 {
            self.pending_db |= dr::BS;
        }
        let if_before = self.rflags & rf::IF;
        self.shadow = false;
        let icount = self.icount;
        let mut accesses = Vec::new();
        match self.block() {
            Ok(Some(block)) => {
                // SAFETY: as in `Cpu::run`: the block stays alive while it runs.
                let entries = unsafe { &*block };
                if armed {
                    accesses = self.data_accesses(&entries[0]);
                }
                self.exec_block(bus, entries, 1);
            }
            Ok(None) => self.exec_uncached(bus),
            Err(f) => return self.raise(bus, f),
        }
        if self.icount > icount {
            for (lin, len, kind) in accesses {
                self.pending_db |= self.breakpoint_hits(lin, len, kind);
            }
        }
        // A shadow that did not come with IF changing is MOV SS / POP SS (STI sets IF).
        let mov_ss = self.shadow && self.rflags & rf::IF == if_before;
        if self.pending_db != 0 && !mov_ss {
            let bits = std::mem::take(&mut self.pending_db);
            if bits & dr::B_ALL != 0 {
                self.dr[6] &= !dr::B_ALL;
            }
            self.dr[6] |= bits;
            self.raise(bus, Fault::new(vector::DB));
        }
    }
}

/// What a debug breakpoint watches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    Exec,
    Read,
    Write,
}

/// The values of an interrupt frame, in push order (at most GS FS DS ES SS SP FLAGS CS
/// IP and an error code).
#[derive(Default)]
struct Frame {
    v: [u64; 10],
    len: usize,
}

impl Frame {
    fn push(&mut self, x: u64) {
        self.v[self.len] = x;
        self.len += 1;
    }
    fn values(&self) -> &[u64] {
        &self.v[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{code, data, desc, gate, pm, pm3, put, set_gate, IDT, TSS};
    use crate::state::{cr0, efer};
    use crate::testutil::{read32, read64, real_mode};
    use crate::{Exit, NullBus};

    /// Gate access bytes: present 32-bit interrupt and trap gates at DPL 0 and 3,
    /// 16-bit interrupt gate, not-present interrupt gate, and a call gate (wrong here).
    const INT32: u8 = 0x8E;
    const INT32_DPL3: u8 = 0xEE;
    const TRAP32: u8 = 0x8F;
    const INT16: u8 = 0x86;
    const ABSENT: u8 = 0x0E;
    const CALL32: u8 = 0x8C;

    fn deliver(cpu: &mut Cpu, v: u8, src: Source, error: Option<u32>) -> Result<(), Fault> {
        cpu.deliver(&mut NullBus, v, src, error, 0x1234)
    }

    /// The state a failed delivery must leave alone.
    fn regs(cpu: &Cpu) -> (u64, [Segment; 6], u64, u64) {
        (cpu.gpr[gpr::RSP], cpu.seg, cpu.rflags(), cpu.rip)
    }

    #[test]
    fn same_privilege_gates_push_flags_cs_ip_and_clear_if_for_interrupt_gates() {
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 0x40, gate(0x08, 0x5000, INT32, 0));
        set_gate(&mut cpu, 0x41, gate(0x08, 0x6000, TRAP32, 0));
        cpu.set_rflags(rf::IF | rf::TF | rf::CF | rf::NT);
        let flags = cpu.rflags();
        assert_eq!(deliver(&mut cpu, 0x40, Source::IntN, None), Ok(()));
        assert_eq!(
            (cpu.rip, cpu.next_ip, cpu.gpr[gpr::RSP]),
            (0x5000, 0x5000, 0x7FF4)
        );
        assert_eq!(
            [
                read32(&cpu, 0x7FF4),
                read32(&cpu, 0x7FF8),
                read32(&cpu, 0x7FFC)
            ],
            [0x1234, 0x08, flags as u32]
        );
        assert_eq!(cpu.rflags() & (rf::IF | rf::TF | rf::NT), 0);
        cpu.set_rflags(rf::IF);
        assert_eq!(deliver(&mut cpu, 0x41, Source::External, None), Ok(()));
        assert_ne!(cpu.rflags() & rf::IF, 0, "a trap gate leaves IF");
    }

    #[test]
    fn exceptions_push_error_codes_and_faults_push_rf() {
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 13, gate(0x08, 0x5000, INT32, 0));
        set_gate(&mut cpu, 0x0D + 0x30, gate(0x08, 0x5000, INT32, 0));
        cpu.rip = 0x1000;
        cpu.raise(&mut NullBus, Fault::gp(0x18));
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FF0);
        assert_eq!([read32(&cpu, 0x7FF0), read32(&cpu, 0x7FF4)], [0x18, 0x1000]);
        assert_ne!(
            read32(&cpu, 0x7FFC) as u64 & rf::RF,
            0,
            "faults push RF = 1"
        );
        assert_eq!(cpu.rflags() & rf::RF, 0);
        // INT n to the same vector pushes no error code.
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 13, gate(0x08, 0x5000, INT32, 0));
        assert_eq!(deliver(&mut cpu, 13, Source::IntN, None), Ok(()));
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FF4);
    }

    #[test]
    fn sixteen_bit_gates_push_words() {
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 12, gate(0x08, 0x1_5000, INT16, 0));
        assert_eq!(deliver(&mut cpu, 12, Source::Exception, Some(0x20)), Ok(()));
        assert_eq!(cpu.rip, 0x5000, "16-bit gates have a 16-bit offset");
        assert_eq!(cpu.gpr[gpr::RSP], 0x8000 - 8);
        assert_eq!(read64(&cpu, 0x7FF8) & 0xFFFF_FFFF_FFFF, 0x0008_1234_0020);
    }

    #[test]
    fn an_interrupt_from_ring_3_switches_to_the_tss_stack() {
        let mut cpu = pm3(&[]);
        set_gate(&mut cpu, 0x80, gate(0x08, 0x5000, INT32_DPL3, 0));
        let flags = cpu.rflags();
        assert_eq!(deliver(&mut cpu, 0x80, Source::IntN, None), Ok(()));
        assert_eq!(
            (
                cpu.cpl(),
                cpu.seg[sreg::CS].selector,
                cpu.seg[sreg::SS].selector
            ),
            (0, 0x08, 0x10)
        );
        assert_eq!(cpu.gpr[gpr::RSP], 0x9000 - 20);
        let frame: Vec<u32> = (0..5).map(|k| read32(&cpu, 0x9000 - 20 + 4 * k)).collect();
        assert_eq!(frame, [0x1234, 0x1B, flags as u32, 0x7000, 0x23]);
        // Data segments are left alone (the handler may not use them, but they stay).
        assert_eq!(cpu.seg[sreg::DS].selector, 0x23);
    }

    #[test]
    fn gate_checks_raise_the_sdm_faults_with_ext_for_hardware_events() {
        // 30h: code not present; 38h: code with a 4 KiB limit; 40h: DPL-3 data;
        // 48h: data not present.
        let extra = [
            desc(0, 0xFFF, 0x1A, 0x4),
            desc(0, 0xFFF, 0x9A, 0x4),
            data(3),
            desc(0, 0xFFFF, 0x12, 0x4),
        ];
        let idt = |v: u8| (v as u32) << 3 | 2;
        let cases: &[(&str, bool, u64, u8, Source, Fault)] = &[
            (
                "call gate type",
                false,
                gate(0x08, 0x5000, CALL32, 0),
                0x40,
                Source::IntN,
                Fault::gp(idt(0x40)),
            ),
            (
                "same, external",
                false,
                gate(0x08, 0x5000, CALL32, 0),
                0x40,
                Source::External,
                Fault::gp(idt(0x40) | 1),
            ),
            (
                "DPL 0 gate from ring 3",
                true,
                gate(0x08, 0x5000, INT32, 0),
                0x40,
                Source::IntN,
                Fault::gp(idt(0x40)),
            ),
            (
                "INT3 too",
                true,
                gate(0x08, 0x5000, INT32, 0),
                3,
                Source::Int3,
                Fault::gp(idt(3)),
            ),
            (
                "not present",
                false,
                gate(0x08, 0x5000, ABSENT, 0),
                0x40,
                Source::IntN,
                Fault::np(idt(0x40)),
            ),
            (
                "not present, exception",
                false,
                gate(0x08, 0x5000, ABSENT, 0),
                0x0B,
                Source::Exception,
                Fault::np(idt(0x0B) | 1),
            ),
            (
                "null selector",
                false,
                gate(0x00, 0x5000, INT32, 0),
                0x40,
                Source::IntN,
                Fault::gp(0),
            ),
            (
                "null selector, external",
                false,
                gate(0x00, 0x5000, INT32, 0),
                0x40,
                Source::External,
                Fault::gp(1),
            ),
            (
                "data segment",
                false,
                gate(0x10, 0x5000, INT32, 0),
                0x40,
                Source::IntN,
                Fault::gp(0x10),
            ),
            (
                "handler DPL 3 > CPL 0",
                false,
                gate(0x18, 0x5000, INT32, 0),
                0x40,
                Source::IntN,
                Fault::gp(0x18),
            ),
            (
                "handler not present",
                false,
                gate(0x30, 0x500, INT32, 0),
                0x40,
                Source::IntN,
                Fault::np(0x30),
            ),
            (
                "entry past the limit",
                false,
                gate(0x38, 0x2000, INT32, 0),
                0x40,
                Source::IntN,
                Fault::gp(0),
            ),
            (
                "entry past the limit, external",
                false,
                gate(0x38, 0x2000, INT32, 0),
                0x40,
                Source::External,
                Fault::gp(1),
            ),
        ];
        for &(what, ring3, g, v, src, want) in cases {
            let mut cpu = if ring3 { pm3(&extra) } else { pm(&extra) };
            set_gate(&mut cpu, v, g);
            let before = regs(&cpu);
            assert_eq!(deliver(&mut cpu, v, src, None), Err(want), "{what}");
            assert_eq!(regs(&cpu), before, "{what}: state changed");
        }
        // Beyond the IDT limit.
        let mut cpu = pm(&[]);
        cpu.idtr.limit = 0x40 * 8 + 6;
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::gp(idt(0x40)))
        );
        // Exceptions skip the gate-DPL check: #GP through a DPL-0 gate from ring 3.
        let mut cpu = pm3(&[]);
        set_gate(&mut cpu, 13, gate(0x08, 0x5000, INT32, 0));
        assert_eq!(deliver(&mut cpu, 13, Source::Exception, Some(0)), Ok(()));
    }

    #[test]
    fn inner_stack_faults_come_from_the_tss_and_its_ss() {
        // 30h: data not present; 38h: read-only data.
        let extra = [desc(0, 0xFFFF, 0x12, 0x4), desc(0, 0xFFFF, 0x90, 0x4)];
        let setups: &[(&str, u32, u32, u32, Fault)] = &[
            // (what, TSS limit, SS0, ESP0, fault)
            (
                "TSS too small for SS0:ESP0",
                8,
                0x10,
                0x9000,
                Fault::ts(0x28),
            ),
            ("null SS0", 0x67, 0x00, 0x9000, Fault::ts(0)),
            ("SS0 RPL 3", 0x67, 0x13, 0x9000, Fault::ts(0x10)),
            ("SS0 DPL 3", 0x67, 0x20, 0x9000, Fault::ts(0x20)),
            ("SS0 read-only", 0x67, 0x38, 0x9000, Fault::ts(0x38)),
            ("SS0 outside the GDT", 0x67, 0x80, 0x9000, Fault::ts(0x80)),
            ("SS0 not present", 0x67, 0x30, 0x9000, Fault::ss(0x30)),
        ];
        for &(what, limit, ss0, esp0, want) in setups {
            let mut cpu = pm3(&extra);
            set_gate(&mut cpu, 0x80, gate(0x08, 0x5000, INT32_DPL3, 0));
            cpu.tr.limit = limit;
            put(&mut cpu, TSS + 4, &esp0.to_le_bytes());
            put(&mut cpu, TSS + 8, &ss0.to_le_bytes());
            let before = regs(&cpu);
            assert_eq!(
                deliver(&mut cpu, 0x80, Source::IntN, None),
                Err(want),
                "{what}"
            );
            assert_eq!(
                deliver(&mut cpu, 0x80, Source::External, None),
                Err(want.with_ext()),
                "{what}, external"
            );
            assert_eq!(regs(&cpu), before, "{what}: state changed");
        }
        // No room for the frame on an expand-down stack whose lowest offset is 8FF0h.
        let mut cpu = pm3(&[desc(0, 0x8FEF, 0x96, 0x4)]);
        set_gate(&mut cpu, 0x80, gate(0x08, 0x5000, INT32_DPL3, 0));
        put(&mut cpu, TSS + 8, &0x30u32.to_le_bytes());
        let before = regs(&cpu);
        assert_eq!(
            deliver(&mut cpu, 0x80, Source::IntN, None),
            Err(Fault::ss(0x30))
        );
        assert_eq!(regs(&cpu), before);
    }

    #[test]
    fn virtual_8086_interrupts_go_to_ring_0_and_null_the_data_segments() {
        let mut cpu = pm(&[desc(0, 0xFFFFF, 0x9E, 0xC)]);
        set_gate(&mut cpu, 0x21, gate(0x08, 0x5000, INT32_DPL3, 0));
        set_gate(&mut cpu, 0x22, gate(0x30, 0x5000, INT32_DPL3, 0));
        cpu.set_rflags(rf::VM | rf::IOPL);
        for (s, sel) in [
            (sreg::CS, 0x1000),
            (sreg::SS, 0x2000),
            (sreg::DS, 0x3000),
            (sreg::ES, 0x4000),
            (sreg::FS, 0x5000),
            (sreg::GS, 0x6000),
        ] {
            cpu.seg[s] = Segment::real(sel);
        }
        cpu.gpr[gpr::RSP] = 0xFFFE;
        assert_eq!(cpu.cpl(), 3);
        // A conforming handler is not ring 0: #GP(selector).
        assert_eq!(
            deliver(&mut cpu, 0x22, Source::IntN, None),
            Err(Fault::gp(0x30))
        );
        let flags = cpu.rflags();
        assert_eq!(deliver(&mut cpu, 0x21, Source::IntN, None), Ok(()));
        let frame: Vec<u32> = (0..9).map(|k| read32(&cpu, 0x9000 - 36 + 4 * k)).collect();
        assert_eq!(
            frame,
            [
                0x1234,
                0x1000,
                flags as u32,
                0xFFFE,
                0x2000,
                0x4000,
                0x3000,
                0x5000,
                0x6000
            ]
        );
        assert_eq!((cpu.v86(), cpu.cpl()), (false, 0));
        for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            assert_eq!(cpu.seg[s].selector, 0);
            assert_eq!(cpu.linear(s, 0, 1), Err(Fault::gp(0)));
        }
        // With IOPL < 3, INT n is #GP(0) for the monitor; INT3 still goes through.
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 3, gate(0x08, 0x5000, INT32_DPL3, 0));
        cpu.set_rflags(rf::VM);
        cpu.seg[sreg::SS] = Segment::real(0);
        cpu.gpr[gpr::RSP] = 0xFFFE;
        assert_eq!(
            cpu.software_interrupt(&mut NullBus, 0x21, Source::IntN),
            Err(Fault::gp(0))
        );
        assert_eq!(
            cpu.software_interrupt(&mut NullBus, 3, Source::Int3),
            Ok(())
        );
    }

    #[test]
    fn real_mode_uses_the_ivt() {
        let mut cpu = real_mode(&[]);
        cpu.mmu
            .phys
            .write_bytes(0x20 * 4, &[0x78, 0x56, 0x34, 0x12])
            .unwrap();
        cpu.gpr[gpr::RSP] = 0x100;
        cpu.set_rflags(rf::IF | rf::TF);
        assert_eq!(deliver(&mut cpu, 0x20, Source::IntN, None), Ok(()));
        assert_eq!(
            (cpu.seg[sreg::CS].selector, cpu.seg[sreg::CS].base, cpu.rip),
            (0x1234, 0x12340, 0x5678)
        );
        assert_eq!(cpu.gpr[gpr::RSP], 0xFA);
        assert_eq!(cpu.rflags() & (rf::IF | rf::TF), 0);
        cpu.idtr.limit = 0x20 * 4 + 2;
        assert_eq!(
            deliver(&mut cpu, 0x20, Source::IntN, None),
            Err(Fault::gp(0))
        );
    }

    /// An IA-32e CPU at CPL 0 in 64-bit code: GDT 08h 64-bit code, 10h data, 18h
    /// 64-bit ring-3 code, 20h ring-3 data, 28h a 16-byte 64-bit TSS with RSP0 =
    /// 9008h and IST1 = A008h; 38h 32-bit code. IDT of 16-byte gates at IDT.
    fn long_cpu() -> Cpu {
        let code64 = |dpl: u8| desc(0, 0, 0x9A | dpl << 5, 0x2);
        let entries = [
            code64(0),
            data(0),
            code64(3),
            data(3),
            desc(TSS as u32, 0x67, 0x89, 0),
            0,
            code(0),
        ];
        let mut cpu = pm(&[]);
        crate::segment::tests::put_gdt(&mut cpu, &entries);
        cpu.efer = efer::LME | efer::LMA;
        cpu.cr0 |= cr0::PG;
        cpu.seg[sreg::CS] = Descriptor {
            lo: code64(0),
            hi: 0,
        }
        .segment(0x08);
        cpu.tr = Descriptor {
            lo: desc(TSS as u32, 0x67, 0x8B, 0),
            hi: 0,
        }
        .segment(0x28);
        put(&mut cpu, TSS + 4, &0x9008u64.to_le_bytes());
        put(&mut cpu, TSS + 0x24, &0xA008u64.to_le_bytes());
        cpu.idtr = crate::TableReg {
            base: IDT,
            limit: 256 * 16 - 1,
        };
        cpu.gpr[gpr::RSP] = 0x8008;
        cpu
    }

    fn set_gate64(cpu: &mut Cpu, v: u8, sel: u16, off: u64, access: u8, ist: u8) {
        let lo = gate(sel, off as u32, access, ist);
        put(cpu, IDT + 16 * v as u64, &lo.to_le_bytes());
        put(cpu, IDT + 16 * v as u64 + 8, &(off >> 32).to_le_bytes());
    }

    #[test]
    fn long_mode_frames_are_aligned_64_bit_and_always_hold_ss_rsp() {
        let mut cpu = long_cpu();
        assert!(cpu.long64());
        set_gate64(&mut cpu, 0x40, 0x08, 0xFFFF_8000_0000_5000, INT32, 0);
        let flags = cpu.rflags();
        assert_eq!(deliver(&mut cpu, 0x40, Source::IntN, None), Ok(()));
        assert_eq!(cpu.rip, 0xFFFF_8000_0000_5000);
        // RSP 8008h aligned down to 8000h, then five qwords.
        assert_eq!(cpu.gpr[gpr::RSP], 0x8000 - 40);
        let frame: Vec<u64> = (0..5).map(|k| read64(&cpu, 0x8000 - 40 + 8 * k)).collect();
        assert_eq!(frame, [0x1234, 0x08, flags, 0x8008, 0x10]);

        // From ring 3: RSP0, a null SS with RPL 0, the error code last.
        let mut cpu = long_cpu();
        cpu.seg[sreg::CS] = cpu
            .descriptor(&mut NullBus, 0x1B)
            .unwrap()
            .unwrap()
            .segment(0x1B);
        cpu.seg[sreg::SS] = cpu
            .descriptor(&mut NullBus, 0x23)
            .unwrap()
            .unwrap()
            .segment(0x23);
        set_gate64(&mut cpu, 13, 0x08, 0x5000, INT32, 0);
        assert_eq!(deliver(&mut cpu, 13, Source::Exception, Some(0x44)), Ok(()));
        assert_eq!(
            (cpu.cpl(), cpu.seg[sreg::SS].selector, cpu.gpr[gpr::RSP]),
            (0, 0, 0x9000 - 48)
        );
        let frame: Vec<u64> = (0..6).map(|k| read64(&cpu, 0x9000 - 48 + 8 * k)).collect();
        assert_eq!(frame[0], 0x44);
        assert_eq!((frame[2], frame[4], frame[5]), (0x1B, 0x8008, 0x23));

        // IST 1 wins over the current stack.
        let mut cpu = long_cpu();
        set_gate64(&mut cpu, 2, 0x08, 0x5000, INT32, 1);
        assert_eq!(deliver(&mut cpu, 2, Source::External, None), Ok(()));
        assert_eq!(cpu.gpr[gpr::RSP], 0xA000 - 40);
    }

    #[test]
    fn long_mode_gate_faults() {
        let idt = |v: u32| v << 3 | 2;
        // A 16-bit gate type has no IA-32e meaning.
        let mut cpu = long_cpu();
        set_gate64(&mut cpu, 0x40, 0x08, 0x5000, INT16, 0);
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::gp(idt(0x40)))
        );
        // The handler must be 64-bit code.
        set_gate64(&mut cpu, 0x40, 0x38, 0x5000, INT32, 0);
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::gp(0x38))
        );
        // A non-canonical entry point.
        set_gate64(&mut cpu, 0x40, 0x08, 0x0000_8000_0000_0000, INT32, 0);
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::gp(0))
        );
        // IST 7 lies past the TSS limit.
        set_gate64(&mut cpu, 0x40, 0x08, 0x5000, INT32, 7);
        cpu.tr.limit = 0x40;
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::ts(0x28))
        );
        // A non-canonical stack from the TSS.
        cpu.tr.limit = 0x67;
        set_gate64(&mut cpu, 0x40, 0x08, 0x5000, INT32, 1);
        put(
            &mut cpu,
            TSS + 0x24,
            &0x0000_8000_0000_0000u64.to_le_bytes(),
        );
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::External, None),
            Err(Fault::ss(1))
        );
        // Beyond the IDT limit (16-byte entries).
        cpu.idtr.limit = 0x40 * 16 + 14;
        assert_eq!(
            deliver(&mut cpu, 0x40, Source::IntN, None),
            Err(Fault::gp(idt(0x40)))
        );
    }

    #[test]
    fn contributory_faults_while_delivering_make_a_double_fault_then_shutdown() {
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 13, gate(0x08, 0x5000, ABSENT, 0));
        set_gate(&mut cpu, 8, gate(0x08, 0x6000, INT32, 0));
        cpu.raise(&mut NullBus, Fault::gp(0));
        assert_eq!(
            (cpu.rip, read32(&cpu, 0x7FF0)),
            (0x6000, 0),
            "#DF with error code 0"
        );
        assert_eq!(cpu.stats.exceptions[vector::NP as usize], 1);
        set_gate(&mut cpu, 8, gate(0x08, 0x6000, ABSENT, 0));
        cpu.raise(&mut NullBus, Fault::gp(0));
        assert!(cpu.shutdown);
    }

    /// Code at 1000h in `pm`, with #DB's gate to a HLT at 3000h.
    fn debug_cpu(code: &[u8]) -> Cpu {
        let mut cpu = pm(&[]);
        put(&mut cpu, 0x1000, code);
        put(&mut cpu, 0x3000, &[0xF4]);
        cpu.rip = 0x1000;
        set_gate(&mut cpu, 1, gate(0x08, 0x3000, INT32, 0));
        cpu
    }

    /// Run until the #DB handler's HLT; the EIP its frame returns to and DR6.
    fn run_to_db(cpu: &mut Cpu) -> (u32, u64) {
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.rip, 0x3001, "stopped in the #DB handler");
        (read32(cpu, cpu.gpr[gpr::RSP]), cpu.dr[6])
    }

    #[test]
    fn single_step_traps_after_the_instruction() {
        // nop ; nop
        let mut cpu = debug_cpu(&[0x90, 0x90]);
        cpu.set_rflags(rf::TF);
        assert_eq!(run_to_db(&mut cpu), (0x1001, 0xFFFF_0FF0 | dr::BS));
        assert_eq!(
            read32(&cpu, cpu.gpr[gpr::RSP] + 8) as u64 & (rf::TF | rf::RF),
            rf::TF
        );
        // int 40h (handler: nop ; iret) ; nop: no trap after INT n or the IRET that
        // was untraced; the first one after the NOP that follows.
        let mut cpu = debug_cpu(&[0xCD, 0x40, 0x90, 0x90]);
        put(&mut cpu, 0x4000, &[0x90, 0xCF]);
        set_gate(&mut cpu, 0x40, gate(0x08, 0x4000, INT32, 0));
        cpu.set_rflags(rf::TF);
        assert_eq!(run_to_db(&mut cpu).0, 0x1003);
        assert_eq!(cpu.stats.exceptions[vector::DB as usize], 1);
        // mov ss, cx ; nop ; nop: MOV SS holds the trap back past the NOP.
        let mut cpu = debug_cpu(&[0x8E, 0xD1, 0x90, 0x90]);
        cpu.gpr[gpr::RCX] = 0x10;
        cpu.set_rflags(rf::TF);
        assert_eq!(run_to_db(&mut cpu).0, 0x1003);
        // sti ; nop: STI does not.
        let mut cpu = debug_cpu(&[0xFB, 0x90]);
        cpu.set_rflags(rf::TF);
        assert_eq!(run_to_db(&mut cpu).0, 0x1001);
        // A faulting instruction is not stepped: ud2 goes to #UD only.
        let mut cpu = debug_cpu(&[0x0F, 0x0B]);
        put(&mut cpu, 0x5000, &[0xF4]);
        set_gate(&mut cpu, 6, gate(0x08, 0x5000, INT32, 0));
        cpu.set_rflags(rf::TF);
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            (cpu.rip, cpu.stats.exceptions[vector::DB as usize]),
            (0x5001, 0)
        );
    }

    #[test]
    fn instruction_breakpoints_fault_unless_rf() {
        // nop ; nop ; nop with DR0 on the second.
        let mut cpu = debug_cpu(&[0x90, 0x90, 0x90, 0xF4]);
        cpu.dr[0] = 0x1001;
        cpu.dr[7] = 0x401;
        let (eip, dr6) = run_to_db(&mut cpu);
        assert_eq!((eip, dr6 & 0xF), (0x1001, 1));
        assert_eq!(
            read32(&cpu, cpu.gpr[gpr::RSP] + 8) as u64 & rf::RF,
            0,
            "pushed RF is 0"
        );
        // Return with RF set: the instruction runs, RF is cleared after it.
        cpu.wake();
        cpu.rip = 0x1001;
        cpu.set_rflags(rf::RF);
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!((cpu.rip, cpu.rflags() & rf::RF), (0x1002, 0));
        // Disabled in DR7 (L0 = G0 = 0): nothing.
        let mut cpu = debug_cpu(&[0x90, 0x90, 0xF4]);
        cpu.dr[0] = 0x1001;
        cpu.dr[7] = 0x400;
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.rip, 0x1003);
    }

    #[test]
    fn data_breakpoints_trap_after_the_access() {
        // mov [6002h], ax ; mov eax, [6000h] ; hlt
        let code = [0x66, 0xA3, 0x02, 0x60, 0, 0, 0xA1, 0x00, 0x60, 0, 0, 0xF4];
        // DR1 = 6000h, write-only, 4 bytes (G1).
        let mut cpu = debug_cpu(&code);
        cpu.dr[1] = 0x6000;
        cpu.dr[7] = 0x8 | 1 << 20 | 3 << 22;
        let (eip, dr6) = run_to_db(&mut cpu);
        assert_eq!((eip, dr6 & 0xF), (0x1006, 2));
        // Reads do not match a write breakpoint: from the MOV EAX on, to the HLT.
        cpu.wake();
        cpu.rip = 0x1006;
        cpu.gpr[gpr::RSP] = 0x8000;
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.rip, 0x100C);
        // R/W = 11: reads match too; LEN 1 at 6003h overlaps the word at 6002h.
        let mut cpu = debug_cpu(&code);
        cpu.dr[3] = 0x6003;
        cpu.dr[7] = 0xC0 | 3 << 28;
        assert_eq!(run_to_db(&mut cpu), (0x1006, 0xFFFF_0FF0 | 8));
    }

    #[test]
    fn icebp_skips_the_gate_dpl_check_int3_does_not() {
        // At CPL 3 through DPL-0 gates: INT1 is delivered, INT3 is #GP(3*8+2).
        let mut cpu = pm3(&[]);
        put(&mut cpu, 0x1000, &[0xF1, 0xCC]);
        put(&mut cpu, 0x3000, &[0xF4]);
        put(&mut cpu, 0x5000, &[0xF4]);
        cpu.rip = 0x1000;
        set_gate(&mut cpu, 1, gate(0x08, 0x3000, INT32, 0));
        set_gate(&mut cpu, 3, gate(0x08, 0x4000, INT32, 0));
        set_gate(&mut cpu, 13, gate(0x08, 0x5000, INT32, 0));
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.rip, read32(&cpu, 0x9000 - 20)), (0x3001, 0x1001));
        let mut cpu2 = pm3(&[]);
        put(&mut cpu2, 0x1000, &[0xCC]);
        put(&mut cpu2, 0x5000, &[0xF4]);
        cpu2.rip = 0x1000;
        set_gate(&mut cpu2, 3, gate(0x08, 0x4000, INT32, 0));
        set_gate(&mut cpu2, 13, gate(0x08, 0x5000, INT32, 0));
        assert_eq!(cpu2.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            (
                cpu2.rip,
                read32(&cpu2, 0x9000 - 24),
                read32(&cpu2, 0x9000 - 20)
            ),
            (0x5001, 3 * 8 + 2, 0x1000)
        );
    }

    #[test]
    fn nmi_is_taken_at_once_and_blocked_until_iret() {
        // Code: nop ; nop. NMI handler at 5000h: nop ; iret.
        let mut cpu = pm(&[]);
        put(&mut cpu, 0x1000, &[0x90, 0x90, 0xF4]);
        put(&mut cpu, 0x5000, &[0x90, 0xCF]);
        cpu.rip = 0x1000;
        set_gate(&mut cpu, 2, gate(0x08, 0x5000, INT32, 0));
        cpu.nmi = true;
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!((cpu.rip, cpu.nmi, cpu.nmi_blocked), (0x5001, false, true));
        // A second NMI waits for the IRET, and comes right after it.
        cpu.nmi = true;
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!((cpu.rip, cpu.nmi, cpu.nmi_blocked), (0x5000, false, true));
        assert_eq!(read32(&cpu, cpu.gpr[gpr::RSP]), 0x1000);
        // NMI wakes a halted CPU, even with IF clear.
        let mut cpu = pm(&[]);
        put(&mut cpu, 0x1000, &[0xF4, 0x90]);
        put(&mut cpu, 0x5000, &[0xF4]);
        cpu.rip = 0x1000;
        set_gate(&mut cpu, 2, gate(0x08, 0x5000, INT32, 0));
        assert_eq!(cpu.run(&mut NullBus, 10), Exit::Halt);
        cpu.nmi = true;
        assert_eq!(cpu.run(&mut NullBus, 10), Exit::Halt);
        assert_eq!((cpu.rip, read32(&cpu, 0x7FF4)), (0x5001, 0x1001));
    }
}
