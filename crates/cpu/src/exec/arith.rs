//! Integer arithmetic and logic: ADD ADC SUB SBB CMP AND OR XOR TEST NEG NOT INC DEC
//! (SDM Vol.2). All set their flags lazily (see `flags.rs`).

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::Table;
use crate::fault::Fault;
use crate::flags::Op;
use crate::state::Word;
use crate::{by_form, by_size};

pub(crate) fn register(t: &mut Table) {
    t.on(Mnemonic::Add, by_form!(alu, alu_reg, Add));
    t.on(Mnemonic::Adc, by_form!(alu, alu_reg, Adc));
    t.on(Mnemonic::Sub, by_form!(alu, alu_reg, Sub));
    t.on(Mnemonic::Sbb, by_form!(alu, alu_reg, Sbb));
    t.on(Mnemonic::And, by_form!(alu, alu_reg, And));
    t.on(Mnemonic::Or, by_form!(alu, alu_reg, Or));
    t.on(Mnemonic::Xor, by_form!(alu, alu_reg, Xor));
    t.on(Mnemonic::Cmp, by_form!(compare, compare_reg, Sub));
    t.on(Mnemonic::Test, by_form!(compare, compare_reg, And));
    t.on(Mnemonic::Inc, by_form!(step_rmw, step_reg, Inc));
    t.on(Mnemonic::Dec, by_form!(step_rmw, step_reg, Dec));
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

fn alu_reg<T: Word, O: BinOp>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (a, b) = (cpu.reg_operand::<T>(e, 0), cpu.reg_operand::<T>(e, 1));
    let r = compute::<T, O>(cpu, a, b);
    cpu.set_reg_operand::<T>(e, 0, r);
    Ok(())
}

fn compare_reg<T: Word, O: BinOp>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (a, b) = (cpu.reg_operand::<T>(e, 0), cpu.reg_operand::<T>(e, 1));
    compute::<T, O>(cpu, a, b);
    Ok(())
}

/// INC/DEC of a register (`O` is `Inc` or `Dec`).
fn step_reg<T: Word, O: Step>(cpu: &mut Cpu, _: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let a = cpu.reg_operand::<T>(e, 0);
    let r = step::<T, O>(cpu, a);
    cpu.set_reg_operand::<T>(e, 0, r);
    Ok(())
}

/// CMP and TEST: compute for the flags only.
fn compare<T: Word, O: BinOp>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let a = cpu.read_op::<T>(bus, e, 0)?;
    let b = cpu.read_op::<T>(bus, e, 1)?;
    compute::<T, O>(cpu, a, b);
    Ok(())
}

/// INC and DEC: add or subtract 1, keeping CF.
pub(crate) trait Step {
    const FLAGS: Op;
}
pub(crate) struct Inc;
pub(crate) struct Dec;
impl Step for Inc {
    const FLAGS: Op = Op::Inc;
}
impl Step for Dec {
    const FLAGS: Op = Op::Dec;
}

#[inline(always)]
fn step<T: Word, O: Step>(cpu: &mut Cpu, a: T) -> T {
    let r = T::from_u64(if O::FLAGS == Op::Inc {
        a.to_u64().wrapping_add(1)
    } else {
        a.to_u64().wrapping_sub(1)
    });
    cpu.set_lazy::<T>(O::FLAGS, a.to_u64(), 1, r.to_u64());
    r
}

fn step_rmw<T: Word, O: Step>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |cpu, a| Some(step::<T, O>(cpu, a)))
}

/// NEG: 0 - dst, so CF = (dst != 0) falls out of the SUB borrow rule.
fn neg<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |cpu, a| {
        Some(compute::<T, Sub>(cpu, T::from_u64(0), a))
    })
}

/// NOT changes no flags.
fn not<T: Word>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.rmw::<T>(bus, e, |_, a| Some(T::from_u64(!a.to_u64())))
}
