//! Runs a case on the emulator: a CPU in 64-bit mode at CPL 3 over RAM at the oracle's
//! addresses (paging is not modelled, so linear = physical).

use trapeze_cpu::fpu::F80;
use trapeze_cpu::{attr, cr0, cr4, efer, sreg, vector, Cpu, Mmu, NullBus, PhysMem, Segment};

use crate::native::{
    fx, fx_mxcsr, fx_xmm, set_fx_mxcsr, set_fx_xmm, Outcome, Signal, State, CODE_ADDR, DATA_ADDR,
    DATA_SIZE, FX_SIZE, STACK_SIZE,
};

/// Handler calls allowed for one case (a REP instruction restarts itself in chunks).
const MAX_STEPS: usize = 64;

/// HLT: follows the instruction in the code page so that the decoded block ends there.
const HLT: u8 = 0xF4;

/// What the emulator did with a case.
pub enum EmuResult {
    /// Same shape as the oracle's outcome; a fault is mapped to the signal Linux would send.
    Done(Outcome),
    /// The instruction did not finish within `MAX_STEPS` handler calls.
    Stuck,
    /// The emulator panicked (message).
    Panic(String),
}

pub struct Emu {
    cpu: Cpu,
    /// Length of the code written by the previous case (the bytes after it are stale).
    code_len: usize,
}

fn new_cpu() -> Cpu {
    let mut phys = PhysMem::new();
    phys.add_ram(DATA_ADDR, (DATA_SIZE + STACK_SIZE) as u64)
        .expect("data+stack RAM");
    phys.add_ram(CODE_ADDR, 0x1000).expect("code RAM");
    let mut cpu = Cpu::new(Mmu::new(phys));
    cpu.efer = efer::LME | efer::LMA;
    // Linux user mode: x87 native error reporting, SSE enabled with #XM for unmasked
    // SIMD exceptions.
    cpu.cr0 |= cr0::PE | cr0::PG | cr0::NE | cr0::MP;
    cpu.cr0 &= !(cr0::EM | cr0::TS);
    cpu.cr4 |= cr4::OSFXSR | cr4::OSXMMEXCPT;
    let dpl3 = 3 << attr::DPL_SHIFT;
    cpu.seg[sreg::CS] = Segment {
        selector: 0x33,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr: attr::P | attr::S | attr::CODE | attr::RW | attr::L | attr::ACCESSED | dpl3,
    };
    let data = Segment {
        selector: 0x2B,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr: attr::P | attr::S | attr::RW | attr::DB | attr::ACCESSED | dpl3,
    };
    for s in [sreg::SS, sreg::DS, sreg::ES] {
        cpu.seg[s] = data;
    }
    cpu
}

/// The original exception of a delivery chain. Nothing is set up to handle exceptions, so
/// every delivery fails (#GP, then #DF, then shutdown); the vector raised first is the one
/// that is neither of those, else #GP itself.
fn first_vector(before: &[u64; 32], after: &[u64; 32]) -> u8 {
    let raised = |v: u8| after[v as usize] != before[v as usize];
    (0..32u8)
        .find(|&v| raised(v) && v != vector::GP && v != vector::DF)
        .unwrap_or(if raised(vector::GP) {
            vector::GP
        } else {
            vector::DF
        })
}

/// The full x87 tag of a register whose abridged (FXSAVE) tag says "not empty" (SDM Vol.1
/// 10.5.1.1: FXRSTOR recomputes it from the register's contents).
fn full_tag(r: &F80) -> u16 {
    let exp = r.sign_exp & 0x7FFF;
    let integer = r.signif >> 63 != 0;
    match exp {
        0 if r.signif == 0 => 1,
        0 | 0x7FFF => 2,
        _ if integer => 0,
        _ => 2,
    }
}

/// FXRSTOR: the x87/SSE part of an FXSAVE image into the CPU.
fn load_fx(cpu: &mut Cpu, img: &[u8; FX_SIZE]) {
    let u16_at = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]);
    cpu.x87.cw = u16_at(fx::FCW);
    // The host derives ES and B from the exception flags and masks: an exception is
    // pending only if it is unmasked.
    let unmasked = u16_at(fx::FSW) & !u16_at(fx::FCW) & 0x3F != 0;
    cpu.x87.sw = u16_at(fx::FSW) & 0x7F7F | if unmasked { 0x8080 } else { 0 };
    // FXRSTOR64 loads the 64-bit FIP/FDP and FOP (SDM Vol.2A Table 3-56); FNSTENV,
    // FNSAVE and FXSAVE store them.
    let u64_at = |o: usize| u64::from_le_bytes(img[o..o + 8].try_into().unwrap());
    cpu.x87.fop = u16_at(6) & 0x7FF;
    (cpu.x87.fip, cpu.x87.fdp) = (u64_at(8), u64_at(16));
    (cpu.x87.fcs, cpu.x87.fds) = (0, 0);
    let top = (cpu.x87.sw >> 11) as usize & 7;
    for st in 0..8 {
        let o = fx::ST0 + 16 * st;
        cpu.x87.regs[(top + st) & 7] = F80 {
            signif: u64::from_le_bytes(img[o..o + 8].try_into().unwrap()),
            sign_exp: u16_at(o + 8),
        };
    }
    cpu.x87.tag = (0..8).fold(0, |tag, r| {
        let t = if img[fx::FTW] >> r & 1 == 0 {
            3
        } else {
            full_tag(&cpu.x87.regs[r])
        };
        tag | t << (2 * r)
    });
    cpu.sse.mxcsr = fx_mxcsr(img);
    for i in 0..16 {
        cpu.sse.xmm[i] = fx_xmm(img, i);
    }
}

/// FXSAVE: the CPU's x87/SSE state over the architectural fields of `img`.
fn store_fx(cpu: &Cpu, img: &mut [u8; FX_SIZE]) {
    img[fx::FCW..fx::FCW + 2].copy_from_slice(&cpu.x87.cw.to_le_bytes());
    img[fx::FSW..fx::FSW + 2].copy_from_slice(&cpu.x87.sw.to_le_bytes());
    img[fx::FTW] = (0..8).fold(0, |a, r| {
        a | (((cpu.x87.tag >> (2 * r)) & 3 != 3) as u8) << r
    });
    let top = (cpu.x87.sw >> 11) as usize & 7;
    for st in 0..8 {
        let o = fx::ST0 + 16 * st;
        let r = cpu.x87.regs[(top + st) & 7];
        img[o..o + 8].copy_from_slice(&r.signif.to_le_bytes());
        img[o + 8..o + 10].copy_from_slice(&r.sign_exp.to_le_bytes());
    }
    set_fx_mxcsr(img, cpu.sse.mxcsr);
    for i in 0..16 {
        set_fx_xmm(img, i, cpu.sse.xmm[i]);
    }
}

/// The signal Linux sends for an exception.
pub fn signal_of(v: u8) -> Signal {
    match v {
        vector::DE => Signal::DivideError,
        vector::MF => Signal::X87Fp,
        vector::XM => Signal::SimdFp,
        vector::UD => Signal::Ill,
        vector::SS => Signal::Bus,
        vector::AC => Signal::Bus,
        vector::DB | vector::BP => Signal::Trap,
        _ => Signal::Segv,
    }
}

impl Emu {
    pub fn new() -> Emu {
        Emu {
            cpu: new_cpu(),
            code_len: 0,
        }
    }

    pub fn run(&mut self, code: &[u8], st: &State) -> EmuResult {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_inner(code, st)));
        match r {
            Ok(Some(o)) => EmuResult::Done(o),
            Ok(None) => {
                *self = Emu::new();
                EmuResult::Stuck
            }
            Err(p) => {
                *self = Emu::new();
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                EmuResult::Panic(msg)
            }
        }
    }

    fn run_inner(&mut self, code: &[u8], st: &State) -> Option<Outcome> {
        let bus = &mut NullBus;
        let cpu = &mut self.cpu;
        // Code goes through the MMU's physical write path, which tells the decode cache
        // that the page changed; the data pages hold no code and are copied directly.
        let mut bytes = code.to_vec();
        bytes.push(HLT);
        bytes.resize(bytes.len().max(self.code_len), HLT);
        for (i, &b) in bytes.iter().enumerate() {
            cpu.mmu.phys_write(bus, CODE_ADDR + i as u64, 1, b as u64);
        }
        self.code_len = code.len() + 1;
        cpu.mmu
            .phys
            .write_bytes(DATA_ADDR, &st.data)
            .expect("data page");
        cpu.mmu
            .phys
            .write_bytes(DATA_ADDR + DATA_SIZE as u64, &st.stack)
            .expect("stack page");
        cpu.gpr = st.gpr;
        cpu.rip = CODE_ADDR;
        cpu.set_rflags((st.rflags & crate::native::INPUT_FLAGS_MASK) | 0x202);
        load_fx(cpu, &st.fx);
        // Done when RIP reaches the end of the code (a REP instruction stays put between
        // chunks; flag chains are two instructions).
        let end = CODE_ADDR + code.len() as u64;
        let before = cpu.stats.exceptions;
        for _ in 0..MAX_STEPS {
            cpu.step(bus);
            if cpu.stats.exceptions != before {
                let v = first_vector(&before, &cpu.stats.exceptions);
                // Delivery failed into a shutdown: start over with a fresh CPU.
                *self = Emu::new();
                return Some(Outcome::Fault(signal_of(v)));
            }
            if cpu.rip == end {
                let mut data = vec![0; DATA_SIZE + STACK_SIZE];
                cpu.mmu
                    .phys
                    .read_bytes(DATA_ADDR, &mut data)
                    .expect("data pages");
                let stack = data.split_off(DATA_SIZE);
                let mut fx = st.fx.clone();
                store_fx(cpu, &mut fx);
                return Some(Outcome::Completed(State {
                    gpr: cpu.gpr,
                    rflags: cpu.rflags(),
                    data,
                    stack,
                    fx,
                }));
            }
        }
        None
    }
}
