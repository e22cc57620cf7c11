//! Integer arithmetic and logic: ADD ADC SUB SBB CMP AND OR XOR TEST NEG NOT INC DEC
//! (SDM Vol.2). All set their flags lazily (see `flags.rs`).

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::by_size;
use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::Op;
use crate::state::Word;

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Add, by_size!(alu, Add));
    t.on(Mnemonic::Adc, by_size!(alu, Adc));
    t.on(Mnemonic::Sub, by_size!(alu, Sub));
    t.on(Mnemonic::Sbb, by_size!(alu, Sbb));
    t.on(Mnemonic::And, by_size!(alu, And));
    t.on(Mnemonic::Or, by_size!(alu, Or));
    t.on(Mnemonic::Xor, by_size!(alu, Xor));
    t.on(Mnemonic::Cmp, by_size!(compare, Sub));
    t.on(Mnemonic::Test, by_size!(compare, And));
    t.on(Mnemonic::Inc, by_size!(inc));
    t.on(Mnemonic::Dec, by_size!(dec));
    t.on(Mnemonic::Neg, by_size!(neg));
    t.on(Mnemonic::Not, by_size!(not));
}

/// A two-operand ALU operation: `dst = dst OP src`.
pub(crate) trait BinOp {
    const FLAGS: Op;
    /// Reads CF (ADC, SBB).
    const CARRY_IN: bool = false;
    fn apply(a: u64, b: u64, cf: bool) -> u64;
}

pub(crate) struct Add;
pub(crate) struct Adc;
pub(crate) struct Sub;
pub(crate) struct Sbb;
pub(crate) struct And;
pub(crate) struct Or;
pub(crate) struct Xor;

impl BinOp for Add {
    const FLAGS: Op = Op::Add;
    fn apply(a: u64, b: u64, _: bool) -> u64 {
        a.wrapping_add(b)
    }
}
impl BinOp for Adc {
    const FLAGS: Op = Op::Add;
    const CARRY_IN: bool = true;
    fn apply(a: u64, b: u64, cf: bool) -> u64 {
        a.wrapping_add(b).wrapping_add(cf as u64)
    }
}
impl BinOp for Sub {
    const FLAGS: Op = Op::Sub;
    fn apply(a: u64, b: u64, _: bool) -> u64 {
        a.wrapping_sub(b)
    }
}
impl BinOp for Sbb {
    const FLAGS: Op = Op::Sub;
    const CARRY_IN: bool = true;
    fn apply(a: u64, b: u64, cf: bool) -> u64 {
        a.wrapping_sub(b).wrapping_sub(cf as u64)
    }
}
impl BinOp for And {
    const FLAGS: Op = Op::Logic;
    fn apply(a: u64, b: u64, _: bool) -> u64 {
        a & b
    }
}
impl BinOp for Or {
    const FLAGS: Op = Op::Logic;
    fn apply(a: u64, b: u64, _: bool) -> u64 {
        a | b
    }
}
impl BinOp for Xor {
    const FLAGS: Op = Op::Logic;
    fn apply(a: u64, b: u64, _: bool) -> u64 {
        a ^ b
    }
}

/// `op` on T-sized values, recording the lazy flags.
#[inline(always)]
fn compute<T: Word, O: BinOp>(cpu: &mut Cpu, a: T, b: T) -> T {
    let cf = O::CARRY_IN && cpu.cf();
    let res = T::from_u64(O::apply(a.to_u64(), b.to_u64(), cf));
    cpu.set_lazy::<T>(O::FLAGS, a.to_u64(), b.to_u64(), res.to_u64());
    res
}

fn alu<T: Word, O: BinOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let b = cpu.read_op::<T>(bus, e, 1)?;
    cpu.rmw::<T>(bus, e, |cpu, a| Some(compute::<T, O>(cpu, a, b)))
}

/// CMP and TEST: compute for the flags only.
fn compare<T: Word, O: BinOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let a = cpu.read_op::<T>(bus, e, 0)?;
    let b = cpu.read_op::<T>(bus, e, 1)?;
    compute::<T, O>(cpu, a, b);
    Ok(())
}

fn inc<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |cpu, a| {
        let r = T::from_u64(a.to_u64().wrapping_add(1));
        cpu.set_lazy::<T>(Op::Inc, a.to_u64(), 1, r.to_u64());
        Some(r)
    })
}

fn dec<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |cpu, a| {
        let r = T::from_u64(a.to_u64().wrapping_sub(1));
        cpu.set_lazy::<T>(Op::Dec, a.to_u64(), 1, r.to_u64());
        Some(r)
    })
}

/// NEG: 0 - dst, so CF = (dst != 0) falls out of the SUB borrow rule.
fn neg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |cpu, a| Some(compute::<T, Sub>(cpu, T::from_u64(0), a)))
}

/// NOT changes no flags.
fn not<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |_, a| Some(T::from_u64(!a.to_u64())))
}
