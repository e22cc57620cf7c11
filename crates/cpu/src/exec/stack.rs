//! Stack instructions: PUSH and POP (GPR, r/m, immediate, segment register), PUSHA(D)
//! POPA(D), ENTER LEAVE, PUSHF(D/Q) POPF(D/Q) (SDM Vol.2B). The stack-pointer width
//! (SP/ESP/RSP) is `stack_mask`; the operand size is the size of one stack slot,
//! which iced reports as the instruction's stack-pointer increment.
//!
//! Precision: every instruction here that can fault after moving the stack pointer
//! runs inside `stack_transaction`, so a fault leaves RSP as it was.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::{seg_index, Entry};
use crate::exec::{Handler, Table};
use crate::fault::Fault;
use crate::flags::rf;
use crate::state::{gpr, sreg, Word};

/// `slot_sized!(f, bytes)`: `Some(f::<u16|u32|u64>)` for a 2-, 4- or 8-byte stack slot.
macro_rules! slot_sized {
    ($f:ident, $bytes:expr) => {
        match $bytes {
            2 => Some($f::<u16> as Handler),
            4 => Some($f::<u32> as Handler),
            8 => Some($f::<u64> as Handler),
            _ => None,
        }
    };
}

pub(crate) fn register(t: &mut Table) {
    use Mnemonic::*;
    t.on(Push, |i| {
        if sreg_operand(i) {
            slot_sized!(push_sreg, slot(i))
        } else {
            slot_sized!(push, slot(i))
        }
    });
    t.on(Pop, |i| {
        if !sreg_operand(i) {
            slot_sized!(pop, slot(i))
        } else if i.op0_register() != Register::CS {
            slot_sized!(pop_sreg, slot(i))
        } else {
            None
        }
    });
    // PUSHA/POPA move eight slots.
    t.on_all(&[Pusha, Pushad], |i| slot_sized!(pusha, slot(i) / 8));
    t.on_all(&[Popa, Popad], |i| slot_sized!(popa, slot(i) / 8));
    t.on_all(&[Pushf, Pushfd, Pushfq], |i| slot_sized!(pushf, slot(i)));
    t.on_all(&[Popf, Popfd, Popfq], |i| slot_sized!(popf, slot(i)));
    // ENTER's stack-pointer increment depends on its immediates: size it by code.
    t.on(Enter, |i| match i.code() {
        Code::Enterw_imm16_imm8 => slot_sized!(enter, 2),
        Code::Enterd_imm16_imm8 => slot_sized!(enter, 4),
        Code::Enterq_imm16_imm8 => slot_sized!(enter, 8),
        _ => None,
    });
    t.on(Leave, |i| match i.code() {
        Code::Leavew => slot_sized!(leave, 2),
        Code::Leaved => slot_sized!(leave, 4),
        Code::Leaveq => slot_sized!(leave, 8),
        _ => None,
    });
}

/// Bytes the instruction pushes or pops.
fn slot(i: &Instruction) -> usize {
    i.stack_pointer_increment().unsigned_abs() as usize
}

fn sreg_operand(i: &Instruction) -> bool {
    i.op0_kind() == OpKind::Register && i.op0_register().is_segment_register()
}

/// PUSH r/m, reg, imm. The value is read before RSP moves, so PUSH SP pushes the old
/// SP and PUSH [SP-based memory] uses the old SP (SDM Vol.2B PUSH).
fn push<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.read_op::<T>(bus, e, 0)?;
    cpu.push::<T>(bus, v)
}

/// PUSH Sreg. A 64-bit push zero-extends the selector; a 32-bit push writes only its
/// 16 bits and leaves the upper half of the slot alone, as "all recent Core and Atom
/// processors" do (SDM Vol.2B PUSH) and as the Intel host does in 32-bit mode.
fn push_sreg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let sel = cpu.seg[seg_index(e.insn.op0_register()) as usize].selector;
    if T::BYTES != 4 {
        return cpu.push::<T>(bus, T::from_u64(sel as u64));
    }
    let sp = cpu.gpr[gpr::RSP].wrapping_sub(4) & cpu.stack_mask();
    let lin = cpu.linear(sreg::SS, sp, 4)?;
    cpu.mmu.write::<u16>(bus, lin, sel)?;
    cpu.set_sp(sp);
    Ok(())
}

/// POP r/m, reg. RSP moves before the destination's address is computed (SDM Vol.2B
/// POP: `pop [esp]` stores to the incremented ESP), and back if the store faults.
/// POP SP/ESP/RSP leaves the popped value in the stack pointer.
fn pop<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.stack_transaction(|c| {
        let v = c.pop::<T>(bus)?;
        c.write_op::<T>(bus, e, 0, v)
    })
}

/// POP Sreg: the selector is the low 16 bits of the slot. POP SS blocks interrupts
/// until the next instruction ends (SDM Vol.2B POP), like MOV SS.
fn pop_sreg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let s = seg_index(e.insn.op0_register()) as usize;
    cpu.stack_transaction(|c| {
        let v = c.pop::<T>(bus)?;
        c.load_segment(bus, s, v.to_u64() as u16)
    })?;
    if s == sreg::SS {
        cpu.shadow = true;
    }
    Ok(())
}

/// PUSHA/PUSHAD: AX CX DX BX, the SP from before the first push, BP SI DI — the GPR
/// encoding order.
fn pusha<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let sp = cpu.gpr[gpr::RSP];
    cpu.stack_transaction(|c| {
        for r in gpr::RAX..=gpr::RDI {
            let v = if r == gpr::RSP { sp } else { c.gpr[r] };
            c.push::<T>(bus, T::from_u64(v))?;
        }
        Ok(())
    })
}

/// POPA/POPAD: the reverse of PUSHA; the SP slot is skipped. All eight slots are read
/// before any register changes.
fn popa<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.stack_transaction(|c| {
        let mut v = [T::from_u64(0); 8];
        for r in (gpr::RAX..=gpr::RDI).rev() {
            v[r] = c.pop::<T>(bus)?;
        }
        for (r, &x) in v.iter().enumerate() {
            if r != gpr::RSP {
                c.set_gpr::<T>(r, x);
            }
        }
        Ok(())
    })
}

/// ENTER imm16, imm8 (SDM Vol.2A ENTER): push BP; for nesting level L > 0 copy L-1
/// frame pointers from the enclosing frame (read at BP - k*size, BP at the stack
/// width) and push the new frame pointer; then allocate imm16 bytes. FrameTemp is
/// RSP at the operand size. The final stack pointer must be writable (#SS/#PF).
fn enter<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let alloc = e.insn.immediate16() as u64;
    let level = e.insn.immediate8_2nd() % 32;
    let mask = cpu.stack_mask();
    cpu.stack_transaction(|c| {
        let bp = c.gpr[gpr::RBP];
        c.push::<T>(bus, T::from_u64(bp))?;
        let frame = T::from_u64(c.gpr[gpr::RSP]);
        if level > 0 {
            let mut p = bp;
            for _ in 1..level {
                p = p.wrapping_sub(T::BYTES as u64);
                let v = c.read_mem::<T>(bus, sreg::SS, p & mask)?;
                c.push::<T>(bus, v)?;
            }
            c.push::<T>(bus, frame)?;
        }
        let sp = c.gpr[gpr::RSP].wrapping_sub(alloc) & mask;
        let lin = c.linear(sreg::SS, sp, T::BYTES)?;
        c.mmu.probe_write(lin, T::BYTES)?;
        c.set_sp(sp);
        c.set_gpr::<T>(gpr::RBP, frame);
        Ok(())
    })
}

/// LEAVE: SP = BP at the stack width, then pop BP at the operand size.
fn leave<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.stack_transaction(|c| {
        c.set_sp(c.gpr[gpr::RBP]);
        let v = c.pop::<T>(bus)?;
        c.set_gpr::<T>(gpr::RBP, v);
        Ok(())
    })
}

/// Virtual-8086 mode with IOPL < 3 makes PUSHF/POPF #GP(0), for the monitor to
/// emulate (SDM Vol.2B PUSHF, POPF; CR4.VME is not implemented).
fn v86_iopl_check(cpu: &Cpu) -> Result<(), Fault> {
    if cpu.v86() && cpu.rflags & rf::IOPL != rf::IOPL {
        return Err(Fault::gp(0));
    }
    Ok(())
}

/// PUSHF/PUSHFD/PUSHFQ: RF and VM are stored as 0 (SDM Vol.2B PUSHF).
fn pushf<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    v86_iopl_check(cpu)?;
    let f = cpu.rflags() & !(rf::RF | rf::VM);
    cpu.push::<T>(bus, T::from_u64(f))
}

/// The RFLAGS bits a POPF (or, with `iret`, an IRET) of `bytes` bytes may change (SDM
/// Vol.2B POPF, its Table "Effect of POPF/POPFD on the EFLAGS Register"; IRET): the
/// status flags, TF DF NT, AC and ID; RF for IRET only; IOPL only at CPL 0; IF only
/// when CPL <= IOPL. VIP VIF VM are never changed here; a 16-bit operand reaches only
/// bits 0-15. Real mode counts as CPL 0, virtual-8086 mode as CPL 3.
pub(crate) fn flags_mask(cpl: u8, iopl: u8, bytes: usize, iret: bool) -> u64 {
    let mut m = rf::ARITH | rf::TF | rf::DF | rf::NT | rf::AC | rf::ID;
    if iret {
        m |= rf::RF;
    }
    if cpl == 0 {
        m |= rf::IOPL;
    }
    if cpl <= iopl {
        m |= rf::IF;
    }
    if bytes == 2 {
        m &= 0xFFFF;
    }
    m
}

/// POPF/POPFD/POPFQ. A 32- or 64-bit POPF clears RF.
fn popf<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    v86_iopl_check(cpu)?;
    let v = cpu.pop::<T>(bus)?.to_u64();
    let iopl = ((cpu.rflags & rf::IOPL) >> 12) as u8;
    let m = flags_mask(cpu.cpl(), iopl, T::BYTES, false);
    let mut f = (cpu.rflags() & !m) | (v & m);
    if T::BYTES > 2 {
        f &= !rf::RF;
    }
    cpu.set_rflags(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Segment;
    use crate::testutil::{long_mode, protected32, read, read16, read32, read64, real_mode};
    use crate::{Exit, NullBus};

    fn regs(cpu: &mut Cpu, v: &[(usize, u64)]) {
        for &(r, x) in v {
            cpu.gpr[r] = x;
        }
    }

    #[test]
    fn push_and_pop_registers_immediates_and_sp() {
        // push ax ; push -1 ; push sp ; pop bx ; pop cx ; hlt
        let mut cpu = real_mode(&[0x50, 0x6A, 0xFF, 0x54, 0x5B, 0x59, 0xF4]);
        regs(&mut cpu, &[(gpr::RAX, 0x1234), (gpr::RSP, 0x8000)]);
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        // PUSH SP stored SP as it was before its own decrement (0x7FFC).
        assert_eq!(
            [
                read16(&cpu, 0x7FFE),
                read16(&cpu, 0x7FFC),
                read16(&cpu, 0x7FFA)
            ],
            [0x1234, 0xFFFF, 0x7FFC]
        );
        assert_eq!(
            (cpu.gpr[gpr::RBX], cpu.gpr[gpr::RCX], cpu.gpr[gpr::RSP]),
            (0x7FFC, 0xFFFF, 0x7FFE)
        );
    }

    #[test]
    fn pop_sp_loads_the_popped_value() {
        let mut cpu = real_mode(&[0x5C, 0xF4]);
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x8000, &[0x34, 0x12]).unwrap();
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.gpr[gpr::RSP], 0x1234);
    }

    #[test]
    fn esp_based_memory_operands_use_esp_before_push_and_after_pop() {
        // pop word [esp] ; push word [esp] ; hlt (67h: 32-bit addressing in real mode)
        let mut cpu = real_mode(&[0x67, 0x8F, 0x04, 0x24, 0x67, 0xFF, 0x34, 0x24, 0xF4]);
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu
            .phys
            .write_bytes(0x8000, &[0xEF, 0xBE, 0xFE, 0xCA])
            .unwrap();
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        // POP read [0x8000], moved ESP to 0x8002, then stored at [ESP] = 0x8002.
        assert_eq!((cpu.gpr[gpr::RSP], read16(&cpu, 0x8002)), (0x8002, 0xBEEF));
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        // PUSH read [ESP] = [0x8002] first, then pushed it at 0x8000.
        assert_eq!((cpu.gpr[gpr::RSP], read16(&cpu, 0x8000)), (0x8000, 0xBEEF));
    }

    #[test]
    fn pusha_popa_round_trip_skips_the_sp_slot() {
        // pusha ; popa ; hlt
        let mut cpu = real_mode(&[0x60, 0x61, 0xF4]);
        let init = [1, 2, 3, 4, 0x8000, 6, 7, 8];
        for (r, &v) in init.iter().enumerate() {
            cpu.gpr[r] = v;
        }
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        let stack: Vec<u16> = (0..8).map(|k| read16(&cpu, 0x7FFE - 2 * k)).collect();
        assert_eq!(stack, [1, 2, 3, 4, 0x8000, 6, 7, 8]);
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FF0);
        cpu.mmu.phys.write_bytes(0x7FF6, &[0x55, 0x55]).unwrap(); // the SP slot
        for r in [0, 1, 2, 3, 5, 6, 7] {
            cpu.gpr[r] = 0xFFFF;
        }
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.gpr[..8], init);
    }

    #[test]
    fn pushad_on_a_16_bit_stack_pushes_the_full_esp() {
        // pushad ; hlt
        let mut cpu = real_mode(&[0x66, 0x60, 0xF4]);
        regs(
            &mut cpu,
            &[
                (gpr::RSP, 0xABCD_8000),
                (gpr::RAX, 0x1111_2222),
                (gpr::RDI, 0x3333_4444),
            ],
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.gpr[gpr::RSP], 0xABCD_7FE0);
        assert_eq!(
            [
                read32(&cpu, 0x7FFC),
                read32(&cpu, 0x7FEC),
                read32(&cpu, 0x7FE0)
            ],
            [0x1111_2222, 0xABCD_8000, 0x3333_4444]
        );
    }

    #[test]
    fn segment_registers_push_and_pop() {
        // push es ; pop ds ; push cs ; pop ss ; hlt
        let mut cpu = real_mode(&[0x06, 0x1F, 0x0E, 0x17, 0xF4]);
        cpu.seg[sreg::ES] = Segment::real(0x1234);
        cpu.seg[sreg::SS] = Segment::real(0x0700);
        cpu.gpr[gpr::RSP] = 0x100;
        for _ in 0..3 {
            assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        }
        assert_eq!(
            (cpu.seg[sreg::DS].selector, cpu.seg[sreg::DS].base),
            (0x1234, 0x12340)
        );
        assert_eq!(read16(&cpu, 0x70FE), 0); // CS, at SS:00FE
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!((cpu.seg[sreg::SS].selector, cpu.seg[sreg::SS].base), (0, 0));
        assert!(cpu.shadow, "POP SS blocks interrupts for one instruction");
        assert_eq!(cpu.gpr[gpr::RSP], 0x100);
    }

    #[test]
    fn push_sreg_with_32_bit_operands_writes_16_bits_into_a_4_byte_slot() {
        // push ds ; hlt (32-bit code, 16-bit stack)
        let mut cpu = protected32(&[0x1E, 0xF4]);
        cpu.seg[sreg::DS].selector = 0x2B;
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x7FFC, &[0xAA; 4]).unwrap();
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FFC);
        assert_eq!(read::<4>(&cpu, 0x7FFC), [0x2B, 0, 0xAA, 0xAA]);
    }

    #[test]
    fn push_sreg_in_64_bit_mode_zero_extends() {
        // push fs ; o16 push gs ; push -2 ; hlt
        let mut cpu = long_mode(&[0x0F, 0xA0, 0x66, 0x0F, 0xA8, 0x6A, 0xFE, 0xF4]);
        cpu.seg[sreg::FS].selector = 0x2B;
        cpu.seg[sreg::GS].selector = 0x33;
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x7FF8, &[0xAA; 8]).unwrap();
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(cpu.gpr[gpr::RSP], 0x7FEE);
        assert_eq!(read64(&cpu, 0x7FF8), 0x2B);
        assert_eq!(read::<2>(&cpu, 0x7FF6), [0x33, 0]);
        assert_eq!(read64(&cpu, 0x7FEE), 0xFFFF_FFFF_FFFF_FFFE);
    }

    #[test]
    fn enter_and_leave_16_bit() {
        // enter 8,0 ; leave ; hlt
        let mut cpu = real_mode(&[0xC8, 0x08, 0x00, 0x00, 0xC9, 0xF4]);
        regs(&mut cpu, &[(gpr::RSP, 0x200), (gpr::RBP, 0x1111)]);
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(
            (read16(&cpu, 0x1FE), cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]),
            (0x1111, 0x1FE, 0x1F6)
        );
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]), (0x1111, 0x200));

        // enter 4,3: two frame pointers copied from the enclosing frame, then the new one.
        let mut cpu = real_mode(&[0xC8, 0x04, 0x00, 0x03, 0xC9, 0xF4]);
        regs(&mut cpu, &[(gpr::RSP, 0x200), (gpr::RBP, 0x300)]);
        cpu.mmu
            .phys
            .write_bytes(0x2FC, &[0xBB, 0xBB, 0xAA, 0xAA])
            .unwrap();
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        let frame: Vec<u16> = [0x1FE, 0x1FC, 0x1FA, 0x1F8]
            .iter()
            .map(|&a| read16(&cpu, a))
            .collect();
        assert_eq!(frame, [0x300, 0xAAAA, 0xBBBB, 0x1FE]);
        assert_eq!((cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]), (0x1FE, 0x1F4));
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]), (0x300, 0x200));
    }

    #[test]
    fn enter_32_bit_operands_on_a_16_bit_stack() {
        // o32 enter 4,2 ; hlt: FrameTemp is the whole ESP, the copy is read at SS:BP-4.
        let mut cpu = real_mode(&[0x66, 0xC8, 0x04, 0x00, 0x02, 0xF4]);
        regs(
            &mut cpu,
            &[(gpr::RSP, 0x0001_0200), (gpr::RBP, 0x0002_0300)],
        );
        cpu.mmu
            .phys
            .write_bytes(0x2FC, &0xDEAD_BEEFu32.to_le_bytes())
            .unwrap();
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            [
                read32(&cpu, 0x1FC),
                read32(&cpu, 0x1F8),
                read32(&cpu, 0x1F4)
            ],
            [0x0002_0300, 0xDEAD_BEEF, 0x0001_01FC]
        );
        assert_eq!(
            (cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]),
            (0x0001_01FC, 0x0001_01F0)
        );
    }

    #[test]
    fn enter_and_leave_64_bit() {
        // enter 16,1 ; leave ; hlt
        let mut cpu = long_mode(&[0xC8, 0x10, 0x00, 0x01, 0xC9, 0xF4]);
        regs(
            &mut cpu,
            &[(gpr::RSP, 0x8000), (gpr::RBP, 0x1234_5678_9ABC)],
        );
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(
            (read64(&cpu, 0x7FF8), read64(&cpu, 0x7FF0)),
            (0x1234_5678_9ABC, 0x7FF8)
        );
        assert_eq!((cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]), (0x7FF8, 0x7FE0));
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(
            (cpu.gpr[gpr::RBP], cpu.gpr[gpr::RSP]),
            (0x1234_5678_9ABC, 0x8000)
        );
    }

    #[test]
    fn popf_masks_follow_the_sdm_table() {
        let base = rf::ARITH | rf::TF | rf::DF | rf::NT | rf::AC | rf::ID;
        // CPL 0 (and real mode): everything but VIP VIF VM RF.
        assert_eq!(flags_mask(0, 0, 4, false), base | rf::IF | rf::IOPL);
        // CPL > IOPL: neither IF nor IOPL.
        assert_eq!(flags_mask(3, 0, 4, false), base);
        // 0 < CPL <= IOPL: IF but not IOPL.
        assert_eq!(flags_mask(3, 3, 8, false), base | rf::IF);
        assert_eq!(flags_mask(3, 3, 8, true), base | rf::IF | rf::RF);
        assert_eq!(flags_mask(1, 2, 2, false), (base | rf::IF) & 0xFFFF);
        // A 16-bit POPF at CPL 0 reaches all of FLAGS 0-15 that is not reserved.
        assert_eq!(flags_mask(0, 0, 2, false), 0x7FD5);
    }

    #[test]
    fn popf_and_pushf_in_real_mode() {
        // popf ; pushf ; hlt: a 16-bit POPF at CPL 0 sets every FLAGS bit that is not
        // reserved (TF left clear here so no single-step trap follows).
        let mut cpu = real_mode(&[0x9D, 0x9C, 0xF4]);
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x8000, &[0xFF, 0xFE]).unwrap();
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.rflags(), 0x7ED7);
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!((read16(&cpu, 0x8000), cpu.gpr[gpr::RSP]), (0x7ED7, 0x8000));

        // o32 popf ; o32 pushf ; hlt: POPFD adds AC and ID, clears RF, leaves VIP VIF
        // VM; PUSHFD stores RF as 0.
        let mut cpu = real_mode(&[0x66, 0x9D, 0x66, 0x9C, 0xF4]);
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu
            .phys
            .write_bytes(0x8000, &0xFFFF_FEFFu32.to_le_bytes())
            .unwrap();
        cpu.rflags |= rf::RF;
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.rflags(), 0x24_7ED7);
        cpu.rflags |= rf::RF;
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        assert_eq!(read32(&cpu, 0x8000), 0x24_7ED7);
    }

    #[test]
    fn popf_at_cpl_3_keeps_if_and_iopl() {
        // popf ; hlt at CPL 3 in 16-bit protected mode
        let mut cpu = real_mode(&[0x9D, 0xF4]);
        cpu.cr0 |= crate::cr0::PE;
        cpu.seg[sreg::CS].selector = 3;
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x8000, &[0xFF, 0xFE]).unwrap();
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.rflags(), 0x4CD7);
        // With IOPL 3, IF follows the popped value (IOPL stays).
        let mut cpu = real_mode(&[0x9D, 0xF4]);
        cpu.cr0 |= crate::cr0::PE;
        cpu.seg[sreg::CS].selector = 3;
        cpu.set_rflags(rf::IOPL);
        cpu.gpr[gpr::RSP] = 0x8000;
        cpu.mmu.phys.write_bytes(0x8000, &[0xFF, 0xCE]).unwrap(); // IOPL 0 in the image
        assert_eq!(cpu.step(&mut NullBus), Exit::Budget);
        assert_eq!(cpu.rflags(), 0x7ED7);
    }

    #[test]
    fn pushf_and_popf_in_virtual_8086_mode() {
        // pushf ; popf at IOPL 0: #GP(0) for the monitor, nothing moved.
        let mut cpu = real_mode(&[0x9C, 0x9D]);
        cpu.cr0 |= crate::cr0::PE;
        cpu.set_rflags(rf::VM);
        cpu.gpr[gpr::RSP] = 0x8000;
        assert_eq!(
            pushf::<u16>(&mut cpu, &mut NullBus, &dummy()),
            Err(Fault::gp(0))
        );
        assert_eq!(
            popf::<u16>(&mut cpu, &mut NullBus, &dummy()),
            Err(Fault::gp(0))
        );
        assert_eq!(cpu.gpr[gpr::RSP], 0x8000);
        // IOPL 3: PUSHF stores VM as 0; POPF changes IF but neither IOPL nor VM.
        cpu.set_rflags(rf::VM | rf::IOPL | rf::IF);
        assert_eq!(pushf::<u32>(&mut cpu, &mut NullBus, &dummy()), Ok(()));
        assert_eq!(read32(&cpu, 0x7FFC) as u64, rf::FIXED1 | rf::IOPL | rf::IF);
        cpu.mmu
            .phys
            .write_bytes(0x7FFC, &(rf::CF as u32).to_le_bytes())
            .unwrap();
        assert_eq!(popf::<u32>(&mut cpu, &mut NullBus, &dummy()), Ok(()));
        assert_eq!(cpu.rflags(), rf::FIXED1 | rf::VM | rf::IOPL | rf::CF);
    }

    /// An entry for handlers that ignore theirs.
    fn dummy() -> Entry {
        let insn = iced_x86::Decoder::new(16, &[0x90], iced_x86::DecoderOptions::NONE).decode();
        Entry::new(
            crate::exec::select(&insn),
            crate::exec::select(&insn),
            u8::MAX,
            1,
            insn,
        )
    }
}
