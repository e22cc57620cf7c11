//! Selectors, descriptors and segment-register loads (SDM Vol.3 3.4-3.5, 5.4-5.8).
//!
//! Real and virtual-8086 loads compute the base from the selector. Protected-mode loads
//! read the descriptor from the GDT or LDT, check it against the purpose of the load —
//! one table of rules, [`Load`], shared by MOV/POP/LxS, far JMP/CALL/RET, IRET,
//! interrupt delivery and task switches — set its accessed bit and fill the hidden
//! cache. Descriptor-table, TSS and IDT reads are implicit supervisor accesses.

use trapeze_mmu::{Bus, Pod};

use crate::cpu::Cpu;
use crate::fault::{vector, Fault};
use crate::state::{attr, efer, sreg, Segment};

/// Selector fields (SDM Vol.3 3.4.2).
pub mod selector {
    pub const RPL: u16 = 3;
    pub const TI: u16 = 1 << 2;
    pub const INDEX_MASK: u16 = !7;

    /// The error code that names a selector (SDM Vol.3 6.13): index and TI, EXT = IDT = 0.
    pub fn error_code(sel: u16) -> u32 {
        (sel & !RPL) as u32
    }

    pub fn is_null(sel: u16) -> bool {
        sel & !RPL == 0
    }
}

/// System-segment and gate descriptor types (SDM Vol.3 Table 3-2). IA-32e mode keeps
/// LDT, the TSS types and the 32-bit gate types for its 16-byte 64-bit forms, and has
/// no 16-bit ones and no task gates.
pub mod sys {
    pub const TSS16: u8 = 0x1;
    pub const LDT: u8 = 0x2;
    pub const TSS16_BUSY: u8 = 0x3;
    pub const CALL_GATE16: u8 = 0x4;
    pub const TASK_GATE: u8 = 0x5;
    pub const INT_GATE16: u8 = 0x6;
    pub const TRAP_GATE16: u8 = 0x7;
    pub const TSS32: u8 = 0x9;
    pub const TSS32_BUSY: u8 = 0xB;
    pub const CALL_GATE32: u8 = 0xC;
    pub const INT_GATE32: u8 = 0xE;
    pub const TRAP_GATE32: u8 = 0xF;
    /// The busy bit of a TSS type.
    pub const BUSY: u8 = 0x2;
    /// Set in every 32-bit (and 64-bit) TSS and gate type.
    pub const WIDE: u8 = 0x8;
}

/// Decode an 8-byte segment descriptor into the hidden-cache form.
pub fn descriptor_to_segment(sel: u16, d: u64) -> Segment {
    let base = ((d >> 16) & 0xFF_FFFF) | ((d >> 32) & 0xFF00_0000);
    let raw_limit = ((d & 0xFFFF) | ((d >> 32) & 0xF_0000)) as u32;
    let attrs = ((d >> 40) & 0xF0FF) as u16;
    let limit = if attrs & attr::G != 0 {
        (raw_limit << 12) | 0xFFF
    } else {
        raw_limit
    };
    Segment {
        selector: sel,
        base,
        limit,
        attr: attrs,
    }
}

/// The hidden cache of a segment register loaded with a null selector: not present,
/// and an expand-down range that holds no offset, so every access through it outside
/// 64-bit mode is #GP(0) (#SS(0) through SS) without a check of its own.
pub fn null_segment(sel: u16) -> Segment {
    Segment {
        selector: sel,
        base: 0,
        limit: u32::MAX,
        attr: attr::DC | attr::DB,
    }
}

/// A descriptor as read from the GDT, LDT or IDT: `hi` is the second quadword of a
/// 16-byte system descriptor in IA-32e mode (SDM Vol.3 3.5, 5.8.3.1, 6.14.1), else 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub lo: u64,
    pub hi: u64,
}

impl Descriptor {
    /// Type field (bits 40-43).
    pub fn kind(&self) -> u8 {
        ((self.lo >> 40) & 0xF) as u8
    }
    /// S = 0: a system segment or gate.
    pub fn system(&self) -> bool {
        self.lo & (1 << 44) == 0
    }
    pub fn dpl(&self) -> u8 {
        ((self.lo >> 45) & 3) as u8
    }
    pub fn present(&self) -> bool {
        self.lo & (1 << 47) != 0
    }
    pub fn is_code(&self) -> bool {
        !self.system() && self.kind() & 8 != 0
    }
    pub fn conforming(&self) -> bool {
        self.is_code() && self.kind() & 4 != 0
    }
    /// Data, or readable code.
    pub fn readable(&self) -> bool {
        !self.system() && (self.kind() & 8 == 0 || self.kind() & 2 != 0)
    }
    /// Writable data.
    pub fn writable(&self) -> bool {
        !self.system() && self.kind() & 0xA == 2
    }
    /// A 64-bit code segment: L = 1, D = 0 (SDM Vol.3 5.2.1).
    pub fn code64(&self) -> bool {
        self.is_code() && (self.lo >> 53) & 3 == 1
    }
    /// L = D = 1 is reserved: loading such a CS in IA-32e mode is #GP.
    fn reserved_code_size(&self) -> bool {
        self.is_code() && (self.lo >> 53) & 3 == 3
    }
    /// A system descriptor of type `t` (the S bit clear).
    pub fn is(&self, t: u8) -> bool {
        self.system() && self.kind() == t
    }
    pub fn segment(&self, sel: u16) -> Segment {
        let mut s = descriptor_to_segment(sel, self.lo);
        if self.system() {
            s.base |= (self.hi & 0xFFFF_FFFF) << 32;
        }
        s
    }
    /// The code-segment selector of a gate (or the TSS selector of a task gate).
    pub fn gate_selector(&self) -> u16 {
        (self.lo >> 16) as u16
    }
    /// The entry point of a call, interrupt or trap gate: 16 bits for 16-bit gates.
    pub fn gate_offset(&self) -> u64 {
        let mut off = self.lo & 0xFFFF;
        if self.kind() & sys::WIDE != 0 {
            off |= (self.lo >> 32) & 0xFFFF_0000 | self.hi << 32;
        }
        off
    }
    /// Parameter count of a 16/32-bit call gate.
    pub fn param_count(&self) -> usize {
        ((self.lo >> 32) & 0x1F) as usize
    }
    /// Interrupt-stack-table index of a 64-bit interrupt or trap gate.
    pub fn ist(&self) -> usize {
        ((self.lo >> 32) & 7) as usize
    }
    /// Gate size in bytes: the width of what it pushes.
    pub fn gate_width(&self, long: bool) -> usize {
        if long {
            8
        } else if self.kind() & sys::WIDE != 0 {
            4
        } else {
            2
        }
    }
}

/// What a segment-register load is for: each has its own descriptor rules (SDM Vol.3
/// 5.5-5.8; Vol.2 MOV, POP, JMP, CALL, RET, IRET; Vol.3 7.3 for task switches). `cpl`
/// below is the privilege the load is checked against: the CPL, or for stacks and
/// returns the privilege being entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// DS ES FS GS: data or readable code; unless conforming code, DPL >= CPL and
    /// DPL >= RPL.
    Data,
    /// SS: writable data with RPL = DPL = CPL.
    Stack,
    /// CS of a far JMP/CALL straight to a code segment: conforming DPL <= CPL;
    /// non-conforming RPL <= CPL and DPL = CPL.
    Code,
    /// CS named by a call, interrupt or trap gate: code with DPL <= CPL.
    GateCode,
    /// CS popped by RET/IRET (`cpl` the current CPL) or read from a TSS (`cpl` its
    /// RPL): RPL >= CPL; conforming DPL <= RPL, non-conforming DPL = RPL.
    Return,
}

impl Load {
    /// Does descriptor `d`, named by a selector with RPL `rpl`, pass the checks?
    pub fn permits(self, d: &Descriptor, rpl: u8, cpl: u8, long: bool) -> bool {
        let dpl = d.dpl();
        let code_ok = |d: &Descriptor| d.is_code() && !(long && d.reserved_code_size());
        match self {
            Load::Data => d.readable() && (d.conforming() || (dpl >= cpl && dpl >= rpl)),
            Load::Stack => d.writable() && rpl == cpl && dpl == cpl,
            Load::Code => {
                code_ok(d)
                    && if d.conforming() {
                        dpl <= cpl
                    } else {
                        rpl <= cpl && dpl == cpl
                    }
            }
            Load::GateCode => code_ok(d) && dpl <= cpl,
            Load::Return => {
                code_ok(d)
                    && rpl >= cpl
                    && if d.conforming() {
                        dpl <= rpl
                    } else {
                        dpl == rpl
                    }
            }
        }
    }
}

impl Cpu {
    /// IA-32e mode (long mode active, 64-bit or compatibility).
    pub fn ia32e(&self) -> bool {
        self.efer & efer::LMA != 0
    }

    /// An implicit supervisor read of a system structure (GDT, LDT, IDT, TSS).
    pub(crate) fn sys_read<T: Pod>(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<T, Fault> {
        Ok(self.mmu.read_sys::<T>(bus, lin)?)
    }

    /// An implicit supervisor write (accessed and busy bits, TSS state).
    pub(crate) fn sys_write<T: Pod>(
        &mut self,
        bus: &mut dyn Bus,
        lin: u64,
        v: T,
    ) -> Result<(), Fault> {
        Ok(self.mmu.write_sys::<T>(bus, lin, v)?)
    }

    /// Keep the MMU's privilege for explicit accesses equal to CPL 3 after CS changes.
    pub(crate) fn sync_privilege(&mut self) {
        let user = self.cpl() == 3;
        self.mmu.set_user(user);
    }

    /// Linear address of `size` bytes of the descriptor `sel` names, or None if they
    /// are not all inside the GDT or LDT limit (or LDTR is unusable).
    fn descriptor_address(&self, sel: u16, size: u64) -> Option<u64> {
        let (base, limit) = if sel & selector::TI != 0 {
            // LLDT or a task switch with a null selector leaves LDTR unusable.
            if self.ldtr.attr & attr::P == 0 {
                return None;
            }
            (self.ldtr.base, self.ldtr.limit as u64)
        } else {
            (self.gdtr.base, self.gdtr.limit as u64)
        };
        let off = (sel & selector::INDEX_MASK) as u64;
        (off + size - 1 <= limit).then(|| base.wrapping_add(off))
    }

    /// The descriptor `sel` names — 16 bytes for a system descriptor in IA-32e mode —
    /// or None if it lies outside its table; the caller picks the fault for that.
    pub fn descriptor(&mut self, bus: &mut dyn Bus, sel: u16) -> Result<Option<Descriptor>, Fault> {
        let Some(lin) = self.descriptor_address(sel, 8) else {
            return Ok(None);
        };
        let mut d = Descriptor {
            lo: self.sys_read::<u64>(bus, lin)?,
            hi: 0,
        };
        if d.system() && self.ia32e() {
            if self.descriptor_address(sel, 16).is_none() {
                return Ok(None);
            }
            d.hi = self.sys_read::<u64>(bus, lin.wrapping_add(8))?;
        }
        Ok(Some(d))
    }

    /// The descriptor `sel` names; outside its table: `invalid`(selector).
    pub(crate) fn descriptor_or(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        invalid: u8,
    ) -> Result<Descriptor, Fault> {
        self.descriptor(bus, sel)?
            .ok_or(Fault::with_code(invalid, selector::error_code(sel)))
    }

    /// Rewrite the type/attribute byte (bits 40-47) of the descriptor `sel` names in
    /// the GDT or LDT: accessed and busy bits, which the processor sets itself.
    fn write_access_byte(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        f: impl FnOnce(u8) -> u8,
    ) -> Result<(), Fault> {
        let Some(lin) = self.descriptor_address(sel, 8) else {
            return Ok(());
        };
        let lin = lin.wrapping_add(5);
        let b = self.sys_read::<u8>(bus, lin)?;
        self.sys_write::<u8>(bus, lin, f(b))
    }

    /// Set or clear the busy bit of the TSS descriptor `sel` names (SDM Vol.3 7.2.2).
    pub(crate) fn set_tss_busy(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        busy: bool,
    ) -> Result<(), Fault> {
        self.write_access_byte(
            bus,
            sel,
            |b| if busy { b | sys::BUSY } else { b & !sys::BUSY },
        )
    }

    /// Read and check the descriptor `sel` (not null) names, for `load` against
    /// privilege `cpl` (SDM Vol.3 5.5-5.8). Outside its table or failing the checks:
    /// `invalid`(selector) — #GP, or #TS in a task switch and for TSS stacks; not
    /// present: #SS(selector) for stacks, else #NP(selector). Sets the accessed bit
    /// and returns the hidden cache, which the caller installs when nothing else can
    /// fail.
    pub(crate) fn checked_segment(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        load: Load,
        cpl: u8,
        invalid: u8,
    ) -> Result<Segment, Fault> {
        let d = self.descriptor_or(bus, sel, invalid)?;
        self.check_descriptor(bus, sel, &d, load, cpl, invalid)
    }

    /// `checked_segment` for a descriptor already read.
    pub(crate) fn check_descriptor(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        d: &Descriptor,
        load: Load,
        cpl: u8,
        invalid: u8,
    ) -> Result<Segment, Fault> {
        let code = selector::error_code(sel);
        if !load.permits(d, (sel & selector::RPL) as u8, cpl, self.ia32e()) {
            return Err(Fault::with_code(invalid, code));
        }
        if !d.present() {
            return Err(if load == Load::Stack {
                Fault::ss(code)
            } else {
                Fault::np(code)
            });
        }
        if d.lo & (1 << 40) == 0 {
            self.write_access_byte(bus, sel, |b| b | attr::ACCESSED as u8)?;
        }
        let mut s = d.segment(sel);
        s.attr |= attr::ACCESSED;
        Ok(s)
    }

    /// MOV/POP/LDS.. to a data segment register or SS (SDM Vol.2 MOV; Vol.3 5.5, 5.6).
    pub fn load_segment(&mut self, bus: &mut dyn Bus, seg: usize, sel: u16) -> Result<(), Fault> {
        if !self.protected() || self.v86() {
            if self.v86() {
                self.seg[seg] = Segment::real(sel);
            } else {
                self.seg[seg].selector = sel;
                self.seg[seg].base = (sel as u64) << 4;
            }
            return Ok(());
        }
        let cpl = self.cpl();
        if selector::is_null(sel) {
            // A null SS is #GP(0), except in 64-bit mode below CPL 3 with RPL = CPL.
            if seg == sreg::SS && !(self.long64() && cpl < 3 && (sel & selector::RPL) as u8 == cpl)
            {
                return Err(Fault::gp(0));
            }
            self.seg[seg] = null_segment(sel);
            return Ok(());
        }
        let load = if seg == sreg::SS {
            Load::Stack
        } else {
            Load::Data
        };
        self.seg[seg] = self.checked_segment(bus, sel, load, cpl, vector::GP)?;
        Ok(())
    }

    /// Install a checked code segment as CS at privilege `cpl`: CS.RPL is the CPL
    /// (SDM Vol.3 5.8.1.2: a conforming segment keeps the caller's CPL).
    pub(crate) fn set_cs(&mut self, mut cs: Segment, cpl: u8) {
        cs.selector = (cs.selector & !selector::RPL) | cpl as u16;
        self.seg[sreg::CS] = cs;
        self.sync_privilege();
    }

    /// CS in real and virtual-8086 mode: base = selector * 16. Real mode keeps the rest
    /// of the cache (unreal mode); virtual-8086 mode reloads it.
    pub(crate) fn load_real_cs(&mut self, sel: u16) {
        let mut cs = if self.v86() {
            Segment::real(sel)
        } else {
            self.seg[sreg::CS]
        };
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        cs.attr |= attr::CODE;
        self.seg[sreg::CS] = cs;
    }

    /// Is `ip` a valid entry point into code segment `cs`: inside its limit, or in
    /// canonical form for a 64-bit segment in IA-32e mode? #GP(0) if not.
    pub(crate) fn check_entry(&self, cs: &Segment, ip: u64) -> Result<(), Fault> {
        let ok = if self.ia32e() && cs.attr & attr::L != 0 {
            crate::cpu::canonical(ip)
        } else {
            ip <= cs.limit as u64
        };
        if ok {
            Ok(())
        } else {
            Err(Fault::gp(0))
        }
    }

    /// After a return to an outer privilege level, data segment registers the new CPL
    /// may not use are loaded with null (SDM Vol.2 RET, IRET: data and non-conforming
    /// code segments with DPL < CPL).
    pub(crate) fn null_inaccessible_segments(&mut self) {
        let cpl = self.cpl();
        for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let seg = &self.seg[s];
            let conforming = seg.attr & (attr::CODE | attr::DC) == attr::CODE | attr::DC;
            if seg.attr & attr::P != 0 && !conforming && seg.dpl() < cpl {
                self.seg[s] = null_segment(0);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{protected32, read64};
    use crate::NullBus;

    /// Descriptor builders for tests: base, limit (bytes, or 4 KiB pages with G),
    /// access byte (P DPL S type) and flags nibble (G D/B L AVL) as in the SDM figure.
    pub(crate) fn desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
        (limit as u64 & 0xFFFF)
            | (base as u64 & 0xFF_FFFF) << 16
            | (access as u64) << 40
            | ((limit as u64 >> 16) & 0xF) << 48
            | (flags as u64 & 0xF) << 52
            | ((base as u64 >> 24) & 0xFF) << 56
    }

    /// A gate: selector, offset, access byte (P DPL 0 type), parameter count or IST.
    pub(crate) fn gate(sel: u16, off: u32, access: u8, count: u8) -> u64 {
        (off as u64 & 0xFFFF)
            | (sel as u64) << 16
            | (count as u64) << 32
            | (access as u64) << 40
            | (off as u64 >> 16) << 48
    }

    pub(crate) const GDT: u64 = 0x20000;
    pub(crate) const IDT: u64 = 0x21000;

    /// A protected-mode CPU (`protected32`) with a GDT at 0x20000 holding `entries`
    /// from index 1 on, and an IDT at 0x21000 of 256 empty gates.
    pub(crate) fn with_gdt(code: &[u8], entries: &[u64]) -> Cpu {
        let mut cpu = protected32(code);
        put_gdt(&mut cpu, entries);
        cpu.idtr = crate::TableReg {
            base: IDT,
            limit: 256 * 8 - 1,
        };
        cpu
    }

    pub(crate) fn put_gdt(cpu: &mut Cpu, entries: &[u64]) {
        for (i, e) in entries.iter().enumerate() {
            cpu.mmu
                .phys
                .write_bytes(GDT + 8 * (i as u64 + 1), &e.to_le_bytes())
                .unwrap();
        }
        cpu.gdtr = crate::TableReg {
            base: GDT,
            limit: (8 * (entries.len() + 1) - 1) as u16,
        };
    }

    /// Flat 4 GiB read/write data and execute/read 32-bit code at DPL `dpl`.
    pub(crate) fn data(dpl: u8) -> u64 {
        desc(0, 0xFFFFF, 0x92 | dpl << 5, 0xC)
    }
    pub(crate) fn code(dpl: u8) -> u64 {
        desc(0, 0xFFFFF, 0x9A | dpl << 5, 0xC)
    }
    /// An available 32-bit TSS.
    pub(crate) fn tss32(base: u32, limit: u32) -> u64 {
        desc(base, limit, 0x89, 0)
    }

    /// The TSS of `pm`: ESP0 = 9000h, SS0 = 10h, I/O map base past its limit.
    pub(crate) const TSS: u64 = 0x30000;
    /// GDT entries of `pm`, from selector 08h: ring-0 code and data, ring-3 code and
    /// data, the TSS (28h). Tests add their own descriptors from 30h on.
    pub(crate) fn std_gdt() -> Vec<u64> {
        vec![code(0), data(0), code(3), data(3), tss32(TSS as u32, 0x67)]
    }

    /// 32-bit protected mode at CPL 0 with `std_gdt` plus `extra`, CS 08h, SS DS ES
    /// 10h, ESP 8000h, TR 28h, and the IDT of `with_gdt`; code at 1000h.
    pub(crate) fn pm(extra: &[u64]) -> Cpu {
        let mut entries = std_gdt();
        entries.extend_from_slice(extra);
        let mut cpu = with_gdt(&[], &entries);
        let bus = &mut NullBus;
        for (s, sel) in [
            (sreg::CS, 0x08),
            (sreg::SS, 0x10),
            (sreg::DS, 0x10),
            (sreg::ES, 0x10),
        ] {
            cpu.seg[s] = cpu.descriptor(bus, sel).unwrap().unwrap().segment(sel);
        }
        cpu.gpr[crate::gpr::RSP] = 0x8000;
        put(&mut cpu, TSS + 4, &0x9000u32.to_le_bytes());
        put(&mut cpu, TSS + 8, &0x10u32.to_le_bytes());
        put(&mut cpu, TSS + 0x66, &0x68u16.to_le_bytes());
        cpu.set_tss_busy(bus, 0x28, true).unwrap();
        cpu.tr = cpu.descriptor(bus, 0x28).unwrap().unwrap().segment(0x28);
        cpu
    }

    /// `pm` switched to ring 3: CS 1Bh, SS DS ES 23h, ESP 7000h.
    pub(crate) fn pm3(extra: &[u64]) -> Cpu {
        let mut cpu = pm(extra);
        let bus = &mut NullBus;
        for (s, sel) in [
            (sreg::CS, 0x1B),
            (sreg::SS, 0x23),
            (sreg::DS, 0x23),
            (sreg::ES, 0x23),
        ] {
            cpu.seg[s] = cpu.descriptor(bus, sel).unwrap().unwrap().segment(sel);
        }
        cpu.gpr[crate::gpr::RSP] = 0x7000;
        cpu
    }

    pub(crate) fn put(cpu: &mut Cpu, addr: u64, bytes: &[u8]) {
        cpu.mmu.phys.write_bytes(addr, bytes).unwrap();
    }

    /// Write code through the MMU, so that the decode cache drops what it replaces.
    pub(crate) fn put_code(cpu: &mut Cpu, addr: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            cpu.mmu
                .phys_write(&mut NullBus, addr + i as u64, 1, b as u64);
        }
    }

    /// IDT entry `v` (8-byte gates).
    pub(crate) fn set_gate(cpu: &mut Cpu, v: u8, g: u64) {
        put(cpu, IDT + 8 * v as u64, &g.to_le_bytes());
    }

    fn load(cpu: &mut Cpu, seg: usize, sel: u16) -> Result<(), Fault> {
        cpu.load_segment(&mut NullBus, seg, sel)
    }

    #[test]
    fn flat_descriptors_decode() {
        // The classic flat 4 GiB ring-0 code and data descriptors.
        let code = descriptor_to_segment(0x08, 0x00CF_9A00_0000_FFFF);
        assert_eq!((code.base, code.limit), (0, 0xFFFF_FFFF));
        assert_ne!(code.attr & attr::CODE, 0);
        assert_ne!(code.attr & attr::DB, 0);
        assert_eq!(code.dpl(), 0);
        let data = descriptor_to_segment(0x10, 0x00CF_9200_0000_FFFF);
        assert_eq!(data.attr & attr::CODE, 0);
        // A byte-granular segment at base 0x12345678, limit 0xABCDE.
        let s = descriptor_to_segment(0x18, 0x120A_9234_5678_BCDE);
        assert_eq!((s.base, s.limit), (0x1234_5678, 0xABCDE));
        assert_eq!(desc(0x1234_5678, 0xABCDE, 0x92, 0), 0x120A_9234_5678_BCDE);
    }

    #[test]
    fn gates_decode() {
        let g = Descriptor {
            lo: gate(0x28, 0x1234_5678, 0xEC, 3),
            hi: 0,
        };
        assert!(g.is(sys::CALL_GATE32));
        assert_eq!(
            (g.gate_selector(), g.gate_offset(), g.param_count(), g.dpl()),
            (0x28, 0x1234_5678, 3, 3)
        );
        let g16 = Descriptor {
            lo: gate(0x28, 0x1234_5678, 0x84, 0),
            hi: 0,
        };
        assert_eq!((g16.gate_offset(), g16.gate_width(false)), (0x5678, 2));
        let g64 = Descriptor {
            lo: gate(0x08, 0x1234_5678, 0x8E, 2),
            hi: 0xFFFF_8000,
        };
        assert_eq!((g64.gate_offset(), g64.ist()), (0xFFFF_8000_1234_5678, 2));
    }

    #[test]
    fn data_loads_check_type_privilege_and_presence() {
        // 1: DPL0 data, 2: DPL3 data, 3: DPL0 exec-only code, 4: DPL0 readable code,
        // 5: not-present DPL3 data, 6: conforming readable DPL0 code, 7: LDT (system).
        let entries = [
            data(0),
            data(3),
            desc(0, 0xFFFF, 0x98, 0),
            code(0),
            desc(0, 0xFFFF, 0x72, 0),
            desc(0, 0xFFFF, 0x9E, 0),
            desc(0x3000, 0xFF, 0x82, 0),
        ];
        let mut cpu = with_gdt(&[], &entries);
        assert_eq!(load(&mut cpu, sreg::DS, 0x08), Ok(()));
        assert_eq!(cpu.seg[sreg::DS].limit, 0xFFFF_FFFF);
        // The accessed bit was set in the GDT.
        assert_ne!(read64(&cpu, GDT + 8) & 1 << 40, 0);
        assert_eq!(
            load(&mut cpu, sreg::DS, 0x18),
            Err(Fault::gp(0x18)),
            "execute-only code"
        );
        assert_eq!(load(&mut cpu, sreg::DS, 0x20), Ok(()), "readable code");
        assert_eq!(load(&mut cpu, sreg::DS, 0x28), Err(Fault::np(0x28)));
        assert_eq!(
            load(&mut cpu, sreg::DS, 0x38),
            Err(Fault::gp(0x38)),
            "system segment"
        );
        assert_eq!(
            load(&mut cpu, sreg::DS, 0x40),
            Err(Fault::gp(0x40)),
            "beyond the GDT limit"
        );
        assert_eq!(
            load(&mut cpu, sreg::DS, 0x0C),
            Err(Fault::gp(0x0C)),
            "LDT with a null LDTR"
        );
        // Null selectors: fine for DS (the register becomes unusable), #GP(0) for SS.
        assert_eq!(load(&mut cpu, sreg::DS, 0x03), Ok(()));
        assert_eq!(cpu.linear(sreg::DS, 0, 1), Err(Fault::gp(0)));
        assert_eq!(load(&mut cpu, sreg::SS, 0x00), Err(Fault::gp(0)));
        // At CPL 3: DPL 0 data is out of reach, DPL 3 data and conforming code are not.
        cpu.seg[sreg::CS].selector = 3;
        assert_eq!(load(&mut cpu, sreg::ES, 0x0B), Err(Fault::gp(0x08)));
        assert_eq!(load(&mut cpu, sreg::ES, 0x13), Ok(()));
        assert_eq!(
            load(&mut cpu, sreg::ES, 0x33),
            Ok(()),
            "conforming code skips the DPL check"
        );
        // At CPL 0, RPL 3 > DPL 0 fails too.
        cpu.seg[sreg::CS].selector = 0;
        assert_eq!(load(&mut cpu, sreg::ES, 0x0B), Err(Fault::gp(0x08)));
    }

    #[test]
    fn stack_loads_need_writable_data_at_cpl() {
        let entries = [
            data(0),
            data(3),
            desc(0, 0xFFFF, 0x90, 0),
            desc(0, 0xFFFF, 0x12, 0),
            code(0),
        ];
        let mut cpu = with_gdt(&[], &entries);
        assert_eq!(load(&mut cpu, sreg::SS, 0x08), Ok(()));
        assert_eq!(
            load(&mut cpu, sreg::SS, 0x0B),
            Err(Fault::gp(0x08)),
            "RPL != CPL"
        );
        assert_eq!(
            load(&mut cpu, sreg::SS, 0x10),
            Err(Fault::gp(0x10)),
            "DPL != CPL"
        );
        assert_eq!(
            load(&mut cpu, sreg::SS, 0x18),
            Err(Fault::gp(0x18)),
            "read-only"
        );
        assert_eq!(
            load(&mut cpu, sreg::SS, 0x20),
            Err(Fault::ss(0x20)),
            "not present"
        );
        assert_eq!(load(&mut cpu, sreg::SS, 0x28), Err(Fault::gp(0x28)), "code");
    }

    #[test]
    fn expand_down_limits() {
        // Expand-down, byte granular, limit 0x0FFF, 16-bit: offsets 0x1000-0xFFFF.
        let mut cpu = with_gdt(
            &[],
            &[
                desc(0x10000, 0x0FFF, 0x96, 0),
                desc(0x10000, 0x0FFF, 0x96, 0x4),
            ],
        );
        load(&mut cpu, sreg::DS, 0x08).unwrap();
        assert_eq!(cpu.linear(sreg::DS, 0x1000, 2), Ok(0x11000));
        assert_eq!(cpu.linear(sreg::DS, 0x0FFF, 1), Err(Fault::gp(0)));
        assert_eq!(cpu.linear(sreg::DS, 0xFFFF, 2), Err(Fault::gp(0)));
        // B = 1: up to 4 GiB - 1.
        load(&mut cpu, sreg::SS, 0x10).unwrap();
        assert_eq!(
            cpu.linear(sreg::SS, 0xFFFF_FFFC, 4),
            Ok((0xFFFF_FFFC + 0x10000) & 0xFFFF_FFFF)
        );
        assert_eq!(cpu.linear(sreg::SS, 0x0FFE, 4), Err(Fault::ss(0)));
    }

    #[test]
    fn real_and_v86_loads_compute_the_base() {
        let mut cpu = with_gdt(&[], &[]);
        cpu.rflags |= crate::rf::VM;
        assert_eq!(load(&mut cpu, sreg::DS, 0x1234), Ok(()));
        assert_eq!(cpu.seg[sreg::DS], Segment::real(0x1234));
    }

    #[test]
    fn ldt_selectors_use_the_ldt() {
        let mut cpu = with_gdt(&[], &[desc(0x3000, 0x0F, 0x82, 0)]);
        cpu.ldtr = Descriptor {
            lo: desc(0x3000, 0x0F, 0x82, 0),
            hi: 0,
        }
        .segment(0x08);
        cpu.mmu
            .phys
            .write_bytes(0x3008, &desc(0x5000, 0xFF, 0x92, 0).to_le_bytes())
            .unwrap();
        assert_eq!(load(&mut cpu, sreg::FS, 0x0C), Ok(()));
        assert_eq!(cpu.seg[sreg::FS].base, 0x5000);
        assert_eq!(
            load(&mut cpu, sreg::FS, 0x14),
            Err(Fault::gp(0x14)),
            "beyond the LDT limit"
        );
    }

    #[test]
    fn returns_to_an_outer_ring_null_inaccessible_data_segments() {
        let mut cpu = with_gdt(&[], &[data(0), data(3), desc(0, 0xFFFF, 0x9E, 0)]);
        load(&mut cpu, sreg::DS, 0x08).unwrap();
        load(&mut cpu, sreg::ES, 0x10).unwrap();
        load(&mut cpu, sreg::FS, 0x18).unwrap();
        cpu.seg[sreg::CS].selector = 3;
        cpu.null_inaccessible_segments();
        assert_eq!(cpu.seg[sreg::DS].selector, 0);
        assert_eq!(cpu.seg[sreg::ES].selector, 0x10);
        assert_eq!(cpu.seg[sreg::FS].selector, 0x18, "conforming code stays");
    }
}
