//! Decimal adjust: DAA DAS AAA AAS AAM AAD (SDM Vol.2A). These are invalid in 64-bit
//! mode, where iced decodes them as invalid (#UD).
//!
//! Flags the SDM leaves undefined are what an Intel host produces in 32-bit mode
//! (probed on a Xeon, family 6 model 207, every AX with every CF/AF, AAM/AAD with
//! several bases):
//! - DAA, DAS: OF = 0.
//! - AAA, AAS: SF ZF PF from the final AL (so SF = 0), OF = 0.
//! - AAM: OF = AF = CF = 0.
//! - AAD: all six as the 8-bit ADD of AL and AH * base (low byte) sets them.
//!
//! AAA and AAS adjust AX as a whole (AX + 106h, AX - 6 then AH - 1), so a carry or
//! borrow out of AL reaches AH too: the host and the 80286 tests agree; the 8086
//! touched AL and AH separately.

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::{rf, szp, Op};
use crate::state::gpr;

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Daa, |_| Some(decimal::<false>));
    t.on(Mnemonic::Das, |_| Some(decimal::<true>));
    t.on(Mnemonic::Aaa, |_| Some(ascii::<false>));
    t.on(Mnemonic::Aas, |_| Some(ascii::<true>));
    t.on(Mnemonic::Aam, |_| Some(aam));
    t.on(Mnemonic::Aad, |_| Some(aad));
}

/// DAA (SUB = false) and DAS on AL with the input CF and AF: (AL, flags).
pub(crate) fn daa_das<const SUB: bool>(al: u8, cf: bool, af: bool) -> (u8, u64) {
    let adjust = |v: u8, by: u8| {
        if SUB {
            v.wrapping_sub(by)
        } else {
            v.wrapping_add(by)
        }
    };
    let mut r = al;
    let mut flags = 0;
    if al & 0x0F > 9 || af {
        r = adjust(r, 0x06);
        flags |= rf::AF;
        // SDM DAS: CF ← old CF or the borrow of AL - 6; the high-digit test below only
        // ever sets CF. (DAA's "else CF ← 0" never meets a carry of AL + 6, which
        // needs AL > 99h.)
        if SUB && al < 6 {
            flags |= rf::CF;
        }
    }
    if al > 0x99 || cf {
        r = adjust(r, 0x60);
        flags |= rf::CF;
    }
    (r, flags | szp(r as u64, 8))
}

/// AAA (SUB = false) and AAS on AX with the input AF: (AX, flags).
pub(crate) fn aaa_aas<const SUB: bool>(ax: u16, af: bool) -> (u16, u64) {
    let (r, flags) = if ax & 0x0F > 9 || af {
        let r = if SUB {
            ax.wrapping_sub(6).wrapping_sub(0x100)
        } else {
            ax.wrapping_add(0x106)
        };
        (r, rf::AF | rf::CF)
    } else {
        (ax, 0)
    };
    let r = r & 0xFF0F;
    (r, flags | szp(r as u64, 8))
}

/// AAM base on AL: (AX, flags), or None for base 0 (#DE).
pub(crate) fn aam_of(al: u8, base: u8) -> Option<(u16, u64)> {
    let q = al.checked_div(base)?;
    let r = al % base;
    Some((((q as u16) << 8) | r as u16, szp(r as u64, 8)))
}

fn decimal<const SUB: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let (al, flags) = daa_das::<SUB>(cpu.gpr[gpr::RAX] as u8, cpu.cf(), cpu.af());
    cpu.set_gpr::<u8>(gpr::RAX, al);
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

fn ascii<const SUB: bool>(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    let (ax, flags) = aaa_aas::<SUB>(cpu.gpr[gpr::RAX] as u16, cpu.af());
    cpu.set_gpr::<u16>(gpr::RAX, ax);
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

/// AAM imm8: AH = AL / base, AL = AL mod base; base 0 is #DE.
fn aam(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (ax, flags) = aam_of(cpu.gpr[gpr::RAX] as u8, e.insn.immediate8()).ok_or(Fault::de())?;
    cpu.set_gpr::<u16>(gpr::RAX, ax);
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

/// AAD imm8: AL = AL + AH * base, AH = 0. The flags are those of that 8-bit addition,
/// so the lazy ADD records them.
fn aad(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let ax = cpu.gpr[gpr::RAX];
    let al = ax & 0xFF;
    let product = ((ax >> 8) & 0xFF).wrapping_mul(e.insn.immediate8() as u64) & 0xFF;
    let r = (al + product) & 0xFF;
    cpu.set_gpr::<u16>(gpr::RAX, r as u16);
    cpu.set_lazy::<u8>(Op::Add, al, product, r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::vector;
    use crate::testutil::{protected32, real_mode};
    use crate::NullBus;

    const CF: u64 = rf::CF;
    const PF: u64 = rf::PF;
    const AF: u64 = rf::AF;
    const ZF: u64 = rf::ZF;
    const SF: u64 = rf::SF;

    // The SDM Vol.2A DAA example: ADD AL,BL with 79h + 35h = AEh, then DAA → 14h, CF.
    #[test]
    fn daa_adjusts_both_digits() {
        // AEh: low digit > 9 → +6 (AF) = B4h; AEh > 99h → +60h (CF) = 14h; 14h: two bits → PF.
        assert_eq!(daa_das::<false>(0xAE, false, false), (0x14, CF | AF | PF));
        // 2Eh + 6 = 34h; CF stays clear; 34h has three bits → PF clear.
        assert_eq!(daa_das::<false>(0x2E, false, false), (0x34, AF));
        // AF in: 12h from 09h + 09h → 18h.
        assert_eq!(daa_das::<false>(0x12, false, true), (0x18, AF | PF));
        // 9Ah → 00h with CF and AF.
        assert_eq!(
            daa_das::<false>(0x9A, false, false),
            (0x00, CF | AF | ZF | PF)
        );
    }

    // The SDM Vol.2A DAS example: SUB AL,BL with 35h - 47h = EEh (CF), DAS → 88h, CF.
    #[test]
    fn das_adjusts_both_digits() {
        assert_eq!(daa_das::<true>(0xEE, true, true), (0x88, CF | AF | SF | PF));
        assert_eq!(daa_das::<true>(0x25, false, false), (0x25, 0));
        // AL = 03h with AF: 03h - 6 borrows → FDh with CF, though AL < 99h and CF was clear.
        assert_eq!(daa_das::<true>(0x03, false, true), (0xFD, CF | AF | SF));
    }

    #[test]
    fn aaa_aas_carry_into_ah() {
        // AAA, SDM Vol.2A: AL low digit > 9 → AX + 106h, AL &= 0Fh, AF = CF = 1.
        // 0x0B: AX = 0x0111 → AL = 1 (odd parity).
        assert_eq!(aaa_aas::<false>(0x000B, false), (0x0101, AF | CF));
        // AL = FAh: AX + 106h carries from AL into AH as well: 0x0200.
        assert_eq!(aaa_aas::<false>(0x00FA, false), (0x0200, AF | CF | ZF | PF));
        // No adjustment: just AL &= 0Fh.
        assert_eq!(aaa_aas::<false>(0x0135, false), (0x0105, PF));
        // AAS: 0x0208 with AF → AX - 6 = 0x0202, AH - 1 → 0x0102.
        assert_eq!(aaa_aas::<true>(0x0208, true), (0x0102, AF | CF));
        // AL = 03h with AF: AX - 6 borrows from AH too: 0x0203 → 0x01FD → AH-1 → 0x00FD → 0x000D.
        assert_eq!(aaa_aas::<true>(0x0203, true), (0x000D, AF | CF));
    }

    #[test]
    fn aam_splits_al_by_the_base() {
        // 63 = 6 * 10 + 3.
        assert_eq!(aam_of(63, 10), Some((0x0603, PF)));
        assert_eq!(aam_of(0xFF, 16), Some((0x0F0F, PF)));
        assert_eq!(aam_of(0x20, 0x20), Some((0x0100, ZF | PF)));
        assert_eq!(aam_of(5, 0), None);
    }

    #[test]
    fn aad_folds_ah_into_al_with_add_flags() {
        // aad (base 10) with AX = 0x0607: 07h + 3Ch = 43h, AF (7 + C carries out of the
        // low digit), PF clear (three bits). Then aad 10h with AX = 0x0FF1:
        // F1h + F0h = 1E1h → AL = E1h, CF, SF, PF (four bits).
        let mut cpu = real_mode(&[0xD5, 0x0A, 0xD5, 0x10]);
        cpu.gpr[gpr::RAX] = 0xAB_0607;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0xAB_0043);
        assert_eq!(cpu.rflags() & rf::ARITH, AF);
        cpu.gpr[gpr::RAX] = 0x0FF1;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x00E1);
        assert_eq!(cpu.rflags() & rf::ARITH, CF | SF | PF);
    }

    #[test]
    fn aam_zero_is_a_divide_error() {
        let mut cpu = protected32(&[0xD4, 0x00]);
        cpu.gpr[gpr::RAX] = 0x1234;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.stats.exceptions[vector::DE as usize], 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x1234);
    }

    #[test]
    fn daa_in_real_mode_uses_the_flags() {
        // add al,bl ; daa — 79h + 35h = AEh → 14h with CF.
        let mut cpu = real_mode(&[0x00, 0xD8, 0x27]);
        cpu.gpr[gpr::RAX] = 0x79;
        cpu.gpr[gpr::RBX] = 0x35;
        cpu.run(&mut NullBus, 2);
        assert_eq!(cpu.gpr[gpr::RAX], 0x14);
        assert_eq!(cpu.rflags() & (CF | AF), CF | AF);
    }
}
