//! Fast system calls: SYSCALL/SYSRET (AMD APM Vol.3; SDM Vol.2B) and SYSENTER/SYSEXIT
//! (SDM Vol.2B). They load CS and SS with fixed flat descriptors instead of reading the
//! GDT.
//!
//! Vendor choices, where the manuals differ: SYSCALL/SYSRET follow AMD (and QEMU):
//! they work in legacy protected mode and compatibility mode too, SYSCALL from
//! compatibility mode goes to CSTAR. SYSRET to a non-canonical RCX faults in ring 0 as
//! on Intel. SYSENTER/SYSEXIT follow Intel and work in IA-32e mode.

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::cpu::{canonical, Cpu};
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::rf;
use crate::msr::index;
use crate::state::{attr, cr0, efer, gpr, sreg, Segment};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Syscall, |_| Some(syscall));
    // iced names the REX.W forms, which return to 64-bit mode, SYSRETQ and SYSEXITQ.
    t.on(Mnemonic::Sysret, |_| Some(sysret::<false>));
    t.on(Mnemonic::Sysretq, |_| Some(sysret::<true>));
    t.on(Mnemonic::Sysenter, |_| Some(sysenter));
    t.on(Mnemonic::Sysexit, |_| Some(sysexit::<false>));
    t.on(Mnemonic::Sysexitq, |_| Some(sysexit::<true>));
}

/// Descriptor attributes of the flat segments these instructions load (SDM Vol.2B
/// SYSCALL: "CS.Type := 11 (execute/read, accessed); CS.S := 1; CS.P := 1; CS.G := 1";
/// SS: type 3, read/write accessed, B = 1).
const CODE: u16 = attr::ACCESSED | attr::RW | attr::CODE | attr::S | attr::P | attr::G;
const DATA: u16 = attr::ACCESSED | attr::RW | attr::S | attr::P | attr::DB | attr::G;
const DPL3: u16 = 3 << attr::DPL_SHIFT;

fn flat(selector: u16, attr: u16) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr,
    }
}

impl Cpu {
    /// Install the CS and SS of a fast system call: 64-bit code if `long`, else 32-bit.
    fn load_flat(&mut self, cs: u16, ss: u16, long: bool, dpl3: bool) {
        let dpl = if dpl3 { DPL3 } else { 0 };
        let size = if long { attr::L } else { attr::DB };
        self.seg[sreg::CS] = flat(cs, CODE | size | dpl);
        self.seg[sreg::SS] = flat(ss, DATA | dpl);
    }
}

/// SYSCALL: #UD unless EFER.SCE. CS = STAR[47:32], SS = CS + 8, CPL 0.
fn syscall(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.efer & efer::SCE == 0 {
        return Err(Fault::ud());
    }
    let star = cpu.msr.get(index::STAR);
    let sel = (star >> 32) as u16;
    let flags = cpu.rflags();
    cpu.gpr[gpr::RCX] = cpu.next_ip;
    if cpu.efer & efer::LMA != 0 {
        // Long mode: R11 gets RFLAGS (RF clear), SFMASK clears flags, and the
        // target is LSTAR from 64-bit mode or CSTAR from compatibility mode.
        let target = cpu.msr.get(if cpu.long64() {
            index::LSTAR
        } else {
            index::CSTAR
        });
        cpu.gpr[11] = flags & !rf::RF;
        cpu.set_rflags(flags & !(cpu.msr.get(index::SFMASK) | rf::RF));
        cpu.load_flat(sel & !3, sel.wrapping_add(8), true, false);
        cpu.next_ip = target;
    } else {
        // Legacy mode (AMD): EIP = STAR[31:0]; VM, IF and RF are cleared.
        cpu.set_rflags(flags & !(rf::VM | rf::IF | rf::RF));
        cpu.load_flat(sel & !3, sel.wrapping_add(8), false, false);
        cpu.next_ip = star & 0xFFFF_FFFF;
    }
    Ok(())
}

/// SYSRET: #UD unless EFER.SCE, #GP(0) outside protected mode or at CPL > 0.
/// CS = STAR[63:48] (+16 for 64-bit), SS = STAR[63:48] + 8, CPL 3.
fn sysret<const Q: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    if cpu.efer & efer::SCE == 0 {
        return Err(Fault::ud());
    }
    // SDM Vol.2B SYSRET checks CPL after the #UD cases (the classifier's table may
    // fault it at decode time already).
    if cpu.cr0 & cr0::PE == 0 || cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let base = (cpu.msr.get(index::STAR) >> 48) as u16;
    let rcx = cpu.gpr[gpr::RCX];
    // Intel: a non-canonical return address faults here, at CPL 0 (SDM Vol.2B SYSRET).
    if Q && !canonical(rcx) {
        return Err(Fault::gp(0));
    }
    let ss = base.wrapping_add(8) | 3;
    if cpu.efer & efer::LMA != 0 {
        let cs = if Q { base.wrapping_add(16) } else { base } | 3;
        // RFLAGS := (R11 AND 3C7FD7H) OR 2: RF and VM clear.
        cpu.set_rflags(cpu.gpr[11] & 0x3C_7FD7);
        cpu.load_flat(cs, ss, Q, true);
        cpu.next_ip = if Q { rcx } else { rcx & 0xFFFF_FFFF };
    } else {
        // Legacy mode (AMD): only IF changes in RFLAGS.
        cpu.set_rflags(cpu.rflags() | rf::IF);
        cpu.load_flat(base | 3, ss, false, true);
        cpu.next_ip = rcx & 0xFFFF_FFFF;
    }
    Ok(())
}

/// SYSENTER: #GP(0) in real mode or with SYSENTER_CS = 0. CS = SYSENTER_CS, SS = CS + 8,
/// CPL 0; in IA-32e mode it enters 64-bit mode.
fn sysenter(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let cs = cpu.msr.get(index::SYSENTER_CS) as u16;
    if cpu.cr0 & cr0::PE == 0 || cs & !3 == 0 {
        return Err(Fault::gp(0));
    }
    let long = cpu.efer & efer::LMA != 0;
    let (esp, eip) = (
        cpu.msr.get(index::SYSENTER_ESP),
        cpu.msr.get(index::SYSENTER_EIP),
    );
    let width = if long { u64::MAX } else { 0xFFFF_FFFF };
    cpu.set_rflags(cpu.rflags() & !(rf::VM | rf::IF | rf::RF));
    cpu.load_flat(cs & !3, (cs & !3).wrapping_add(8), long, false);
    cpu.gpr[gpr::RSP] = esp & width;
    cpu.next_ip = eip & width;
    Ok(())
}

/// SYSEXIT: #GP(0) in real mode, with SYSENTER_CS = 0, or at CPL > 0.
/// CS = SYSENTER_CS + 16 (+32 for 64-bit), SS = CS + 8, CPL 3; RIP = RDX, RSP = RCX.
fn sysexit<const Q: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let base = cpu.msr.get(index::SYSENTER_CS) as u16;
    if cpu.cr0 & cr0::PE == 0 || base & !3 == 0 || cpu.cpl() != 0 {
        return Err(Fault::gp(0));
    }
    let (rcx, rdx) = (cpu.gpr[gpr::RCX], cpu.gpr[gpr::RDX]);
    if Q && !(canonical(rcx) && canonical(rdx)) {
        return Err(Fault::gp(0));
    }
    let cs = base.wrapping_add(if Q { 32 } else { 16 }) | 3;
    cpu.load_flat(cs, cs.wrapping_add(8), Q, true);
    let width = if Q { u64::MAX } else { 0xFFFF_FFFF };
    cpu.gpr[gpr::RSP] = rcx & width;
    cpu.next_ip = rdx & width;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::vector;
    use crate::testutil::{exec, raised};
    use crate::{Mmu, PhysMem};
    use iced_x86::{Decoder, DecoderOptions};

    /// A CPU in 64-bit mode at CPL 0 with SYSCALL enabled (no paging: these
    /// instructions touch no memory).
    fn long_cpu() -> Cpu {
        let mut p = PhysMem::new();
        p.add_ram(0, 0x10_0000).unwrap();
        let mut cpu = Cpu::new(Mmu::new(p));
        cpu.cr0 |= cr0::PE;
        cpu.efer = efer::SCE | efer::LME | efer::LMA;
        cpu.seg[sreg::CS] = flat(0x08, CODE | attr::L);
        cpu.seg[sreg::SS] = flat(0x10, DATA);
        cpu
    }

    #[test]
    fn fast_calls_end_their_block() {
        for (bytes, bits) in [
            (&[0x0F, 0x05][..], 64),
            (&[0x48, 0x0F, 0x07][..], 64),
            (&[0x0F, 0x34][..], 32),
            (&[0x0F, 0x35][..], 32),
        ] {
            let i = Decoder::new(bits, bytes, DecoderOptions::NONE).decode();
            assert!(crate::exec::ends_block(&i), "{:?}", i.code());
        }
    }

    #[test]
    fn syscall_and_sysret_64() {
        let mut cpu = long_cpu();
        cpu.msr.set(index::STAR, 0x0023_0008_0000_0000);
        cpu.msr.set(index::LSTAR, 0xFFFF_8000_0000_1000);
        cpu.msr.set(index::SFMASK, rf::IF | rf::TF | rf::DF);
        cpu.set_rflags(rf::IF | rf::DF | rf::CF);
        assert!(exec(&mut cpu, &[0x0F, 0x05]).is_empty());
        assert_eq!(cpu.rip, 0xFFFF_8000_0000_1000);
        assert_eq!(cpu.gpr[gpr::RCX], 0x1002);
        assert_eq!(cpu.gpr[11], rf::FIXED1 | rf::IF | rf::DF | rf::CF);
        assert_eq!(cpu.rflags(), rf::FIXED1 | rf::CF);
        assert_eq!(
            (cpu.seg[sreg::CS].selector, cpu.seg[sreg::SS].selector),
            (0x08, 0x10)
        );
        assert!(cpu.long64());
        assert_eq!(cpu.cpl(), 0);
        // SYSRET (REX.W) back: CS = STAR[63:48] + 16, SS = + 8, RPL 3.
        let mut cpu = long_cpu();
        cpu.msr.set(index::STAR, 0x0023_0008_0000_0000);
        cpu.gpr[gpr::RCX] = 0x40_0000;
        cpu.gpr[11] = rf::IF | rf::RF | rf::VM | 0x8D5;
        assert!(exec(&mut cpu, &[0x48, 0x0F, 0x07]).is_empty());
        assert_eq!(cpu.rip, 0x40_0000);
        assert_eq!(
            (cpu.seg[sreg::CS].selector, cpu.seg[sreg::SS].selector),
            (0x33, 0x2B)
        );
        assert_eq!(cpu.rflags(), rf::FIXED1 | rf::IF | 0x8D5);
        assert!(cpu.long64());
        assert_eq!(cpu.cpl(), 3);
    }

    #[test]
    fn sysret_to_compatibility_mode_and_faults() {
        let mut cpu = long_cpu();
        cpu.msr.set(index::STAR, 0x0023_0008_0000_0000);
        cpu.gpr[gpr::RCX] = 0xFFFF_FFFF_0040_0000;
        assert!(exec(&mut cpu, &[0x0F, 0x07]).is_empty());
        assert_eq!(cpu.rip, 0x40_0000);
        assert_eq!(cpu.seg[sreg::CS].selector, 0x23);
        assert!(!cpu.long64());
        assert_eq!(cpu.code_bits(), 32);
        // Non-canonical RCX: #GP(0) at CPL 0, nothing changed.
        let mut cpu = long_cpu();
        cpu.gpr[gpr::RCX] = 0x0000_8000_0000_0000;
        assert!(raised(exec(&mut cpu, &[0x48, 0x0F, 0x07]), vector::GP));
        assert_eq!(cpu.seg[sreg::CS].selector, 0x08);
        // Ring 3: #GP(0), before anything changes.
        let mut cpu = long_cpu();
        cpu.seg[sreg::CS].selector = 0x33;
        cpu.gpr[gpr::RCX] = 0x1000;
        assert!(raised(exec(&mut cpu, &[0x48, 0x0F, 0x07]), vector::GP));
        assert_eq!(cpu.seg[sreg::CS].selector, 0x33);
        // EFER.SCE clear: #UD.
        let mut cpu = long_cpu();
        cpu.efer &= !efer::SCE;
        assert!(raised(exec(&mut cpu, &[0x0F, 0x05]), vector::UD));
    }

    #[test]
    fn sysenter_and_sysexit_32() {
        let mut cpu = long_cpu();
        cpu.efer = 0;
        cpu.seg[sreg::CS] = flat(0x08, CODE | attr::DB);
        cpu.msr.set(index::SYSENTER_CS, 0x10);
        cpu.msr.set(index::SYSENTER_ESP, 0x9000);
        cpu.msr.set(index::SYSENTER_EIP, 0x2000);
        assert!(exec(&mut cpu, &[0x0F, 0x34]).is_empty());
        assert_eq!((cpu.rip, cpu.gpr[gpr::RSP]), (0x2000, 0x9000));
        assert_eq!(
            (cpu.seg[sreg::CS].selector, cpu.seg[sreg::SS].selector),
            (0x10, 0x18)
        );
        assert_eq!(cpu.cpl(), 0);
        cpu.gpr[gpr::RCX] = 0x7000;
        cpu.gpr[gpr::RDX] = 0x3000;
        assert!(exec(&mut cpu, &[0x0F, 0x35]).is_empty());
        assert_eq!((cpu.rip, cpu.gpr[gpr::RSP]), (0x3000, 0x7000));
        assert_eq!(
            (cpu.seg[sreg::CS].selector, cpu.seg[sreg::SS].selector),
            (0x23, 0x2B)
        );
        assert_eq!(cpu.cpl(), 3);
        // SYSENTER_CS = 0: #GP(0).
        cpu.msr.set(index::SYSENTER_CS, 0);
        assert!(raised(exec(&mut cpu, &[0x0F, 0x34]), vector::GP));
    }
}
