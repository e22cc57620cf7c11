//! Control transfer: JMP CALL RET (near and far), Jcc, LOOP/LOOPE/LOOPNE, JCXZ family,
//! INT n, INT3, INTO, INT1, IRET/IRETD/IRETQ (SDM Vol.2; Vol.3 6.12 for the interrupt
//! paths). Far transfers follow the SDM pseudo-code: to a code segment, through call
//! gates (with a stack switch and parameter copy to an inner ring), to another task;
//! RET and IRET back to an outer ring, IRET to virtual-8086 mode and to a nested task
//! (Vol.3 5.8, 7.3, 20.2).

use iced_x86::{Code, Instruction, Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::stack::flags_mask;
use crate::exec::{Handler, Table};
use crate::fault::{vector, Fault};
use crate::flags::rf;
use crate::interrupt::Source;
use crate::per_cc;
use crate::segment::{null_segment, selector, sys, Descriptor, Load};
use crate::state::{gpr, sreg, Segment, Word};
use crate::task::Switch;

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Jmp, select_jmp);
    t.on(Mnemonic::Call, select_call);
    t.on(Mnemonic::Ret, |i| {
        Some(by_width(
            ret_width(i.code()),
            [ret_near::<u16>, ret_near::<u32>, ret_near::<u64>],
        ))
    });
    t.on(Mnemonic::Retf, |i| {
        Some(by_width(
            ret_width(i.code()),
            [ret_far::<u16>, ret_far::<u32>, ret_far::<u64>],
        ))
    });
    t.on_all(JCC, |i| Some(JCC_HANDLERS[crate::exec::data::cc(i)]));
    t.on_all(
        &[
            Mnemonic::Loop,
            Mnemonic::Loope,
            Mnemonic::Loopne,
            Mnemonic::Jcxz,
            Mnemonic::Jecxz,
            Mnemonic::Jrcxz,
        ],
        select_loop,
    );
    t.on(Mnemonic::Int, |_| Some(int_n));
    t.on(Mnemonic::Int3, |_| Some(int3));
    t.on(Mnemonic::Into, |_| Some(into));
    t.on(Mnemonic::Int1, |_| Some(int1));
    t.on(Mnemonic::Bound, |i| {
        Some(if crate::exec::op_size(i, 0) == 2 {
            bound::<u16>
        } else {
            bound::<u32>
        })
    });
    t.on_all(&[Mnemonic::Iret, Mnemonic::Iretd, Mnemonic::Iretq], |i| {
        Some(match i.mnemonic() {
            Mnemonic::Iret => iret::<u16>,
            Mnemonic::Iretd => iret::<u32>,
            _ => iret::<u64>,
        })
    });
}

const JCC: &[Mnemonic] = &[
    Mnemonic::Jo,
    Mnemonic::Jno,
    Mnemonic::Jb,
    Mnemonic::Jae,
    Mnemonic::Je,
    Mnemonic::Jne,
    Mnemonic::Jbe,
    Mnemonic::Ja,
    Mnemonic::Js,
    Mnemonic::Jns,
    Mnemonic::Jp,
    Mnemonic::Jnp,
    Mnemonic::Jl,
    Mnemonic::Jge,
    Mnemonic::Jle,
    Mnemonic::Jg,
];

static JCC_HANDLERS: [Handler; 16] = per_cc!(jcc);

/// Pick the 16/32/64-bit variant.
fn by_width(bytes: usize, h: [Handler; 3]) -> Handler {
    match bytes {
        2 => h[0],
        4 => h[1],
        _ => h[2],
    }
}

fn ret_width(c: Code) -> usize {
    match c {
        Code::Retnw | Code::Retnw_imm16 | Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retnd | Code::Retnd_imm16 | Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    }
}

/// The operand size of a near branch: that of its IP.
fn branch_width(i: &Instruction) -> usize {
    match i.op0_kind() {
        OpKind::NearBranch16 => 2,
        OpKind::NearBranch32 => 4,
        OpKind::NearBranch64 => 8,
        _ => crate::exec::op_size(i, 0),
    }
}

fn is_far(i: &Instruction) -> bool {
    matches!(i.op0_kind(), OpKind::FarBranch16 | OpKind::FarBranch32)
        || (i.op0_kind() == OpKind::Memory
            && matches!(
                i.memory_size(),
                iced_x86::MemorySize::SegPtr16
                    | iced_x86::MemorySize::SegPtr32
                    | iced_x86::MemorySize::SegPtr64
            ))
}

fn select_jmp(i: &Instruction) -> Option<Handler> {
    if is_far(i) {
        return Some(by_width(
            far_width(i),
            [jmp_far::<u16>, jmp_far::<u32>, jmp_far::<u64>],
        ));
    }
    Some(match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => jmp_rel,
        _ => by_width(
            branch_width(i),
            [
                jmp_indirect::<u16>,
                jmp_indirect::<u32>,
                jmp_indirect::<u64>,
            ],
        ),
    })
}

fn select_call(i: &Instruction) -> Option<Handler> {
    if is_far(i) {
        return Some(by_width(
            far_width(i),
            [call_far::<u16>, call_far::<u32>, call_far::<u64>],
        ));
    }
    Some(match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => by_width(
            branch_width(i),
            [call_rel::<u16>, call_rel::<u32>, call_rel::<u64>],
        ),
        _ => by_width(
            branch_width(i),
            [
                call_indirect::<u16>,
                call_indirect::<u32>,
                call_indirect::<u64>,
            ],
        ),
    })
}

/// Offset size of a far pointer: ptr16:16 / m16:16 → 2, ptr16:32 / m16:32 → 4, m16:64 → 8.
fn far_width(i: &Instruction) -> usize {
    match (i.op0_kind(), i.memory_size()) {
        (OpKind::FarBranch16, _) | (_, iced_x86::MemorySize::SegPtr16) => 2,
        (OpKind::FarBranch32, _) | (_, iced_x86::MemorySize::SegPtr32) => 4,
        _ => 8,
    }
}

impl Cpu {
    /// Set the next IP to a near target, checking it against CS (the limit outside
    /// 64-bit mode, canonical form inside; SDM Vol.2A JMP: #GP(0)).
    #[inline(always)]
    pub fn jump_near(&mut self, target: u64) -> Result<(), Fault> {
        if self.long64() {
            if !crate::cpu::canonical(target) {
                return Err(Fault::gp(0));
            }
        } else if target > self.seg[sreg::CS].limit as u64 {
            return Err(Fault::gp(0));
        }
        self.next_ip = target;
        Ok(())
    }

    /// Load CS:IP in real or virtual-8086 mode: the new IP must be inside the new CS
    /// (#GP(0), with CS kept as it was).
    fn real_far_jump(&mut self, sel: u16, ip: u64) -> Result<(), Fault> {
        let saved = self.seg[sreg::CS];
        self.load_real_cs(sel);
        if let Err(f) = self.jump_near(ip) {
            self.seg[sreg::CS] = saved;
            return Err(f);
        }
        Ok(())
    }

    /// Continue at `ip` in code segment `cs` at privilege `cpl`, if `ip` is a valid
    /// entry point (#GP(0) otherwise).
    fn enter_code(&mut self, cs: Segment, cpl: u8, ip: u64) -> Result<(), Fault> {
        self.check_entry(&cs, ip)?;
        self.set_cs(cs, cpl);
        self.next_ip = ip;
        Ok(())
    }

    /// The checks a protected-mode far JMP or CALL makes on its selector (SDM Vol.2
    /// JMP, CALL): a code segment (`Load::Code`); a call gate whose DPL is at least
    /// the CPL and the RPL, and the code segment it names; or a TSS or task gate with
    /// the same DPL rule (not in IA-32e mode, which has 64-bit call gates only).
    fn far_target(&mut self, bus: &mut dyn Bus, sel: u16) -> Result<FarTarget, Fault> {
        if selector::is_null(sel) {
            return Err(Fault::gp(0));
        }
        let (cpl, rpl, code) = (
            self.cpl(),
            (sel & selector::RPL) as u8,
            selector::error_code(sel),
        );
        let d = self.descriptor_or(bus, sel, vector::GP)?;
        if !d.system() {
            return Ok(FarTarget::Code(self.check_descriptor(
                bus,
                sel,
                &d,
                Load::Code,
                cpl,
                vector::GP,
            )?));
        }
        let long = self.ia32e();
        let gate = d.is(sys::CALL_GATE32) || (!long && d.is(sys::CALL_GATE16));
        let task = !long && (d.is(sys::TASK_GATE) || d.is(sys::TSS16) || d.is(sys::TSS32));
        if !(gate || task) || d.dpl() < cpl || rpl > d.dpl() {
            return Err(Fault::gp(code));
        }
        if !d.present() {
            return Err(Fault::np(code));
        }
        if task {
            return Ok(FarTarget::Task(if d.is(sys::TASK_GATE) {
                d.gate_selector()
            } else {
                sel
            }));
        }
        // A 64-bit call gate's upper half has a type field that must be 0.
        if long && (d.hi >> 40) & 0x1F != 0 {
            return Err(Fault::gp(code));
        }
        let tsel = d.gate_selector();
        if selector::is_null(tsel) {
            return Err(Fault::gp(0));
        }
        let target = self.descriptor_or(bus, tsel, vector::GP)?;
        let cs = self.check_descriptor(bus, tsel, &target, Load::GateCode, cpl, vector::GP)?;
        if long && !target.code64() {
            return Err(Fault::gp(selector::error_code(tsel)));
        }
        Ok(FarTarget::Gate {
            gate: d,
            cs,
            target,
        })
    }

    /// Far JMP (SDM Vol.2 JMP): a call gate never changes privilege, so its code
    /// segment must be conforming or at the CPL.
    fn far_jump(&mut self, bus: &mut dyn Bus, sel: u16, ip: u64) -> Result<(), Fault> {
        if !self.protected() || self.v86() {
            return self.real_far_jump(sel, ip);
        }
        let cpl = self.cpl();
        match self.far_target(bus, sel)? {
            FarTarget::Code(cs) => self.enter_code(cs, cpl, ip),
            FarTarget::Gate { gate, cs, target } => {
                if !target.conforming() && target.dpl() != cpl {
                    return Err(Fault::gp(selector::error_code(gate.gate_selector())));
                }
                self.enter_code(cs, cpl, gate.gate_offset())
            }
            FarTarget::Task(tss) => {
                let ret = self.next_ip;
                self.task_switch(bus, tss, Switch::Jmp, ret)
            }
        }
    }

    /// Far CALL (SDM Vol.2 CALL): the return address is pushed at the operand size,
    /// or at the gate's size through a call gate; a gate to a more privileged
    /// non-conforming segment switches stacks.
    fn far_call<T: Word>(&mut self, bus: &mut dyn Bus, sel: u16, ip: u64) -> Result<(), Fault> {
        let (old_cs, ret) = (self.seg[sreg::CS].selector as u64, self.next_ip);
        if !self.protected() || self.v86() {
            return self.stack_transaction(|c| {
                c.push::<T>(bus, T::from_u64(old_cs))?;
                c.push::<T>(bus, T::from_u64(ret))?;
                c.real_far_jump(sel, ip)
            });
        }
        let cpl = self.cpl();
        match self.far_target(bus, sel)? {
            FarTarget::Code(cs) => {
                self.check_entry(&cs, ip)?;
                self.stack_transaction(|c| {
                    c.push::<T>(bus, T::from_u64(old_cs))?;
                    c.push::<T>(bus, T::from_u64(ret))
                })?;
                self.enter_code(cs, cpl, ip)
            }
            FarTarget::Task(tss) => self.task_switch(bus, tss, Switch::Call, ret),
            FarTarget::Gate { gate, cs, target } => {
                let entry = gate.gate_offset();
                self.check_entry(&cs, entry)?;
                let width = gate.gate_width(self.ia32e());
                if !target.conforming() && target.dpl() < cpl {
                    self.call_inner(bus, &gate, cs, target.dpl(), ret)?;
                } else {
                    self.far_transaction(|c| {
                        c.set_cs(cs, cpl);
                        c.push_width(bus, width, old_cs)?;
                        c.push_width(bus, width, ret)
                    })?;
                }
                self.next_ip = entry;
                Ok(())
            }
        }
    }

    /// CALL through a call gate to an inner ring (SDM Vol.2 CALL, "MORE-PRIVILEGE"):
    /// the new stack from the TSS gets the caller's SS:SP, the gate's parameter count
    /// of stack slots copied from the caller's stack, and CS:IP, all at the gate's
    /// size. A 64-bit gate takes RSPn from the 64-bit TSS, loads a null SS and copies
    /// no parameters.
    fn call_inner(
        &mut self,
        bus: &mut dyn Bus,
        gate: &Descriptor,
        cs: Segment,
        new_cpl: u8,
        ret: u64,
    ) -> Result<(), Fault> {
        let old = [
            self.seg[sreg::SS].selector as u64,
            self.gpr[gpr::RSP],
            self.seg[sreg::CS].selector as u64,
        ];
        if self.ia32e() {
            let rsp = self.tss64_stack(bus, crate::task::tss64::RSP0 + 8 * new_cpl as usize)?;
            if !crate::cpu::canonical(rsp) {
                return Err(Fault::ss(0));
            }
            return self.far_transaction(|c| {
                c.set_cs(cs, new_cpl);
                c.seg[sreg::SS] = null_segment(new_cpl as u16);
                c.gpr[gpr::RSP] = rsp;
                old.iter()
                    .chain([ret].iter())
                    .try_for_each(|&v| c.push::<u64>(bus, v))
            });
        }
        let width = gate.gate_width(false);
        let count = gate.param_count();
        let mut params = [0u64; 31];
        let mask = self.stack_mask();
        for (i, p) in params.iter_mut().enumerate().take(count) {
            let off = self.gpr[gpr::RSP].wrapping_add((i * width) as u64) & mask;
            *p = if width == 4 {
                self.read_mem::<u32>(bus, sreg::SS, off)? as u64
            } else {
                self.read_mem::<u16>(bus, sreg::SS, off)? as u64
            };
        }
        self.far_transaction(|c| {
            let (ss, sp) = c.inner_stack(bus, new_cpl)?;
            c.switch_stack(ss, sp, ((4 + count) * width) as u64)?;
            c.set_cs(cs, new_cpl);
            c.push_width(bus, width, old[0])?;
            c.push_width(bus, width, old[1])?;
            params[..count]
                .iter()
                .rev()
                .try_for_each(|&p| c.push_width(bus, width, p))?;
            c.push_width(bus, width, old[2])?;
            c.push_width(bus, width, ret)
        })
    }

    /// Far RET (SDM Vol.2 RET): pops IP and CS at the operand size and releases
    /// `release` more bytes; to an outer ring it also pops SS:SP from above the
    /// released parameters, releases them again on the outer stack, and nulls the
    /// data segment registers the outer ring may not use.
    fn far_return<T: Word>(&mut self, bus: &mut dyn Bus, release: u64) -> Result<(), Fault> {
        let ip = self.stack_slot::<T>(bus, 0)?;
        let sel = self.stack_slot::<T>(bus, 1)? as u16;
        let mask = self.stack_mask();
        let above = self.gpr[gpr::RSP].wrapping_add(2 * T::BYTES as u64 + release) & mask;
        if !self.protected() || self.v86() {
            self.real_far_jump(sel, ip)?;
            self.set_sp(above);
            return Ok(());
        }
        if selector::is_null(sel) {
            return Err(Fault::gp(0));
        }
        let (cpl, rpl) = (self.cpl(), (sel & selector::RPL) as u8);
        let cs = self.checked_segment(bus, sel, Load::Return, cpl, vector::GP)?;
        if rpl == cpl {
            self.check_entry(&cs, ip)?;
            self.set_sp(above);
            return self.enter_code(cs, cpl, ip);
        }
        let sp = self.read_mem::<T>(bus, sreg::SS, above)?.to_u64();
        let ss_sel = self
            .read_mem::<T>(bus, sreg::SS, above.wrapping_add(T::BYTES as u64) & mask)?
            .to_u64() as u16;
        let ss = self.outer_stack(bus, ss_sel, &cs, rpl)?;
        self.check_entry(&cs, ip)?;
        self.set_cs(cs, rpl);
        self.seg[sreg::SS] = ss;
        self.load_sp(sp.wrapping_add(release), T::BYTES);
        self.null_inaccessible_segments();
        self.next_ip = ip;
        Ok(())
    }

    /// The SS of a return to ring `rpl` (RET, IRET): #GP(0) if null — except for a
    /// return to 64-bit code below ring 3 (SDM Vol.2 IRET, RET) — else `Load::Stack`.
    fn outer_stack(
        &mut self,
        bus: &mut dyn Bus,
        ss_sel: u16,
        cs: &Segment,
        rpl: u8,
    ) -> Result<Segment, Fault> {
        if selector::is_null(ss_sel) {
            if self.ia32e() && cs.attr & crate::state::attr::L != 0 && rpl != 3 {
                return Ok(null_segment(ss_sel));
            }
            return Err(Fault::gp(0));
        }
        self.checked_segment(bus, ss_sel, Load::Stack, rpl, vector::GP)
    }

    /// Load the stack pointer popped with a `bytes`-byte operand for a newly installed
    /// SS and CS: all of RSP for a 64-bit operand or in 64-bit mode, else at the new
    /// stack width.
    fn load_sp(&mut self, sp: u64, bytes: usize) {
        if self.long64() || bytes == 8 {
            self.gpr[gpr::RSP] = sp;
        } else {
            self.set_sp(sp);
        }
    }
}

/// Where a protected-mode far JMP or CALL goes.
enum FarTarget {
    Code(Segment),
    Gate {
        gate: Descriptor,
        cs: Segment,
        target: Descriptor,
    },
    /// The TSS selector (from the operand or a task gate).
    Task(u16),
}

fn jmp_rel(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.jump_near(e.insn.near_branch_target())
}

fn jmp_indirect<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let t = cpu.read_op::<T>(bus, e, 0)?;
    cpu.jump_near(t.to_u64())
}

fn jcc<const CC: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    if cpu.cond(CC) {
        cpu.jump_near(e.insn.near_branch_target())?;
    }
    Ok(())
}

/// Push the return address, then jump; the push happens only if the target is valid.
fn call_to<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, target: u64) -> Result<(), Fault> {
    let ret = cpu.next_ip;
    cpu.jump_near(target)?;
    if let Err(f) = cpu.push::<T>(bus, T::from_u64(ret)) {
        cpu.next_ip = ret;
        return Err(f);
    }
    Ok(())
}

fn call_rel<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    call_to::<T>(cpu, bus, e.insn.near_branch_target())
}

fn call_indirect<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let t = cpu.read_op::<T>(bus, e, 0)?;
    call_to::<T>(cpu, bus, t.to_u64())
}

/// RET / RET imm16: pop the IP, then release imm16 more bytes of stack.
fn ret_near<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let rsp = cpu.gpr[gpr::RSP];
    let ip = cpu.pop::<T>(bus)?;
    if let Err(f) = cpu.jump_near(ip.to_u64()) {
        cpu.gpr[gpr::RSP] = rsp;
        return Err(f);
    }
    release_stack(cpu, e);
    Ok(())
}

fn release_stack(cpu: &mut Cpu, e: &Entry) {
    if e.insn.op_count() > 0 {
        let sp = cpu.gpr[gpr::RSP].wrapping_add(e.insn.immediate16() as u64);
        cpu.set_sp(sp);
    }
}

/// The far pointer of a far JMP/CALL: (selector, offset).
fn far_target<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(u16, u64), Fault> {
    if e.insn.op0_kind() == OpKind::Memory {
        let off = cpu.ea(&e.mem);
        let seg = e.mem.seg as usize;
        let ip = cpu.read_mem::<T>(bus, seg, off)?.to_u64();
        let sel = cpu.read_mem::<u16>(
            bus,
            seg,
            off.wrapping_add(T::BYTES as u64) & e.mem.addr_mask,
        )?;
        Ok((sel, ip))
    } else {
        Ok((e.insn.far_branch_selector(), e.insn.far_branch32() as u64))
    }
}

fn jmp_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (sel, ip) = far_target::<T>(cpu, bus, e)?;
    cpu.far_jump(bus, sel, ip)
}

fn call_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (sel, ip) = far_target::<T>(cpu, bus, e)?;
    cpu.far_call::<T>(bus, sel, ip)
}

fn ret_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let release = if e.insn.op_count() > 0 {
        e.insn.immediate16() as u64
    } else {
        0
    };
    cpu.far_return::<T>(bus, release)
}

/// LOOP/LOOPE/LOOPNE decrement the count register (CX, ECX or RCX by address size,
/// without touching flags); JCXZ/JECXZ/JRCXZ only test it.
fn select_loop(i: &Instruction) -> Option<Handler> {
    // The count register is named by the code (e.g. Loop_rel8_16_ECX): decode time only.
    let name = format!("{:?}", i.code());
    let width = if name.ends_with("_RCX") || i.mnemonic() == Mnemonic::Jrcxz {
        8
    } else if name.ends_with("_ECX") || i.mnemonic() == Mnemonic::Jecxz {
        4
    } else {
        2
    };
    let kind = match i.mnemonic() {
        Mnemonic::Loop => LOOP,
        Mnemonic::Loope => LOOPE,
        Mnemonic::Loopne => LOOPNE,
        _ => JCXZ,
    };
    macro_rules! h {
        ($k:expr) => {
            by_width(
                width,
                [loop_cc::<u16, $k>, loop_cc::<u32, $k>, loop_cc::<u64, $k>],
            )
        };
    }
    Some(match kind {
        LOOP => h!(LOOP),
        LOOPE => h!(LOOPE),
        LOOPNE => h!(LOOPNE),
        _ => h!(JCXZ),
    })
}

const LOOP: u8 = 0;
const LOOPE: u8 = 1;
const LOOPNE: u8 = 2;
const JCXZ: u8 = 3;

fn loop_cc<C: Word, const KIND: u8>(
    cpu: &mut Cpu,
    _: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    let count = C::from_u64(cpu.gpr[gpr::RCX]).to_u64();
    let take = if KIND == JCXZ {
        count == 0
    } else {
        let left = count.wrapping_sub(1) & C::MASK;
        // The decrement commits only if the branch target is valid; a #GP leaves
        // RCX as it was.
        let take = left != 0
            && match KIND {
                LOOPE => cpu.zf(),
                LOOPNE => !cpu.zf(),
                _ => true,
            };
        if take {
            cpu.jump_near(e.insn.near_branch_target())?;
        }
        cpu.set_gpr::<C>(gpr::RCX, C::from_u64(left));
        return Ok(());
    };
    if take {
        cpu.jump_near(e.insn.near_branch_target())?;
    }
    Ok(())
}

fn int_n(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.software_interrupt(bus, e.insn.immediate8(), Source::IntN)
}

fn int3(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.software_interrupt(bus, vector::BP, Source::Int3)
}

fn into(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.of() {
        cpu.software_interrupt(bus, vector::OF, Source::Int3)?;
    }
    Ok(())
}

/// INT1 (ICEBP, F1): a #DB trap that returns after the instruction, delivered like a
/// hardware exception (no gate-DPL check; SDM Vol.3 6.3.3 "privileged software
/// exception").
fn int1(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.software_interrupt(bus, vector::DB, Source::Exception)
}

/// BOUND r, m: #BR unless lower <= r <= upper, all signed (SDM Vol.2A BOUND).
fn bound<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let idx = cpu.reg::<T>(e.insn.op0_register()).sext() as i64;
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    let lower = cpu.read_mem::<T>(bus, seg, off)?.sext() as i64;
    let upper = cpu
        .read_mem::<T>(
            bus,
            seg,
            off.wrapping_add(T::BYTES as u64) & e.mem.addr_mask,
        )?
        .sext() as i64;
    if idx < lower || idx > upper {
        return Err(Fault::new(vector::BR));
    }
    Ok(())
}

/// IRET/IRETD/IRETQ (SDM Vol.2 IRET): real mode; virtual-8086 mode (IOPL 3 only, else
/// #GP(0) for the monitor); a nested-task return (NT set); or a protected-mode return
/// to the same ring, an outer ring, or virtual-8086 mode. IRET ends NMI blocking.
fn iret<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.interrupt_return::<T>(bus)
}

impl Cpu {
    /// IRET with a `T`-sized operand (see `iret`).
    pub(crate) fn interrupt_return<T: Word>(&mut self, bus: &mut dyn Bus) -> Result<(), Fault> {
        self.nmi_blocked = false;
        if !self.protected() || self.v86() {
            if self.v86() && self.rflags & rf::IOPL != rf::IOPL {
                return Err(Fault::gp(0));
            }
            let (ip, sel, flags) = self.iret_frame::<T>(bus)?;
            self.real_far_jump(sel, ip)?;
            self.set_sp(self.gpr[gpr::RSP].wrapping_add(3 * T::BYTES as u64));
            self.iret_flags(flags, T::BYTES);
            return Ok(());
        }
        if self.rflags & rf::NT != 0 {
            // SDM Vol.3 7.4: back to the task whose TSS the current one links to; IA-32e
            // mode has no task switching.
            if self.ia32e() {
                return Err(Fault::gp(0));
            }
            let tr = self.tr.base;
            let link =
                self.sys_read::<u16>(bus, tr.wrapping_add(crate::task::tss32::PREV_TASK_LINK))?;
            let ret = self.next_ip;
            return self.task_switch(bus, link, Switch::Iret, ret);
        }
        let (ip, sel, flags) = self.iret_frame::<T>(bus)?;
        let cpl = self.cpl();
        if T::BYTES == 4 && flags & rf::VM != 0 && cpl == 0 && !self.ia32e() {
            return self.iret_to_v86(bus, ip, sel, flags);
        }
        if selector::is_null(sel) {
            return Err(Fault::gp(0));
        }
        let rpl = (sel & selector::RPL) as u8;
        let cs = self.checked_segment(bus, sel, Load::Return, cpl, vector::GP)?;
        // 64-bit mode always pops SS:RSP; elsewhere only a return to an outer ring does.
        if rpl > cpl || self.long64() {
            let sp = self.stack_slot::<T>(bus, 3)?;
            let ss_sel = self.stack_slot::<T>(bus, 4)? as u16;
            let ss = self.outer_stack(bus, ss_sel, &cs, rpl)?;
            self.check_entry(&cs, ip)?;
            self.iret_flags(flags, T::BYTES);
            self.set_cs(cs, rpl);
            self.seg[sreg::SS] = ss;
            self.load_sp(sp, T::BYTES);
            if rpl > cpl {
                self.null_inaccessible_segments();
            }
        } else {
            self.check_entry(&cs, ip)?;
            self.set_sp(self.gpr[gpr::RSP].wrapping_add(3 * T::BYTES as u64));
            self.iret_flags(flags, T::BYTES);
            self.set_cs(cs, cpl);
        }
        self.next_ip = ip;
        Ok(())
    }
}

impl Cpu {
    /// IP, CS and FLAGS of an IRET frame, read without popping them.
    fn iret_frame<T: Word>(&mut self, bus: &mut dyn Bus) -> Result<(u64, u16, u64), Fault> {
        Ok((
            self.stack_slot::<T>(bus, 0)?,
            self.stack_slot::<T>(bus, 1)? as u16,
            self.stack_slot::<T>(bus, 2)?,
        ))
    }

    /// Load FLAGS popped by IRET with the privilege of the CPL it runs at (SDM Vol.2
    /// IRET): POPF's rules plus RF, and VIF VIP at CPL 0 in protected mode with a
    /// 32/64-bit operand. VM changes only by a return to virtual-8086 mode.
    fn iret_flags(&mut self, v: u64, bytes: usize) {
        let iopl = ((self.rflags & rf::IOPL) >> 12) as u8;
        let mut m = flags_mask(self.cpl(), iopl, bytes, true);
        if self.protected() && !self.v86() && self.cpl() == 0 && bytes > 2 {
            m |= rf::VIF | rf::VIP;
        }
        let cur = self.rflags();
        self.set_rflags((cur & !m) | (v & m));
    }

    /// IRETD at CPL 0 with VM set in the popped EFLAGS (SDM Vol.2 IRET,
    /// RETURN-TO-VIRTUAL-8086-MODE): ESP SS ES DS FS GS follow on the stack; every
    /// segment becomes a virtual-8086 segment and all of EFLAGS is loaded.
    fn iret_to_v86(
        &mut self,
        bus: &mut dyn Bus,
        ip: u64,
        cs: u16,
        flags: u64,
    ) -> Result<(), Fault> {
        let mut v = [0u64; 6];
        for (k, x) in v.iter_mut().enumerate() {
            *x = self.stack_slot::<u32>(bus, 3 + k as u64)?;
        }
        let [esp, ss, es, ds, fs, gs] = v;
        self.set_rflags(flags);
        for (s, sel) in [
            (sreg::CS, cs),
            (sreg::SS, ss as u16),
            (sreg::ES, es as u16),
            (sreg::DS, ds as u16),
            (sreg::FS, fs as u16),
            (sreg::GS, gs as u16),
        ] {
            self.seg[s] = Segment::real(sel);
        }
        self.seg[sreg::CS].attr |= crate::state::attr::CODE;
        self.gpr[gpr::RSP] = esp & 0xFFFF_FFFF;
        self.next_ip = ip & 0xFFFF;
        self.sync_privilege();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{desc, gate, pm, pm3, put, TSS};
    use crate::state::efer;
    use crate::testutil::{read16, read32, read64};
    use crate::NullBus;

    /// Descriptors the tests add to `pm`, from selector 30h on.
    fn extra() -> Vec<u64> {
        vec![
            desc(0, 0xFFF, 0x9A, 0x4),     // 30 ring-0 code, limit FFFh
            desc(0, 0xFFFF, 0x1A, 0x4),    // 38 ring-0 code, not present
            desc(0, 0xFFFFF, 0x9E, 0xC),   // 40 conforming ring-0 code
            gate(0x08, 0x5000, 0xEC, 2),   // 48 32-bit call gate, DPL 3, 2 parameters
            gate(0x08, 0x5000, 0x8C, 0),   // 50 call gate, DPL 0
            gate(0x08, 0x5000, 0x6C, 0),   // 58 call gate, not present
            gate(0x00, 0x5000, 0xEC, 0),   // 60 call gate to a null selector
            gate(0x10, 0x5000, 0xEC, 0),   // 68 call gate to data
            gate(0x18, 0x6000, 0xEC, 0),   // 70 call gate to ring-3 code
            desc(0x40000, 0xFF, 0x82, 0),  // 78 LDT
            gate(0x08, 0x1_5000, 0xE4, 1), // 80 16-bit call gate, DPL 3, 1 parameter
            gate(0x40, 0x7000, 0xEC, 0),   // 88 call gate to conforming code
            gate(0x38, 0x5000, 0xEC, 0),   // 90 call gate to a not-present segment
            desc(0, 0xFFFF, 0x72, 0x4),    // 98 ring-3 data, not present
        ]
    }

    fn jmp(cpu: &mut Cpu, sel: u16, ip: u64) -> Result<(), Fault> {
        cpu.far_jump(&mut NullBus, sel, ip)
    }

    fn call(cpu: &mut Cpu, sel: u16, ip: u64) -> Result<(), Fault> {
        cpu.far_call::<u32>(&mut NullBus, sel, ip)
    }

    /// The state a failed transfer must leave alone.
    fn regs(cpu: &Cpu) -> ([Segment; 6], u64, u64) {
        (cpu.seg, cpu.gpr[gpr::RSP], cpu.rflags())
    }

    #[test]
    fn far_jump_checks_on_code_segments_and_gates() {
        type Case = (&'static str, bool, u16, u64, Result<u16, Fault>);
        let cases: &[Case] = &[
            // (what, from ring 3, selector, offset, CS after or the fault)
            ("ring-0 code", false, 0x08, 0x2000, Ok(0x08)),
            ("null", false, 0x00, 0, Err(Fault::gp(0))),
            ("past the GDT", false, 0xA0, 0, Err(Fault::gp(0xA0))),
            ("data", false, 0x10, 0, Err(Fault::gp(0x10))),
            (
                "non-conforming DPL 3 from CPL 0",
                false,
                0x18,
                0,
                Err(Fault::gp(0x18)),
            ),
            ("RPL 3 > CPL 0", false, 0x0B, 0, Err(Fault::gp(0x08))),
            ("not present", false, 0x38, 0, Err(Fault::np(0x38))),
            (
                "offset past the limit",
                false,
                0x30,
                0x1000,
                Err(Fault::gp(0)),
            ),
            ("an LDT descriptor", false, 0x78, 0, Err(Fault::gp(0x78))),
            ("gate DPL 0 < RPL 3", false, 0x53, 0, Err(Fault::gp(0x50))),
            (
                "non-conforming DPL 0 from CPL 3",
                true,
                0x08,
                0,
                Err(Fault::gp(0x08)),
            ),
            (
                "conforming DPL 0 from CPL 3: RPL = CPL",
                true,
                0x40,
                0x2000,
                Ok(0x43),
            ),
            ("gate to ring 3 from ring 3", true, 0x73, 0, Ok(0x1B)),
            (
                "JMP through a gate never changes privilege",
                true,
                0x4B,
                0,
                Err(Fault::gp(0x08)),
            ),
            ("gate DPL 0 < CPL 3", true, 0x53, 0, Err(Fault::gp(0x50))),
            ("gate not present", true, 0x5B, 0, Err(Fault::np(0x58))),
            ("gate to null", true, 0x63, 0, Err(Fault::gp(0))),
            ("gate to data", true, 0x6B, 0, Err(Fault::gp(0x10))),
            (
                "gate to a not-present segment",
                true,
                0x93,
                0,
                Err(Fault::np(0x38)),
            ),
        ];
        for &(what, ring3, sel, ip, want) in cases {
            let mut cpu = if ring3 { pm3(&extra()) } else { pm(&extra()) };
            let before = regs(&cpu);
            let got = jmp(&mut cpu, sel, ip).map(|()| cpu.seg[sreg::CS].selector);
            assert_eq!(got, want, "{what}");
            if want.is_err() {
                assert_eq!(regs(&cpu), before, "{what}: state changed");
            }
        }
        let mut cpu = pm3(&extra());
        jmp(&mut cpu, 0x73, 0).unwrap();
        assert_eq!(cpu.next_ip, 0x6000, "the gate's offset, not the operand's");
        // The current, busy TSS: #GP(selector); a TSS or task gate above the CPL too.
        let mut cpu = pm(&extra());
        assert_eq!(jmp(&mut cpu, 0x28, 0), Err(Fault::gp(0x28)));
        let mut cpu = pm3(&extra());
        assert_eq!(jmp(&mut cpu, 0x2B, 0), Err(Fault::gp(0x28)));
    }

    #[test]
    fn call_gate_to_an_inner_ring_switches_stacks_and_copies_parameters() {
        let mut cpu = pm3(&extra());
        cpu.gpr[gpr::RSP] = 0x6FF8;
        put(&mut cpu, 0x6FF8, &0xAAAAu32.to_le_bytes());
        put(&mut cpu, 0x6FFC, &0xBBBBu32.to_le_bytes());
        cpu.next_ip = 0x1234;
        assert_eq!(call(&mut cpu, 0x4B, 0), Ok(()));
        assert_eq!(
            (
                cpu.cpl(),
                cpu.seg[sreg::SS].selector,
                cpu.gpr[gpr::RSP],
                cpu.next_ip
            ),
            (0, 0x10, 0x9000 - 24, 0x5000)
        );
        let frame: Vec<u32> = (0..6).map(|k| read32(&cpu, 0x9000 - 24 + 4 * k)).collect();
        assert_eq!(frame, [0x1234, 0x1B, 0xAAAA, 0xBBBB, 0x6FF8, 0x23]);

        // RET 8 to ring 3: both stacks released, ring-0 data segments nulled.
        cpu.load_segment(&mut NullBus, sreg::ES, 0x10).unwrap();
        assert_eq!(cpu.far_return::<u32>(&mut NullBus, 8), Ok(()));
        assert_eq!(
            (
                cpu.cpl(),
                cpu.seg[sreg::SS].selector,
                cpu.gpr[gpr::RSP],
                cpu.next_ip
            ),
            (3, 0x23, 0x7000, 0x1234)
        );
        assert_eq!(
            (cpu.seg[sreg::ES].selector, cpu.seg[sreg::DS].selector),
            (0, 0x23)
        );

        // A 16-bit gate pushes words: SS SP param CS IP.
        let mut cpu = pm3(&extra());
        put(&mut cpu, 0x7000, &0x5A5Au16.to_le_bytes());
        cpu.next_ip = 0x1234;
        assert_eq!(call(&mut cpu, 0x83, 0), Ok(()));
        assert_eq!((cpu.gpr[gpr::RSP], cpu.next_ip), (0x9000 - 10, 0x5000));
        let frame: Vec<u16> = (0..5).map(|k| read16(&cpu, 0x9000 - 10 + 2 * k)).collect();
        assert_eq!(frame, [0x1234, 0x1B, 0x5A5A, 0x7000, 0x23]);
    }

    #[test]
    fn call_gates_at_the_same_privilege_use_the_current_stack() {
        // Ring 3 to ring-3 code, and to conforming ring-0 code (CPL stays 3).
        for (sel, cs, ip) in [(0x73, 0x1B, 0x6000), (0x8B, 0x43, 0x7000)] {
            let mut cpu = pm3(&extra());
            cpu.next_ip = 0x1234;
            assert_eq!(call(&mut cpu, sel, 0), Ok(()));
            assert_eq!(
                (cpu.seg[sreg::CS].selector, cpu.cpl(), cpu.next_ip),
                (cs, 3, ip)
            );
            assert_eq!(
                (cpu.gpr[gpr::RSP], read64(&cpu, 0x6FF8)),
                (0x6FF8, 0x1B << 32 | 0x1234)
            );
        }
        // Straight to a code segment, with the operand size.
        let mut cpu = pm(&extra());
        cpu.next_ip = 0x1234;
        assert_eq!(cpu.far_call::<u16>(&mut NullBus, 0x08, 0x2000), Ok(()));
        assert_eq!(
            (cpu.gpr[gpr::RSP], read32(&cpu, 0x7FFC)),
            (0x7FFC, 0x0008_1234)
        );
    }

    #[test]
    fn call_gate_stack_faults_leave_no_trace() {
        // The TSS too small to hold SS0:ESP0.
        let mut cpu = pm3(&extra());
        cpu.tr.limit = 4;
        let before = regs(&cpu);
        assert_eq!(call(&mut cpu, 0x4B, 0), Err(Fault::ts(0x28)));
        assert_eq!(regs(&cpu), before);
        // No room for 2 parameters + 4 slots on an expand-down SS0 (lowest 8FF0h).
        let mut more = extra();
        more.push(desc(0, 0x8FEF, 0x96, 0x4)); // A0
        let mut cpu = pm3(&more);
        put(&mut cpu, TSS + 8, &0xA0u32.to_le_bytes());
        let before = regs(&cpu);
        assert_eq!(call(&mut cpu, 0x4B, 0), Err(Fault::ss(0xA0)));
        assert_eq!(regs(&cpu), before);
    }

    #[test]
    fn far_return_checks() {
        // Frames: [EIP, CS] at ESP, then [ESP, SS] for an outer ring.
        let frame = |cpu: &mut Cpu, v: [u32; 4]| {
            for (k, x) in v.iter().enumerate() {
                put(cpu, 0x8000 + 4 * k as u64, &x.to_le_bytes());
            }
        };
        type Case = (&'static str, bool, [u32; 4], Result<(u16, u16), Fault>);
        let cases: &[Case] = &[
            ("same ring", false, [0x2000, 0x08, 0, 0], Ok((0x08, 0x10))),
            ("null CS", false, [0x2000, 0x00, 0, 0], Err(Fault::gp(0))),
            (
                "RPL 0 < CPL 3",
                true,
                [0x2000, 0x08, 0, 0],
                Err(Fault::gp(0x08)),
            ),
            (
                "non-conforming DPL 0 != RPL 3",
                false,
                [0x2000, 0x0B, 0, 0],
                Err(Fault::gp(0x08)),
            ),
            (
                "CS not present",
                false,
                [0x2000, 0x38, 0, 0],
                Err(Fault::np(0x38)),
            ),
            (
                "EIP past the limit",
                false,
                [0x1000, 0x30, 0, 0],
                Err(Fault::gp(0)),
            ),
            (
                "to ring 3",
                false,
                [0x2000, 0x1B, 0x6000, 0x23],
                Ok((0x1B, 0x23)),
            ),
            (
                "outer, null SS",
                false,
                [0x2000, 0x1B, 0x6000, 0x03],
                Err(Fault::gp(0)),
            ),
            (
                "outer, SS RPL 0",
                false,
                [0x2000, 0x1B, 0x6000, 0x20],
                Err(Fault::gp(0x20)),
            ),
            (
                "outer, SS DPL 0",
                false,
                [0x2000, 0x1B, 0x6000, 0x13],
                Err(Fault::gp(0x10)),
            ),
            (
                "outer, SS is code",
                false,
                [0x2000, 0x1B, 0x6000, 0x1B],
                Err(Fault::gp(0x18)),
            ),
            (
                "outer, SS not present",
                false,
                [0x2000, 0x1B, 0x6000, 0x9B],
                Err(Fault::ss(0x98)),
            ),
        ];
        for &(what, ring3, v, want) in cases {
            let mut cpu = if ring3 { pm3(&extra()) } else { pm(&extra()) };
            cpu.gpr[gpr::RSP] = 0x8000;
            frame(&mut cpu, v);
            let before = regs(&cpu);
            let got = cpu
                .far_return::<u32>(&mut NullBus, 0)
                .map(|()| (cpu.seg[sreg::CS].selector, cpu.seg[sreg::SS].selector));
            assert_eq!(got, want, "{what}");
            if want.is_err() {
                assert_eq!(regs(&cpu), before, "{what}: state changed");
            }
        }
    }

    #[test]
    fn iret_within_a_ring_to_an_outer_ring_and_to_v86() {
        let put_frame = |cpu: &mut Cpu, v: &[u32]| {
            for (k, x) in v.iter().enumerate() {
                put(cpu, 0x8000 + 4 * k as u64, &x.to_le_bytes());
            }
            cpu.gpr[gpr::RSP] = 0x8000;
        };
        // Same ring: all of EFLAGS at CPL 0 (IOPL, IF, VIF, VIP; not VM).
        let mut cpu = pm(&extra());
        put_frame(
            &mut cpu,
            &[
                0x2000,
                0x08,
                (rf::IOPL | rf::IF | rf::VIF | rf::VIP | rf::NT | rf::CF) as u32,
            ],
        );
        cpu.set_rflags(rf::NT);
        cpu.set_rflags(0);
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Ok(()));
        assert_eq!((cpu.next_ip, cpu.gpr[gpr::RSP]), (0x2000, 0x800C));
        assert_eq!(
            cpu.rflags(),
            rf::FIXED1 | rf::IOPL | rf::IF | rf::VIF | rf::VIP | rf::NT | rf::CF
        );

        // To ring 3: SS:ESP popped, ring-0 data segments nulled.
        let mut cpu = pm(&extra());
        put_frame(&mut cpu, &[0x2000, 0x1B, 0x202, 0x6000, 0x23]);
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Ok(()));
        assert_eq!(
            (cpu.cpl(), cpu.seg[sreg::SS].selector, cpu.gpr[gpr::RSP]),
            (3, 0x23, 0x6000)
        );
        assert_eq!(cpu.seg[sreg::DS].selector, 0);

        // At CPL 3 with IOPL 0, neither IF nor IOPL change.
        let mut cpu = pm3(&extra());
        put(&mut cpu, 0x7000, &0x2000u32.to_le_bytes());
        put(&mut cpu, 0x7004, &0x1Bu32.to_le_bytes());
        put(
            &mut cpu,
            0x7008,
            &((rf::IOPL | rf::IF | rf::CF) as u32).to_le_bytes(),
        );
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Ok(()));
        assert_eq!(cpu.rflags(), rf::FIXED1 | rf::CF);

        // To virtual-8086 mode: EFLAGS.VM in the image at CPL 0.
        let mut cpu = pm(&extra());
        put_frame(
            &mut cpu,
            &[
                0x1_0100,
                0x1000,
                (rf::VM | rf::IF) as u32 | 2,
                0xFFFE,
                0x2000,
                0x3000,
                0x4000,
                0x5000,
                0x6000,
            ],
        );
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Ok(()));
        assert!(cpu.v86());
        assert_eq!(
            (cpu.cpl(), cpu.next_ip, cpu.gpr[gpr::RSP]),
            (3, 0x0100, 0xFFFE)
        );
        let sels: Vec<u16> = cpu.seg.iter().map(|s| s.selector).collect();
        assert_eq!(sels, [0x3000, 0x1000, 0x2000, 0x4000, 0x5000, 0x6000]);
        assert_eq!(cpu.seg[sreg::CS].base, 0x10000);

        // In virtual-8086 mode with IOPL < 3: #GP(0).
        assert_eq!(cpu.interrupt_return::<u16>(&mut NullBus), Err(Fault::gp(0)));
        // IOPL 3: a real-mode style return that keeps VM and IOPL.
        cpu.set_rflags(rf::VM | rf::IOPL);
        cpu.gpr[gpr::RSP] = 0xFFF0;
        put(&mut cpu, 0x2FFF0, &[0x34, 0x12, 0x00, 0x20, 0x00, 0x00]);
        assert_eq!(cpu.interrupt_return::<u16>(&mut NullBus), Ok(()));
        assert_eq!(
            (cpu.next_ip, cpu.seg[sreg::CS].selector, cpu.rflags()),
            (0x1234, 0x2000, rf::FIXED1 | rf::VM | rf::IOPL)
        );
    }

    #[test]
    fn iret_faults() {
        let mut cpu = pm(&extra());
        for (v, want) in [
            ([0x2000u32, 0x00, 2], Fault::gp(0)),
            ([0x2000, 0x38, 2], Fault::np(0x38)),
            ([0x2000, 0x10, 2], Fault::gp(0x10)),
        ] {
            for (k, x) in v.iter().enumerate() {
                put(&mut cpu, 0x8000 + 4 * k as u64, &x.to_le_bytes());
            }
            let before = regs(&cpu);
            assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Err(want));
            assert_eq!(regs(&cpu), before);
        }
        // NT set in IA-32e mode: #GP(0).
        cpu.efer |= efer::LMA;
        cpu.set_rflags(rf::NT);
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Err(Fault::gp(0)));
    }

    #[test]
    fn iretq_pops_ss_rsp_and_allows_a_null_ss_below_ring_3() {
        let code64 = |dpl: u8| desc(0, 0, 0x9A | dpl << 5, 0x2);
        let mut cpu = pm(&[code64(0), code64(3)]); // 30, 38
        cpu.efer = efer::LME | efer::LMA;
        cpu.seg[sreg::CS] = crate::segment::Descriptor {
            lo: code64(0),
            hi: 0,
        }
        .segment(0x30);
        let put_frame = |cpu: &mut Cpu, v: [u64; 5]| {
            for (k, x) in v.iter().enumerate() {
                put(cpu, 0x8000 + 8 * k as u64, &x.to_le_bytes());
            }
            cpu.gpr[gpr::RSP] = 0x8000;
        };
        // Same ring, null SS: fine at CPL 0.
        put_frame(&mut cpu, [0xFFFF_8000_0000_1000, 0x30, 2, 0x1_2345_6788, 0]);
        assert_eq!(cpu.interrupt_return::<u64>(&mut NullBus), Ok(()));
        assert_eq!(
            (cpu.next_ip, cpu.gpr[gpr::RSP], cpu.seg[sreg::SS].selector),
            (0xFFFF_8000_0000_1000, 0x1_2345_6788, 0)
        );
        // To ring 3 a null SS is #GP(0); a ring-3 SS is fine.
        put_frame(&mut cpu, [0x1000, 0x3B, 2, 0x6000, 0]);
        assert_eq!(cpu.interrupt_return::<u64>(&mut NullBus), Err(Fault::gp(0)));
        put_frame(&mut cpu, [0x0000_8000_0000_0000, 0x3B, 2, 0x6000, 0x23]);
        assert_eq!(
            cpu.interrupt_return::<u64>(&mut NullBus),
            Err(Fault::gp(0)),
            "non-canonical RIP"
        );
        put_frame(&mut cpu, [0x1000, 0x3B, 2, 0x6000, 0x23]);
        assert_eq!(cpu.interrupt_return::<u64>(&mut NullBus), Ok(()));
        assert_eq!((cpu.cpl(), cpu.gpr[gpr::RSP]), (3, 0x6000));
    }

    #[test]
    fn a_64_bit_call_gate_to_ring_0_loads_rsp0_and_a_null_ss() {
        let code64 = |dpl: u8| desc(0, 0, 0x9A | dpl << 5, 0x2);
        let g = gate(0x08, 0x5000, 0xEC, 0);
        let entries = [
            code64(0),
            crate::segment::tests::data(0),
            code64(3),
            crate::segment::tests::data(3),
            desc(TSS as u32, 0x67, 0x89, 0),
            0,
            g,
            0xFFFF_8000,
        ];
        let mut cpu = pm(&[]);
        crate::segment::tests::put_gdt(&mut cpu, &entries);
        cpu.efer = efer::LME | efer::LMA;
        put(&mut cpu, TSS + 4, &0x9000u64.to_le_bytes());
        for (s, sel) in [(sreg::CS, 0x1B), (sreg::SS, 0x23)] {
            cpu.seg[s] = cpu
                .descriptor(&mut NullBus, sel)
                .unwrap()
                .unwrap()
                .segment(sel);
        }
        cpu.gpr[gpr::RSP] = 0x7000;
        cpu.next_ip = 0x1234;
        assert_eq!(cpu.far_call::<u64>(&mut NullBus, 0x3B, 0), Ok(()));
        assert_eq!(
            (cpu.cpl(), cpu.seg[sreg::SS].selector, cpu.next_ip),
            (0, 0, 0xFFFF_8000_0000_5000)
        );
        assert_eq!(cpu.gpr[gpr::RSP], 0x9000 - 32);
        let frame: Vec<u64> = (0..4).map(|k| read64(&cpu, 0x9000 - 32 + 8 * k)).collect();
        assert_eq!(frame, [0x1234, 0x1B, 0x7000, 0x23]);
        // RETF (REX.W) back to ring 3 pops SS:RSP.
        assert_eq!(cpu.far_return::<u64>(&mut NullBus, 0), Ok(()));
        assert_eq!(
            (
                cpu.cpl(),
                cpu.seg[sreg::SS].selector,
                cpu.gpr[gpr::RSP],
                cpu.next_ip
            ),
            (3, 0x23, 0x7000, 0x1234)
        );
        // A 32-bit code segment behind a 64-bit gate: #GP(selector).
        let mut cpu2 = pm(&[]);
        let entries = [
            code64(0),
            crate::segment::tests::data(0),
            code64(3),
            crate::segment::tests::data(3),
            desc(TSS as u32, 0x67, 0x89, 0),
            0,
            gate(0x48, 0, 0xEC, 0),
            0,
            crate::segment::tests::code(0),
        ];
        crate::segment::tests::put_gdt(&mut cpu2, &entries);
        cpu2.efer = efer::LME | efer::LMA;
        assert_eq!(
            cpu2.far_call::<u64>(&mut NullBus, 0x38, 0),
            Err(Fault::gp(0x48))
        );
    }
}
