//! Segment register loads and descriptor-table reads (SDM Vol.3 3.4, 5.4-5.6).
//! Real and virtual-8086 loads compute the base from the selector; protected-mode
//! loads read the descriptor from the GDT or LDT into the hidden cache.

use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::fault::Fault;
use crate::state::{attr, sreg, Segment};

/// Selector fields (SDM Vol.3 3.4.2).
pub mod selector {
    pub const RPL: u16 = 3;
    pub const TI: u16 = 1 << 2;
    pub const INDEX_MASK: u16 = !7;
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

impl Cpu {
    /// Read the descriptor a selector names. #GP(selector) if it lies outside the table.
    pub fn read_descriptor(&mut self, bus: &mut dyn Bus, sel: u16) -> Result<u64, Fault> {
        let (base, limit) = if sel & selector::TI != 0 {
            (self.ldtr.base, self.ldtr.limit as u64)
        } else {
            (self.gdtr.base, self.gdtr.limit as u64)
        };
        let off = (sel & selector::INDEX_MASK) as u64;
        if off + 7 > limit {
            return Err(Fault::gp((sel & selector::INDEX_MASK) as u32));
        }
        Ok(self.mmu.read::<u64>(bus, base.wrapping_add(off))?)
    }

    /// Set the descriptor's accessed bit in memory, as the processor does on a load.
    fn mark_accessed(&mut self, bus: &mut dyn Bus, sel: u16, d: u64) -> Result<(), Fault> {
        if d & (1 << 40) != 0 {
            return Ok(());
        }
        let base = if sel & selector::TI != 0 { self.ldtr.base } else { self.gdtr.base };
        let lin = base.wrapping_add((sel & selector::INDEX_MASK) as u64 + 5);
        let b = self.mmu.read::<u8>(bus, lin)?;
        Ok(self.mmu.write::<u8>(bus, lin, b | 1)?)
    }

    /// MOV/POP/LDS... to a data segment register or SS (SDM Vol.3 5.4.1, 5.5).
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
        let code = (sel & selector::INDEX_MASK) as u32;
        if sel & !selector::RPL == 0 {
            // Null selector: fine for data registers (unusable), never for SS.
            if seg == sreg::SS && !self.long64() {
                return Err(Fault::gp(0));
            }
            self.seg[seg] = Segment {
                selector: sel,
                ..Segment::default()
            };
            return Ok(());
        }
        let d = self.read_descriptor(bus, sel)?;
        let s = descriptor_to_segment(sel, d);
        let (is_code, readable, writable) = (
            s.attr & attr::CODE != 0,
            s.attr & attr::RW != 0,
            s.attr & (attr::CODE | attr::RW) == attr::RW,
        );
        if s.attr & attr::S == 0 || (seg == sreg::SS && !writable) || (is_code && !readable) {
            return Err(Fault::gp(code));
        }
        if s.attr & attr::P == 0 {
            return Err(if seg == sreg::SS { Fault::ss(code) } else { Fault::np(code) });
        }
        self.mark_accessed(bus, sel, d)?;
        self.seg[seg] = s;
        Ok(())
    }

    /// Load CS for a far JMP/CALL/RET or an interrupt (the control-transfer checks are
    /// the caller's; this reads and installs the descriptor).
    pub fn load_code_segment(&mut self, bus: &mut dyn Bus, sel: u16) -> Result<(), Fault> {
        if !self.protected() || self.v86() {
            let mut cs = if self.v86() { Segment::real(sel) } else { self.seg[sreg::CS] };
            cs.selector = sel;
            cs.base = (sel as u64) << 4;
            cs.attr |= attr::CODE;
            self.seg[sreg::CS] = cs;
            return Ok(());
        }
        let code = (sel & selector::INDEX_MASK) as u32;
        if sel & !selector::RPL == 0 {
            return Err(Fault::gp(0));
        }
        let d = self.read_descriptor(bus, sel)?;
        let mut s = descriptor_to_segment(sel, d);
        if s.attr & (attr::S | attr::CODE) != attr::S | attr::CODE {
            return Err(Fault::gp(code));
        }
        if s.attr & attr::P == 0 {
            return Err(Fault::np(code));
        }
        self.mark_accessed(bus, sel, d)?;
        // CPL lives in CS.RPL; same-privilege transfers keep the current CPL.
        s.selector = (sel & !selector::RPL) | self.cpl() as u16;
        self.seg[sreg::CS] = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
