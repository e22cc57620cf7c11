//! Port I/O: IN and OUT (SDM Vol.2B), and the port access that INS/OUTS share with
//! them. Every port access is a trap to the VMM (DESIGN.md §1): it goes through `Bus`
//! and is counted in `stats.io_exits`.

use iced_x86::{Instruction, Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::{op_size, Handler, Table};
use crate::fault::Fault;
use crate::flags::rf;
use crate::state::{gpr, Word};

pub(crate) fn register(t: &mut Table) {
    // IN AL/AX/EAX, imm8|DX: the accumulator is operand 0.
    t.on(Mnemonic::In, |i| {
        by_port_size(i, 0, [input::<u8>, input::<u16>, input::<u32>])
    });
    // OUT imm8|DX, AL/AX/EAX: the accumulator is operand 1.
    t.on(Mnemonic::Out, |i| {
        by_port_size(i, 1, [output::<u8>, output::<u16>, output::<u32>])
    });
}

/// The handler for a 1-, 2- or 4-byte access, sized by operand `n`.
fn by_port_size(i: &Instruction, n: u32, h: [Handler; 3]) -> Option<Handler> {
    match op_size(i, n) {
        1 => Some(h[0]),
        2 => Some(h[1]),
        4 => Some(h[2]),
        _ => None,
    }
}

/// The I/O-permission check of SDM Vol.1 19.5: in protected mode with CPL > IOPL, and
/// always in virtual-8086 mode, every byte of the access must be allowed by the TSS
/// I/O permission bitmap, else #GP(0). IN, OUT, INS and OUTS all call it before
/// touching the port.
#[inline]
pub(crate) fn io_permitted(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    port: u16,
    size: usize,
) -> Result<(), Fault> {
    if !cpu.protected() || (!cpu.v86() && cpu.cpl() as u64 <= (cpu.rflags & rf::IOPL) >> 12) {
        return Ok(());
    }
    if cpu.io_bitmap_allows(bus, port, size)? {
        Ok(())
    } else {
        Err(Fault::gp(0))
    }
}

/// Read a T-sized value from `port` (checks, counts and traps).
#[inline]
pub(crate) fn port_in<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, port: u16) -> Result<T, Fault> {
    io_permitted(cpu, bus, port, T::BYTES)?;
    cpu.stats.io_exits += 1;
    bus.clock(cpu.icount);
    Ok(T::from_u64(bus.io_in(port, T::BYTES as u8) as u64))
}

/// Write a T-sized value to `port`. What the device asks for in return (end the run
/// after this instruction, move the A20 gate) goes to the MMU.
#[inline]
pub(crate) fn port_out<T: Word>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    port: u16,
    v: T,
) -> Result<(), Fault> {
    io_permitted(cpu, bus, port, T::BYTES)?;
    cpu.stats.io_exits += 1;
    bus.clock(cpu.icount);
    let flow = bus.io_out(port, T::BYTES as u8, v.to_u64() as u32);
    cpu.mmu.bus_flow(flow);
    Ok(())
}

/// The port operand: an 8-bit immediate or DX.
#[inline]
fn port(cpu: &Cpu, e: &Entry, n: u32) -> u16 {
    match e.insn.op_kind(n) {
        OpKind::Immediate8 => e.insn.immediate8() as u16,
        _ => cpu.gpr[gpr::RDX] as u16,
    }
}

fn input<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = port_in::<T>(cpu, bus, port(cpu, e, 1))?;
    cpu.set_gpr::<T>(gpr::RAX, v);
    Ok(())
}

fn output<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = T::from_u64(cpu.gpr[gpr::RAX]);
    port_out::<T>(cpu, bus, port(cpu, e, 0), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{real_mode, PortLog};
    use crate::Exit;

    #[test]
    fn in_imm8_and_dx_fill_the_accumulator_at_the_operand_size() {
        // in al,0x60 ; in ax,dx ; in eax,dx ; hlt
        let mut cpu = real_mode(&[0xE4, 0x60, 0xED, 0x66, 0xED, 0xF4]);
        cpu.gpr[gpr::RAX] = 0x1122_3344;
        cpu.gpr[gpr::RDX] = 0x3F8;
        let mut bus = PortLog::default();
        assert_eq!(cpu.run(&mut bus, 3), Exit::Budget);
        assert_eq!(bus.reads, [(0x60, 1), (0x3F8, 2), (0x3F8, 4)]);
        assert_eq!(cpu.gpr[gpr::RAX], 0x5A5A_59A2); // 0x3F8 ^ 0x5A5A5A5A
        assert_eq!(cpu.stats.io_exits, 3);
        // The byte read kept AH and the upper half: check it in isolation.
        let mut cpu = real_mode(&[0xE4, 0x60, 0xF4]);
        cpu.gpr[gpr::RAX] = 0x1122_3344;
        assert_eq!(cpu.run(&mut PortLog::default(), 10), Exit::Halt);
        assert_eq!(cpu.gpr[gpr::RAX], 0x1122_333A); // 0x60 ^ 0x5A = 0x3A
    }

    #[test]
    fn out_writes_the_accumulator_and_a_stop_ends_the_run() {
        // out 0x80,al ; out dx,ax ; out dx,eax ; out 0xF4,al ; hlt
        let mut cpu = real_mode(&[0xE6, 0x80, 0xEF, 0x66, 0xEF, 0xE6, 0xF4, 0xF4]);
        cpu.gpr[gpr::RAX] = 0xDEAD_BEEF;
        cpu.gpr[gpr::RDX] = 0x1234;
        let mut bus = PortLog::default();
        assert_eq!(cpu.run(&mut bus, 100), Exit::Stop);
        assert_eq!(
            bus.writes,
            [
                (0x80, 1, 0xEF),
                (0x1234, 2, 0xBEEF),
                (0x1234, 4, 0xDEAD_BEEF),
                (0xF4, 1, 0xEF)
            ]
        );
        // The stop comes after the OUT completes: RIP is at the HLT.
        assert_eq!(cpu.rip, 0x1007);
        assert_eq!(cpu.run(&mut bus, 100), Exit::Halt);
    }

    #[test]
    fn io_permission_follows_cpl_iopl_and_the_tss_bitmap() {
        use crate::segment::tests::{pm, pm3, put, TSS};
        let bus = &mut crate::NullBus;
        // CPL 0 <= IOPL 0: anything goes.
        let mut cpu = pm(&[]);
        assert_eq!(io_permitted(&mut cpu, bus, 0x80, 1), Ok(()));
        // CPL 3 > IOPL 0, and the bitmap base lies past the TSS limit: #GP(0).
        let mut cpu = pm3(&[]);
        assert_eq!(io_permitted(&mut cpu, bus, 0x80, 1), Err(Fault::gp(0)));
        // A bitmap that allows ports 80h-87h.
        put(&mut cpu, TSS + 0x68 + 0x10, &[0x00, 0xFF]);
        cpu.tr.limit = 0x68 + 0x11;
        assert_eq!(io_permitted(&mut cpu, bus, 0x84, 4), Ok(()));
        assert_eq!(io_permitted(&mut cpu, bus, 0x86, 4), Err(Fault::gp(0)));
        // IOPL 3: no bitmap needed.
        cpu.set_rflags(crate::rf::IOPL);
        assert_eq!(io_permitted(&mut cpu, bus, 0x3F8, 1), Ok(()));
        // Virtual-8086 mode ignores IOPL: only the bitmap counts.
        cpu.set_rflags(crate::rf::IOPL | crate::rf::VM);
        assert_eq!(io_permitted(&mut cpu, bus, 0x3F8, 1), Err(Fault::gp(0)));
        assert_eq!(io_permitted(&mut cpu, bus, 0x80, 1), Ok(()));
    }
}
