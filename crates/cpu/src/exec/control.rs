//! Control transfer: JMP CALL RET (near and far), Jcc, LOOP/LOOPE/LOOPNE, JCXZ family,
//! INT n, INT3, INTO, INT1, IRET (SDM Vol.2; Vol.3 6.12 for the interrupt paths).
//! Far transfers through gates, privilege changes, task switches and IRETQ are the
//! protected-mode work (issue 3).

use iced_x86::{Code, Instruction, Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::{Handler, Table};
use crate::fault::{vector, Fault};
use crate::flags::rf;
use crate::per_cc;
use crate::state::{gpr, sreg, Word};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Jmp, select_jmp);
    t.on(Mnemonic::Call, select_call);
    t.on(Mnemonic::Ret, |i| Some(by_width(ret_width(i.code()), [ret_near::<u16>, ret_near::<u32>, ret_near::<u64>])));
    t.on(Mnemonic::Retf, |i| Some(by_width(ret_width(i.code()), [ret_far::<u16>, ret_far::<u32>, ret_far::<u64>])));
    t.on_all(JCC, |i| Some(JCC_HANDLERS[crate::exec::data::cc(i)]));
    t.on_all(&[Mnemonic::Loop, Mnemonic::Loope, Mnemonic::Loopne, Mnemonic::Jcxz, Mnemonic::Jecxz, Mnemonic::Jrcxz], select_loop);
    t.on(Mnemonic::Int, |_| Some(int_n));
    t.on(Mnemonic::Int3, |_| Some(int3));
    t.on(Mnemonic::Into, |_| Some(into));
    t.on(Mnemonic::Int1, |_| Some(int1));
    t.on(Mnemonic::Bound, |i| Some(if crate::exec::op_size(i, 0) == 2 { bound::<u16> } else { bound::<u32> }));
    t.on_all(&[Mnemonic::Iret, Mnemonic::Iretd], |i| {
        Some(if i.mnemonic() == Mnemonic::Iret { iret::<u16> } else { iret::<u32> })
    });
}

const JCC: &[Mnemonic] = &[
    Mnemonic::Jo, Mnemonic::Jno, Mnemonic::Jb, Mnemonic::Jae, Mnemonic::Je, Mnemonic::Jne,
    Mnemonic::Jbe, Mnemonic::Ja, Mnemonic::Js, Mnemonic::Jns, Mnemonic::Jp, Mnemonic::Jnp,
    Mnemonic::Jl, Mnemonic::Jge, Mnemonic::Jle, Mnemonic::Jg,
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
        || (i.op0_kind() == OpKind::Memory && matches!(i.memory_size(), iced_x86::MemorySize::SegPtr16 | iced_x86::MemorySize::SegPtr32 | iced_x86::MemorySize::SegPtr64))
}

fn select_jmp(i: &Instruction) -> Option<Handler> {
    if is_far(i) {
        return Some(by_width(far_width(i), [jmp_far::<u16>, jmp_far::<u32>, jmp_far::<u64>]));
    }
    Some(match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => jmp_rel,
        _ => by_width(branch_width(i), [jmp_indirect::<u16>, jmp_indirect::<u32>, jmp_indirect::<u64>]),
    })
}

fn select_call(i: &Instruction) -> Option<Handler> {
    if is_far(i) {
        return Some(by_width(far_width(i), [call_far::<u16>, call_far::<u32>, call_far::<u64>]));
    }
    Some(match i.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
            by_width(branch_width(i), [call_rel::<u16>, call_rel::<u32>, call_rel::<u64>])
        }
        _ => by_width(branch_width(i), [call_indirect::<u16>, call_indirect::<u32>, call_indirect::<u64>]),
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
            if (((target << 16) as i64) >> 16) as u64 != target {
                return Err(Fault::gp(0));
            }
        } else if target > self.seg[sreg::CS].limit as u64 {
            return Err(Fault::gp(0));
        }
        self.next_ip = target;
        Ok(())
    }

    /// Load CS:IP for a far JMP/CALL/RET (same privilege; gates are issue 3).
    fn jump_far(&mut self, bus: &mut dyn Bus, sel: u16, off: u64) -> Result<(), Fault> {
        let saved = self.seg[sreg::CS];
        self.load_code_segment(bus, sel)?;
        if let Err(f) = self.jump_near(off) {
            self.seg[sreg::CS] = saved;
            return Err(f);
        }
        Ok(())
    }
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
        let sel = cpu.read_mem::<u16>(bus, seg, off.wrapping_add(T::BYTES as u64) & e.mem.addr_mask)?;
        Ok((sel, ip))
    } else {
        Ok((e.insn.far_branch_selector(), e.insn.far_branch32() as u64))
    }
}

fn jmp_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (sel, ip) = far_target::<T>(cpu, bus, e)?;
    cpu.jump_far(bus, sel, ip)
}

fn call_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (sel, ip) = far_target::<T>(cpu, bus, e)?;
    let (old_cs, ret) = (cpu.seg[sreg::CS].selector, cpu.next_ip);
    cpu.stack_transaction(|c| {
        c.push::<T>(bus, T::from_u64(old_cs as u64))?;
        c.push::<T>(bus, T::from_u64(ret))?;
        c.jump_far(bus, sel, ip)
    })
}

fn ret_far<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.stack_transaction(|c| {
        let ip = c.pop::<T>(bus)?.to_u64();
        let sel = c.pop::<T>(bus)?.to_u64() as u16;
        if c.protected() && !c.v86() && (sel & 3) as u8 != c.cpl() {
            // Return to another privilege level: issue 3.
            return Err(Fault::gp(sel as u32 & !3));
        }
        c.jump_far(bus, sel, ip)
    })?;
    release_stack(cpu, e);
    Ok(())
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
            by_width(width, [loop_cc::<u16, $k>, loop_cc::<u32, $k>, loop_cc::<u64, $k>])
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

fn loop_cc<C: Word, const KIND: u8>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
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
    cpu.software_interrupt(bus, e.insn.immediate8())
}

fn int3(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.software_interrupt(bus, vector::BP)
}

fn into(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.of() {
        cpu.software_interrupt(bus, vector::OF)?;
    }
    Ok(())
}

/// INT1 (ICEBP, F1): a #DB trap that returns after the instruction.
fn int1(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.software_interrupt(bus, vector::DB)
}

/// BOUND r, m: #BR unless lower <= r <= upper, all signed (SDM Vol.2A BOUND).
fn bound<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let idx = cpu.reg::<T>(e.insn.op0_register()).sext() as i64;
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    let lower = cpu.read_mem::<T>(bus, seg, off)?.sext() as i64;
    let upper = cpu.read_mem::<T>(bus, seg, off.wrapping_add(T::BYTES as u64) & e.mem.addr_mask)?.sext() as i64;
    if idx < lower || idx > upper {
        return Err(Fault::new(vector::BR));
    }
    Ok(())
}

/// IRET/IRETD: pop IP, CS and FLAGS. Real mode and same-privilege protected mode;
/// nested-task returns, returns to V86 or to an outer ring are issue 3 (#GP for now).
fn iret<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.protected() && !cpu.v86() && cpu.rflags & rf::NT != 0 {
        return Err(Fault::gp(0));
    }
    cpu.stack_transaction(|c| {
        let ip = c.pop::<T>(bus)?.to_u64();
        let sel = c.pop::<T>(bus)?.to_u64() as u16;
        let flags = c.pop::<T>(bus)?.to_u64();
        if c.protected() && !c.v86() && ((sel & 3) as u8 != c.cpl() || flags & rf::VM != 0 && T::BYTES == 4) {
            return Err(Fault::gp(sel as u32 & !3));
        }
        c.jump_far(bus, sel, ip)?;
        c.load_flags(flags, T::BYTES);
        Ok(())
    })
}

impl Cpu {
    /// Load FLAGS from POPF or IRET: the flags the current privilege may change
    /// (SDM Vol.2B POPF, Table 4-16): IOPL only at CPL 0, IF only when CPL <= IOPL;
    /// VM, VIP and VIF never; a 16-bit operand changes only the low 16 bits.
    pub fn load_flags(&mut self, v: u64, bytes: usize) {
        let mut modifiable = rf::ARITH | rf::TF | rf::DF | rf::NT | rf::IF | rf::IOPL | rf::AC | rf::ID | rf::RF;
        if bytes == 2 {
            modifiable &= 0xFFFF;
        }
        let cpl = self.cpl() as u64;
        if cpl > 0 {
            modifiable &= !rf::IOPL;
        }
        if cpl > (self.rflags & rf::IOPL) >> 12 {
            modifiable &= !rf::IF;
        }
        let cur = self.rflags();
        self.set_rflags((cur & !modifiable) | (v & modifiable));
    }
}
