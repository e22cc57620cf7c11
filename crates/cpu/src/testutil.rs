//! Test scaffolding shared by the unit tests of every module: ready-made CPUs in each
//! mode, a port-logging bus, and readers of guest RAM.

use crate::fault::vector;
use crate::{Bus, BusFlow, Cpu, Mmu, NullBus, PhysMem};

/// A bus that records port writes, answers reads with `port ^ 0x5A5A_5A5A`
/// (truncated to the access size), and stops the run on a write to port 0xF4.
#[derive(Default)]
pub(crate) struct PortLog {
    pub writes: Vec<(u16, u8, u32)>,
    pub reads: Vec<(u16, u8)>,
}

pub(crate) fn port_value(port: u16, size: u8) -> u32 {
    (port as u32 ^ 0x5A5A_5A5A) & (u64::MAX >> (64 - 8 * size as u32)) as u32
}

impl Bus for PortLog {
    fn io_in(&mut self, port: u16, size: u8) -> u32 {
        self.reads.push((port, size));
        port_value(port, size)
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusFlow {
        self.writes.push((port, size, value));
        if port == 0xF4 {
            BusFlow::Stop
        } else {
            BusFlow::Continue
        }
    }
    fn mmio_read(&mut self, _: u64, _: u8) -> u64 {
        0
    }
    fn mmio_write(&mut self, _: u64, _: u8, _: u64) -> BusFlow {
        BusFlow::Continue
    }
}

/// A real-mode CPU at 0000:1000 with `code` there and 1 MiB of RAM.
pub(crate) fn real_mode(code: &[u8]) -> Cpu {
    let mut phys = PhysMem::new();
    phys.add_ram(0, 1 << 20).unwrap();
    let mut cpu = Cpu::new(Mmu::new(phys));
    cpu.set_real_mode_entry(0, 0x1000);
    cpu.mmu.phys.write_bytes(0x1000, code).unwrap();
    cpu
}

/// `real_mode` switched to 32-bit protected mode by hand: CR0.PE and a 32-bit
/// (D=1) CS with base 0; the data segments and the 16-bit stack stay as they are.
pub(crate) fn protected32(code: &[u8]) -> Cpu {
    let mut cpu = real_mode(code);
    cpu.cr0 |= crate::cr0::PE;
    cpu.seg[crate::sreg::CS].attr |= crate::attr::DB;
    cpu
}

/// `real_mode` switched to 64-bit mode by hand: CR0.PE|PG, EFER.LME|LMA and an
/// L=1 CS (paging is identity until the MMU walks page tables).
pub(crate) fn long_mode(code: &[u8]) -> Cpu {
    let mut cpu = real_mode(code);
    cpu.cr0 |= crate::cr0::PE | crate::cr0::PG;
    cpu.efer |= crate::efer::LME | crate::efer::LMA;
    cpu.seg[crate::sreg::CS].attr |= crate::attr::L;
    cpu
}

pub(crate) fn read<const N: usize>(cpu: &Cpu, addr: u64) -> [u8; N] {
    let mut b = [0u8; N];
    cpu.mmu.phys.read_bytes(addr, &mut b).unwrap();
    b
}

pub(crate) fn read16(cpu: &Cpu, addr: u64) -> u16 {
    u16::from_le_bytes(read(cpu, addr))
}

pub(crate) fn read32(cpu: &Cpu, addr: u64) -> u32 {
    u32::from_le_bytes(read(cpu, addr))
}

pub(crate) fn read64(cpu: &Cpu, addr: u64) -> u64 {
    u64::from_le_bytes(read(cpu, addr))
}

/// Run the instruction in `code` at 0x1000; the exceptions raised (the first one, and
/// what failing to deliver it without an IDT raised after it).
pub(crate) fn exec(cpu: &mut Cpu, code: &[u8]) -> Vec<u8> {
    cpu.write_phys(0x1000, code).unwrap();
    cpu.rip = 0x1000;
    // A fault before left the CPU shut down (there is no IDT).
    cpu.shutdown = false;
    let before = cpu.stats.exceptions;
    cpu.step(&mut NullBus);
    (0..32)
        .filter(|&v| cpu.stats.exceptions[v] != before[v])
        .map(|v| v as u8)
        .collect()
}

/// `want` was raised, and nothing else but what failing to deliver it raises.
pub(crate) fn raised(vs: Vec<u8>, want: u8) -> bool {
    vs.contains(&want)
        && vs
            .iter()
            .all(|&v| v == want || v == vector::GP || v == vector::DF)
}
