//! The register file gdb sees, in the order of target.xml.

use gdbstub::arch::{Arch, Registers};
use trapeze_cpu::{sreg, Cpu};

/// trapeze's x86 for gdbstub: x86-64 registers in every mode, described by
/// target.xml.
pub enum TrapezeX86 {}

impl Arch for TrapezeX86 {
    type Usize = u64;
    type Registers = Regs;
    type BreakpointKind = usize;
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("target.xml"))
    }
}

/// gdb's GPR order (rax rbx rcx rdx rsi rdi rbp rsp r8..r15) as encoding numbers.
const GDB_GPR: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Regs {
    pub gpr: [u64; 16],
    /// The linear address of CS:RIP (see README: gdb works in linear addresses).
    pub pc: u64,
    pub eflags: u32,
    /// Selectors, in gdb's order cs ss ds es fs gs.
    pub sel: [u32; 6],
    /// ST(0)..ST(7): 64-bit significand and sign|exponent.
    pub st: [(u64, u16); 8],
    /// fctrl fstat ftag fiseg fioff foseg fooff fop.
    pub fpu: [u32; 8],
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub fs_base: u64,
    pub gs_base: u64,
    /// es_base cs_base ss_base ds_base cr0 cr2 cr3 cr4 efer.
    pub system: [u64; 9],
}

/// gdb's segment-register order as `sreg` numbers.
const GDB_SREG: [usize; 6] = [sreg::CS, sreg::SS, sreg::DS, sreg::ES, sreg::FS, sreg::GS];

impl Regs {
    pub fn from_cpu(cpu: &Cpu) -> Regs {
        let x = &cpu.x87;
        let top = (x.sw >> 11) & 7;
        let mut r = Regs {
            pc: cpu.pc_linear(),
            eflags: cpu.rflags() as u32,
            fpu: [
                x.cw as u32,
                x.sw as u32,
                x.tag as u32,
                x.fcs as u32,
                x.fip as u32,
                x.fds as u32,
                x.fdp as u32,
                x.fop as u32,
            ],
            xmm: cpu.sse.xmm,
            mxcsr: cpu.sse.mxcsr,
            fs_base: cpu.seg[sreg::FS].base,
            gs_base: cpu.seg[sreg::GS].base,
            system: [
                cpu.seg[sreg::ES].base,
                cpu.seg[sreg::CS].base,
                cpu.seg[sreg::SS].base,
                cpu.seg[sreg::DS].base,
                cpu.cr0,
                cpu.cr2,
                cpu.cr3,
                cpu.cr4,
                cpu.efer,
            ],
            ..Regs::default()
        };
        for (slot, &n) in r.gpr.iter_mut().zip(&GDB_GPR) {
            *slot = cpu.gpr[n];
        }
        for (slot, &s) in r.sel.iter_mut().zip(&GDB_SREG) {
            *slot = cpu.seg[s].selector as u32;
        }
        for (i, slot) in r.st.iter_mut().enumerate() {
            let f = x.regs[(top as usize + i) & 7];
            *slot = (f.signif, f.sign_exp);
        }
        r
    }

    /// Write back what gdb may change: GPRs, RIP (from the linear PC), RFLAGS, the
    /// x87 and SSE registers. Selectors, bases and control registers are read-only
    /// here: loading them has architectural side effects a debugger should not fake.
    pub fn to_cpu(&self, cpu: &mut Cpu) {
        for (&v, &n) in self.gpr.iter().zip(&GDB_GPR) {
            cpu.gpr[n] = v;
        }
        let rip = self.pc.wrapping_sub(cpu.seg[sreg::CS].base);
        cpu.rip = if cpu.long64() { rip } else { rip & 0xFFFF_FFFF };
        cpu.set_rflags(self.eflags as u64);
        let x = &mut cpu.x87;
        x.cw = self.fpu[0] as u16;
        x.sw = self.fpu[1] as u16;
        x.tag = self.fpu[2] as u16;
        x.fip = self.fpu[4] as u64;
        x.fdp = self.fpu[6] as u64;
        x.fop = self.fpu[7] as u16;
        let top = (x.sw >> 11) & 7;
        for (i, &(signif, sign_exp)) in self.st.iter().enumerate() {
            x.regs[(top as usize + i) & 7] = trapeze_cpu::fpu::F80 { signif, sign_exp };
        }
        cpu.sse.xmm = self.xmm;
        cpu.sse.mxcsr = self.mxcsr;
    }
}

impl Registers for Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.pc
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut put = |bytes: &[u8]| bytes.iter().for_each(|b| write_byte(Some(*b)));
        self.gpr.iter().for_each(|v| put(&v.to_le_bytes()));
        put(&self.pc.to_le_bytes());
        put(&self.eflags.to_le_bytes());
        self.sel.iter().for_each(|v| put(&v.to_le_bytes()));
        for (signif, sign_exp) in &self.st {
            put(&signif.to_le_bytes());
            put(&sign_exp.to_le_bytes());
        }
        self.fpu.iter().for_each(|v| put(&v.to_le_bytes()));
        self.xmm.iter().for_each(|v| put(&v.to_le_bytes()));
        put(&self.mxcsr.to_le_bytes());
        put(&self.fs_base.to_le_bytes());
        put(&self.gs_base.to_le_bytes());
        self.system.iter().for_each(|v| put(&v.to_le_bytes()));
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8], ()> {
            let s = bytes.get(at..at + n).ok_or(())?;
            at += n;
            Ok(s)
        };
        fn le<const N: usize>(s: &[u8]) -> [u8; N] {
            s.try_into().expect("take returns N bytes")
        }
        for v in self.gpr.iter_mut() {
            *v = u64::from_le_bytes(le(take(8)?));
        }
        self.pc = u64::from_le_bytes(le(take(8)?));
        self.eflags = u32::from_le_bytes(le(take(4)?));
        for v in self.sel.iter_mut() {
            *v = u32::from_le_bytes(le(take(4)?));
        }
        for (signif, sign_exp) in self.st.iter_mut() {
            *signif = u64::from_le_bytes(le(take(8)?));
            *sign_exp = u16::from_le_bytes(le(take(2)?));
        }
        for v in self.fpu.iter_mut() {
            *v = u32::from_le_bytes(le(take(4)?));
        }
        for v in self.xmm.iter_mut() {
            *v = u128::from_le_bytes(le(take(16)?));
        }
        self.mxcsr = u32::from_le_bytes(le(take(4)?));
        self.fs_base = u64::from_le_bytes(le(take(8)?));
        self.gs_base = u64::from_le_bytes(le(take(8)?));
        for v in self.system.iter_mut() {
            *v = u64::from_le_bytes(le(take(8)?));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The register packet is as long as target.xml's registers add up to.
    #[test]
    fn packet_matches_description() {
        let xml = include_str!("target.xml");
        let bits: usize = xml
            .split("bitsize=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse::<usize>().unwrap())
            .sum();
        let mut n = 0;
        let regs = Regs {
            pc: 0x1234,
            ..Regs::default()
        };
        regs.gdb_serialize(|_| n += 1);
        assert_eq!(n * 8, bits);
        let mut bytes = Vec::new();
        regs.gdb_serialize(|b| bytes.push(b.unwrap()));
        let mut back = Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, regs);
    }
}
