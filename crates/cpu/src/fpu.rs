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

/// x87 status-word fields (SDM Vol.1 8.1.3).
pub mod sw {
    pub const TOP_SHIFT: u32 = 11;
    pub const TOP: u16 = 7 << TOP_SHIFT;
}

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
