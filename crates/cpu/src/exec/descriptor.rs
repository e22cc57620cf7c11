//! Descriptor and system-segment instructions: LAR LSL VERR VERW ARPL SLDT STR LLDT LTR
//! (SDM Vol.2). All of them are #UD in real and virtual-8086 mode. LAR LSL VERR VERW
//! answer through ZF instead of faulting; LLDT and LTR are privileged (the CPL check
//! comes from the Popek–Goldberg table at decode time, DESIGN.md §3).

use iced_x86::{Instruction, Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::{op_size, Handler, Table};
use crate::fault::{vector, Fault};
use crate::flags::rf;
use crate::segment::{selector, sys, Descriptor};
use crate::state::{Segment, Word};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Lar, |i| {
        by_dest(i, [lar::<u16>, lar::<u32>, lar::<u64>])
    });
    t.on(Mnemonic::Lsl, |i| {
        by_dest(i, [lsl::<u16>, lsl::<u32>, lsl::<u64>])
    });
    t.on(Mnemonic::Verr, |_| Some(verify::<false>));
    t.on(Mnemonic::Verw, |_| Some(verify::<true>));
    t.on(Mnemonic::Arpl, |i| {
        (i.op1_kind() == OpKind::Register).then_some(arpl as Handler)
    });
    t.on(Mnemonic::Sldt, |i| {
        by_dest(
            i,
            [
                store::<u16, false>,
                store::<u32, false>,
                store::<u64, false>,
            ],
        )
    });
    t.on(Mnemonic::Str, |i| {
        by_dest(
            i,
            [store::<u16, true>, store::<u32, true>, store::<u64, true>],
        )
    });
    t.on(Mnemonic::Lldt, |_| Some(lldt));
    t.on(Mnemonic::Ltr, |_| Some(ltr));
}

/// Pick the handler by the size of operand 0 (a memory destination is 16 bits).
fn by_dest(i: &Instruction, h: [Handler; 3]) -> Option<Handler> {
    match op_size(i, 0) {
        2 => Some(h[0]),
        4 => Some(h[1]),
        8 => Some(h[2]),
        _ => None,
    }
}

/// System descriptor types LAR accepts (SDM Vol.2 LAR, Table 3-55); IA-32e mode
/// keeps only its own (LDT, 64-bit TSS, 64-bit call gate).
const LAR_TYPES: &[u8] = &[
    sys::TSS16,
    sys::LDT,
    sys::TSS16_BUSY,
    sys::CALL_GATE16,
    sys::TASK_GATE,
    sys::TSS32,
    sys::TSS32_BUSY,
    sys::CALL_GATE32,
];
const LAR_TYPES_IA32E: &[u8] = &[sys::LDT, sys::TSS32, sys::TSS32_BUSY, sys::CALL_GATE32];
/// System descriptor types LSL accepts: the ones with a limit.
const LSL_TYPES: &[u8] = &[
    sys::TSS16,
    sys::LDT,
    sys::TSS16_BUSY,
    sys::TSS32,
    sys::TSS32_BUSY,
];
const LSL_TYPES_IA32E: &[u8] = &[sys::LDT, sys::TSS32, sys::TSS32_BUSY];

/// #UD outside protected mode (real and virtual-8086 mode).
fn protected_only(cpu: &Cpu) -> Result<(), Fault> {
    if !cpu.protected() || cpu.v86() {
        return Err(Fault::ud());
    }
    Ok(())
}

fn set_zf(cpu: &mut Cpu, z: bool) {
    cpu.set_arith_flags(rf::ZF, if z { rf::ZF } else { 0 });
}

impl Cpu {
    /// The descriptor a LAR/LSL/VERR/VERW selector names, if the program may see it:
    /// not null, inside its table, a code/data segment or one of `system` types, and
    /// unless conforming code, DPL >= CPL and DPL >= RPL (SDM Vol.2 LAR).
    fn visible_descriptor(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        system: &[u8],
    ) -> Result<Option<Descriptor>, Fault> {
        if selector::is_null(sel) {
            return Ok(None);
        }
        let Some(d) = self.descriptor(bus, sel)? else {
            return Ok(None);
        };
        let rpl = (sel & selector::RPL) as u8;
        let seen = (!d.system() || system.contains(&d.kind()))
            && (d.conforming() || (d.dpl() >= self.cpl() && d.dpl() >= rpl));
        Ok(seen.then_some(d))
    }
}

/// LAR r, r/m16: the access rights (descriptor bits 32-63 masked by 00F0FF00h, FF00h
/// for a 16-bit operand) and ZF = 1, or ZF = 0 and the destination unchanged.
fn lar<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = cpu.read_op::<u16>(bus, e, 1)?;
    let types = if cpu.ia32e() {
        LAR_TYPES_IA32E
    } else {
        LAR_TYPES
    };
    let d = cpu.visible_descriptor(bus, sel, types)?;
    if let Some(d) = d {
        let mask = if T::BYTES == 2 { 0xFF00 } else { 0x00F0_FF00 };
        cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64((d.lo >> 32) & mask));
    }
    set_zf(cpu, d.is_some());
    Ok(())
}

/// LSL r, r/m16: the segment limit in bytes (granularity applied) and ZF = 1, or
/// ZF = 0 and the destination unchanged.
fn lsl<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = cpu.read_op::<u16>(bus, e, 1)?;
    let types = if cpu.ia32e() {
        LSL_TYPES_IA32E
    } else {
        LSL_TYPES
    };
    let d = cpu.visible_descriptor(bus, sel, types)?;
    if let Some(d) = d {
        let limit = d.segment(sel).limit as u64;
        cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(limit));
    }
    set_zf(cpu, d.is_some());
    Ok(())
}

/// VERR/VERW r/m16: ZF = 1 if the segment is readable (data or readable code) or
/// writable (data) from the CPL and RPL.
fn verify<const WRITE: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = cpu.read_op::<u16>(bus, e, 0)?;
    let ok = cpu.visible_descriptor(bus, sel, &[])?.is_some_and(|d| {
        if WRITE {
            d.writable()
        } else {
            d.readable()
        }
    });
    set_zf(cpu, ok);
    Ok(())
}

/// ARPL r/m16, r16: raise the destination's RPL to the source's (ZF = 1), else ZF = 0.
fn arpl(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let src = cpu.reg::<u16>(e.insn.op1_register()) & selector::RPL;
    let mut raised = false;
    cpu.rmw::<u16>(bus, e, |_, dst| {
        raised = dst & selector::RPL < src;
        raised.then_some((dst & !selector::RPL) | src)
    })?;
    set_zf(cpu, raised);
    Ok(())
}

/// SLDT/STR (`TR`): the selector, zero-extended into a register; 16 bits to memory.
fn store<T: Word, const TR: bool>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = if TR {
        cpu.tr.selector
    } else {
        cpu.ldtr.selector
    };
    if e.insn.op0_kind() == OpKind::Register {
        cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(sel as u64));
        Ok(())
    } else {
        cpu.write_op::<u16>(bus, e, 0, sel)
    }
}

/// The GDT descriptor an LLDT/LTR selector names: TI set or outside the GDT is
/// #GP(selector); the type must be one of `types` (#GP(selector)), and it must be
/// present (#NP(selector)). In IA-32e mode the upper half's type field must be 0.
fn system_descriptor(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    sel: u16,
    types: &[u8],
) -> Result<Descriptor, Fault> {
    let code = selector::error_code(sel);
    if sel & selector::TI != 0 {
        return Err(Fault::gp(code));
    }
    let d = cpu.descriptor_or(bus, sel, vector::GP)?;
    if !d.system() || !types.contains(&d.kind()) || (cpu.ia32e() && (d.hi >> 40) & 0x1F != 0) {
        return Err(Fault::gp(code));
    }
    if !d.present() {
        return Err(Fault::np(code));
    }
    Ok(d)
}

/// LLDT r/m16 (SDM Vol.2 LLDT): a null selector leaves LDTR unusable.
fn lldt(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = cpu.read_op::<u16>(bus, e, 0)?;
    cpu.ldtr = if selector::is_null(sel) {
        Segment {
            selector: sel,
            ..Segment::default()
        }
    } else {
        system_descriptor(cpu, bus, sel, &[sys::LDT])?.segment(sel)
    };
    Ok(())
}

/// LTR r/m16 (SDM Vol.2 LTR): an available TSS, which becomes busy; null is #GP(0).
fn ltr(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    protected_only(cpu)?;
    let sel = cpu.read_op::<u16>(bus, e, 0)?;
    if selector::is_null(sel) {
        return Err(Fault::gp(0));
    }
    let types: &[u8] = if cpu.ia32e() {
        &[sys::TSS32]
    } else {
        &[sys::TSS16, sys::TSS32]
    };
    let d = system_descriptor(cpu, bus, sel, types)?;
    cpu.set_tss_busy(bus, sel, true)?;
    let mut tr = d.segment(sel);
    tr.attr |= sys::BUSY as u16;
    cpu.tr = tr;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{desc, gate, pm, pm3, put, put_code, set_gate, GDT};
    use crate::state::gpr;
    use crate::testutil::{read32, real_mode};
    use crate::{Exit, NullBus};

    /// Added to `pm` from 30h: ring-3 byte-granular 16-bit data; execute-only code;
    /// read-only data; conforming ring-0 code; a call gate; an interrupt gate; an
    /// LDT; a not-present LDT; a not-present TSS; an available TSS.
    fn extra() -> Vec<u64> {
        vec![
            desc(0x1234, 0xFFFF, 0xF2, 0x4), // 30
            desc(0, 0xFFFF, 0x98, 0x4),      // 38
            desc(0, 0xFFFF, 0x90, 0x4),      // 40
            desc(0, 0xFFFFF, 0x9E, 0xC),     // 48
            gate(0x08, 0x1000, 0xEC, 0),     // 50
            gate(0x08, 0x1000, 0xEE, 0),     // 58
            desc(0x40000, 0x17, 0x82, 0),    // 60
            desc(0x40000, 0x17, 0x02, 0),    // 68
            desc(0x50000, 0x67, 0x09, 0),    // 70
            desc(0x50000, 0x67, 0x89, 0),    // 78
        ]
    }

    /// Run `code` at 1000h, then INT 20h through a DPL-3 gate to a HLT at 5200h.
    /// #UD #NP #GP go to HLTs at 5000h + 16 * vector. Ok(()) if the code ran to its
    /// end, else the vector and error code. The segment registers and ESP are put
    /// back afterwards, so the next run starts at the same CPL.
    fn run(cpu: &mut Cpu, code: &[u8]) -> Result<(), (u8, u32)> {
        let (seg, rsp) = (cpu.seg, cpu.gpr[gpr::RSP]);
        put_code(cpu, 0x1000, code);
        put_code(cpu, 0x1000 + code.len() as u64, &[0xCD, 0x20]);
        cpu.rip = 0x1000;
        for (v, dpl3) in [(6u8, false), (11, false), (13, false), (0x20, true)] {
            let at = 0x5000 + 16 * v as u32;
            set_gate(cpu, v, gate(0x08, at, if dpl3 { 0xEE } else { 0x8E }, 0));
            put(cpu, at as u64, &[0xF4]);
        }
        assert_eq!(cpu.run(&mut NullBus, 100), Exit::Halt);
        let v = ((cpu.rip - 0x5001) / 16) as u8;
        let r = match v {
            0x20 => Ok(()),
            6 => Err((v, 0)),
            _ => Err((v, read32(cpu, cpu.gpr[gpr::RSP]))),
        };
        cpu.wake();
        (cpu.seg, cpu.gpr[gpr::RSP]) = (seg, rsp);
        r
    }

    /// EAX and ZF after `code` runs with ECX = `sel`, EAX = 5A5A5A5Ah.
    fn query(cpu: &mut Cpu, code: &[u8], sel: u16) -> (u64, bool) {
        cpu.gpr[gpr::RCX] = sel as u64;
        cpu.gpr[gpr::RAX] = 0x5A5A_5A5A;
        run(cpu, code).unwrap();
        (cpu.gpr[gpr::RAX], cpu.zf())
    }

    const LAR: &[u8] = &[0x0F, 0x02, 0xC1]; // lar eax, ecx
    const LAR16: &[u8] = &[0x66, 0x0F, 0x02, 0xC1]; // lar ax, cx
    const LSL: &[u8] = &[0x0F, 0x03, 0xC1]; // lsl eax, ecx
    const VERR: &[u8] = &[0x0F, 0x00, 0xE1]; // verr cx
    const VERW: &[u8] = &[0x0F, 0x00, 0xE9]; // verw cx
    const MISS: (u64, bool) = (0x5A5A_5A5A, false);

    #[test]
    fn lar_reports_access_rights_of_visible_descriptors() {
        let mut cpu = pm3(&extra());
        assert_eq!(query(&mut cpu, LAR, 0x33), (0x0040_F200, true));
        assert_eq!(query(&mut cpu, LAR16, 0x33), (0x5A5A_F200, true));
        assert_eq!(query(&mut cpu, LAR, 0x08), MISS, "DPL 0 < CPL 3");
        assert_eq!(
            query(&mut cpu, LAR, 0x4B),
            (0x00C0_9E00, true),
            "conforming code: no DPL check"
        );
        assert_eq!(
            query(&mut cpu, LAR, 0x53),
            (0x0000_EC00, true),
            "a call gate"
        );
        assert_eq!(
            query(&mut cpu, LAR, 0x5B),
            MISS,
            "an interrupt gate is not a LAR type"
        );
        assert_eq!(query(&mut cpu, LAR, 0x00), MISS, "null");
        assert_eq!(query(&mut cpu, LAR, 0x80), MISS, "past the GDT");
        let mut cpu = pm(&extra());
        assert_eq!(
            query(&mut cpu, LAR, 0x28),
            (0x0000_8B00, true),
            "the busy TSS at CPL 0"
        );
        assert_eq!(query(&mut cpu, LAR, 0x0B), MISS, "RPL 3 > DPL 0");
    }

    #[test]
    fn lsl_reports_limits_in_bytes() {
        let mut cpu = pm(&extra());
        assert_eq!(query(&mut cpu, LSL, 0x30), (0xFFFF, true));
        assert_eq!(
            query(&mut cpu, LSL, 0x08),
            (0xFFFF_FFFF, true),
            "4 KiB granularity applied"
        );
        assert_eq!(query(&mut cpu, LSL, 0x28), (0x67, true), "a TSS");
        assert_eq!(query(&mut cpu, LSL, 0x60), (0x17, true), "an LDT");
        assert_eq!(query(&mut cpu, LSL, 0x50), MISS, "a call gate has no limit");
    }

    #[test]
    fn verr_and_verw() {
        let mut cpu = pm(&extra());
        for (code, sel, ok) in [
            (VERR, 0x08, true),
            (VERR, 0x38, false), // execute-only code
            (VERR, 0x40, true),  // read-only data
            (VERR, 0x28, false), // a TSS
            (VERW, 0x10, true),
            (VERW, 0x40, false),
            (VERW, 0x08, false),
            (VERW, 0x00, false),
        ] {
            assert_eq!(query(&mut cpu, code, sel).1, ok, "{code:02X?} {sel:#x}");
        }
        let mut cpu = pm3(&extra());
        assert!(!query(&mut cpu, VERW, 0x13).1, "DPL 0 data from CPL 3");
        assert!(query(&mut cpu, VERW, 0x33).1);
    }

    #[test]
    fn arpl_raises_the_rpl() {
        // arpl cx, dx
        let mut cpu = pm3(&[]);
        cpu.gpr[gpr::RCX] = 0x10;
        cpu.gpr[gpr::RDX] = 0x3;
        run(&mut cpu, &[0x63, 0xD1]).unwrap();
        assert_eq!((cpu.gpr[gpr::RCX], cpu.zf()), (0x13, true));
        run(&mut cpu, &[0x63, 0xD1]).unwrap();
        assert_eq!((cpu.gpr[gpr::RCX], cpu.zf()), (0x13, false));
    }

    #[test]
    fn lldt_and_ltr_are_undefined_in_v86_mode_before_any_privilege_check() {
        // SDM Vol.2A LLDT/LTR: "IF PE = 0 or VM = 1 THEN #UD" comes before the CPL
        // test, although V86 code runs at CPL 3.
        for code in [[0x0F, 0x00, 0xD1], [0x0F, 0x00, 0xD9]] {
            let mut cpu = crate::testutil::real_mode(&[]);
            cpu.cr0 |= crate::cr0::PE;
            cpu.set_rflags(crate::rf::VM | 0x2);
            let raised = crate::testutil::exec(&mut cpu, &code);
            assert_eq!(raised.first(), Some(&crate::vector::UD), "{code:02X?}");
        }
    }

    #[test]
    fn lldt_ltr_sldt_str() {
        let mut cpu = pm(&extra());
        // lldt cx ; sldt eax ; str edx
        cpu.gpr[gpr::RCX] = 0x60;
        cpu.gpr[gpr::RAX] = u64::MAX;
        run(
            &mut cpu,
            &[0x0F, 0x00, 0xD1, 0x0F, 0x00, 0xC0, 0x0F, 0x00, 0xCA],
        )
        .unwrap();
        assert_eq!((cpu.ldtr.base, cpu.ldtr.limit), (0x40000, 0x17));
        assert_eq!((cpu.gpr[gpr::RAX], cpu.gpr[gpr::RDX]), (0x60, 0x28));
        let lldt = [0x0F, 0x00, 0xD1];
        let ltr = [0x0F, 0x00, 0xD9];
        for (code, sel, want) in [
            (&lldt, 0x10, Err((13, 0x10))), // not an LDT
            (&lldt, 0x64, Err((13, 0x64))), // TI set
            (&lldt, 0x68, Err((11, 0x68))), // not present
            (&lldt, 0x00, Ok(())),          // null: LDTR unusable
            (&ltr, 0x00, Err((13, 0))),
            (&ltr, 0x28, Err((13, 0x28))), // busy
            (&ltr, 0x10, Err((13, 0x10))),
            (&ltr, 0x70, Err((11, 0x70))), // not present
            (&ltr, 0x78, Ok(())),
        ] {
            cpu.gpr[gpr::RCX] = sel;
            assert_eq!(run(&mut cpu, code), want, "{code:02X?} {sel:#x}");
        }
        assert_eq!(cpu.ldtr.attr & crate::attr::P, 0);
        assert_eq!(cpu.tr.selector, 0x78);
        assert_eq!(
            read32(&cpu, GDT + 0x78 + 4) >> 8 & 0xFF,
            0x8B,
            "LTR marks the TSS busy"
        );
        // At CPL 3 LLDT is privileged: #GP(0).
        let mut cpu = pm3(&extra());
        cpu.gpr[gpr::RCX] = 0x60;
        assert_eq!(run(&mut cpu, &lldt), Err((13, 0)));
    }

    #[test]
    fn ud_outside_protected_mode() {
        // Real mode: lar eax, ecx (66h prefix in 16-bit code) to an IVT handler.
        let mut cpu = real_mode(&[0x66, 0x0F, 0x02, 0xC1, 0xF4]);
        cpu.mmu
            .phys
            .write_bytes(6 * 4, &[0x00, 0x50, 0, 0])
            .unwrap();
        cpu.mmu.phys.write_bytes(0x5000, &[0xF4]).unwrap();
        cpu.gpr[gpr::RSP] = 0x8000;
        assert_eq!(cpu.run(&mut NullBus, 10), Exit::Halt);
        assert_eq!(cpu.rip, 0x5001);
        // Virtual-8086 mode: sldt ax.
        let mut cpu = pm(&[]);
        set_gate(&mut cpu, 6, gate(0x08, 0x5060, 0x8E, 0));
        put(&mut cpu, 0x5060, &[0xF4]);
        put(&mut cpu, 0x1000, &[0x0F, 0x00, 0xC0]);
        cpu.set_rflags(crate::rf::VM);
        for s in 0..6 {
            cpu.seg[s] = Segment::real(0);
        }
        cpu.rip = 0x1000;
        assert_eq!(cpu.run(&mut NullBus, 10), Exit::Halt);
        assert_eq!(cpu.rip, 0x5061);
    }
}
