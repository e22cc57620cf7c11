//! System and flag-control instructions: CLC STC CMC CLD STD CLI STI, HLT, NOP,
//! CPUID, RDTSC RDTSCP, RDMSR WRMSR, LGDT LIDT SGDT SIDT, MOV to/from CRn and DRn,
//! LMSW SMSW, CLTS, INVLPG, SWAPGS, WBINVD INVD; and the control-register writes with
//! their mode changes: paging, IA-32e activation and deactivation (SDM Vol.3 2.5, 9.8.5).
//!
//! CPL checks of the privileged ones (MOV CRn, RDMSR, INVLPG, ...) come from the
//! Popek–Goldberg table at decode time (DESIGN.md §3); the handlers check what depends
//! on run-time state (IOPL, CR4.TSD, reserved bits).

use iced_x86::{Code, Mnemonic, OpKind, Register};
use trapeze_mmu::paging::{Mode, Paging, MAXPHYADDR};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::rf;
use crate::interrupt::dr;
use crate::msr::index;
use crate::state::{attr, cr0, cr4, efer, gpr, sreg, TableReg};

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
    // CET's ENDBR32/64 and RDSSPD/Q sit in the 0F 1E hint-NOP space: without CET
    // (not advertised) they execute as NOPs (SDM Vol.2A ENDBR64, Vol.2B RDSSPD).
    t.on_all(
        &[
            Mnemonic::Endbr32,
            Mnemonic::Endbr64,
            Mnemonic::Rdsspd,
            Mnemonic::Rdsspq,
        ],
        |_| Some(nop),
    );
    t.on_all(&[Mnemonic::Wbinvd, Mnemonic::Invd], |_| Some(nop));
    t.on(Mnemonic::Wait, |_| Some(wait));
    t.on(Mnemonic::Cpuid, |_| Some(cpuid));
    t.on(Mnemonic::Rdtsc, |_| Some(rdtsc::<false>));
    t.on(Mnemonic::Rdtscp, |_| Some(rdtsc::<true>));
    t.on(Mnemonic::Rdmsr, |_| Some(rdmsr));
    t.on(Mnemonic::Wrmsr, |_| Some(wrmsr));
    t.on(Mnemonic::Invlpg, |_| Some(invlpg));
    t.on(Mnemonic::Swapgs, |_| Some(swapgs));
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
fn flag_op<const FLAG: u64, const ACTION: u8>(
    cpu: &mut Cpu,
    _: &mut dyn Bus,
    _: &Entry,
) -> Result<(), Fault> {
    let f = cpu.rflags();
    let v = match ACTION {
        0 => f & !FLAG,
        1 => f | FLAG,
        _ => f ^ FLAG,
    };
    cpu.set_rflags(v);
    Ok(())
}

/// CLI/STI are IOPL-sensitive: #GP(0) at CPL > IOPL in protected mode, and in
/// virtual-8086 mode with IOPL < 3 (SDM Vol.2A CLI, Table 3-7; no VME/PVI).
fn check_iopl(cpu: &Cpu) -> Result<(), Fault> {
    let iopl = ((cpu.rflags & rf::IOPL) >> 12) as u8;
    if cpu.protected() && cpu.cpl() > iopl {
        return Err(Fault::gp(0));
    }
    Ok(())
}

fn cli(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    check_iopl(cpu)?;
    cpu.rflags &= !rf::IF;
    Ok(())
}

/// STI sets IF; if IF was clear, interrupts stay blocked until after the next
/// instruction (SDM Vol.2B STI).
fn sti(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    check_iopl(cpu)?;
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

pub(crate) fn nop(_: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    Ok(())
}

/// WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; then a pending unmasked x87
/// exception is taken as #MF (`Cpu::fpu_pending`).
fn wait(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.cr0 & (cr0::MP | cr0::TS) == cr0::MP | cr0::TS {
        return Err(Fault::new(crate::fault::vector::NM));
    }
    cpu.fpu_pending()
}

fn cpuid(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let r = crate::cpuid::cpuid(cpu.gpr[gpr::RAX] as u32, cpu.gpr[gpr::RCX] as u32);
    for (n, v) in [gpr::RAX, gpr::RBX, gpr::RCX, gpr::RDX].into_iter().zip(r) {
        cpu.gpr[n] = v as u64;
    }
    Ok(())
}

/// RDTSC, and RDTSCP (`AUX`), which also loads ECX with TSC_AUX. #GP(0) at CPL > 0
/// when CR4.TSD is set (SDM Vol.2B RDTSC).
fn rdtsc<const AUX: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.cr4 & cr4::TSD != 0 && cpu.cpl() > 0 {
        return Err(Fault::gp(0));
    }
    let t = cpu.tsc();
    cpu.gpr[gpr::RAX] = t & 0xFFFF_FFFF;
    cpu.gpr[gpr::RDX] = t >> 32;
    if AUX {
        cpu.gpr[gpr::RCX] = cpu.msr.get(index::TSC_AUX);
    }
    Ok(())
}

/// RDMSR: EDX:EAX = MSR[ECX] (the upper halves of RAX and RDX are cleared).
/// RDMSR: a device's MSR (the local APIC's) through the bus, else the CPU's own.
fn rdmsr(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let index = cpu.gpr[gpr::RCX] as u32;
    bus.clock(cpu.icount);
    let v = match bus.rdmsr(index, cpu.tsc()) {
        Some(v) => v,
        None => cpu.rdmsr(index)?,
    };
    cpu.gpr[gpr::RAX] = v & 0xFFFF_FFFF;
    cpu.gpr[gpr::RDX] = v >> 32;
    Ok(())
}

fn wrmsr(cpu: &mut Cpu, bus: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let index = cpu.gpr[gpr::RCX] as u32;
    let v = (cpu.gpr[gpr::RDX] << 32) | (cpu.gpr[gpr::RAX] & 0xFFFF_FFFF);
    bus.clock(cpu.icount);
    match bus.wrmsr(index, v, cpu.tsc()) {
        Some(Ok(flow)) => {
            cpu.mmu.bus_flow(flow);
            Ok(())
        }
        Some(Err(())) => Err(Fault::gp(0)),
        None => cpu.wrmsr(index, v),
    }
}

/// INVLPG m: drop the TLB entries of the page holding the operand's linear address.
/// There is no limit or canonical check (SDM Vol.2A INVLPG: a non-canonical address
/// makes it a NOP, which dropping nothing is).
fn invlpg(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let seg = e.mem.seg as usize;
    let off = cpu.ea(&e.mem);
    let lin = if cpu.long64() {
        if seg >= sreg::FS {
            cpu.seg[seg].base.wrapping_add(off)
        } else {
            off
        }
    } else {
        cpu.seg[seg].base.wrapping_add(off) & 0xFFFF_FFFF
    };
    cpu.mmu.invlpg(lin);
    Ok(())
}

/// SWAPGS (64-bit mode only, where iced decodes it): exchange GS.base and
/// KERNEL_GS_BASE.
fn swapgs(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let kernel = cpu.msr.get(index::KERNEL_GS_BASE);
    cpu.msr.set(index::KERNEL_GS_BASE, cpu.seg[sreg::GS].base);
    cpu.seg[sreg::GS].base = kernel;
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
        if matches!(e.insn.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
            b & 0xFF_FFFF
        } else {
            b
        }
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

/// CR4 bits this CPU implements; the rest are reserved (#GP(0) on MOV CR4). TSD, PSE,
/// PAE and PGE go with CPUID's TSC, PSE, PAE and PGE; OSFXSR and OSXMMEXCPT are
/// settable for the SSE state, as QEMU allows them.
const CR4_SUPPORTED: u64 =
    cr4::TSD | cr4::PSE | cr4::PAE | cr4::PGE | cr4::OSFXSR | cr4::OSXMMEXCPT;

/// EFER bits WRMSR can change; LMA is read-only (writes to it are ignored).
const EFER_WRITABLE: u64 = efer::SCE | efer::LME | efer::NXE;

/// The GPR operand of MOV CRn/DRn: always 32 bits outside 64-bit mode, 64 inside.
fn sys_gpr(cpu: &Cpu, r: Register) -> u64 {
    let v = cpu.gpr[r.full_register().number()];
    if cpu.long64() {
        v
    } else {
        v & 0xFFFF_FFFF
    }
}

/// MOV to CR0, CR2, CR3, CR4, CR8. CR8 (the TPR) exists in 64-bit mode only; other
/// control registers are #UD.
pub(crate) fn mov_to_cr(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let v = sys_gpr(cpu, e.insn.op1_register());
    match e.insn.op0_register() {
        Register::CR0 => cpu.write_cr0(v),
        Register::CR2 => {
            cpu.cr2 = v;
            Ok(())
        }
        Register::CR3 => cpu.write_cr3(v),
        Register::CR4 => cpu.write_cr4(v),
        Register::CR8 if cpu.long64() => {
            // TPR bits 3:0; bits 63:4 are reserved (SDM Vol.3 10.8.6.1).
            if v >> 4 != 0 {
                return Err(Fault::gp(0));
            }
            cpu.tpr = v as u8;
            Ok(())
        }
        _ => Err(Fault::ud()),
    }
}

pub(crate) fn mov_from_cr(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let r = e.insn.op1_register();
    if r == Register::CR8 && !cpu.long64() {
        return Err(Fault::ud());
    }
    let v = cpu.control_register(r).ok_or(Fault::ud())?;
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
    // SDM Vol.3 18.2.4: with DR7.GD set any MOV DRn is a #DB fault, reported by DR6.BD;
    // the processor clears GD so the handler can use the debug registers.
    if cpu.dr[7] & dr::GD != 0 {
        cpu.dr[7] &= !dr::GD;
        cpu.dr[6] |= dr::BD;
        return Err(Fault::new(crate::fault::vector::DB));
    }
    if to_dr {
        let v = sys_gpr(cpu, g);
        // The upper half of DR6/DR7 is reserved in 64-bit mode (#GP if set).
        if n >= 6 && v >> 32 != 0 {
            return Err(Fault::gp(0));
        }
        cpu.dr[n] = match n {
            6 => v | dr::DR6_FIXED1,
            7 => (v | dr::DR7_FIXED1) & !dr::DR7_FIXED0,
            _ => v,
        };
    } else {
        let v = cpu.dr[n];
        cpu.gpr[g.full_register().number()] = if cpu.long64() { v } else { v & 0xFFFF_FFFF };
    }
    Ok(())
}

/// The paging mode CR0.PG, CR4.PAE and EFER.LMA select (SDM Vol.3 Table 4-1), with
/// the options the walks need.
fn paging_for(cr0: u64, cr4: u64, efer: u64) -> Paging {
    let mode = if cr0 & cr0::PG == 0 {
        Mode::Off
    } else if cr4 & cr4::PAE == 0 {
        Mode::Bits32
    } else if efer & efer::LMA != 0 {
        Mode::Level4
    } else {
        Mode::Pae
    };
    Paging {
        mode,
        wp: cr0 & cr0::WP != 0,
        pse: cr4 & cr4::PSE != 0,
        pge: cr4 & cr4::PGE != 0,
        nxe: efer & efer::NXE != 0,
    }
}

impl Cpu {
    /// Commit new CR0, CR4 and EFER values once the MMU has taken the paging mode they
    /// select. With PAE paging the MMU loads the PDPTE registers from CR3; if one is
    /// invalid the write is #GP(0) and nothing changes (SDM Vol.3 4.4.1).
    fn set_paging_registers(&mut self, cr0: u64, cr4: u64, efer: u64) -> Result<(), Fault> {
        self.mmu
            .set_paging(paging_for(cr0, cr4, efer), self.cr3)
            .map_err(|_| Fault::gp(0))?;
        self.cr0 = cr0;
        self.cr4 = cr4;
        self.efer = efer;
        Ok(())
    }

    /// MOV to CR0 / LMSW: the bits this CPU models; ET is hardwired to 1 (SDM Vol.3 2.5).
    /// Setting PG with EFER.LME activates IA-32e mode (EFER.LMA), clearing it leaves
    /// (SDM Vol.3 9.8.5).
    pub fn write_cr0(&mut self, v: u64) -> Result<(), Fault> {
        const WRITABLE: u64 = cr0::PE
            | cr0::MP
            | cr0::EM
            | cr0::TS
            | cr0::NE
            | cr0::WP
            | cr0::AM
            | cr0::NW
            | cr0::CD
            | cr0::PG;
        // PG without PE, or NW without CD, is #GP(0); so are bits 63:32.
        if (v & cr0::PG != 0 && v & cr0::PE == 0)
            || (v & cr0::NW != 0 && v & cr0::CD == 0)
            || v >> 32 != 0
        {
            return Err(Fault::gp(0));
        }
        let new = (v & WRITABLE) | cr0::ET;
        let mut efer = self.efer;
        let (was_on, on) = (self.cr0 & cr0::PG != 0, new & cr0::PG != 0);
        if on && !was_on && efer & efer::LME != 0 {
            // Activation needs CR4.PAE, a CS that is not 64-bit and a TR that is not a
            // 16-bit TSS (SDM Vol.2A MOV CR: #GP(0)).
            let tss16 = matches!(self.tr.attr & 0x1F, 1 | 3);
            if self.cr4 & cr4::PAE == 0 || self.seg[sreg::CS].attr & attr::L != 0 || tss16 {
                return Err(Fault::gp(0));
            }
            efer |= efer::LMA;
        }
        if was_on && !on && efer & efer::LMA != 0 {
            // Only compatibility mode may turn paging off, which deactivates IA-32e mode.
            if self.long64() {
                return Err(Fault::gp(0));
            }
            efer &= !efer::LMA;
        }
        self.set_paging_registers(new, self.cr4, efer)
    }

    /// MOV to CR3: bits 63:MAXPHYADDR are reserved; the TLB keeps global entries.
    pub fn write_cr3(&mut self, v: u64) -> Result<(), Fault> {
        if v >> MAXPHYADDR != 0 {
            return Err(Fault::gp(0));
        }
        self.mmu.set_cr3(v).map_err(|_| Fault::gp(0))?;
        self.cr3 = v;
        Ok(())
    }

    /// MOV to CR4: #GP(0) for a bit this CPU does not implement, or for clearing PAE in
    /// IA-32e mode.
    pub fn write_cr4(&mut self, v: u64) -> Result<(), Fault> {
        if v & !CR4_SUPPORTED != 0 || (self.efer & efer::LMA != 0 && v & cr4::PAE == 0) {
            return Err(Fault::gp(0));
        }
        self.set_paging_registers(self.cr0, v, self.efer)
    }

    /// WRMSR to EFER: reserved bits and changing LME while paging is on are #GP(0)
    /// (SDM Vol.4 IA32_EFER; SDM Vol.3 9.8.5).
    pub fn write_efer(&mut self, v: u64) -> Result<(), Fault> {
        if v & !(EFER_WRITABLE | efer::LMA) != 0
            || ((v ^ self.efer) & efer::LME != 0 && self.cr0 & cr0::PG != 0)
        {
            return Err(Fault::gp(0));
        }
        let new = (self.efer & efer::LMA) | (v & EFER_WRITABLE);
        self.set_paging_registers(self.cr0, self.cr4, new)
    }

    pub fn control_register(&self, r: Register) -> Option<u64> {
        Some(match r {
            Register::CR0 => self.cr0,
            Register::CR2 => self.cr2,
            Register::CR3 => self.cr3,
            Register::CR4 => self.cr4,
            Register::CR8 => self.tpr as u64,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Expectations from SDM Vol.2A MOV CR / Vol.3 2.5, 4.4.1, 9.8.5.

    use super::*;
    use crate::fault::vector;
    use crate::state::Segment;
    use crate::testutil::{exec, raised};
    use crate::{Mmu, NullBus, PhysMem};

    const CODE32: u16 =
        attr::ACCESSED | attr::RW | attr::CODE | attr::S | attr::P | attr::DB | attr::G;

    /// 32-bit protected mode, CPL 0, flat segments, paging off.
    fn pm32() -> Cpu {
        let mut p = PhysMem::new();
        p.add_ram(0, 0x40_0000).unwrap();
        let mut cpu = Cpu::new(Mmu::new(p));
        cpu.cr0 |= cr0::PE;
        cpu.seg[sreg::CS] = Segment {
            selector: 0x08,
            base: 0,
            limit: 0xFFFF_FFFF,
            attr: CODE32,
        };
        cpu
    }

    fn put64(cpu: &mut Cpu, addr: u64, v: u64) {
        cpu.mmu.phys.write_bytes(addr, &v.to_le_bytes()).unwrap();
    }

    /// Identity-map 0..2 MiB with 4-level paging at CR3 = 0x10000.
    fn level4_tables(cpu: &mut Cpu) {
        put64(cpu, 0x10000, 0x11000 | 7);
        put64(cpu, 0x11000, 0x12000 | 7);
        put64(cpu, 0x12000, 0x87);
        cpu.write_cr3(0x10000).unwrap();
    }

    #[test]
    fn cet_hints_are_nops_without_cet() {
        let mut cpu = pm32();
        let before = cpu.gpr;
        // endbr32 ; endbr64 ; rdsspd eax
        for code in [
            &[0xF3, 0x0F, 0x1E, 0xFB][..],
            &[0xF3, 0x0F, 0x1E, 0xFA],
            &[0xF3, 0x0F, 0x1E, 0xC8],
        ] {
            assert!(exec(&mut cpu, code).is_empty());
        }
        assert_eq!(cpu.gpr, before);
    }

    #[test]
    fn prefetch_hints_do_nothing_and_never_fault() {
        let mut cpu = pm32();
        // prefetcht0 [eax] ; prefetchnta [eax] with EAX far outside RAM: no #PF/#GP.
        cpu.gpr[gpr::RAX] = 0xFFFF_F000;
        let before = cpu.gpr;
        assert!(exec(&mut cpu, &[0x0F, 0x18, 0x08]).is_empty());
        assert!(exec(&mut cpu, &[0x0F, 0x18, 0x00]).is_empty());
        assert_eq!(cpu.gpr, before);
    }

    #[test]
    fn debug_register_fixed_bits_and_general_detect() {
        let mut cpu = pm32();
        // mov dr7, eax ; mov dr6, eax with EAX = 0: the fixed-1 bits read back.
        cpu.gpr[gpr::RAX] = 0;
        assert!(exec(&mut cpu, &[0x0F, 0x23, 0xF8]).is_empty());
        assert!(exec(&mut cpu, &[0x0F, 0x23, 0xF0]).is_empty());
        assert_eq!((cpu.dr[7], cpu.dr[6]), (0x400, 0xFFFF_0FF0));
        // DR7.GD: the next MOV DRn is a #DB fault with DR6.BD, and GD is cleared.
        cpu.gpr[gpr::RAX] = 0x2000;
        assert!(exec(&mut cpu, &[0x0F, 0x23, 0xF8]).is_empty());
        assert!(raised(
            exec(&mut cpu, &[0x0F, 0x21, 0xC0]),
            crate::fault::vector::DB
        ));
        assert_eq!(cpu.dr[6] & 0x2000, 0x2000);
        assert_eq!(cpu.dr[7] & 0x2000, 0);
    }

    #[test]
    fn ia32e_activation_and_deactivation() {
        let mut cpu = pm32();
        level4_tables(&mut cpu);
        cpu.write_efer(efer::LME).unwrap();
        let pg = cpu.cr0 | cr0::PG;
        // CR4.PAE is required (#GP(0), nothing changes).
        assert_eq!(cpu.write_cr0(pg), Err(Fault::gp(0)));
        assert_eq!(cpu.cr0 & cr0::PG, 0);
        cpu.write_cr4(cr4::PAE).unwrap();
        cpu.write_cr0(pg).unwrap();
        assert_eq!(cpu.efer, efer::LME | efer::LMA);
        assert_eq!(cpu.mmu.paging().mode, Mode::Level4);
        // Compatibility mode (CS.L = 0): 32-bit code under long-mode paging.
        assert!(!cpu.long64());
        assert_eq!(cpu.code_bits(), 32);
        // LME cannot change and PAE cannot be cleared while IA-32e mode is active.
        assert_eq!(cpu.write_efer(0), Err(Fault::gp(0)));
        assert_eq!(cpu.write_cr4(0), Err(Fault::gp(0)));
        // Leaving from 64-bit mode is #GP; from compatibility mode it clears LMA.
        cpu.seg[sreg::CS].attr = (CODE32 & !attr::DB) | attr::L;
        assert_eq!(cpu.write_cr0(pg & !cr0::PG), Err(Fault::gp(0)));
        cpu.seg[sreg::CS].attr = CODE32;
        cpu.write_cr0(pg & !cr0::PG).unwrap();
        assert_eq!(cpu.efer, efer::LME);
        assert_eq!(cpu.mmu.paging().mode, Mode::Off);
    }

    #[test]
    fn activation_with_a_64_bit_cs_faults() {
        let mut cpu = pm32();
        level4_tables(&mut cpu);
        cpu.write_cr4(cr4::PAE).unwrap();
        cpu.write_efer(efer::LME).unwrap();
        cpu.seg[sreg::CS].attr = (CODE32 & !attr::DB) | attr::L;
        assert_eq!(cpu.write_cr0(cpu.cr0 | cr0::PG), Err(Fault::gp(0)));
    }

    #[test]
    fn cr0_cr3_cr4_efer_reserved_bits() {
        let mut cpu = pm32();
        // PG without PE, NW without CD.
        assert_eq!(cpu.write_cr0(cr0::PG), Err(Fault::gp(0)));
        assert_eq!(cpu.write_cr0(cr0::PE | cr0::NW), Err(Fault::gp(0)));
        // CR4 bits for features CPUID does not report (VME, DE, VMXE, SMEP) are reserved.
        for bit in [0, 3, 13, 20] {
            assert_eq!(cpu.write_cr4(1 << bit), Err(Fault::gp(0)), "CR4 bit {bit}");
        }
        assert_eq!(cpu.write_cr4(cr4::PSE | cr4::PGE | cr4::OSFXSR), Ok(()));
        assert_eq!(cpu.write_cr3(1 << MAXPHYADDR), Err(Fault::gp(0)));
        // EFER: SVME and reserved bits; LMA is read-only.
        assert_eq!(cpu.write_efer(1 << 12), Err(Fault::gp(0)));
        cpu.write_efer(efer::LMA | efer::NXE).unwrap();
        assert_eq!(cpu.efer, efer::NXE);
    }

    #[test]
    fn pae_pdptes_are_checked_by_mov_cr3_and_cr0() {
        let mut cpu = pm32();
        put64(&mut cpu, 0x2000, 0x3000 | 1);
        put64(&mut cpu, 0x2008, 0x4000 | 1 | 2); // bit 1 is reserved in a PDPTE
        cpu.write_cr3(0x2000).unwrap(); // paging off: not checked yet
        cpu.write_cr4(cr4::PAE).unwrap();
        assert_eq!(cpu.write_cr0(cpu.cr0 | cr0::PG), Err(Fault::gp(0)));
        put64(&mut cpu, 0x2008, 0x4000 | 1);
        cpu.write_cr0(cpu.cr0 | cr0::PG).unwrap();
        assert_eq!(cpu.mmu.paging().mode, Mode::Pae);
        put64(&mut cpu, 0x5000, 1 << 63 | 1);
        assert_eq!(cpu.write_cr3(0x5000), Err(Fault::gp(0)));
        assert_eq!(cpu.cr3, 0x2000);
    }

    #[test]
    fn cr8_is_the_tpr_in_64_bit_mode_only() {
        let mut cpu = pm32();
        level4_tables(&mut cpu);
        cpu.write_cr4(cr4::PAE).unwrap();
        cpu.write_efer(efer::LME).unwrap();
        cpu.write_cr0(cpu.cr0 | cr0::PG).unwrap();
        // 32-bit code: REX is DEC, so encode MOV CR8 only in 64-bit mode.
        cpu.seg[sreg::CS].attr = (CODE32 & !attr::DB) | attr::L;
        cpu.gpr[gpr::RAX] = 9;
        assert!(exec(&mut cpu, &[0x44, 0x0F, 0x22, 0xC0]).is_empty()); // mov cr8, rax
        assert_eq!(cpu.tpr, 9);
        assert!(exec(&mut cpu, &[0x44, 0x0F, 0x20, 0xC3]).is_empty()); // mov rbx, cr8
        assert_eq!(cpu.gpr[gpr::RBX], 9);
        cpu.gpr[gpr::RAX] = 0x10;
        assert!(raised(
            exec(&mut cpu, &[0x44, 0x0F, 0x22, 0xC0]),
            vector::GP
        ));
        assert_eq!(cpu.tpr, 9);
    }

    #[test]
    fn rdmsr_wrmsr_instructions() {
        let mut cpu = pm32();
        cpu.gpr[gpr::RCX] = index::STAR as u64;
        cpu.gpr[gpr::RDX] = 0x0023_0008;
        cpu.gpr[gpr::RAX] = 0x1234;
        assert!(exec(&mut cpu, &[0x0F, 0x30]).is_empty());
        cpu.gpr[gpr::RAX] = 0;
        cpu.gpr[gpr::RDX] = 0;
        assert!(exec(&mut cpu, &[0x0F, 0x32]).is_empty());
        assert_eq!(
            (cpu.gpr[gpr::RDX], cpu.gpr[gpr::RAX]),
            (0x0023_0008, 0x1234)
        );
        cpu.gpr[gpr::RCX] = 0x4000_0000;
        assert!(raised(exec(&mut cpu, &[0x0F, 0x32]), vector::GP));
        // Privileged: #GP(0) at CPL 3 (the classifier's table, DESIGN.md §3).
        cpu.gpr[gpr::RCX] = index::STAR as u64;
        cpu.seg[sreg::CS].selector |= 3;
        assert!(raised(exec(&mut cpu, &[0x0F, 0x32]), vector::GP));
    }

    #[test]
    fn rdtsc_with_cr4_tsd_faults_outside_ring_0() {
        let mut cpu = pm32();
        cpu.write_cr4(cr4::TSD).unwrap();
        cpu.msr.set(index::TSC_AUX, 7);
        assert!(exec(&mut cpu, &[0x0F, 0x01, 0xF9]).is_empty()); // rdtscp
        assert_eq!(cpu.gpr[gpr::RCX], 7);
        cpu.seg[sreg::CS].selector |= 3;
        assert!(raised(exec(&mut cpu, &[0x0F, 0x31]), vector::GP));
        cpu.write_cr4(0).unwrap();
        assert!(exec(&mut cpu, &[0x0F, 0x31]).is_empty());
    }

    #[test]
    fn cli_and_sti_follow_iopl() {
        let mut cpu = pm32();
        cpu.seg[sreg::CS].selector |= 3;
        assert!(raised(exec(&mut cpu, &[0xFA]), vector::GP));
        cpu.set_rflags(rf::IOPL | rf::IF);
        assert!(exec(&mut cpu, &[0xFA]).is_empty());
        assert_eq!(cpu.rflags() & rf::IF, 0);
    }

    /// 32-bit paging with PD 0x20000 and PT 0x21000 mapping 0..128 KiB 1:1 with
    /// `flags`, except linear 0x5000, which maps physical 0x7000.
    fn bits32_paging(cpu: &mut Cpu, flags: u32) {
        let mut put = |a: u64, v: u32| cpu.mmu.phys.write_bytes(a, &v.to_le_bytes()).unwrap();
        put(0x20000, 0x21000 | 7);
        for p in 0..0x20u32 {
            put(0x21000 + 4 * p as u64, p << 12 | flags);
        }
        put(0x21014, 0x7000 | flags);
        cpu.write_cr3(0x20000).unwrap();
        cpu.write_cr0(cpu.cr0 | cr0::PG).unwrap();
    }

    #[test]
    fn ring_3_cannot_fetch_from_supervisor_pages() {
        let mut cpu = pm32();
        bits32_paging(&mut cpu, 3);
        cpu.seg[sreg::CS].selector |= 3;
        // #PF (then #GP and more: there is no IDT to deliver it through).
        exec(&mut cpu, &[0x90]);
        assert_eq!(cpu.stats.exceptions[vector::PF as usize], 1);
        assert_eq!(cpu.cr2, cpu.rip);
        // The same code runs at CPL 0.
        cpu.seg[sreg::CS].selector &= !3;
        assert!(exec(&mut cpu, &[0x90]).is_empty());
    }

    #[test]
    fn invlpg_drops_the_translation_of_its_operand() {
        let mut cpu = pm32();
        bits32_paging(&mut cpu, 3);
        cpu.mmu.phys.write_bytes(0x7000, &[0x11]).unwrap();
        cpu.mmu.phys.write_bytes(0x8000, &[0x22]).unwrap();
        assert_eq!(cpu.mmu.read::<u8>(&mut NullBus, 0x5000), Ok(0x11));
        cpu.mmu
            .phys
            .write_bytes(0x21014, &(0x8003u32).to_le_bytes())
            .unwrap();
        // DS based at 0x1000: INVLPG [0x4000] names linear 0x5000.
        cpu.seg[sreg::DS].base = 0x1000;
        assert!(exec(&mut cpu, &[0x0F, 0x01, 0x3D, 0x00, 0x40, 0x00, 0x00]).is_empty());
        assert_eq!(cpu.mmu.read::<u8>(&mut NullBus, 0x5000), Ok(0x22));
    }
}
