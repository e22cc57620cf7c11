//! Exception and interrupt delivery (SDM Vol.3 ch. 6; real mode: 20.1.4), the stack
//! primitives it shares with PUSH/POP/CALL, and the double/triple-fault rules.

use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::fault::{self, vector, Fault};
use crate::flags::rf;
use crate::state::{attr, gpr, sreg, Word};

impl Cpu {
    // ---- the stack ---------------------------------------------------------------

    /// The stack-pointer width: RSP in 64-bit mode, ESP with a big (B=1) SS, else SP.
    #[inline(always)]
    pub fn stack_mask(&self) -> u64 {
        if self.long64() {
            u64::MAX
        } else if self.seg[sreg::SS].attr & attr::DB != 0 && self.protected() {
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

    // ---- delivery ----------------------------------------------------------------

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
                Some(a) if fault::is_double_fault(a, f.vector) => f = Fault::with_code(vector::DF, 0),
                _ => {}
            }
            let ret = self.rip;
            match self.deliver(bus, f.vector, f.error_code(), ret) {
                Ok(()) => return,
                Err(f2) => {
                    first = Some(f.vector);
                    f = f2;
                }
            }
        }
    }

    /// INT n / INT3 / INTO: a software interrupt returns to the next instruction.
    pub fn software_interrupt(&mut self, bus: &mut dyn Bus, v: u8) -> Result<(), Fault> {
        let ret = self.next_ip;
        self.deliver(bus, v, None, ret)
    }

    /// Take a pending external interrupt (INTR) at an instruction boundary.
    pub(crate) fn take_interrupt(&mut self, bus: &mut dyn Bus) {
        let Some(v) = bus.acknowledge_interrupt() else {
            return;
        };
        self.halted = false;
        self.stats.interrupts += 1;
        let ret = self.rip;
        if let Err(f) = self.deliver(bus, v, None, ret) {
            self.raise(bus, f);
        }
    }

    /// Push the frame and jump to the handler for vector `v`. On success both RIP and
    /// the pending next IP point at the handler.
    fn deliver(&mut self, bus: &mut dyn Bus, v: u8, error: Option<u32>, ret: u64) -> Result<(), Fault> {
        let (cs, ip) = if self.protected() {
            self.deliver_protected(bus, v, error, ret)?
        } else {
            self.deliver_real(bus, v, ret)?
        };
        let _ = cs;
        self.rip = ip;
        self.next_ip = ip;
        self.halted = false;
        Ok(())
    }

    /// Real mode: FLAGS, CS, IP on the stack; CS:IP from the IVT (SDM Vol.3 20.1.4).
    fn deliver_real(&mut self, bus: &mut dyn Bus, v: u8, ret: u64) -> Result<(u16, u64), Fault> {
        let off = v as u64 * 4;
        if off + 3 > self.idtr.limit as u64 {
            return Err(Fault::gp(0));
        }
        let lin = self.idtr.base.wrapping_add(off);
        let ip = self.mmu.read::<u16>(bus, lin)?;
        let cs = self.mmu.read::<u16>(bus, lin + 2)?;
        let flags = self.rflags() as u16;
        let old_cs = self.seg[sreg::CS].selector;
        self.stack_transaction(|c| {
            c.push::<u16>(bus, flags)?;
            c.push::<u16>(bus, old_cs)?;
            c.push::<u16>(bus, ret as u16)
        })?;
        self.rflags &= !(rf::IF | rf::TF | rf::AC | rf::RF);
        self.load_code_segment(bus, cs)?;
        Ok((cs, ip as u64))
    }

    /// Protected mode through a same-privilege 16/32-bit interrupt or trap gate.
    /// Privilege changes, task gates and long-mode gates are the protected-mode work
    /// (issue 3); until then they raise #GP on the gate.
    fn deliver_protected(
        &mut self,
        bus: &mut dyn Bus,
        v: u8,
        error: Option<u32>,
        ret: u64,
    ) -> Result<(u16, u64), Fault> {
        let gate_err = v as u32 * 8 + 2;
        let off = v as u64 * 8;
        if off + 7 > self.idtr.limit as u64 {
            return Err(Fault::gp(gate_err));
        }
        let g = self.mmu.read::<u64>(bus, self.idtr.base.wrapping_add(off))?;
        let kind = (g >> 40) & 0x1F;
        let is32 = match kind {
            0x06 | 0x07 => false,
            0x0E | 0x0F => true,
            _ => return Err(Fault::gp(gate_err)),
        };
        if g & (1 << 47) == 0 {
            return Err(Fault::np(gate_err));
        }
        let sel = (g >> 16) as u16;
        let ip = (g & 0xFFFF) | (if is32 { (g >> 32) & 0xFFFF_0000 } else { 0 });
        let target = crate::segment::descriptor_to_segment(sel, self.read_descriptor(bus, sel)?);
        if target.attr & attr::DC == 0 && target.dpl() < self.cpl() {
            return Err(Fault::gp(sel as u32 & !3));
        }
        let flags = self.rflags();
        let old_cs = self.seg[sreg::CS].selector;
        let push_err = error.filter(|_| fault::has_error_code(v));
        self.stack_transaction(|c| {
            if is32 {
                c.push::<u32>(bus, flags as u32)?;
                c.push::<u32>(bus, old_cs as u32)?;
                c.push::<u32>(bus, ret as u32)?;
                if let Some(e) = push_err {
                    c.push::<u32>(bus, e)?;
                }
            } else {
                c.push::<u16>(bus, flags as u16)?;
                c.push::<u16>(bus, old_cs)?;
                c.push::<u16>(bus, ret as u16)?;
                if let Some(e) = push_err {
                    c.push::<u16>(bus, e as u16)?;
                }
            }
            c.load_code_segment(bus, sel)
        })?;
        // Interrupt gates (odd types are trap gates) also clear IF (SDM Vol.3 6.12.1.3).
        self.rflags &= !(rf::TF | rf::NT | rf::RF | rf::VM);
        if kind & 1 == 0 {
            self.rflags &= !rf::IF;
        }
        Ok((sel, ip))
    }
}
