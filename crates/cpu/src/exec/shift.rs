//! Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR, SHLD SHRD (SDM Vol.2B
//! "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR", "SHLD", "SHRD"). Flags are computed at once.
//!
//! The count is masked to 5 bits (6 for 64-bit operands). A masked count of 0 changes
//! no flags, but the destination is still written back: a 32-bit register is
//! zero-extended and a read-only page faults, as on Intel hardware.
//!
//! Where the SDM leaves flags undefined, trapeze does what an Intel host does (probed
//! on a Xeon, family 6 model 207, with counts 0..255 and random operands and flags):
//! - OF after a count other than 1 is the OF of the first single-bit step, i.e. the
//!   count-1 rule applied to the original operand (see `Shift::of`), except that ROL
//!   and ROR of a register by an immediate count other than 1 leave OF unchanged
//!   (with a memory destination or a CL count they follow the rule).
//! - AF after SHL SHR SAR SHLD SHRD with a nonzero count is 0.
//! - RCL/RCR of 8/16 bits by a nonzero multiple of 9/17 change no flags.
//! - SHLD/SHRD of 16 bits by 17..31 shift the 48 bits dest:src:dest, as P6 and later
//!   do (as Bochs cpu/shift16.cc notes); flags follow that result.

use iced_x86::{Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::{rf, szp};
use crate::state::Word;

pub(crate) fn register(t: &mut Table) {
    t.on_all(&[Mnemonic::Shl, Mnemonic::Sal], by_size!(shift, Shl));
    t.on(Mnemonic::Shr, by_size!(shift, Shr));
    t.on(Mnemonic::Sar, by_size!(shift, Sar));
    t.on(Mnemonic::Rol, by_size!(shift, Rol));
    t.on(Mnemonic::Ror, by_size!(shift, Ror));
    t.on(Mnemonic::Rcl, by_size!(shift, Rcl));
    t.on(Mnemonic::Rcr, by_size!(shift, Rcr));
    t.on(Mnemonic::Shld, by_size!(double_shift, Shld));
    t.on(Mnemonic::Shrd, by_size!(double_shift, Shrd));
}

/// One shift or rotate on a `T`-sized value.
pub(crate) trait Shift {
    /// Rotates write only CF and OF; shifts write all six status flags.
    const ROTATE: bool;
    /// An immediate count other than 1 on a register leaves OF unchanged (ROL, ROR).
    const IMM_KEEPS_OF: bool = false;
    /// The result and CF for a masked count `n` in 1..=63; `src` is SHLD/SHRD's source
    /// and `cf` the carry flag before. None: nothing changes (RCL/RCR by a multiple of
    /// the rotation width).
    fn apply<T: Word>(a: u64, src: u64, n: u32, cf: bool) -> Option<(u64, bool)>;
    /// OF: the SDM's count-1 rule, which the Intel host applies to every count.
    fn of<T: Word>(a: u64, src: u64, cf: bool) -> bool;
}

pub(crate) struct Shl;
pub(crate) struct Shr;
pub(crate) struct Sar;
pub(crate) struct Rol;
pub(crate) struct Ror;
pub(crate) struct Rcl;
pub(crate) struct Rcr;
pub(crate) struct Shld;
pub(crate) struct Shrd;

#[inline(always)]
fn bit(v: u64, n: u32) -> bool {
    n < 64 && (v >> n) & 1 != 0
}

#[inline(always)]
fn msb<T: Word>(v: u64) -> bool {
    bit(v, T::BITS - 1)
}

/// OF of a one-bit left shift or rotate: the top bit changed.
#[inline(always)]
fn top_two_differ<T: Word>(a: u64) -> bool {
    msb::<T>(a) != bit(a, T::BITS - 2)
}

impl Shift for Shl {
    const ROTATE: bool = false;
    fn apply<T: Word>(a: u64, _: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        // A count above the width (8/16 bits) shifts out only zeros last: CF = 0.
        let cf = n <= T::BITS && bit(a, T::BITS - n);
        Some(((a << n) & T::MASK, cf))
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        top_two_differ::<T>(a)
    }
}

impl Shift for Shr {
    const ROTATE: bool = false;
    fn apply<T: Word>(a: u64, _: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        Some((a >> n, bit(a, n - 1)))
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        msb::<T>(a)
    }
}

impl Shift for Sar {
    const ROTATE: bool = false;
    fn apply<T: Word>(a: u64, _: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        let s = T::from_u64(a).sext() as i64;
        Some(((s >> n) as u64 & T::MASK, (s >> (n - 1)) & 1 != 0))
    }
    fn of<T: Word>(_: u64, _: u64, _: bool) -> bool {
        false
    }
}

/// `a` rotated left by `t` within `T`'s width, 0 <= t < T::BITS.
#[inline(always)]
fn rotl<T: Word>(a: u64, t: u32) -> u64 {
    if t == 0 {
        a
    } else {
        ((a << t) | (a >> (T::BITS - t))) & T::MASK
    }
}

impl Shift for Rol {
    const ROTATE: bool = true;
    const IMM_KEEPS_OF: bool = true;
    fn apply<T: Word>(a: u64, _: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        let r = rotl::<T>(a, n % T::BITS);
        Some((r, r & 1 != 0))
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        top_two_differ::<T>(a)
    }
}

impl Shift for Ror {
    const ROTATE: bool = true;
    const IMM_KEEPS_OF: bool = true;
    fn apply<T: Word>(a: u64, _: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        let r = rotl::<T>(a, (T::BITS - n % T::BITS) % T::BITS);
        Some((r, msb::<T>(r)))
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        msb::<T>(a) != bit(a, 0)
    }
}

/// RCL by `n` of the `T::BITS + 1`-bit value CF:a; returns (result, CF). The count is
/// taken modulo 9 or 17 for 8/16 bits (SDM RCL "tempCOUNT"); for 32/64 bits the
/// masked count is already below the width, so the same modulo changes nothing.
#[inline(always)]
fn rcl<T: Word>(a: u64, n: u32, cf: bool) -> Option<(u64, bool)> {
    let width = T::BITS + 1;
    let t = n % width;
    if t == 0 {
        return None;
    }
    let w = ((cf as u128) << T::BITS) | a as u128;
    let r = ((w << t) | (w >> (width - t))) & ((1u128 << width) - 1);
    Some((r as u64 & T::MASK, (r >> T::BITS) & 1 != 0))
}

impl Shift for Rcl {
    const ROTATE: bool = true;
    fn apply<T: Word>(a: u64, _: u64, n: u32, cf: bool) -> Option<(u64, bool)> {
        rcl::<T>(a, n, cf)
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        top_two_differ::<T>(a)
    }
}

impl Shift for Rcr {
    const ROTATE: bool = true;
    fn apply<T: Word>(a: u64, _: u64, n: u32, cf: bool) -> Option<(u64, bool)> {
        // Right by t is left by width - t.
        let t = n % (T::BITS + 1);
        if t == 0 {
            return None;
        }
        rcl::<T>(a, T::BITS + 1 - t, cf)
    }
    fn of<T: Word>(a: u64, _: u64, cf: bool) -> bool {
        msb::<T>(a) != cf
    }
}

/// For 16-bit SHLD/SHRD by more than 16, Intel shifts dest:src:dest (48 bits): that is
/// the same as shifting by n - 16 with the operands swapped. Returns (dest, src, n)
/// with n in 1..=T::BITS.
#[inline(always)]
fn double_operands<T: Word>(a: u64, src: u64, n: u32) -> (u64, u64, u32) {
    if n > T::BITS {
        (src, a, n - T::BITS)
    } else {
        (a, src, n)
    }
}

impl Shift for Shld {
    const ROTATE: bool = false;
    fn apply<T: Word>(a: u64, src: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        let (hi, lo, n) = double_operands::<T>(a, src, n);
        let w = ((hi as u128) << T::BITS) | lo as u128;
        let r = (w >> (T::BITS - n)) as u64 & T::MASK;
        Some((r, (w >> (2 * T::BITS - n)) & 1 != 0))
    }
    fn of<T: Word>(a: u64, _: u64, _: bool) -> bool {
        top_two_differ::<T>(a)
    }
}

impl Shift for Shrd {
    const ROTATE: bool = false;
    fn apply<T: Word>(a: u64, src: u64, n: u32, _: bool) -> Option<(u64, bool)> {
        let (lo, hi, n) = double_operands::<T>(a, src, n);
        let w = ((hi as u128) << T::BITS) | lo as u128;
        Some(((w >> n) as u64 & T::MASK, (w >> (n - 1)) & 1 != 0))
    }
    fn of<T: Word>(a: u64, src: u64, _: bool) -> bool {
        msb::<T>(a) != bit(src, 0)
    }
}

/// The count mask: 5 bits, 6 for 64-bit operands.
#[inline(always)]
fn count_mask<T: Word>() -> u32 {
    if T::BITS == 64 {
        63
    } else {
        31
    }
}

/// `O` on `a` by the masked count `n` != 0: (result, flag values, flags written).
/// `imm_reg`: an immediate count and a register destination.
#[inline(always)]
pub(crate) fn compute<T: Word, O: Shift>(
    a: u64,
    src: u64,
    n: u32,
    cf: bool,
    imm_reg: bool,
) -> Option<(u64, u64, u64)> {
    let (res, cf_out) = O::apply::<T>(a, src, n, cf)?;
    let mut flags = if cf_out { rf::CF } else { 0 };
    if O::of::<T>(a, src, cf) {
        flags |= rf::OF;
    }
    let mut mask = if O::ROTATE {
        rf::CF | rf::OF
    } else {
        rf::ARITH
    };
    if O::IMM_KEEPS_OF && imm_reg && n != 1 {
        mask &= !rf::OF;
    }
    if !O::ROTATE {
        flags |= szp(res, T::BITS);
    }
    Some((res, flags & mask, mask))
}

/// Shift operand 0 by operand `n_op` (unmasked), with SHLD/SHRD's `src`.
#[inline(always)]
fn run<T: Word, O: Shift>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
    src: u64,
    n_op: u32,
) -> Result<(), Fault> {
    let n = cpu.read_op::<u8>(bus, e, n_op)? as u32 & count_mask::<T>();
    let imm_reg = e.insn.op_kind(n_op) != OpKind::Register && e.insn.op0_kind() == OpKind::Register;
    cpu.rmw::<T>(bus, e, |cpu, a| {
        if n == 0 {
            return Some(a);
        }
        match compute::<T, O>(a.to_u64(), src, n, cpu.cf(), imm_reg) {
            Some((res, flags, mask)) => {
                cpu.set_arith_flags(mask, flags);
                Some(T::from_u64(res))
            }
            None => Some(a),
        }
    })
}

/// `op r/m, 1|CL|imm8`.
fn shift<T: Word, O: Shift>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    run::<T, O>(cpu, bus, e, 0, 1)
}

/// `SHLD/SHRD r/m, r, CL|imm8`.
fn double_shift<T: Word, O: Shift>(
    cpu: &mut Cpu,
    bus: &mut dyn Bus,
    e: &Entry,
) -> Result<(), Fault> {
    let src = cpu.read_op::<T>(bus, e, 1)?.to_u64();
    run::<T, O>(cpu, bus, e, src, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::gpr;
    use crate::testutil::{long_mode, read32, real_mode};
    use crate::{Exit, NullBus};

    const CF: u64 = rf::CF;
    const PF: u64 = rf::PF;
    const ZF: u64 = rf::ZF;
    const SF: u64 = rf::SF;
    const OF: u64 = rf::OF;

    /// (result, flags) of `O` with the written flags outside `mask` shown as 0.
    fn op<T: Word, O: Shift>(a: u64, src: u64, n: u32, cf: bool) -> Option<(u64, u64)> {
        compute::<T, O>(a, src, n, cf, false).map(|(r, f, _)| (r, f))
    }

    // SDM Vol.2B SAL/SAR/SHL/SHR: CF is the last bit shifted out; for count 1 OF is
    // MSB(result) XOR CF (SHL), the original MSB (SHR), 0 (SAR); SF ZF PF from the result.
    #[test]
    fn shl_sets_cf_from_the_last_bit_out_and_szp_from_the_result() {
        // 0x81 << 1 = 0x02, CF = 1; MSB(res)=0 XOR CF=1 → OF.
        assert_eq!(op::<u8, Shl>(0x81, 0, 1, false), Some((0x02, CF | OF)));
        // 0x40 << 1 = 0x80: SF, OF (0 → 1), PF (one bit: odd → clear).
        assert_eq!(op::<u8, Shl>(0x40, 0, 1, false), Some((0x80, SF | OF)));
        // 0x1234 << 4 = 0x2340, CF = bit 12 = 1; PF: 0x40 has one bit → odd.
        assert_eq!(op::<u16, Shl>(0x1234, 0, 4, false), Some((0x2340, CF)));
        // 8-bit by 8: CF = bit 0; by 9: everything shifted out, CF = 0.
        assert_eq!(op::<u8, Shl>(0x01, 0, 8, false), Some((0, CF | ZF | PF)));
        assert_eq!(op::<u8, Shl>(0xFF, 0, 9, true), Some((0, ZF | PF)));
        assert_eq!(op::<u64, Shl>(1, 0, 63, false), Some((1 << 63, SF | PF)));
    }

    #[test]
    fn shr_and_sar() {
        // SHR 0x81 by 1 = 0x40, CF = 1, OF = original MSB = 1.
        assert_eq!(op::<u8, Shr>(0x81, 0, 1, false), Some((0x40, CF | OF)));
        // SAR 0x81 by 1 = 0xC0, CF = 1, OF = 0, SF, PF (two bits).
        assert_eq!(op::<u8, Sar>(0x81, 0, 1, false), Some((0xC0, CF | SF | PF)));
        // SAR of a negative 16-bit value by 20 (> width): all sign bits, CF = sign.
        assert_eq!(
            op::<u16, Sar>(0x8000, 0, 20, false),
            Some((0xFFFF, CF | SF | PF))
        );
        // SHR 16-bit by 17: zero, CF = 0.
        assert_eq!(op::<u16, Shr>(0xFFFF, 0, 17, true), Some((0, ZF | PF | OF)));
        assert_eq!(op::<u32, Shr>(0x8000_0000, 0, 31, false), Some((1, OF)));
    }

    // SDM Vol.2B RCL/RCR/ROL/ROR: only CF and OF change.
    #[test]
    fn rotates_change_only_cf_and_of() {
        let (_, _, mask) = compute::<u8, Rol>(0x80, 0, 1, false, false).unwrap();
        assert_eq!(mask, CF | OF);
        // ROL 0x80 by 1 = 0x01, CF = LSB = 1, OF = MSB(res)=0 XOR CF=1.
        assert_eq!(op::<u8, Rol>(0x80, 0, 1, false), Some((0x01, CF | OF)));
        // ROR 0x01 by 1 = 0x80, CF = MSB = 1, OF = MSB XOR next bit = 1.
        assert_eq!(op::<u8, Ror>(0x01, 0, 1, false), Some((0x80, CF | OF)));
        // ROL 8-bit by 8: value unchanged, CF = LSB still updated.
        assert_eq!(op::<u8, Rol>(0x81, 0, 8, false).map(|r| r.0), Some(0x81));
        assert_eq!(
            op::<u32, Ror>(0x1234_5678, 0, 8, false).map(|r| r.0),
            Some(0x7812_3456)
        );
        assert_eq!(
            op::<u64, Rol>(0x8000_0000_0000_0001, 0, 4, false).map(|r| r.0),
            Some(0x18)
        );
    }

    #[test]
    fn rcl_rcr_rotate_through_carry() {
        // RCL 0x80 by 1 with CF=1: 0x01, CF = 1 (old MSB), OF = MSB(res)=0 XOR CF=1.
        assert_eq!(op::<u8, Rcl>(0x80, 0, 1, true), Some((0x01, CF | OF)));
        // RCR 0x01 by 1 with CF=0: 0x00, CF = 1, OF = MSB(dest)=0 XOR CF(before)=0.
        assert_eq!(op::<u8, Rcr>(0x01, 0, 1, false), Some((0x00, CF)));
        // 8-bit by 9 (mod 9 = 0) and 16-bit by 17: nothing changes.
        assert_eq!(op::<u8, Rcl>(0x55, 0, 9, true), None);
        assert_eq!(op::<u16, Rcr>(0x55, 0, 17, false), None);
        // 8-bit RCL by 10 = by 1.
        assert_eq!(
            op::<u8, Rcl>(0x80, 0, 10, true),
            op::<u8, Rcl>(0x80, 0, 1, true)
        );
        // 32-bit RCR by 31 with CF=1: 33-bit CF:a rotated right 31 = rotated left 2.
        // a = 1: CF:a = 1_0...01 → left 2: bits 0 and 2 of a... = 0b110 with CF = 0.
        assert_eq!(op::<u32, Rcr>(1, 0, 31, true).map(|r| r.0), Some(0b110));
        assert_eq!(op::<u64, Rcl>(1 << 63, 0, 1, false), Some((0, CF | OF)));
    }

    // The undefined OF for counts != 1: the first single-bit step (Intel host).
    #[test]
    fn of_for_bigger_counts_is_that_of_the_first_step() {
        // SHL 0x40 by 3: first step 0x40 → 0x80 flips the sign: OF.
        assert_eq!(op::<u8, Shl>(0x40, 0, 3, false).map(|r| r.1 & OF), Some(OF));
        // SHR 0x80 by 4: OF = original MSB.
        assert_eq!(op::<u8, Shr>(0x80, 0, 4, false).map(|r| r.1 & OF), Some(OF));
        // ROR 0x03 by 2: MSB(a) XOR LSB(a) = 1.
        assert_eq!(op::<u8, Ror>(0x03, 0, 2, false).map(|r| r.1 & OF), Some(OF));
        // RCR 0x00 by 3 with CF=1: MSB(a) XOR CF = 1.
        assert_eq!(op::<u8, Rcr>(0x00, 0, 3, true).map(|r| r.1 & OF), Some(OF));
        // ROL/ROR of a register by an immediate other than 1 do not write OF; by 1 they do.
        assert_eq!(
            compute::<u8, Rol>(0x40, 0, 3, false, true).map(|r| r.2),
            Some(CF)
        );
        assert_eq!(
            compute::<u16, Ror>(0x01, 0, 1, false, true).map(|r| r.2),
            Some(CF | OF)
        );
        assert_eq!(
            compute::<u16, Rcl>(0x01, 0, 3, false, true).map(|r| r.2),
            Some(CF | OF)
        );
    }

    // SDM Vol.2B SHLD/SHRD: dest shifted, vacated bits filled from src; CF = last bit out.
    #[test]
    fn shld_shrd() {
        // 0x234A: CF = bit 12 of dest; PF clear (0x4A has three bits).
        assert_eq!(
            op::<u16, Shld>(0x1234, 0xABCD, 4, false),
            Some((0x234A, CF))
        );
        // SHRD 0x1234 by 4 from 0xABCD: 0xD123, CF = bit 3 of dest = 0; OF: sign 0 → 1.
        assert_eq!(
            op::<u16, Shrd>(0x1234, 0xABCD, 4, false),
            Some((0xD123, SF | OF))
        );
        assert_eq!(
            op::<u32, Shld>(0x8000_0001, 0xF000_0000, 1, false),
            Some((0x0000_0003, CF | OF | PF))
        );
        assert_eq!(op::<u64, Shrd>(1, 0, 1, false), Some((0, CF | ZF | PF)));
        // 16-bit by 16: dest = src, CF = bit 0 of dest.
        assert_eq!(
            op::<u16, Shld>(0x0001, 0xBEEF, 16, false).map(|r| r.0),
            Some(0xBEEF)
        );
        // 16-bit by 20 (Intel: dest:src:dest): same as SHLD src,dest by 4.
        assert_eq!(
            op::<u16, Shld>(0x1234, 0xABCD, 20, false).map(|r| r.0),
            Some(0xBCD1)
        );
        assert_eq!(
            op::<u16, Shrd>(0x1234, 0xABCD, 20, false).map(|r| r.0),
            Some(0x4ABC)
        );
    }

    fn run_real(code: &[u8], regs: &[(usize, u64)], flags: u64) -> crate::Cpu {
        let mut cpu = real_mode(code);
        for &(r, v) in regs {
            cpu.gpr[r] = v;
        }
        cpu.set_rflags(flags);
        cpu.run(&mut NullBus, 1);
        cpu
    }

    #[test]
    fn the_three_count_forms_decode_to_the_same_shift() {
        // shl ax,1 ; shl ax,cl (cl=1) ; shl ax,1 as C1 /4 ib
        for code in [&[0xD1, 0xE0][..], &[0xD3, 0xE0], &[0xC1, 0xE0, 0x01]] {
            let cpu = run_real(code, &[(gpr::RAX, 0x4001), (gpr::RCX, 1)], 0);
            assert_eq!(cpu.gpr[gpr::RAX], 0x8002, "{code:02x?}");
            assert_eq!(cpu.rflags() & rf::ARITH, SF | OF);
        }
    }

    #[test]
    fn a_zero_count_keeps_flags_but_still_writes_the_register() {
        // shl eax,cl with cl = 32 (masked to 0) in 64-bit mode: EAX written, upper half cleared.
        let mut cpu = long_mode(&[0xD3, 0xE0]);
        cpu.gpr[gpr::RAX] = 0xFFFF_FFFF_1234_5678;
        cpu.gpr[gpr::RCX] = 32;
        cpu.set_rflags(CF | OF | ZF);
        assert_eq!(cpu.run(&mut NullBus, 1), Exit::Budget);
        assert_eq!(cpu.gpr[gpr::RAX], 0x1234_5678);
        assert_eq!(cpu.rflags() & rf::ARITH, CF | OF | ZF);
    }

    #[test]
    fn memory_destination_and_count_masking() {
        // shl dword [0x2000],cl with cl = 0x21 → by 1 (o32 a16 in real mode).
        let mut cpu = real_mode(&[0x66, 0xD3, 0x26, 0x00, 0x20]);
        cpu.mmu
            .phys
            .write_bytes(0x2000, &0x8000_0001u32.to_le_bytes())
            .unwrap();
        cpu.gpr[gpr::RCX] = 0x21;
        cpu.run(&mut NullBus, 1);
        assert_eq!(read32(&cpu, 0x2000), 2);
        assert_eq!(cpu.rflags() & (CF | OF), CF | OF);
    }

    #[test]
    fn shld_with_cl_reads_source_and_count() {
        // shld ax,bx,cl
        let cpu = run_real(
            &[0x0F, 0xA5, 0xD8],
            &[(gpr::RAX, 0x1234), (gpr::RBX, 0xABCD), (gpr::RCX, 4)],
            0,
        );
        assert_eq!(cpu.gpr[gpr::RAX], 0x234A);
        // shrd ax,bx,4
        let cpu = run_real(
            &[0x0F, 0xAC, 0xD8, 0x04],
            &[(gpr::RAX, 0x1234), (gpr::RBX, 0xABCD)],
            0,
        );
        assert_eq!(cpu.gpr[gpr::RAX], 0xD123);
    }
}
