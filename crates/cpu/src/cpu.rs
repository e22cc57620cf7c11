//! The CPU: architectural state, the run loop over the decode cache, and the memory,
//! register and flag accessors every handler uses.

use iced_x86::{Decoder, DecoderOptions, Register};
use trapeze_mmu::{event, Bus, Mmu};

use crate::classify::classify;
use crate::decode_cache::{DecodeCache, Entry, Key, MemOperand, MAX_BLOCK};
use crate::exec;
use crate::fault::Fault;
use crate::flags::{rf, Lazy, Op};
use crate::fpu::{Sse, X87};
use crate::interrupt::dr;
use crate::state::{attr, cr0, efer, sreg, Segment, TableReg, Word};

/// Why `Cpu::run` returned to the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget is spent.
    Budget,
    /// HLT: the CPU waits for an interrupt (IF tells whether one can come).
    Halt,
    /// Triple fault: the processor shut down.
    Shutdown,
    /// A device asked to end the run (e.g. the debug-exit port).
    Stop,
}

/// Counters the CPU keeps for `--stats`.
#[derive(Default, Clone, Debug)]
pub struct CpuStats {
    pub io_exits: u64,
    pub mmio_exits: u64,
    pub exceptions: [u64; 32],
    pub interrupts: u64,
    pub code_invalidations: u64,
    /// Sensitive instructions executed, by `Class::STAT_NAMES`.
    pub sensitive: [u64; 3],
}

pub struct Cpu {
    pub gpr: [u64; 16],
    pub rip: u64,
    /// RIP of the instruction after the one executing; branches overwrite it.
    pub(crate) next_ip: u64,
    /// RFLAGS with the status flags possibly stale (see `lazy`).
    pub(crate) rflags: u64,
    pub(crate) lazy: Lazy,
    pub seg: [Segment; 6],
    pub gdtr: TableReg,
    pub idtr: TableReg,
    pub ldtr: Segment,
    pub tr: Segment,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub dr: [u64; 8],
    /// x87/MMX registers (fpu.rs).
    pub x87: X87,
    /// XMM registers and MXCSR (fpu.rs).
    pub sse: Sse,
    pub mmu: Mmu,
    pub(crate) cache: DecodeCache,
    /// Instructions retired.
    pub icount: u64,
    pub stats: CpuStats,
    pub(crate) halted: bool,
    pub(crate) shutdown: bool,
    /// STI / MOV SS interrupt shadow: no interrupt before the next instruction ends.
    pub(crate) shadow: bool,
    /// The INTR line, driven by the machine's interrupt controller.
    pub intr: bool,
    /// A pending NMI (edge-triggered: taking it clears this).
    pub nmi: bool,
    /// NMIs are blocked from NMI delivery until the next IRET (SDM Vol.3 6.7.1).
    pub(crate) nmi_blocked: bool,
    /// DR6 bits of debug traps the current instruction raised (single-step, data
    /// breakpoints), delivered after it completes (interrupt.rs, `step_debug`).
    pub(crate) pending_db: u64,
    /// TSC = icount * tsc_per_insn + tsc_offset (virtual time, DESIGN.md §6).
    pub tsc_offset: u64,
    pub tsc_per_insn: u64,
    /// Popek–Goldberg strict mode: every sensitive instruction faults at CPL > 0.
    /// Set before the first instruction runs (the decode cache bakes it in).
    pub pg_strict: bool,
    /// Model-specific registers kept outside the fields above (msr.rs).
    pub msr: crate::msr::MsrStore,
    /// CR8: the task-priority register, bits 3:0.
    pub tpr: u8,
    /// Unimplemented instruction forms already logged.
    pub(crate) unimplemented_seen: std::collections::HashSet<iced_x86::Code>,
}

impl Cpu {
    /// A CPU in the state RESET leaves it (SDM Vol.3 9.1.1): real mode at F000:FFF0.
    pub fn new(mmu: Mmu) -> Self {
        let mut cs = Segment::real(0xF000);
        cs.base = 0xFFFF_0000;
        cs.attr |= attr::CODE;
        let mut cpu = Cpu {
            gpr: [0; 16],
            rip: 0xFFF0,
            next_ip: 0xFFF0,
            rflags: rf::FIXED1,
            lazy: Lazy::default(),
            seg: [Segment::real(0); 6],
            gdtr: TableReg {
                base: 0,
                limit: 0xFFFF,
            },
            idtr: TableReg {
                base: 0,
                limit: 0x3FF,
            },
            // SDM Vol.3 Table 9-1: LDTR after RESET is present, base 0, limit FFFFh.
            ldtr: Segment {
                limit: 0xFFFF,
                attr: attr::P | 2,
                ..Segment::default()
            },
            tr: Segment::default(),
            cr0: cr0::ET | cr0::CD | cr0::NW,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            dr: [0, 0, 0, 0, 0xFFFF_0FF0, 0x400, 0xFFFF_0FF0, 0x400],
            x87: X87::default(),
            sse: Sse::default(),
            mmu,
            cache: DecodeCache::default(),
            icount: 0,
            stats: CpuStats::default(),
            halted: false,
            shutdown: false,
            shadow: false,
            intr: false,
            nmi: false,
            nmi_blocked: false,
            pending_db: 0,
            tsc_offset: 0,
            tsc_per_insn: 1,
            pg_strict: false,
            msr: Default::default(),
            tpr: 0,
            unimplemented_seen: Default::default(),
        };
        cpu.seg[sreg::CS] = cs;
        // EDX holds the processor signature after RESET.
        cpu.gpr[2] = crate::cpuid::signature() as u64;
        cpu
    }

    /// Start in real mode at `cs:ip` (flat images, boot sectors).
    pub fn set_real_mode_entry(&mut self, cs: u16, ip: u16) {
        let mut c = Segment::real(cs);
        c.attr |= attr::CODE;
        self.seg[sreg::CS] = c;
        self.rip = ip as u64;
    }

    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Wake a halted CPU (an interrupt or NMI arrived).
    pub fn wake(&mut self) {
        self.halted = false;
    }

    // ---- modes -------------------------------------------------------------------

    pub fn protected(&self) -> bool {
        self.cr0 & cr0::PE != 0
    }

    pub fn v86(&self) -> bool {
        self.rflags & rf::VM != 0
    }

    /// 64-bit mode: IA-32e active and CS.L set.
    #[inline(always)]
    pub fn long64(&self) -> bool {
        self.efer & efer::LMA != 0 && self.seg[sreg::CS].attr & attr::L != 0
    }

    /// The code size the decoder must use: 16, 32 or 64.
    #[inline(always)]
    pub fn code_bits(&self) -> u32 {
        if self.long64() {
            64
        } else if self.seg[sreg::CS].attr & attr::DB != 0 && self.protected() && !self.v86() {
            32
        } else {
            16
        }
    }

    /// Current privilege level.
    pub fn cpl(&self) -> u8 {
        if !self.protected() {
            0
        } else if self.v86() {
            3
        } else {
            (self.seg[sreg::CS].selector & 3) as u8
        }
    }

    // ---- flags -------------------------------------------------------------------

    /// RFLAGS with the status flags materialized.
    pub fn rflags(&self) -> u64 {
        (self.rflags & !rf::ARITH) | self.lazy.arith(self.rflags)
    }

    /// Replace RFLAGS (no privilege filtering: callers apply the POPF/IRET rules).
    pub fn set_rflags(&mut self, v: u64) {
        self.rflags = (v & 0x3F_7FD5) | rf::FIXED1;
        self.lazy.op = Op::None;
    }

    /// Set the status flags in `mask` from `v` and keep the rest.
    #[inline]
    pub fn set_arith_flags(&mut self, mask: u64, v: u64) {
        // Replacing all six status flags needs no evaluation of the old ones.
        let cur = if mask & rf::ARITH == rf::ARITH {
            self.rflags
        } else {
            self.rflags()
        };
        self.rflags = (cur & !mask) | (v & mask);
        self.lazy.op = Op::None;
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        self.lazy.cf(self.rflags)
    }
    #[inline(always)]
    pub fn zf(&self) -> bool {
        self.lazy.zf(self.rflags)
    }
    #[inline(always)]
    pub fn sf(&self) -> bool {
        self.lazy.sf(self.rflags)
    }
    #[inline(always)]
    pub fn of(&self) -> bool {
        self.lazy.of(self.rflags)
    }
    #[inline(always)]
    pub fn pf(&self) -> bool {
        self.lazy.pf(self.rflags)
    }
    #[inline(always)]
    pub fn af(&self) -> bool {
        self.lazy.af(self.rflags)
    }
    #[inline(always)]
    pub fn df(&self) -> bool {
        self.rflags & rf::DF != 0
    }

    /// Condition code `cc` (0..=15, the Jcc/SETcc/CMOVcc encoding).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        self.lazy.cond(cc, self.rflags)
    }

    /// Record a lazily evaluated flag-setting operation.
    #[inline(always)]
    pub(crate) fn set_lazy<T: Word>(&mut self, op: Op, a: u64, b: u64, res: u64) {
        if matches!(op, Op::Inc | Op::Dec) {
            // INC/DEC keep CF: pin the current value in rflags first.
            let cf = self.cf();
            self.rflags = (self.rflags & !rf::CF) | cf as u64;
        }
        self.lazy = Lazy {
            op,
            bits: T::BITS,
            a,
            b,
            res,
        };
    }

    // ---- registers ---------------------------------------------------------------

    #[inline(always)]
    pub fn reg<T: Word>(&self, r: Register) -> T {
        let loc = REG_LOC[r as usize];
        let v = self.gpr[(loc & 0xF) as usize];
        T::from_u64(if loc & HIGH8 != 0 { v >> 8 } else { v })
    }

    #[inline(always)]
    pub fn set_reg<T: Word>(&mut self, r: Register, v: T) {
        let loc = REG_LOC[r as usize];
        let slot = &mut self.gpr[(loc & 0xF) as usize];
        if loc & HIGH8 != 0 {
            *slot = (*slot & !0xFF00) | (v.to_u64() << 8);
        } else {
            *slot = T::merge(*slot, v);
        }
    }

    /// Write a GPR by number with operand-size semantics.
    #[inline(always)]
    pub fn set_gpr<T: Word>(&mut self, n: usize, v: T) {
        self.gpr[n] = T::merge(self.gpr[n], v);
    }

    // ---- memory ------------------------------------------------------------------

    /// Offset in a segment → linear address, with the segment checks (limits outside
    /// 64-bit mode; SDM Vol.3 5.3). `size` is the access size in bytes.
    #[inline(always)]
    pub fn linear(&self, seg: usize, off: u64, size: usize) -> Result<u64, Fault> {
        let s = &self.seg[seg];
        if self.long64() {
            // 64-bit mode: only FS and GS have a base (SDM Vol.3 3.2.4), and an access that
            // is not in canonical form is #GP(0), or #SS(0) through SS (SDM Vol.1 3.3.7.1).
            let base = if seg >= sreg::FS { s.base } else { 0 };
            let lin = base.wrapping_add(off);
            if !canonical(lin) || !canonical(lin.wrapping_add(size as u64 - 1)) {
                return Err(if seg == sreg::SS {
                    Fault::ss(0)
                } else {
                    Fault::gp(0)
                });
            }
            return Ok(lin);
        }
        let (lo, hi) = s.valid_range();
        let last = off.wrapping_add(size as u64 - 1);
        if off < lo || last > hi || last < off {
            return Err(if seg == sreg::SS {
                Fault::ss(0)
            } else {
                Fault::gp(0)
            });
        }
        Ok(s.base.wrapping_add(off) & 0xFFFF_FFFF)
    }

    #[inline(always)]
    pub fn read_mem<T: Word>(
        &mut self,
        bus: &mut dyn Bus,
        seg: usize,
        off: u64,
    ) -> Result<T, Fault> {
        let lin = self.linear(seg, off, T::BYTES)?;
        Ok(self.mmu.read::<T>(bus, lin)?)
    }

    #[inline(always)]
    pub fn write_mem<T: Word>(
        &mut self,
        bus: &mut dyn Bus,
        seg: usize,
        off: u64,
        v: T,
    ) -> Result<(), Fault> {
        let lin = self.linear(seg, off, T::BYTES)?;
        Ok(self.mmu.write::<T>(bus, lin, v)?)
    }

    /// Offset of an explicit memory operand.
    #[inline(always)]
    pub fn ea(&self, m: &MemOperand) -> u64 {
        let mut a = m.disp;
        if m.base != crate::decode_cache::NO_REG {
            a = a.wrapping_add(self.gpr[m.base as usize]);
        }
        if m.index != crate::decode_cache::NO_REG {
            a = a.wrapping_add(self.gpr[m.index as usize] << m.scale_shift);
        }
        a & m.addr_mask
    }

    // ---- the run loop ------------------------------------------------------------

    /// Run until an exit, for at most `budget` instructions.
    pub fn run(&mut self, bus: &mut dyn Bus, budget: u64) -> Exit {
        let end = self.icount.saturating_add(budget);
        loop {
            if self.mmu.events != 0 {
                if let Some(exit) = self.take_events() {
                    return exit;
                }
            }
            if self.shutdown {
                return Exit::Shutdown;
            }
            if self.nmi && !self.shadow && !self.nmi_blocked {
                self.take_nmi(bus);
            } else if self.intr && !self.shadow && self.rflags & rf::IF != 0 {
                self.take_interrupt(bus);
            }
            if self.halted {
                return Exit::Halt;
            }
            if self.icount >= end {
                return Exit::Budget;
            }
            // Single-step, RF and armed breakpoints run one instruction at a time.
            if self.rflags & (rf::TF | rf::RF) != 0 || self.dr[7] & dr::ENABLE != 0 {
                self.step_debug(bus);
                continue;
            }
            let limit = if self.shadow { 1 } else { end - self.icount };
            self.shadow = false;
            match self.block() {
                Ok(Some(block)) => {
                    // SAFETY: the cache frees dropped blocks only in release_retired,
                    // which runs between blocks.
                    let entries = unsafe { &*block };
                    self.exec_block(bus, entries, limit);
                }
                Ok(None) => self.exec_uncached(bus),
                Err(f) => self.raise(bus, f),
            }
        }
    }

    /// Run one instruction (debugger stepping and tests share the handlers with `run`).
    pub fn step(&mut self, bus: &mut dyn Bus) -> Exit {
        self.run(bus, 1)
    }

    #[inline(always)]
    pub(crate) fn exec_block(&mut self, bus: &mut dyn Bus, entries: &[Entry], limit: u64) {
        let n = entries.len().min(limit as usize);
        // `icount` advances per instruction, so a handler that traps to a device sees
        // exactly how many instructions retired before it (the device's time).
        for e in &entries[..n] {
            self.next_ip = e.next_ip;
            if let Err(f) = (e.exec)(self, bus, e) {
                self.raise(bus, f);
                return;
            }
            self.rip = self.next_ip;
            self.icount += 1;
            if self.mmu.events != 0 {
                break;
            }
        }
    }

    /// Find or decode the block at CS:RIP. `None`: the instruction there crosses a
    /// page boundary and is run uncached.
    #[inline]
    pub(crate) fn block(&mut self) -> Result<Option<*const [Entry]>, Fault> {
        let cpl = self.cpl();
        // Paging's U/S checks follow the CPL; every CPL change ends a block.
        self.mmu.set_user(cpl == 3);
        let mode = self.decode_mode(cpl);
        let lin = self.linear(sreg::CS, self.rip, 1)?;
        let phys = self.mmu.fetch_phys(lin)?;
        let key = Key {
            phys,
            ip: self.rip,
            mode,
        };
        if let Some(b) = self.cache.lookup(key) {
            return Ok(Some(b));
        }
        self.decode_block(key)
    }

    #[cold]
    fn decode_block(&mut self, key: Key) -> Result<Option<*const [Entry]>, Fault> {
        let page = key.phys & !0xFFF;
        let Some(bytes) = self.mmu.phys.page_bytes(page) else {
            eprintln!(
                "trapeze: instruction fetch from MMIO at {:#x} (#UD)",
                key.phys
            );
            return Err(Fault::ud());
        };
        let off = (key.phys - page) as usize;
        let mut dec = Decoder::with_ip(key.bits(), &bytes[off..], key.ip, DecoderOptions::NONE);
        let mut entries = Vec::new();
        while entries.len() < MAX_BLOCK {
            let insn = dec.decode();
            if dec.last_error() == iced_x86::DecoderError::NoMoreBytes {
                break; // crosses into the next page: ends the block, runs uncached
            }
            let ends = exec::ends_block(&insn);
            entries.push(self.entry(insn, key));
            if ends {
                break;
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        self.mmu.mark_code_page(page);
        Ok(Some(self.cache.insert(key, entries)))
    }

    /// The decode-cache mode of the current state (see `Key::mode`).
    #[inline(always)]
    fn decode_mode(&self, cpl: u8) -> u32 {
        let v86 = if self.v86() { Key::V86 } else { 0 };
        self.code_bits() | (cpl as u32) << 8 | v86
    }

    /// Resolve an instruction's handler for the mode it was decoded in. The
    /// Popek–Goldberg table decides here, once, which instructions fault because of
    /// the CPL (privileged ones; in strict mode every sensitive one).
    fn entry(&self, insn: iced_x86::Instruction, key: Key) -> Entry {
        let wrap = match key.bits() {
            16 => 0xFFFF,
            32 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        let class = classify(insn.code());
        let privileged = class.privileged && !(class.ud_in_v86 && key.v86());
        let deprivileged = key.cpl() > 0 && (privileged || (self.pg_strict && class.sensitive()));
        let inner = if deprivileged && !insn.is_invalid() {
            exec::privileged_fault
        } else {
            exec::select(&insn)
        };
        let class_stat = class.stat_index().map_or(u8::MAX, |i| i as u8);
        let exec = if class_stat == u8::MAX {
            inner
        } else {
            exec::count_sensitive
        };
        Entry::new(exec, inner, class_stat, insn.next_ip() & wrap, insn)
    }

    /// Decode and run one instruction whose bytes straddle a page boundary.
    #[cold]
    pub(crate) fn exec_uncached(&mut self, bus: &mut dyn Bus) {
        let bits = self.code_bits();
        let mut bytes = [0u8; 15];
        let mut len = 0;
        let mut fault = None;
        for (k, b) in bytes.iter_mut().enumerate() {
            let fetched = self
                .linear(sreg::CS, self.rip.wrapping_add(k as u64), 1)
                .and_then(|lin| Ok(self.mmu.fetch_phys(lin)?));
            match fetched {
                Ok(p) => *b = self.mmu.phys_read(bus, p, 1) as u8,
                Err(f) => {
                    fault = Some(f);
                    break;
                }
            }
            len = k + 1;
        }
        let mut dec = Decoder::with_ip(bits, &bytes[..len], self.rip, DecoderOptions::NONE);
        let insn = dec.decode();
        // A fetch fault counts only if the instruction needs the bytes behind it
        // (SDM Vol.3 6.15: #PF on an instruction fetch that crosses into a bad page).
        if let (Some(f), iced_x86::DecoderError::NoMoreBytes) = (fault, dec.last_error()) {
            return self.raise(bus, f);
        }
        let key = Key {
            phys: 0,
            ip: self.rip,
            mode: self.decode_mode(self.cpl()),
        };
        let e = self.entry(insn, key);
        self.exec_block(bus, std::slice::from_ref(&e), 1);
    }

    /// Handle `mmu.events`: drop overwritten code, or stop for a device.
    fn take_events(&mut self) -> Option<Exit> {
        if self.mmu.events & event::CODE_WRITTEN != 0 {
            for page in self.mmu.take_written_code() {
                self.cache.invalidate_page(page);
                self.stats.code_invalidations += 1;
            }
            // Between blocks: nothing runs from the dropped entries any more.
            self.cache.release_retired();
        }
        if self.mmu.events & event::BUS_STOP != 0 {
            self.mmu.events &= !event::BUS_STOP;
            return Some(Exit::Stop);
        }
        None
    }

    /// Write guest RAM from the host (loaders, debugger, tests) and drop any decoded
    /// code from the pages written, as a guest store would.
    pub fn write_phys(&mut self, addr: u64, bytes: &[u8]) -> Result<(), trapeze_mmu::MapError> {
        self.mmu.phys.write_bytes(addr, bytes)?;
        let last = addr + bytes.len().max(1) as u64 - 1;
        for page in (addr >> 12)..=(last >> 12) {
            self.cache.invalidate_page(page << 12);
        }
        self.cache.release_retired();
        Ok(())
    }

    pub fn cache_stats(&self) -> crate::decode_cache::CacheStats {
        self.cache.stats
    }

    /// The time-stamp counter (virtual time).
    pub fn tsc(&self) -> u64 {
        self.icount
            .wrapping_mul(self.tsc_per_insn)
            .wrapping_add(self.tsc_offset)
    }
}

/// Is a 64-bit linear address in canonical form (bits 63..47 all equal, 48-bit
/// linear addresses; SDM Vol.1 3.3.7.1)?
#[inline(always)]
pub fn canonical(a: u64) -> bool {
    (((a << 16) as i64) >> 16) as u64 == a
}

const HIGH8: u8 = 0x80;

/// Register → GPR number (| HIGH8 for AH CH DH BH), indexed by iced's `Register`.
static REG_LOC: [u8; 256] = reg_loc_table();

const fn reg_loc_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut n = 0;
    while n < 16 {
        t[Register::AX as usize + n] = n as u8;
        t[Register::EAX as usize + n] = n as u8;
        t[Register::RAX as usize + n] = n as u8;
        n += 1;
    }
    n = 0;
    while n < 4 {
        t[Register::AL as usize + n] = n as u8;
        t[Register::AH as usize + n] = HIGH8 | n as u8;
        n += 1;
    }
    n = 4;
    while n < 16 {
        // SPL BPL SIL DIL R8L..R15L follow BH in iced's numbering.
        t[Register::SPL as usize + n - 4] = n as u8;
        n += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_table_matches_iced_numbering() {
        for r in [
            Register::AL,
            Register::BH,
            Register::SIL,
            Register::R15L,
            Register::R9W,
            Register::EDI,
            Register::R12,
        ] {
            let loc = REG_LOC[r as usize];
            let n = r.full_register().number() as u8;
            assert_eq!(loc & 0xF, n, "{r:?}");
            assert_eq!(
                loc & HIGH8 != 0,
                matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
            );
        }
    }
}
