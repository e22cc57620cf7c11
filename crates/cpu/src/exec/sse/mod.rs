//! MMX, SSE and SSE2 (SDM Vol.1 chapters 9-11; Vol.2 instruction pages): one module per
//! concern, sharing the operand access and availability checks defined here.
//!
//! Lane operations are written once over a `u128`: an MMX instruction computes the same
//! lanes as its XMM form and keeps the low 64 bits (operations that move data across
//! lanes take the operand width in bytes).

use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::{vector, Fault};

/// `ops!(t; Mnemonic => |a, b, n, imm| expr; ...)`: registers, for each mnemonic, the
/// [`packed`] handler over an operation `dst = expr` where `a` is the destination's old
/// value, `b` the source (or the imm8 of a shift-by-immediate form), `n` the width in
/// bytes (8 for MMX registers, 16 for XMM) and `imm` the imm8.
macro_rules! ops {
    ($t:ident; $($m:ident => |$a:ident, $b:ident, $n:ident, $imm:ident| $body:expr;)*) => {$(
        #[allow(non_camel_case_types)]
        struct $m;
        impl $crate::exec::sse::VecOp for $m {
            #[allow(unused_variables)]
            #[inline(always)]
            fn apply($a: u128, $b: u128, $n: usize, $imm: u8) -> u128 {
                $body
            }
        }
        $t.on(iced_x86::Mnemonic::$m, |_| Some($crate::exec::sse::packed::<$m>));
    )*};
}

pub mod cache;
pub mod convert;
pub mod float;
pub mod int;
pub mod moves;
pub mod mxcsr;
pub mod shuffle;

pub(crate) fn register(t: &mut Table) {
    cache::register(t);
    convert::register(t);
    float::register(t);
    int::register(t);
    moves::register(t);
    mxcsr::register(t);
    shuffle::register(t);
}

/// Where an operand of a SIMD instruction lives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    Xmm(usize),
    Mm(usize),
    Gpr(Register),
    /// A memory operand of this many bytes.
    Mem(usize),
    Imm,
}

pub(crate) fn loc(i: &Instruction, n: u32) -> Loc {
    match i.op_kind(n) {
        OpKind::Register => {
            let r = i.op_register(n);
            if r.is_xmm() {
                Loc::Xmm(r.number())
            } else if r.is_mm() {
                Loc::Mm(r.number())
            } else {
                Loc::Gpr(r)
            }
        }
        OpKind::Memory => Loc::Mem(i.memory_size().size()),
        _ => Loc::Imm,
    }
}

/// The legacy-SSE forms whose 128-bit memory operand need not be 16-byte aligned
/// (SDM Vol.1 11.6.7); every other one raises #GP(0) when misaligned.
fn unaligned_ok(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Movups | Mnemonic::Movupd | Mnemonic::Movdqu | Mnemonic::Maskmovdqu
    )
}

/// x87 status word: an unmasked exception is pending (SDM Vol.1 8.1.3.1).
const FSW_ES: u16 = 1 << 7;

/// Lowest `bits` bits set.
pub(crate) fn low_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl Cpu {
    /// The checks every SIMD instruction makes before touching state: an XMM operand
    /// needs SSE enabled (#UD/#NM, SDM Vol.3 Table 13-1), an MMX register operand needs
    /// MMX (#UD on CR0.EM, #NM on CR0.TS) and raises #MF while an x87 exception is
    /// pending (SDM Vol.1 9.5.1; CR0.NE decides the delivery, which is the x87's).
    /// Returns whether an MMX register is an operand (for [`Cpu::simd_end`]).
    pub(crate) fn simd_begin(&self, e: &Entry) -> Result<bool, Fault> {
        let i = &e.insn;
        let (mut xmm, mut mm) = (false, false);
        for n in 0..i.op_count() {
            match loc(i, n) {
                Loc::Xmm(_) => xmm = true,
                Loc::Mm(_) => mm = true,
                _ => {}
            }
        }
        if xmm || !mm {
            self.sse_available()?;
        } else {
            self.mmx_available()?;
        }
        if mm {
            self.x87_pending()?;
        }
        Ok(mm)
    }

    /// #MF before an MMX instruction while an unmasked x87 exception is pending.
    pub(crate) fn x87_pending(&self) -> Result<(), Fault> {
        if self.x87.sw & FSW_ES != 0 {
            return Err(Fault::new(vector::MF));
        }
        Ok(())
    }

    /// Completes an instruction; with an MMX register operand (`mm`, from
    /// [`Cpu::simd_begin`]) the x87 enters MMX state (TOP = 0, all tags valid; SDM Vol.1
    /// 9.5.1).
    pub(crate) fn simd_end(&mut self, mm: bool) {
        if mm {
            self.enter_mmx();
        }
    }

    /// Linear address of the memory operand (`bytes` wide), with the 16-byte alignment
    /// check of legacy SSE.
    pub(crate) fn simd_linear(&self, e: &Entry, bytes: usize) -> Result<u64, Fault> {
        let lin = self.linear(e.mem.seg as usize, self.ea(&e.mem), bytes)?;
        if bytes == 16 && lin % 16 != 0 && !unaligned_ok(e.insn.mnemonic()) {
            return Err(Fault::gp(0));
        }
        Ok(lin)
    }

    /// Read `bytes` (1, 2, 4, 8 or 16) of the memory operand, zero-extended.
    pub(crate) fn simd_load(
        &mut self,
        bus: &mut dyn Bus,
        e: &Entry,
        bytes: usize,
    ) -> Result<u128, Fault> {
        let lin = self.simd_linear(e, bytes)?;
        let m = &mut self.mmu;
        Ok(match bytes {
            1 => m.read::<u8>(bus, lin)? as u128,
            2 => m.read::<u16>(bus, lin)? as u128,
            4 => m.read::<u32>(bus, lin)? as u128,
            8 => m.read::<u64>(bus, lin)? as u128,
            _ => {
                let lo = m.read::<u64>(bus, lin)?;
                let hi = m.read::<u64>(bus, lin.wrapping_add(8))?;
                (hi as u128) << 64 | lo as u128
            }
        })
    }

    /// Write the low `bytes` of `v` to the memory operand; nothing is written unless
    /// all of it can be.
    pub(crate) fn simd_store(
        &mut self,
        bus: &mut dyn Bus,
        e: &Entry,
        bytes: usize,
        v: u128,
    ) -> Result<(), Fault> {
        let lin = self.simd_linear(e, bytes)?;
        let m = &mut self.mmu;
        match bytes {
            2 => m.write::<u16>(bus, lin, v as u16)?,
            4 => m.write::<u32>(bus, lin, v as u32)?,
            8 => m.write::<u64>(bus, lin, v as u64)?,
            _ => {
                m.probe_write(lin, 16)?;
                m.write::<u64>(bus, lin, v as u64)?;
                m.write::<u64>(bus, lin.wrapping_add(8), (v >> 64) as u64)?;
            }
        }
        Ok(())
    }

    /// Operand `n`, zero-extended to 128 bits (an immediate: its imm8).
    pub(crate) fn vread(&mut self, bus: &mut dyn Bus, e: &Entry, n: u32) -> Result<u128, Fault> {
        Ok(match loc(&e.insn, n) {
            Loc::Xmm(r) => self.sse.xmm[r],
            Loc::Mm(r) => self.mmx(r) as u128,
            Loc::Gpr(r) if r.size() == 8 => self.reg::<u64>(r) as u128,
            Loc::Gpr(r) => self.reg::<u32>(r) as u128,
            Loc::Mem(bytes) => self.simd_load(bus, e, bytes)?,
            Loc::Imm => e.insn.immediate8() as u128,
        })
    }

    /// Write operand `n`: a whole XMM register, an MMX register (low 64 bits), a GPR
    /// (32-bit writes zero-extend) or the memory operand at its size.
    pub(crate) fn vwrite(
        &mut self,
        bus: &mut dyn Bus,
        e: &Entry,
        n: u32,
        v: u128,
    ) -> Result<(), Fault> {
        match loc(&e.insn, n) {
            Loc::Xmm(r) => self.sse.xmm[r] = v,
            Loc::Mm(r) => self.set_mmx(r, v as u64),
            Loc::Gpr(r) if r.size() == 8 => self.set_reg::<u64>(r, v as u64),
            Loc::Gpr(r) => self.set_reg::<u32>(r, v as u32),
            Loc::Mem(bytes) => self.simd_store(bus, e, bytes, v)?,
            // No registered form has one; a decoding surprise is the guest's #UD.
            Loc::Imm => return Err(Fault::ud()),
        }
        Ok(())
    }
}

/// A vector lane type: the integers of SDM Vol.1 4.6 (and the bits of a float).
pub(crate) trait Lane: Copy {
    const BITS: u32;
    fn get(v: u128, i: usize) -> Self;
    fn bits(self) -> u128;
    /// `v` with lane `i` replaced.
    #[inline(always)]
    fn put(self, v: u128, i: usize) -> u128 {
        let sh = i as u32 * Self::BITS;
        v & !(low_mask(Self::BITS) << sh) | (self.bits() & low_mask(Self::BITS)) << sh
    }
}

macro_rules! lane {
    ($($t:ty: $u:ty),*) => {$(
        impl Lane for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn get(v: u128, i: usize) -> Self {
                (v >> (i as u32 * Self::BITS)) as $t
            }
            #[inline(always)]
            fn bits(self) -> u128 {
                self as $u as u128
            }
        }
    )*};
}
lane!(u8: u8, i8: u8, u16: u16, i16: u16, u32: u32, i32: u32, u64: u64, i64: u64);

/// Lanes of `T` in 128 bits.
pub(crate) const fn lanes<T: Lane>() -> usize {
    (128 / T::BITS) as usize
}

/// `f` applied lane by lane.
#[inline(always)]
pub(crate) fn map2<T: Lane>(a: u128, b: u128, f: impl Fn(T, T) -> T) -> u128 {
    (0..lanes::<T>()).fold(0, |r, i| f(T::get(a, i), T::get(b, i)).put(r, i))
}

/// A vector operation without floating-point exceptions (see `ops!`).
pub(crate) trait VecOp {
    fn apply(a: u128, b: u128, n: usize, imm: u8) -> u128;
}

/// `dst = O(dst, src)`: the destination is operand 0, the source operand 1 (or the imm8
/// of a shift-by-immediate form).
pub(crate) fn packed<O: VecOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let mm = cpu.simd_begin(e)?;
    let a = cpu.vread(bus, e, 0)?;
    let b = cpu.vread(bus, e, 1)?;
    // The width of an MMX instruction is 8 bytes, else 16.
    let r = O::apply(a, b, if mm { 8 } else { 16 }, e.insn.immediate8());
    cpu.vwrite(bus, e, 0, r)?;
    cpu.simd_end(mm);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mxcsr::bits;
    use crate::fault::vector;
    use crate::state::{cr0, cr4};
    use crate::testutil::{exec, long_mode, raised};
    use crate::Cpu;

    const ADDPS: &[u8] = &[0x0F, 0x58, 0xC1]; // addps xmm0, xmm1
    const PADDB_MM: &[u8] = &[0x0F, 0xFC, 0xC1]; // paddb mm0, mm1
    const EMMS: &[u8] = &[0x0F, 0x77];
    const MOVAPS_LOAD: &[u8] = &[0x0F, 0x28, 0x00]; // movaps xmm0, [rax]
    const MOVUPS_LOAD: &[u8] = &[0x0F, 0x10, 0x00]; // movups xmm0, [rax]
    const DIVPS: &[u8] = &[0x0F, 0x5E, 0xC1]; // divps xmm0, xmm1

    /// 64-bit mode with SSE enabled the way an OS does it (CR4.OSFXSR, OSXMMEXCPT).
    fn cpu() -> Cpu {
        let mut cpu = long_mode(&[]);
        cpu.cr0 = cpu.cr0 & !(cr0::EM | cr0::TS) | cr0::MP | cr0::NE;
        cpu.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT;
        cpu
    }

    #[test]
    fn sse_needs_osfxsr_and_no_em_then_ts_gives_nm() {
        let mut c = cpu();
        c.cr4 &= !cr4::OSFXSR;
        assert!(raised(exec(&mut c, ADDPS), vector::UD));
        // #UD (OSFXSR clear) comes before #NM (TS set): SDM Vol.3 Table 13-1.
        c.cr0 |= cr0::TS;
        assert!(raised(exec(&mut c, ADDPS), vector::UD));
        let mut c = cpu();
        c.cr0 |= cr0::EM | cr0::TS;
        assert!(raised(exec(&mut c, ADDPS), vector::UD));
        let mut c = cpu();
        c.cr0 |= cr0::TS;
        assert!(raised(exec(&mut c, ADDPS), vector::NM));
        let mut c = cpu();
        assert_eq!(exec(&mut c, ADDPS), Vec::<u8>::new());
    }

    #[test]
    fn mmx_ignores_osfxsr_but_not_em_ts_or_a_pending_x87_exception() {
        let mut c = cpu();
        c.cr4 &= !cr4::OSFXSR;
        c.x87.sw = 7 << 11;
        c.x87.tag = 0xFFFF;
        assert_eq!(exec(&mut c, PADDB_MM), Vec::<u8>::new());
        // Any MMX instruction leaves TOP = 0 and every register tagged valid.
        assert_eq!((c.x87.sw >> 11 & 7, c.x87.tag), (0, 0));
        assert_eq!(exec(&mut c, EMMS), Vec::<u8>::new());
        assert_eq!(c.x87.tag, 0xFFFF);
        c.cr0 |= cr0::EM | cr0::TS;
        assert!(raised(exec(&mut c, PADDB_MM), vector::UD));
        assert!(raised(exec(&mut c, EMMS), vector::UD));
        c.cr0 &= !cr0::EM;
        assert!(raised(exec(&mut c, PADDB_MM), vector::NM));
        assert!(raised(exec(&mut c, EMMS), vector::NM));
        c.cr0 &= !cr0::TS;
        c.x87.sw |= 0x80; // ES: an unmasked x87 exception is pending
        assert!(raised(exec(&mut c, PADDB_MM), vector::MF));
        assert!(raised(exec(&mut c, EMMS), vector::MF));
        // SSE instructions do not look at the x87.
        c.cr4 |= cr4::OSFXSR;
        assert_eq!(exec(&mut c, ADDPS), Vec::<u8>::new());
    }

    #[test]
    fn misaligned_16_byte_operand_is_gp_but_not_for_movups_and_after_nm() {
        let mut c = cpu();
        c.write_phys(0x2000, &[0x11; 32]).unwrap();
        c.gpr[0] = 0x2008;
        assert!(raised(exec(&mut c, MOVAPS_LOAD), vector::GP));
        assert_eq!(c.sse.xmm[0], 0);
        assert_eq!(exec(&mut c, MOVUPS_LOAD), Vec::<u8>::new());
        assert_eq!(c.sse.xmm[0], u128::from_le_bytes([0x11; 16]));
        c.gpr[0] = 0x2000;
        c.sse.xmm[0] = 0;
        assert_eq!(exec(&mut c, MOVAPS_LOAD), Vec::<u8>::new());
        assert_eq!(c.sse.xmm[0], u128::from_le_bytes([0x11; 16]));
        c.gpr[0] = 0x2008;
        c.cr0 |= cr0::TS;
        assert!(raised(exec(&mut c, MOVAPS_LOAD), vector::NM));
    }

    #[test]
    fn unmasked_exception_is_xm_or_ud_and_leaves_the_destination() {
        let one = 0x3F80_0000_3F80_0000_3F80_0000_3F80_0000u128;
        let setup = |osxmmexcpt: bool| {
            let mut c = cpu();
            if !osxmmexcpt {
                c.cr4 &= !cr4::OSXMMEXCPT;
            }
            c.sse.xmm[0] = one;
            c.sse.xmm[1] = 0; // divide by zero
            c.sse.mxcsr = 0x1F80 & !(bits::ZE << bits::MASK_SHIFT);
            c
        };
        let mut c = setup(true);
        assert!(raised(exec(&mut c, DIVPS), vector::XM));
        assert_eq!(c.sse.xmm[0], one);
        assert_eq!(c.sse.mxcsr & 0x3F, bits::ZE);
        let mut c = setup(false);
        assert!(raised(exec(&mut c, DIVPS), vector::UD));
        assert_eq!(c.sse.xmm[0], one);
        // Masked: +inf in every lane, ZE sticky.
        let mut c = setup(true);
        c.sse.mxcsr = 0x1F80;
        assert_eq!(exec(&mut c, DIVPS), Vec::<u8>::new());
        assert_eq!(c.sse.xmm[0], 0x7F80_0000_7F80_0000_7F80_0000_7F80_0000);
        assert_eq!(c.sse.mxcsr, 0x1F80 | bits::ZE);
    }

    #[test]
    fn movsd_and_cmpsd_are_both_string_and_sse2_instructions() {
        let mut c = cpu();
        c.sse.xmm[1] = 0x1234_5678_9ABC_DEF0;
        c.sse.xmm[0] = 0xFFFF << 64;
        assert_eq!(exec(&mut c, &[0xF2, 0x0F, 0x10, 0xC1]), Vec::<u8>::new());
        assert_eq!(c.sse.xmm[0], 0xFFFF << 64 | 0x1234_5678_9ABC_DEF0);
        c.gpr[6] = 0x2000; // rsi
        c.gpr[7] = 0x3000; // rdi
        c.write_phys(0x2000, &[1, 2, 3, 4]).unwrap();
        assert_eq!(exec(&mut c, &[0xA5]), Vec::<u8>::new());
        assert_eq!(crate::testutil::read32(&c, 0x3000), 0x0403_0201);
    }

    #[test]
    fn simd_instructions_are_innocuous() {
        use iced_x86::Code;
        for code in [
            Code::Addps_xmm_xmmm128,
            Code::Ldmxcsr_m32,
            Code::Stmxcsr_m32,
            Code::Emms,
            Code::Movd_mm_rm32,
            Code::Maskmovdqu_rDI_xmm_xmm,
            Code::Clflush_m8,
        ] {
            let c = crate::classify::classify(code);
            assert!(
                !c.privileged && !c.iopl_sensitive && !c.sensitive(),
                "{code:?}"
            );
        }
    }
}
