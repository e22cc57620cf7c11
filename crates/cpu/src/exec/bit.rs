//! Bit instructions: BT BTS BTR BTC, BSF BSR, BSWAP (SDM Vol.2A "BT", "BTS", "BTR",
//! "BTC", "BSF", "BSR", "BSWAP").
//!
//! Undefined results and flags, as an Intel host produces them (probed on a Xeon,
//! family 6 model 207):
//! - BT*: only CF changes; OF SF AF PF keep their values (ZF is defined as unchanged).
//! - BSF/BSR: CF OF SF AF are cleared and PF is the parity of the index found; with a
//!   zero source ZF = PF = 1 and the destination is not written at all (a 32-bit
//!   destination keeps its upper half in 64-bit mode).
//! - BSWAP with a 16-bit operand clears the low word.

use iced_x86::{Mnemonic, OpKind};
use trapeze_mmu::Bus;

use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::{parity, rf};
use crate::state::Word;

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Bt, by_size!(bit_test, Bt));
    t.on(Mnemonic::Bts, by_size!(bit_test, Bts));
    t.on(Mnemonic::Btr, by_size!(bit_test, Btr));
    t.on(Mnemonic::Btc, by_size!(bit_test, Btc));
    // F3 0F BC/BD are TZCNT/LZCNT only with BMI1/LZCNT, which the CPUID model does not
    // report; without them the prefix is ignored and they run as BSF/BSR (compilers
    // emit `rep bsf` for that reason).
    t.on_all(
        &[Mnemonic::Bsf, Mnemonic::Tzcnt],
        by_size!(bit_scan, Forward),
    );
    t.on_all(
        &[Mnemonic::Bsr, Mnemonic::Lzcnt],
        by_size!(bit_scan, Reverse),
    );
    t.on(Mnemonic::Bswap, by_size!(bswap));
}

/// What BT, BTS, BTR, BTC do to the selected bit.
pub(crate) trait BitOp {
    const WRITES: bool;
    fn apply(v: u64, bit: u64) -> u64;
}

pub(crate) struct Bt;
pub(crate) struct Bts;
pub(crate) struct Btr;
pub(crate) struct Btc;

impl BitOp for Bt {
    const WRITES: bool = false;
    fn apply(v: u64, _: u64) -> u64 {
        v
    }
}
impl BitOp for Bts {
    const WRITES: bool = true;
    fn apply(v: u64, bit: u64) -> u64 {
        v | bit
    }
}
impl BitOp for Btr {
    const WRITES: bool = true;
    fn apply(v: u64, bit: u64) -> u64 {
        v & !bit
    }
}
impl BitOp for Btc {
    const WRITES: bool = true;
    fn apply(v: u64, bit: u64) -> u64 {
        v ^ bit
    }
}

/// The offset of the word holding the bit, for a memory operand with a register bit
/// offset: the offset is a signed integer and reaches outside the operand (SDM Vol.2A
/// BT, "bit base / bit offset"): the bit is bit (offset MOD bits) of the T-sized word
/// at EA + size * (offset SAR log2(bits)). Register operands and immediate offsets
/// just take the offset MOD bits.
pub(crate) fn bit_base<T: Word>(ea: u64, offset: u64) -> u64 {
    let words = (T::from_u64(offset).sext() as i64) >> T::BITS.trailing_zeros();
    ea.wrapping_add(words.wrapping_mul(T::BYTES as i64) as u64)
}

fn bit_test<T: Word, O: BitOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let offset = cpu.read_op::<T>(bus, e, 1)?.to_u64();
    let mask = 1u64 << (offset & (T::BITS as u64 - 1));
    let seg = e.mem.seg as usize;
    let base = (e.insn.op0_kind() == OpKind::Memory && e.insn.op1_kind() == OpKind::Register)
        .then(|| bit_base::<T>(cpu.ea(&e.mem), offset) & e.mem.addr_mask);
    let old = match base {
        Some(off) => cpu.read_mem::<T>(bus, seg, off)?,
        None => cpu.read_op::<T>(bus, e, 0)?,
    }
    .to_u64();
    if O::WRITES {
        let new = T::from_u64(O::apply(old, mask));
        match base {
            Some(off) => cpu.write_mem::<T>(bus, seg, off, new)?,
            None => cpu.write_op::<T>(bus, e, 0, new)?,
        }
    }
    // Flags last: the write above is the only thing that can still fault.
    cpu.set_arith_flags(rf::CF, if old & mask != 0 { rf::CF } else { 0 });
    Ok(())
}

/// Which end BSF and BSR search from.
pub(crate) trait Scan {
    /// Index of the lowest or highest set bit of a nonzero value.
    fn index(v: u64) -> u32;
}

pub(crate) struct Forward;
pub(crate) struct Reverse;

impl Scan for Forward {
    fn index(v: u64) -> u32 {
        v.trailing_zeros()
    }
}
impl Scan for Reverse {
    fn index(v: u64) -> u32 {
        63 - v.leading_zeros()
    }
}

/// BSF/BSR flags (ZF defined, the rest as the Intel host sets them) and the index to
/// write, if any.
pub(crate) fn scan<S: Scan>(src: u64) -> (Option<u64>, u64) {
    if src == 0 {
        return (None, rf::ZF | rf::PF);
    }
    let i = S::index(src) as u64;
    (Some(i), if parity(i) { rf::PF } else { 0 })
}

fn bit_scan<T: Word, S: Scan>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let src = cpu.read_op::<T>(bus, e, 1)?.to_u64();
    let (index, flags) = scan::<S>(src);
    if let Some(i) = index {
        cpu.set_reg::<T>(e.insn.op0_register(), T::from_u64(i));
    }
    cpu.set_arith_flags(rf::ARITH, flags);
    Ok(())
}

/// BSWAP: byte order reversed; 16-bit operands (undefined) become 0, as on Intel.
fn bswap<T: Word>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let r = e.insn.op0_register();
    let v = if T::BITS == 16 {
        0
    } else {
        cpu.reg::<T>(r).to_u64().swap_bytes() >> (64 - T::BITS)
    };
    cpu.set_reg::<T>(r, T::from_u64(v));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::gpr;
    use crate::testutil::{long_mode, read16, real_mode};
    use crate::NullBus;

    // SDM Vol.2A BT: EA + 2*(offset DIV 16) for 16-bit operands, + 4*(offset DIV 32)
    // for 32 bits, + 8*(offset DIV 64) for 64; the offset is a signed integer.
    #[test]
    fn a_register_offset_addresses_memory_outside_the_operand() {
        assert_eq!(bit_base::<u16>(0x100, 17), 0x102);
        assert_eq!(bit_base::<u16>(0x100, 0xFFFF), 0xFE); // -1: bit 15 of the word below
        assert_eq!(bit_base::<u32>(0x100, 0xFFFF_FFDF), 0xF8); // -33: bit 31, two dwords below
        assert_eq!(bit_base::<u64>(0x100, 130), 0x110);
        assert_eq!(bit_base::<u64>(0, 1 << 63), 0xF000_0000_0000_0000);
    }

    #[test]
    fn scans_find_the_lowest_and_highest_set_bit() {
        // index 4 (one bit: odd parity, PF clear); index 15 (four bits: PF set).
        assert_eq!(scan::<Forward>(0x30), (Some(4), 0));
        assert_eq!(scan::<Reverse>(0x8001), (Some(15), rf::PF));
        assert_eq!(scan::<Reverse>(1 << 63), (Some(63), rf::PF));
        assert_eq!(scan::<Forward>(0), (None, rf::ZF | rf::PF));
    }

    #[test]
    fn bts_on_memory_with_a_negative_offset_sets_a_bit_before_the_operand() {
        // bts [0x2000],ax with ax = -1: bit 15 of the word at 0x1FFE.
        let mut cpu = real_mode(&[0x0F, 0xAB, 0x06, 0x00, 0x20]);
        cpu.gpr[gpr::RAX] = 0xFFFF;
        cpu.set_rflags(rf::ZF | rf::OF);
        cpu.run(&mut NullBus, 1);
        assert_eq!(read16(&cpu, 0x1FFE), 0x8000);
        assert_eq!(read16(&cpu, 0x2000), 0);
        // CF = old bit (0); the other flags keep their values.
        assert_eq!(cpu.rflags() & rf::ARITH, rf::ZF | rf::OF);
        // Again: now the bit is set.
        cpu.rip = 0x1000;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.rflags() & rf::CF, rf::CF);
    }

    #[test]
    fn bt_with_an_immediate_reads_within_the_operand() {
        // bt word [0x2000],17 → bit 1 of the word at 0x2000.
        let mut cpu = real_mode(&[0x0F, 0xBA, 0x26, 0x00, 0x20, 17]);
        cpu.mmu.phys.write_bytes(0x2000, &[0x02, 0x00]).unwrap();
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.rflags() & rf::CF, rf::CF);
    }

    #[test]
    fn btc_btr_on_registers() {
        // btc eax,ecx (ecx = 33 → bit 1) in 64-bit mode: 32-bit write zero-extends.
        let mut cpu = long_mode(&[0x0F, 0xBB, 0xC8]);
        cpu.gpr[gpr::RAX] = 0xFFFF_FFFF_0000_0002;
        cpu.gpr[gpr::RCX] = 33;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0);
        assert!(cpu.cf());
        // btr rax,5 (REX.W 0F BA /6 ib)
        let mut cpu = long_mode(&[0x48, 0x0F, 0xBA, 0xF0, 0x05]);
        cpu.gpr[gpr::RAX] = u64::MAX;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], !0x20);
    }

    #[test]
    fn bsf_of_zero_leaves_the_whole_destination() {
        // bsf eax,ecx in 64-bit mode with ecx = 0.
        let mut cpu = long_mode(&[0x0F, 0xBC, 0xC1]);
        cpu.gpr[gpr::RAX] = 0xFFFF_FFFF_1234_5678;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0xFFFF_FFFF_1234_5678);
        assert!(cpu.zf());
        // bsr eax,ecx with ecx = 0x100: EAX = 8, upper half cleared.
        let mut cpu = long_mode(&[0x0F, 0xBD, 0xC1]);
        cpu.gpr[gpr::RAX] = u64::MAX;
        cpu.gpr[gpr::RCX] = 0x100;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 8);
        assert!(!cpu.zf());
    }

    #[test]
    fn bswap_reverses_bytes() {
        // bswap eax ; bswap rax ; o16 bswap eax
        let mut cpu = long_mode(&[0x0F, 0xC8, 0x48, 0x0F, 0xC8, 0x66, 0x0F, 0xC8]);
        cpu.gpr[gpr::RAX] = 0x1122_3344_5566_7788;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x8877_6655);
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x5566_7788_0000_0000);
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x5566_7788_0000_0000);
        cpu.gpr[gpr::RAX] = 0x1122_3344_5566_7788;
        cpu.rip -= 3;
        cpu.run(&mut NullBus, 1);
        assert_eq!(cpu.gpr[gpr::RAX], 0x1122_3344_5566_0000);
    }
}
