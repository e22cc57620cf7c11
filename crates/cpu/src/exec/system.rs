//! System and flag-control instructions: CLC STC CMC CLD STD CLI STI, HLT, NOP,
//! CPUID, RDTSC, LGDT LIDT SGDT SIDT, MOV to/from CRn, LMSW SMSW, CLTS, WBINVD INVD.
//! Privilege checks for these are the protected-mode work (issue 3, driven by the
//! Popek–Goldberg table); here they follow the ring-0 / real-mode behaviour.

use iced_x86::{Code, Mnemonic, OpKind, Register};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::rf;
use crate::state::{cr0, gpr, TableReg};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Clc, |_| Some(flag_op::<{ rf::CF }, 0>));
    t.on(Mnemonic::Stc, |_| Some(flag_op::<{ rf::CF }, 1>));
    t.on(Mnemonic::Cmc, |_| Some(flag_op::<{ rf::CF }, 2>));
    t.on(Mnemonic::Cld, |_| Some(flag_op::<{ rf::DF }, 0>));
    t.on(Mnemonic::Std, |_| Some(flag_op::<{ rf::DF }, 1>));
    t.on(Mnemonic::Cli, |_| Some(cli));
    t.on(Mnemonic::Sti, |_| Some(sti));
    t.on(Mnemonic::Hlt, |_| Some(hlt));
    t.on_all(&[Mnemonic::Nop, Mnemonic::Pause], |_| Some(nop));
    t.on_all(&[Mnemonic::Wbinvd, Mnemonic::Invd], |_| Some(nop));
    t.on(Mnemonic::Wait, |_| Some(wait));
    t.on(Mnemonic::Cpuid, |_| Some(cpuid));
    t.on(Mnemonic::Rdtsc, |_| Some(rdtsc));
    t.on(Mnemonic::Lgdt, |_| Some(load_table::<true>));
    t.on(Mnemonic::Lidt, |_| Some(load_table::<false>));
    t.on(Mnemonic::Sgdt, |_| Some(store_table::<true>));
    t.on(Mnemonic::Sidt, |_| Some(store_table::<false>));
    t.on(Mnemonic::Lmsw, |_| Some(lmsw));
    t.on(Mnemonic::Smsw, |i| {
        Some(match crate::exec::op_size(i, 0) {
            2 => smsw::<u16>,
            4 => smsw::<u32>,
            _ => smsw::<u64>,
        })
    });
    t.on(Mnemonic::Clts, |_| Some(clts));
}

/// CLC/STC/CMC/CLD/STD: ACTION 0 clears, 1 sets, 2 complements.
fn flag_op<const FLAG: u64, const ACTION: u8>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let f = cpu.rflags();
    let v = match ACTION {
        0 => f & !FLAG,
        1 => f | FLAG,
        _ => f ^ FLAG,
    };
    cpu.set_rflags(v);
    Ok(())
}

fn cli(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.rflags &= !rf::IF;
    Ok(())
}

/// STI sets IF; if IF was clear, interrupts stay blocked until after the next
/// instruction (SDM Vol.2B STI).
fn sti(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.rflags & rf::IF == 0 {
        cpu.shadow = true;
    }
    cpu.rflags |= rf::IF;
    Ok(())
}

fn hlt(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.halted = true;
    Ok(())
}

fn nop(_: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    Ok(())
}

/// WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; otherwise it waits for
/// pending x87 exceptions, and the x87 has none to report here.
fn wait(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.cr0 & (cr0::MP | cr0::TS) == cr0::MP | cr0::TS {
        return Err(Fault::new(crate::fault::vector::NM));
    }
    Ok(())
}

fn cpuid(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let r = crate::cpuid::cpuid(cpu.gpr[gpr::RAX] as u32, cpu.gpr[gpr::RCX] as u32);
    for (n, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX].into_iter().zip(r) {
        cpu.gpr[n] = v as u64;
    }
    Ok(())
}

fn rdtsc(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let t = cpu.tsc();
    cpu.gpr[gpr::RAX] = t & 0xFFFF_FFFF;
    cpu.gpr[gpr::RDX] = t >> 32;
    Ok(())
}

/// LGDT/LIDT m16&32 (m16&64 in 64-bit mode). With a 16-bit operand size only 24
/// bits of the base are loaded (SDM Vol.2A LGDT/LIDT).
fn load_table<const GDT: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    let limit = cpu.read_mem::<u16>(bus, seg, off)?;
    let base = if cpu.long64() {
        cpu.read_mem::<u64>(bus, seg, off.wrapping_add(2))?
    } else {
        let b = cpu.read_mem::<u32>(bus, seg, off.wrapping_add(2) & e.mem.addr_mask)? as u64;
        if matches!(e.insn.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) { b & 0xFF_FFFF } else { b }
    };
    let t = TableReg { base, limit };
    if GDT {
        cpu.gdtr = t;
    } else {
        cpu.idtr = t;
    }
    Ok(())
}

/// SGDT/SIDT store the limit and a 32-bit (64-bit in 64-bit mode) base.
fn store_table<const GDT: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let t = if GDT { cpu.gdtr } else { cpu.idtr };
    let off = cpu.ea(&e.mem);
    let seg = e.mem.seg as usize;
    let lin = cpu.linear(seg, off, if cpu.long64() { 10 } else { 6 })?;
    cpu.mmu.probe_write(lin, 6)?;
    cpu.write_mem::<u16>(bus, seg, off, t.limit)?;
    let next = off.wrapping_add(2) & e.mem.addr_mask;
    if cpu.long64() {
        cpu.write_mem::<u64>(bus, seg, next, t.base)
    } else {
        cpu.write_mem::<u32>(bus, seg, next, t.base as u32)
    }
}

/// LMSW loads CR0 bits 0-3 and can set, but never clear, PE (SDM Vol.2A LMSW).
fn lmsw(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.read_op::<u16>(bus, e, 0)? as u64;
    let keep_pe = cpu.cr0 & cr0::PE;
    let new = (cpu.cr0 & !0xF) | (v & 0xF) | keep_pe;
    cpu.write_cr0(new)
}

/// SMSW: a register destination gets CR0 at the operand size; memory gets 16 bits.
fn smsw<T: crate::state::Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    if e.insn.op0_kind() == OpKind::Register {
        cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(cpu.cr0));
        Ok(())
    } else {
        cpu.write_op::<u16>(bus, e, 0, cpu.cr0 as u16)
    }
}

fn clts(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.cr0 &= !cr0::TS;
    Ok(())
}

/// CR4 bits this CPU implements. None yet: paging extensions, SSE state and the
/// rest arrive with the features CPUID will advertise for them.
const CR4_SUPPORTED: u64 = 0;

/// The GPR operand of MOV CRn/DRn: always 32 bits outside 64-bit mode, 64 inside.
fn sys_gpr(cpu: &Cpu, r: Register) -> u64 {
    let v = cpu.gpr[r.full_register().number()];
    if cpu.long64() { v } else { v & 0xFFFF_FFFF }
}

pub(crate) fn mov_to_cr(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = sys_gpr(cpu, e.insn.op1_register());
    match e.insn.op0_register() {
        Register::CR0 => cpu.write_cr0(v),
        Register::CR2 => {
            cpu.cr2 = v;
            Ok(())
        }
        Register::CR3 => {
            cpu.cr3 = v;
            cpu.mmu.flush_tlb();
            Ok(())
        }
        Register::CR4 if v & !CR4_SUPPORTED == 0 => {
            cpu.cr4 = v;
            cpu.mmu.flush_tlb();
            Ok(())
        }
        Register::CR4 => Err(Fault::gp(0)),
        _ => Err(Fault::ud()),
    }
}

pub(crate) fn mov_from_cr(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = cpu.control_register(e.insn.op1_register()).ok_or(Fault::ud())?;
    let dst = e.insn.op0_register().full_register().number();
    cpu.gpr[dst] = if cpu.long64() { v } else { v & 0xFFFF_FFFF };
    Ok(())
}

/// MOV to/from DRn. DR4/DR5 alias DR6/DR7 while CR4.DE is clear (SDM Vol.3 18.2.2).
pub(crate) fn mov_dr(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (to_dr, dr, g) = if e.insn.op0_register().is_dr() {
        (true, e.insn.op0_register(), e.insn.op1_register())
    } else {
        (false, e.insn.op1_register(), e.insn.op0_register())
    };
    let n = match dr.number() {
        4 => 6,
        5 => 7,
        n => n,
    };
    if to_dr {
        cpu.dr[n] = sys_gpr(cpu, g);
    } else {
        let v = cpu.dr[n];
        cpu.gpr[g.full_register().number()] = if cpu.long64() { v } else { v & 0xFFFF_FFFF };
    }
    Ok(())
}

impl Cpu {
    /// MOV to CR0 / LMSW: the bits this CPU models; ET is hardwired to 1 (SDM Vol.3 2.5).
    pub fn write_cr0(&mut self, v: u64) -> Result<(), Fault> {
        const WRITABLE: u64 = cr0::PE | cr0::MP | cr0::EM | cr0::TS | cr0::NE | cr0::WP | cr0::AM | cr0::NW | cr0::CD | cr0::PG;
        // PG without PE, or NW without CD, is #GP(0).
        if (v & cr0::PG != 0 && v & cr0::PE == 0) || (v & cr0::NW != 0 && v & cr0::CD == 0) || v >> 32 != 0 {
            return Err(Fault::gp(0));
        }
        let new = (v & WRITABLE) | cr0::ET;
        if (new ^ self.cr0) & (cr0::PE | cr0::PG | cr0::WP) != 0 {
            self.mmu.flush_tlb();
        }
        self.cr0 = new;
        Ok(())
    }

    pub fn control_register(&self, r: Register) -> Option<u64> {
        Some(match r {
            Register::CR0 => self.cr0,
            Register::CR2 => self.cr2,
            Register::CR3 => self.cr3,
            Register::CR4 => self.cr4,
            _ => return None,
        })
    }
}
