//! x87 FPU, MMX and SSE register state (SDM Vol.1 8.1, 9.2, 10.2) and the CR0/CR4
//! checks that decide whether an instruction of each family may run (SDM Vol.3 2.5,
//! Table 12-1 and 13-1).
//!
//! The x87 registers are kept by physical number (R0..R7); ST(i) is R((TOP + i) & 7).
//! MMX register MMi aliases the significand of Ri.

use crate::cpu::Cpu;
use crate::fault::{vector, Fault};
use crate::state::{cr0, cr4};

/// An x87 double-extended value as stored in a register or by FSTP m80 (SDM Vol.1 4.2.2):
/// a 64-bit significand with an explicit integer bit, and sign | 15-bit exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F80 {
    pub signif: u64,
    pub sign_exp: u16,
}

impl F80 {
    pub const ZERO: F80 = F80::new(0, 0, 0);
    pub const ONE: F80 = F80::new(0, 0x3FFF, 1 << 63);
    /// The "real indefinite" QNaN, the masked response to an invalid operation (SDM
    /// Vol.1 4.8.3.7).
    pub const INDEFINITE: F80 = F80::new(1, 0x7FFF, 0xC000_0000_0000_0000);

    pub const fn new(sign: u16, exp: u16, signif: u64) -> F80 {
        F80 {
            signif,
            sign_exp: sign << 15 | exp,
        }
    }
    pub fn sign(self) -> bool {
        self.sign_exp & 0x8000 != 0
    }
    pub fn exp(self) -> u16 {
        self.sign_exp & 0x7FFF
    }
    pub fn abs(self) -> F80 {
        F80::new(0, self.exp(), self.signif)
    }
    /// What FXAM and the tag word see (SDM Vol.1 Table 8-7, 4.8.3).
    pub fn class(self) -> Class {
        let integer = self.signif >> 63 != 0;
        match self.exp() {
            0 if self.signif == 0 => Class::Zero,
            // Real denormals and pseudo-denormals (J = 1).
            0 => Class::Denormal,
            // Pseudo-NaN and pseudo-infinity: unsupported since the 387.
            0x7FFF if !integer => Class::Unsupported,
            0x7FFF if self.signif << 1 == 0 => Class::Infinity,
            0x7FFF => Class::NaN,
            // Unnormal.
            _ if !integer => Class::Unsupported,
            _ => Class::Normal,
        }
    }
    pub fn is_nan(self) -> bool {
        self.class() == Class::NaN
    }
    pub fn is_snan(self) -> bool {
        self.is_nan() && self.signif & (1 << 62) == 0
    }
    /// The tag (SDM Vol.1 8.1.7): 00 valid, 01 zero, 10 special.
    pub fn tag(self) -> u16 {
        match self.class() {
            Class::Normal => tag::VALID,
            Class::Zero => tag::ZERO,
            _ => tag::SPECIAL,
        }
    }
}

/// FCHS: the sign flipped, nothing else (NaNs included).
impl std::ops::Neg for F80 {
    type Output = F80;
    fn neg(self) -> F80 {
        F80 {
            sign_exp: self.sign_exp ^ 0x8000,
            ..self
        }
    }
}

/// The classes of an x87 register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Unsupported,
    NaN,
    Normal,
    Infinity,
    Zero,
    Denormal,
}

/// Tag-word values (SDM Vol.1 Figure 8-7).
pub mod tag {
    pub const VALID: u16 = 0;
    pub const ZERO: u16 = 1;
    pub const SPECIAL: u16 = 2;
    pub const EMPTY: u16 = 3;
}

/// x87 status-word fields (SDM Vol.1 8.1.3). Bits 0..5 are the exception flags of
/// `softfloat::ex`.
pub mod sw {
    /// Stack fault (with IE; C1 tells overflow from underflow).
    pub const SF: u16 = 1 << 6;
    /// Exception summary status.
    pub const ES: u16 = 1 << 7;
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const TOP_SHIFT: u32 = 11;
    pub const TOP: u16 = 7 << TOP_SHIFT;
    pub const C3: u16 = 1 << 14;
    /// FPU busy: mirrors ES on the 387 and later.
    pub const B: u16 = 1 << 15;
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// x87 control-word fields (SDM Vol.1 8.1.5).
pub mod cw {
    /// IM DM ZM OM UM PM: the exception masks, in the bit order of the flags.
    pub const MASKS: u16 = 0x3F;
    pub const PC_SHIFT: u32 = 8;
    pub const RC_SHIFT: u32 = 10;
    /// Bit 6 reads as 1 and bits 13..15 as 0; bit 12 (the 287's infinity control) is
    /// kept though it has no effect since the 387, as the host oracle shows.
    pub const WRITABLE: u16 = 0x1F3F;
    pub const FIXED1: u16 = 0x0040;
    /// The value FNINIT loads: everything masked, extended precision, round to nearest.
    pub const INIT: u16 = 0x037F;
}

/// MXCSR_MASK as FXSAVE stores it: every MXCSR bit LDMXCSR/FXRSTOR accept, DAZ
/// included (SDM Vol.1 11.6.6).
pub const MXCSR_MASK: u32 = 0xFFFF;

/// The x87 state FXSAVE stores (SDM Vol.1 8.1, Table 10-2).
#[derive(Clone, Debug)]
pub struct X87 {
    /// Physical registers R0..R7.
    pub regs: [F80; 8],
    pub cw: u16,
    /// Status word, TOP included.
    pub sw: u16,
    /// Full tag word, two bits per physical register (00 valid, 01 zero, 10 special,
    /// 11 empty).
    pub tag: u16,
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
}

impl Default for X87 {
    /// The state RESET leaves (SDM Vol.3 Table 9-1): control word 0040h, tag word
    /// 5555h (every register tagged zero), data registers +0.0.
    fn default() -> Self {
        X87 {
            regs: [F80::default(); 8],
            cw: 0x0040,
            sw: 0,
            tag: 0x5555,
            fop: 0,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
        }
    }
}

/// MXCSR after RESET: all exceptions masked, round to nearest (SDM Vol.1 10.2.3).
pub const MXCSR_RESET: u32 = 0x1F80;

/// The SSE state: XMM0..XMM15 and MXCSR.
#[derive(Clone, Debug)]
pub struct Sse {
    pub xmm: [u128; 16],
    pub mxcsr: u32,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            xmm: [0; 16],
            mxcsr: MXCSR_RESET,
        }
    }
}

impl Cpu {
    /// An x87 instruction may run: #NM when CR0.EM or CR0.TS is set (SDM Vol.3 Table
    /// 2-2).
    #[inline]
    pub fn x87_available(&self) -> Result<(), Fault> {
        if self.cr0 & (cr0::EM | cr0::TS) != 0 {
            return Err(Fault::new(vector::NM));
        }
        Ok(())
    }

    /// An MMX instruction may run: #UD when CR0.EM is set, then #NM when CR0.TS is.
    /// x87 TOP.
    #[inline]
    pub fn fpu_top(&self) -> usize {
        ((self.x87.sw & sw::TOP) >> sw::TOP_SHIFT) as usize
    }

    #[inline]
    pub fn set_fpu_top(&mut self, top: usize) {
        self.x87.sw = (self.x87.sw & !sw::TOP) | ((top as u16 & 7) << sw::TOP_SHIFT);
    }

    /// The physical register that is ST(i).
    #[inline]
    pub fn st_phys(&self, i: usize) -> usize {
        (self.fpu_top() + i) & 7
    }

    #[inline]
    pub fn st(&self, i: usize) -> F80 {
        self.x87.regs[self.st_phys(i)]
    }

    #[inline]
    pub fn phys_tag(&self, r: usize) -> u16 {
        (self.x87.tag >> (2 * r)) & 3
    }

    #[inline]
    pub fn set_phys_tag(&mut self, r: usize, t: u16) {
        self.x87.tag = (self.x87.tag & !(3 << (2 * r))) | (t << (2 * r));
    }

    #[inline]
    pub fn st_empty(&self, i: usize) -> bool {
        self.phys_tag(self.st_phys(i)) == tag::EMPTY
    }

    /// Write ST(i) and tag it by its value.
    #[inline]
    pub fn set_st(&mut self, i: usize, v: F80) {
        let r = self.st_phys(i);
        self.x87.regs[r] = v;
        self.set_phys_tag(r, v.tag());
    }

    /// Decrement TOP and write the new ST(0).
    pub fn fpu_push(&mut self, v: F80) {
        self.set_fpu_top(self.fpu_top().wrapping_sub(1));
        self.set_st(0, v);
    }

    /// Tag ST(0) empty and increment TOP.
    pub fn fpu_pop(&mut self) {
        let r = self.st_phys(0);
        self.set_phys_tag(r, tag::EMPTY);
        self.set_fpu_top(self.fpu_top() + 1);
    }

    /// The full tag word as FNSTENV/FNSAVE store it: the empty tags as kept, the others
    /// recomputed from the register contents (SDM Vol.1 8.1.7).
    pub fn full_tag_word(&self) -> u16 {
        (0..8).fold(0, |t, r| {
            let v = if self.phys_tag(r) == tag::EMPTY {
                tag::EMPTY
            } else {
                self.x87.regs[r].tag()
            };
            t | v << (2 * r)
        })
    }

    /// The abridged tag byte of FXSAVE: bit r set when Rr is not empty.
    pub fn abridged_tag(&self) -> u8 {
        (0..8).fold(0, |t, r| t | ((self.phys_tag(r) != tag::EMPTY) as u8) << r)
    }

    /// Load the tags from an abridged tag byte (FXRSTOR).
    pub fn set_abridged_tag(&mut self, t: u8) {
        for r in 0..8 {
            let v = if t >> r & 1 != 0 {
                self.x87.regs[r].tag()
            } else {
                tag::EMPTY
            };
            self.set_phys_tag(r, v);
        }
    }

    /// Recompute ES and B from the exception flags and masks, as loading a control or
    /// status word does (SDM Vol.1 8.1.3.4).
    pub fn fpu_update_summary(&mut self) {
        let x = &mut self.x87;
        if x.sw & !x.cw & cw::MASKS != 0 {
            x.sw |= sw::ES | sw::B;
        } else {
            x.sw &= !(sw::ES | sw::B);
        }
    }

    #[inline]
    pub fn mmx_available(&self) -> Result<(), Fault> {
        if self.cr0 & cr0::EM != 0 {
            return Err(Fault::ud());
        }
        if self.cr0 & cr0::TS != 0 {
            return Err(Fault::new(vector::NM));
        }
        Ok(())
    }

    /// An SSE/SSE2 instruction may run: #UD when CR0.EM is set or CR4.OSFXSR is clear,
    /// then #NM when CR0.TS is set (SDM Vol.3 Table 13-1).
    #[inline]
    pub fn sse_available(&self) -> Result<(), Fault> {
        if self.cr0 & cr0::EM != 0 || self.cr4 & cr4::OSFXSR == 0 {
            return Err(Fault::ud());
        }
        if self.cr0 & cr0::TS != 0 {
            return Err(Fault::new(vector::NM));
        }
        Ok(())
    }

    /// MMi: the significand of physical register Ri (SDM Vol.1 9.5).
    #[inline]
    pub fn mmx(&self, i: usize) -> u64 {
        self.x87.regs[i].signif
    }

    /// Every MMX instruction but EMMS sets TOP to 0 and tags all registers valid
    /// (SDM Vol.1 9.5.1).
    #[inline]
    pub fn enter_mmx(&mut self) {
        self.x87.sw &= !sw::TOP;
        self.x87.tag = 0;
    }

    /// A write to MMi also sets the exponent field of Ri to all ones (SDM Vol.1 9.5).
    #[inline]
    pub fn set_mmx(&mut self, i: usize, v: u64) {
        self.x87.regs[i] = F80 {
            signif: v,
            sign_exp: 0xFFFF,
        };
    }
}
