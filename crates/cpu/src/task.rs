//! Hardware task switching and the TSS (SDM Vol.3 ch. 7): the 16-, 32- and 64-bit TSS
//! layouts, the inner-ring stacks that call gates and interrupts take from the TSS,
//! the I/O permission bitmap (SDM Vol.1 19.5), and the task switch itself for JMP,
//! CALL, IRET and task gates.

use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::fault::{vector, Fault};
use crate::flags::rf;
use crate::interrupt::dr;
use crate::segment::{null_segment, selector, sys, Load};
use crate::state::{attr, cr0, sreg, Segment};

/// 32-bit TSS fields, byte offsets (SDM Vol.3 Figure 7-2).
pub mod tss32 {
    pub const PREV_TASK_LINK: u64 = 0x00;
    pub const ESP0: u64 = 0x04;
    pub const CR3: u64 = 0x1C;
    pub const EIP: u64 = 0x20;
    pub const EFLAGS: u64 = 0x24;
    /// EAX ECX EDX EBX ESP EBP ESI EDI, 4 bytes apart.
    pub const EAX: u64 = 0x28;
    /// ES CS SS DS FS GS, 4 bytes apart.
    pub const ES: u64 = 0x48;
    pub const LDT: u64 = 0x60;
    /// Bit 0: the debug trap flag T.
    pub const T: u64 = 0x64;
    pub const IO_MAP_BASE: u64 = 0x66;
    /// A 32-bit TSS limit must cover at least this (SDM Vol.3 7.2.2).
    pub const MIN_LIMIT: u32 = 0x67;
}

/// 16-bit TSS fields (SDM Vol.3 Figure 7-11).
pub mod tss16 {
    pub const PREV_TASK_LINK: u64 = 0x00;
    pub const SP0: u64 = 0x02;
    pub const IP: u64 = 0x0E;
    pub const FLAGS: u64 = 0x10;
    /// AX CX DX BX SP BP SI DI, 2 bytes apart.
    pub const AX: u64 = 0x12;
    /// ES CS SS DS, 2 bytes apart.
    pub const ES: u64 = 0x22;
    pub const LDT: u64 = 0x2A;
    pub const MIN_LIMIT: u32 = 0x2B;
}

/// 64-bit TSS fields (SDM Vol.3 Figure 8-11).
pub mod tss64 {
    pub const RSP0: usize = 0x04;
    pub const IST1: usize = 0x24;
}

/// Where one TSS format keeps the task state: the table the save and load code reads.
struct Layout {
    /// Slot width in bytes: 2 or 4.
    width: u64,
    /// SP0 (SS0 follows `width` bytes later; ring n's pair is n * 2 * width on).
    stack0: u64,
    cr3: Option<u64>,
    ip: u64,
    flags: u64,
    gprs: u64,
    /// ES CS SS DS (FS GS) selectors.
    sregs: u64,
    sreg_count: usize,
    ldt: u64,
    trap: Option<u64>,
    min_limit: u32,
}

const TSS16: Layout = Layout {
    width: 2,
    stack0: tss16::SP0,
    cr3: None,
    ip: tss16::IP,
    flags: tss16::FLAGS,
    gprs: tss16::AX,
    sregs: tss16::ES,
    sreg_count: 4,
    ldt: tss16::LDT,
    trap: None,
    min_limit: tss16::MIN_LIMIT,
};

const TSS32: Layout = Layout {
    width: 4,
    stack0: tss32::ESP0,
    cr3: Some(tss32::CR3),
    ip: tss32::EIP,
    flags: tss32::EFLAGS,
    gprs: tss32::EAX,
    sregs: tss32::ES,
    sreg_count: 6,
    ldt: tss32::LDT,
    trap: Some(tss32::T),
    min_limit: tss32::MIN_LIMIT,
};

/// The layout of a TSS of descriptor type `kind`.
fn layout(kind: u8) -> &'static Layout {
    if kind & sys::WIDE != 0 {
        &TSS32
    } else {
        &TSS16
    }
}

/// What started a task switch: decides the busy bits, NT and the back link (SDM Vol.3
/// 7.3, Table 7-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    Jmp,
    Call,
    /// IRET with NT set: back to the previous task.
    Iret,
    /// An interrupt or exception through a task gate: nests like CALL.
    Gate,
}

/// The state a task switch reads from the new TSS.
struct TaskState {
    cr3: Option<u64>,
    ip: u64,
    flags: u64,
    gprs: [u64; 8],
    sregs: [u16; 6],
    ldt: u16,
    trap: bool,
}

impl Cpu {
    fn tss_read(
        &mut self,
        bus: &mut dyn Bus,
        tss: &Segment,
        width: u64,
        off: u64,
    ) -> Result<u64, Fault> {
        let lin = tss.base.wrapping_add(off);
        if width == 2 {
            Ok(self.sys_read::<u16>(bus, lin)? as u64)
        } else {
            Ok(self.sys_read::<u32>(bus, lin)? as u64)
        }
    }

    fn tss_write(&mut self, bus: &mut dyn Bus, width: u64, off: u64, v: u64) -> Result<(), Fault> {
        let lin = self.tr.base.wrapping_add(off);
        if width == 2 {
            self.sys_write::<u16>(bus, lin, v as u16)
        } else {
            self.sys_write::<u32>(bus, lin, v as u32)
        }
    }

    /// The stack for ring `dpl` from the current 16/32-bit TSS, checked as a stack
    /// for that ring (SDM Vol.2 CALL, INT n): outside the TSS limit #TS(TR); a null,
    /// unsuitable or out-of-table SS #TS(SS); SS not present #SS(SS).
    pub(crate) fn inner_stack(
        &mut self,
        bus: &mut dyn Bus,
        dpl: u8,
    ) -> Result<(Segment, u64), Fault> {
        let l = layout(self.tr.attr as u8);
        let off = l.stack0 + dpl as u64 * 2 * l.width;
        if off + 2 * l.width - 1 > self.tr.limit as u64 {
            return Err(Fault::ts(selector::error_code(self.tr.selector)));
        }
        let tr = self.tr;
        let sp = self.tss_read(bus, &tr, l.width, off)?;
        let ss = self.tss_read(bus, &tr, 2, off + l.width)? as u16;
        if selector::is_null(ss) {
            return Err(Fault::ts(0));
        }
        let seg = self.checked_segment(bus, ss, Load::Stack, dpl, vector::TS)?;
        Ok((seg, sp))
    }

    /// Does the TSS I/O permission bitmap allow `size` bytes at `port` (SDM Vol.1
    /// 19.5.2)? Every bit must be clear, and the bitmap bytes inside the TSS limit; a
    /// 16-bit TSS has no bitmap.
    pub(crate) fn io_bitmap_allows(
        &mut self,
        bus: &mut dyn Bus,
        port: u16,
        size: usize,
    ) -> Result<bool, Fault> {
        let tr = self.tr;
        if tr.attr as u8 & sys::WIDE == 0 || tr.limit < tss32::MIN_LIMIT {
            return Ok(false);
        }
        let base = self.tss_read(bus, &tr, 2, tss32::IO_MAP_BASE)?;
        let off = base + port as u64 / 8;
        if off + 1 > tr.limit as u64 {
            return Ok(false);
        }
        let bits = self.tss_read(bus, &tr, 2, off)?;
        Ok(bits >> (port & 7) & ((1 << size) - 1) == 0)
    }

    /// Switch to the task whose TSS `sel` names (SDM Vol.3 7.3). `ret` is where the
    /// old task resumes. The privilege checks on the TSS descriptor or task gate are
    /// the caller's. Faults before the old state is saved leave the old task as it
    /// was; faults while loading the new task's segments belong to the new task.
    pub(crate) fn task_switch(
        &mut self,
        bus: &mut dyn Bus,
        sel: u16,
        how: Switch,
        ret: u64,
    ) -> Result<(), Fault> {
        // The new TSS descriptor: in the GDT, available (busy for IRET), present, and
        // big enough; #GP for JMP/CALL/task gates, #TS for IRET.
        let bad = if how == Switch::Iret {
            vector::TS
        } else {
            vector::GP
        };
        let code = selector::error_code(sel);
        if sel & selector::TI != 0 {
            return Err(Fault::with_code(bad, code));
        }
        let d = self.descriptor_or(bus, sel, bad)?;
        let busy = if how == Switch::Iret { sys::BUSY } else { 0 };
        if !(d.is(sys::TSS16 | busy) || d.is(sys::TSS32 | busy)) {
            return Err(Fault::with_code(bad, code));
        }
        if !d.present() {
            return Err(Fault::np(code));
        }
        let mut tss = d.segment(sel);
        let new = layout(d.kind());
        if tss.limit < new.min_limit {
            return Err(Fault::ts(code));
        }
        let old = layout(self.tr.attr as u8);
        if self.tr.limit < old.min_limit {
            return Err(Fault::ts(selector::error_code(self.tr.selector)));
        }

        // Read all of the new state and probe the old TSS before changing anything.
        let st = self.read_task(bus, &tss, new)?;
        let save_end = old.sregs + old.sreg_count as u64 * old.width;
        self.mmu.probe_write_sys(
            self.tr.base.wrapping_add(old.ip),
            (save_end - old.ip) as usize,
        )?;

        // Busy bits, the old task's state, the link (SDM Vol.3 7.3 steps 6-10).
        if matches!(how, Switch::Jmp | Switch::Iret) {
            self.set_tss_busy(bus, self.tr.selector, false)?;
        }
        let mut flags = self.rflags();
        if how == Switch::Iret {
            flags &= !rf::NT;
        }
        self.tss_write(bus, old.width, old.ip, ret)?;
        self.tss_write(bus, old.width, old.flags, flags)?;
        for n in 0..8 {
            self.tss_write(
                bus,
                old.width,
                old.gprs + n * old.width,
                self.gpr[n as usize],
            )?;
        }
        for s in 0..old.sreg_count {
            self.tss_write(
                bus,
                old.width,
                old.sregs + s as u64 * old.width,
                self.seg[s].selector as u64,
            )?;
        }
        let old_tr = self.tr.selector;
        let mut new_flags = st.flags;
        if matches!(how, Switch::Call | Switch::Gate) {
            self.sys_write::<u16>(bus, tss.base, old_tr)?;
            new_flags |= rf::NT;
        }
        if how != Switch::Iret {
            self.set_tss_busy(bus, sel, true)?;
        }
        tss.attr |= sys::BUSY as u16;
        self.tr = tss;
        self.cr0 |= cr0::TS;

        // The new task's registers; then its LDT and segments (steps 11-12).
        if new.width == 2 {
            new_flags = (self.rflags() & !0xFFFF) | (new_flags & 0xFFFF);
        }
        self.set_rflags(new_flags);
        for (n, v) in st.gprs.into_iter().enumerate() {
            // A 16-bit TSS loads the low halves; the upper ones read as ones, as on
            // Bochs and QEMU.
            self.gpr[n] = if new.width == 2 { 0xFFFF_0000 | v } else { v };
        }
        self.rip = st.ip;
        self.next_ip = st.ip;
        for (s, &v) in st.sregs.iter().enumerate() {
            self.seg[s].selector = v;
        }
        self.ldtr = Segment {
            selector: st.ldt,
            ..Segment::default()
        };
        if let (Some(cr3), true) = (st.cr3, self.cr0 & cr0::PG != 0) {
            self.write_cr3(cr3)?;
        }
        self.load_task_segments(bus, &st)?;
        let cs = self.seg[sreg::CS];
        self.check_entry(&cs, st.ip)?;
        if st.trap {
            // SDM Vol.3 7.2.1: T set in the new TSS raises #DB (DR6.BT) once it runs.
            self.dr[6] |= dr::BT;
            return Err(Fault::new(vector::DB));
        }
        Ok(())
    }

    fn read_task(
        &mut self,
        bus: &mut dyn Bus,
        tss: &Segment,
        l: &Layout,
    ) -> Result<TaskState, Fault> {
        let w = l.width;
        let mut st = TaskState {
            cr3: None,
            ip: self.tss_read(bus, tss, w, l.ip)?,
            flags: self.tss_read(bus, tss, w, l.flags)?,
            gprs: [0; 8],
            sregs: [0; 6],
            ldt: self.tss_read(bus, tss, 2, l.ldt)? as u16,
            trap: false,
        };
        for n in 0..8 {
            st.gprs[n] = self.tss_read(bus, tss, w, l.gprs + n as u64 * w)?;
        }
        for s in 0..l.sreg_count {
            st.sregs[s] = self.tss_read(bus, tss, 2, l.sregs + s as u64 * w)? as u16;
        }
        if let Some(off) = l.cr3 {
            st.cr3 = Some(self.tss_read(bus, tss, 4, off)?);
        }
        if let Some(off) = l.trap {
            st.trap = self.tss_read(bus, tss, 2, off)? & 1 != 0;
        }
        Ok(st)
    }

    /// Load the new task's LDT and segment registers, checking each descriptor with
    /// #TS for what is wrong with it (SDM Vol.3 7.3 step 12, Table 7-1). A task whose
    /// EFLAGS.VM is set gets virtual-8086 segments.
    fn load_task_segments(&mut self, bus: &mut dyn Bus, st: &TaskState) -> Result<(), Fault> {
        let ldt = st.ldt;
        if !selector::is_null(ldt) {
            let code = selector::error_code(ldt);
            if ldt & selector::TI != 0 {
                return Err(Fault::ts(code));
            }
            let d = self.descriptor_or(bus, ldt, vector::TS)?;
            if !d.is(sys::LDT) || !d.present() {
                return Err(Fault::ts(code));
            }
            self.ldtr = d.segment(ldt);
        }
        if self.v86() {
            for (s, &sel) in st.sregs.iter().enumerate() {
                self.seg[s] = Segment::real(sel);
            }
            self.seg[sreg::CS].attr |= attr::CODE;
            self.sync_privilege();
            return Ok(());
        }
        let cs_sel = st.sregs[sreg::CS];
        if selector::is_null(cs_sel) {
            return Err(Fault::ts(0));
        }
        let cpl = (cs_sel & selector::RPL) as u8;
        let cs = self.checked_segment(bus, cs_sel, Load::Return, cpl, vector::TS)?;
        self.set_cs(cs, cpl);
        let ss_sel = st.sregs[sreg::SS];
        if selector::is_null(ss_sel) {
            return Err(Fault::ts(0));
        }
        self.seg[sreg::SS] = self.checked_segment(bus, ss_sel, Load::Stack, cpl, vector::TS)?;
        for s in [sreg::ES, sreg::DS, sreg::FS, sreg::GS] {
            let sel = st.sregs[s];
            self.seg[s] = if selector::is_null(sel) {
                null_segment(sel)
            } else {
                self.checked_segment(bus, sel, Load::Data, cpl, vector::TS)?
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{desc, gate, pm, put, set_gate, tss32, GDT, TSS};
    use crate::state::gpr;
    use crate::testutil::{read16, read32};
    use crate::NullBus;

    const TSS_B: u64 = 0x31000;

    /// A 32-bit TSS at `base` for a ring-0 task at EIP 2000h with EAX..EDI = 1..8
    /// (ESP 5000h), EFLAGS 202h, flat segments and `f` applied to the fields.
    fn task32(cpu: &mut Cpu, base: u64, f: impl FnOnce(&mut [u8; 0x68])) {
        let mut t = [0u8; 0x68];
        set32(&mut t, tss32::EIP, 0x2000);
        set32(&mut t, tss32::EFLAGS, 0x202);
        for n in 0..8 {
            set32(
                &mut t,
                tss32::EAX + 4 * n,
                if n == 4 { 0x5000 } else { n as u32 + 1 },
            );
        }
        for (s, sel) in [0x10, 0x08, 0x10, 0x10, 0, 0].into_iter().enumerate() {
            set32(&mut t, tss32::ES + 4 * s as u64, sel);
        }
        f(&mut t);
        put(cpu, base, &t);
    }

    fn set32(t: &mut [u8; 0x68], off: u64, v: u32) {
        t[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// `pm` with TSS B at 30h, a task gate to it at 38h, a TSS whose limit is too
    /// small at 40h, a not-present TSS at 48h, an LDT at 50h, a 16-bit TSS at 58h,
    /// a task gate to a data segment at 60h.
    fn task_cpu() -> Cpu {
        let extra = [
            tss32(TSS_B as u32, 0x67),
            gate(0x30, 0, 0x85, 0),
            tss32(TSS_B as u32, 0x50),
            desc(TSS_B as u32, 0x67, 0x09, 0),
            desc(0x40000, 0x0F, 0x82, 0),
            desc(0x32000, 0x2B, 0x81, 0),
            gate(0x10, 0, 0x85, 0),
        ];
        let mut cpu = pm(&extra);
        task32(&mut cpu, TSS_B, |_| {});
        cpu
    }

    fn access_byte(cpu: &Cpu, sel: u16) -> u8 {
        read16(cpu, GDT + (sel & !7) as u64 + 4).to_le_bytes()[1]
    }

    fn switch(cpu: &mut Cpu, sel: u16, how: Switch) -> Result<(), Fault> {
        cpu.task_switch(&mut NullBus, sel, how, 0x1234)
    }

    #[test]
    fn jmp_saves_the_old_task_loads_the_new_and_moves_the_busy_bit() {
        let mut cpu = task_cpu();
        cpu.gpr[gpr::RAX] = 0xAAAA;
        cpu.set_rflags(rf::CF);
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Ok(()));
        assert_eq!(
            (cpu.rip, cpu.next_ip, cpu.tr.selector),
            (0x2000, 0x2000, 0x30)
        );
        assert_eq!(&cpu.gpr[..8], &[1, 2, 3, 4, 0x5000, 6, 7, 8]);
        assert_eq!(cpu.rflags(), 0x202, "NT stays clear after a JMP");
        assert_eq!(
            (
                cpu.seg[sreg::CS].selector,
                cpu.seg[sreg::SS].selector,
                cpu.seg[sreg::FS].selector
            ),
            (0x08, 0x10, 0)
        );
        assert_ne!(cpu.cr0 & cr0::TS, 0);
        assert_eq!(
            (access_byte(&cpu, 0x28), access_byte(&cpu, 0x30)),
            (0x89, 0x8B)
        );
        assert_eq!(cpu.tr.attr as u8 & 0xF, sys::TSS32_BUSY);
        // The old state went to the old TSS, EIP = where it resumes.
        assert_eq!(
            (
                read32(&cpu, TSS + tss32::EIP),
                read32(&cpu, TSS + tss32::EAX)
            ),
            (0x1234, 0xAAAA)
        );
        assert_eq!(read32(&cpu, TSS + tss32::EFLAGS), 0x3);
        assert_eq!(read32(&cpu, TSS + tss32::ES + 4), 0x08);
        assert_eq!(read16(&cpu, TSS_B), 0, "no back link for JMP");
    }

    #[test]
    fn call_nests_and_iret_returns_through_the_back_link() {
        let mut cpu = task_cpu();
        assert_eq!(switch(&mut cpu, 0x30, Switch::Call), Ok(()));
        assert_eq!((cpu.rflags() & rf::NT, read16(&cpu, TSS_B)), (rf::NT, 0x28));
        assert_eq!(
            (access_byte(&cpu, 0x28), access_byte(&cpu, 0x30)),
            (0x8B, 0x8B)
        );
        cpu.gpr[gpr::RBX] = 0xBBBB;
        cpu.next_ip = 0x2002;
        assert_eq!(cpu.interrupt_return::<u32>(&mut NullBus), Ok(()));
        assert_eq!((cpu.tr.selector, cpu.rip), (0x28, 0x1234));
        assert_eq!(
            (access_byte(&cpu, 0x28), access_byte(&cpu, 0x30)),
            (0x8B, 0x89)
        );
        // B's state was saved with NT clear, so a later JMP to it finds no nesting.
        assert_eq!(read32(&cpu, TSS_B + tss32::EFLAGS) as u64 & rf::NT, 0);
        assert_eq!(read32(&cpu, TSS_B + tss32::EAX + 12), 0xBBBB, "EBX saved");
    }

    #[test]
    fn tss_descriptor_faults() {
        let cases: &[(&str, u16, Switch, Fault)] = &[
            ("TI set", 0x34, Switch::Jmp, Fault::gp(0x34)),
            ("past the GDT", 0x80, Switch::Call, Fault::gp(0x80)),
            ("an LDT, not a TSS", 0x50, Switch::Jmp, Fault::gp(0x50)),
            ("limit below 67h", 0x40, Switch::Jmp, Fault::ts(0x40)),
            ("not present", 0x48, Switch::Gate, Fault::np(0x48)),
            (
                "IRET to a TSS that is not busy",
                0x30,
                Switch::Iret,
                Fault::ts(0x30),
            ),
            ("IRET with TI set", 0x34, Switch::Iret, Fault::ts(0x34)),
        ];
        for &(what, sel, how, want) in cases {
            let mut cpu = task_cpu();
            let before = (cpu.seg, cpu.gpr, cpu.tr, cpu.rip);
            assert_eq!(switch(&mut cpu, sel, how), Err(want), "{what}");
            assert_eq!(
                (cpu.seg, cpu.gpr, cpu.tr, cpu.rip),
                before,
                "{what}: state changed"
            );
        }
        // The busy TSS itself (JMP to the current task).
        let mut cpu = task_cpu();
        cpu.set_tss_busy(&mut NullBus, 0x30, true).unwrap();
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Err(Fault::gp(0x30)));
    }

    #[test]
    fn faults_loading_the_new_task_belong_to_it() {
        type Edit = fn(&mut [u8; 0x68]);
        let cases: &[(&str, Edit, Fault)] = &[
            ("null CS", |t| set32(t, tss32::ES + 4, 0), Fault::ts(0)),
            (
                "CS is data",
                |t| set32(t, tss32::ES + 4, 0x10),
                Fault::ts(0x10),
            ),
            (
                "CS RPL 3 for ring-0 code",
                |t| set32(t, tss32::ES + 4, 0x0B),
                Fault::ts(0x08),
            ),
            ("null SS", |t| set32(t, tss32::ES + 8, 0), Fault::ts(0)),
            (
                "SS is ring-3 data",
                |t| set32(t, tss32::ES + 8, 0x23),
                Fault::ts(0x20),
            ),
            (
                "DS is a TSS",
                |t| set32(t, tss32::ES + 12, 0x28),
                Fault::ts(0x28),
            ),
            (
                "LDT is a TSS",
                |t| set32(t, tss32::LDT, 0x28),
                Fault::ts(0x28),
            ),
            (
                "LDT with TI",
                |t| set32(t, tss32::LDT, 0x54),
                Fault::ts(0x54),
            ),
            (
                "CS DPL 3 with RPL 0",
                |t| set32(t, tss32::ES + 4, 0x18),
                Fault::ts(0x18),
            ),
        ];
        for &(what, edit, want) in cases {
            let mut cpu = task_cpu();
            task32(&mut cpu, TSS_B, edit);
            assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Err(want), "{what}");
            assert_eq!(
                (cpu.tr.selector, cpu.rip),
                (0x30, 0x2000),
                "{what}: the switch happened"
            );
        }
        // Not-present data and stack segments: #NP and #SS.
        let mut cpu = task_cpu();
        put_gdt_entry(&mut cpu, 0x68, desc(0, 0xFFFF, 0x12, 0x4));
        task32(&mut cpu, TSS_B, |t| set32(t, tss32::ES + 12, 0x68));
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Err(Fault::np(0x68)));
        let mut cpu = task_cpu();
        put_gdt_entry(&mut cpu, 0x68, desc(0, 0xFFFF, 0x12, 0x4));
        task32(&mut cpu, TSS_B, |t| set32(t, tss32::ES + 8, 0x68));
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Err(Fault::ss(0x68)));
        // An EIP past the limit of a small code segment: #GP(0) in the new task.
        let mut cpu = task_cpu();
        put_gdt_entry(&mut cpu, 0x68, desc(0, 0xFFF, 0x9A, 0x4));
        task32(&mut cpu, TSS_B, |t| set32(t, tss32::ES + 4, 0x68));
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Err(Fault::gp(0)));
        // The T flag: #DB with DR6.BT once the new task runs.
        let mut cpu = task_cpu();
        task32(&mut cpu, TSS_B, |t| t[tss32::T as usize] = 1);
        assert_eq!(
            switch(&mut cpu, 0x30, Switch::Jmp),
            Err(Fault::new(vector::DB))
        );
        assert_ne!(cpu.dr[6] & dr::BT, 0);
    }

    fn put_gdt_entry(cpu: &mut Cpu, sel: u16, d: u64) {
        put(cpu, GDT + sel as u64, &d.to_le_bytes());
        cpu.gdtr.limit = cpu.gdtr.limit.max(sel + 7);
    }

    #[test]
    fn sixteen_bit_and_virtual_8086_tasks() {
        // A 16-bit TSS at 32000h: IP 0100h, FLAGS 0002h, AX..DI = 11h..18h (SP 4000h),
        // ES CS SS DS = 10h 08h 10h 10h, no LDT.
        let mut cpu = task_cpu();
        let mut t = [0u8; 0x2C];
        let mut w16 =
            |off: u64, v: u16| t[off as usize..off as usize + 2].copy_from_slice(&v.to_le_bytes());
        w16(tss16::IP, 0x100);
        w16(tss16::FLAGS, 0x0002);
        for n in 0..8 {
            w16(
                tss16::AX + 2 * n,
                if n == 4 { 0x4000 } else { 0x11 + n as u16 },
            );
        }
        for (s, sel) in [0x10u16, 0x08, 0x10, 0x10].into_iter().enumerate() {
            w16(tss16::ES + 2 * s as u64, sel);
        }
        put(&mut cpu, 0x32000, &t);
        cpu.set_rflags(rf::IF | rf::AC);
        assert_eq!(switch(&mut cpu, 0x58, Switch::Call), Ok(()));
        assert_eq!(
            (cpu.rip, cpu.gpr[gpr::RSP], cpu.gpr[gpr::RAX]),
            (0x100, 0xFFFF_4000, 0xFFFF_0011)
        );
        // FLAGS 15:0 from the TSS (plus NT for the CALL), the rest kept.
        assert_eq!(cpu.rflags(), rf::AC | rf::NT | rf::FIXED1);
        assert_eq!(read16(&cpu, 0x32000 + tss16::PREV_TASK_LINK), 0x28);

        // A 32-bit task with EFLAGS.VM: virtual-8086 segments, CPL 3.
        let mut cpu = task_cpu();
        task32(&mut cpu, TSS_B, |t| {
            set32(t, tss32::EFLAGS, (rf::VM | 2) as u32);
            set32(t, tss32::EIP, 0x0100);
            for (s, sel) in [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000]
                .into_iter()
                .enumerate()
            {
                set32(t, tss32::ES + 4 * s as u64, sel);
            }
        });
        assert_eq!(switch(&mut cpu, 0x30, Switch::Jmp), Ok(()));
        assert!(cpu.v86());
        assert_eq!(
            (cpu.cpl(), cpu.seg[sreg::CS].base, cpu.seg[sreg::GS].base),
            (3, 0x20000, 0x60000)
        );
    }

    #[test]
    fn interrupts_through_task_gates_push_the_error_code_on_the_new_stack() {
        let mut cpu = task_cpu();
        set_gate(&mut cpu, 8, gate(0x30, 0, 0x85, 0));
        assert_eq!(
            cpu.deliver(
                &mut NullBus,
                8,
                crate::interrupt::Source::Exception,
                Some(0),
                0x1111
            ),
            Ok(())
        );
        assert_eq!(
            (cpu.tr.selector, cpu.rip, cpu.gpr[gpr::RSP]),
            (0x30, 0x2000, 0x5000 - 4)
        );
        assert_eq!(read32(&cpu, 0x5000 - 4), 0);
        assert_eq!(
            (read32(&cpu, TSS + tss32::EIP), cpu.rflags() & rf::NT),
            (0x1111, rf::NT)
        );
        // A task gate whose selector is not a TSS: #GP(selector), EXT for exceptions.
        let mut cpu = task_cpu();
        set_gate(&mut cpu, 8, gate(0x10, 0, 0x85, 0));
        assert_eq!(
            cpu.deliver(
                &mut NullBus,
                8,
                crate::interrupt::Source::Exception,
                Some(0),
                0
            ),
            Err(Fault::gp(0x11))
        );
    }

    #[test]
    fn the_io_permission_bitmap() {
        // Bitmap at TSS + 68h covering ports 0-1Fh (4 bytes, then the limit): all
        // denied but 08h-10h.
        let mut cpu = task_cpu();
        put(&mut cpu, TSS + 0x68, &[0xFF, 0x00, 0xFE, 0xFF, 0xFF]);
        cpu.tr.limit = 0x6C;
        let allows =
            |cpu: &mut Cpu, port, size| cpu.io_bitmap_allows(&mut NullBus, port, size).unwrap();
        assert!(!allows(&mut cpu, 0x07, 1));
        assert!(allows(&mut cpu, 0x08, 4) && allows(&mut cpu, 0x0C, 4));
        assert!(!allows(&mut cpu, 0x0E, 4), "the last two bytes are denied");
        assert!(allows(&mut cpu, 0x10, 1) && !allows(&mut cpu, 0x11, 1));
        assert!(
            !allows(&mut cpu, 0x1F, 2),
            "a word at 1Fh needs the byte past the limit"
        );
        // Past the limit: denied; a 16-bit TSS has no bitmap.
        assert!(!allows(&mut cpu, 0x100, 1));
        cpu.tr.attr = (cpu.tr.attr & !0xF) | sys::TSS16_BUSY as u16;
        assert!(!allows(&mut cpu, 0x08, 1));
    }
}
