//! The local APIC of the single CPU, in xAPIC mode at 0xFEE00000 (SDM Vol. 3A
//! chapter 11): ID, version, TPR/APR/PPR, EOI, ISR/TMR/IRR, LDR/DFR, SVR, ESR, the six
//! LVT entries, ICR and the timer (one-shot, periodic, TSC-deadline) on virtual time.
//!
//! For the machine: `receive` takes APIC bus messages (from the IOAPIC),
//! `highest_pending` and `accept` are the CPU's interrupt acknowledge, `accepts_pic_
//! interrupt` says whether the 8259's INTR reaches the CPU through LINT0, and MMIO writes
//! answer with `IoAccess::EoiBroadcast` (a level-triggered interrupt ended) and
//! `IoAccess::Signal` (a self-IPI of INIT, SIPI, NMI or SMI). IPIs to other CPUs go
//! nowhere: there are none. x2APIC is not implemented.

use thiserror::Error;

use crate::bus::{ones, Device, IoAccess};
use crate::clock::{Nanos, Timed, NANOS_PER_SEC};
use crate::irq::{ApicMessage, CpuSignal, DeliveryMode, DestMode, Trigger};
use crate::mmio_bus::MmioDevice;

pub const BASE: u64 = 0xFEE0_0000;
pub const SIZE: u64 = 0x1000;

/// Register offsets (SDM Vol. 3A Table 11-1).
const ID: u64 = 0x020;
const VERSION: u64 = 0x030;
const TPR: u64 = 0x080;
const APR: u64 = 0x090;
const PPR: u64 = 0x0A0;
const EOI: u64 = 0x0B0;
const RRD: u64 = 0x0C0;
const LDR: u64 = 0x0D0;
const DFR: u64 = 0x0E0;
const SVR: u64 = 0x0F0;
/// ISR, TMR and IRR are each eight 32-bit registers 16 bytes apart, back to back.
const ISR: u64 = 0x100;
const TMR: u64 = 0x180;
const IRR: u64 = 0x200;
const ESR: u64 = 0x280;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const TIMER_INITIAL_COUNT: u64 = 0x380;
const TIMER_CURRENT_COUNT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3E0;

/// Version 0x14 (an integrated APIC), six LVT entries (max LVT entry 5).
const VERSION_VALUE: u32 = 0x0005_0014;
const ID_SHIFT: u32 = 24;
const LDR_MASK: u32 = 0xFF00_0000;
/// DFR bits 27:0 read as ones; bits 31:28 select the flat (1111) or cluster (0000) model.
const DFR_RESERVED_ONES: u32 = 0x0FFF_FFFF;
const DFR_FLAT: u32 = 0xF000_0000;

const SVR_ENABLE: u32 = 1 << 8;
/// Vector, APIC software enable, focus processor checking (no EOI-broadcast suppression).
const SVR_WRITABLE: u32 = 0x3FF;
const SVR_RESET: u32 = 0xFF;

const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

const VECTOR: u32 = 0xFF;
const DELIVERY_SHIFT: u32 = 8;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_MODE_SHIFT: u32 = 17;
const TIMER_MODE: u32 = 3 << TIMER_MODE_SHIFT;
const TIMER_PERIODIC: u32 = 1;
const TIMER_TSC_DEADLINE: u32 = 2;
/// ExtINT delivery, unmasked: QEMU's power-on LINT0 on the BSP, so the 8259 reaches
/// the CPU before firmware programs the APIC.
const LINT0_RESET: u32 = 0x700;

/// The LVT entries in register order: offset and writable bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lvt {
    Timer,
    Thermal,
    Perf,
    Lint0,
    Lint1,
    Error,
}

const LVT: [(Lvt, u64, u32); 6] = [
    // Vector, mask, timer mode.
    (Lvt::Timer, 0x320, 0x0007_00FF),
    // Vector, delivery mode, mask.
    (Lvt::Thermal, 0x330, 0x0001_07FF),
    (Lvt::Perf, 0x340, 0x0001_07FF),
    // Vector, delivery mode, polarity, trigger mode, mask.
    (Lvt::Lint0, 0x350, 0x0001_A7FF),
    (Lvt::Lint1, 0x360, 0x0001_A7FF),
    // Vector, mask.
    (Lvt::Error, 0x370, 0x0001_00FF),
];

const ICR_DEST_LOGICAL: u32 = 1 << 11;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Vector, delivery mode, destination mode, level, trigger mode, shorthand.
const ICR_LOW_WRITABLE: u32 = 0x000C_CFFF;
const ICR_DEST_SHIFT: u32 = 24;
const ICR_DEST: u32 = 0xFF << ICR_DEST_SHIFT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

const SHORTHANDS: [Shorthand; 4] = [
    Shorthand::None,
    Shorthand::SelfOnly,
    Shorthand::AllIncludingSelf,
    Shorthand::AllExcludingSelf,
];

/// Divide configuration register bits 3, 1, 0 → divisor (SDM Figure 11-10).
const TIMER_DIVISORS: [u64; 8] = [2, 4, 8, 16, 32, 64, 128, 1];
const DIVIDE_WRITABLE: u32 = 0xB;

/// IA32_APIC_BASE (MSR 0x1B).
pub const APIC_BASE_MSR: u32 = 0x1B;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// The base address field, bits 51:12.
pub const APIC_BASE_ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LapicError {
    #[error("IA32_APIC_BASE write {0:#x} sets reserved bits")]
    ReservedBits(u64),
    #[error("x2APIC mode is not implemented")]
    X2ApicUnsupported,
}

/// A 256-bit vector register (ISR, TMR, IRR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bitmap([u32; 8]);

impl Bitmap {
    fn get(&self, v: u8) -> bool {
        self.0[(v >> 5) as usize] & (1 << (v & 31)) != 0
    }

    fn set(&mut self, v: u8, on: bool) {
        let word = &mut self.0[(v >> 5) as usize];
        if on {
            *word |= 1 << (v & 31);
        } else {
            *word &= !(1 << (v & 31));
        }
    }

    fn highest(&self) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&i| self.0[i] != 0)
            .map(|i| (i as u32 * 32 + 31 - self.0[i].leading_zeros()) as u8)
    }
}

pub struct Lapic {
    id: u8,
    apic_base: u64,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Bitmap,
    tmr: Bitmap,
    irr: Bitmap,
    /// The ESR as last latched, and the errors seen since.
    esr: u32,
    errors: u32,
    lvt: [u32; 6],
    icr: [u32; 2],
    /// The timer's input clock before the divider.
    bus_hz: u64,
    divide: u32,
    initial_count: u32,
    /// The current count was `count` at `start` (0: not counting).
    start: Nanos,
    count: u32,
    /// IA32_TSC_DEADLINE and the virtual time the TSC reaches it.
    tsc_deadline: Option<(u64, Nanos)>,
    /// The time the device has run to.
    now: Nanos,
}

impl Lapic {
    /// The bootstrap processor's local APIC with APIC ID `id`; the timer counts
    /// `bus_hz` before its divider (the machine reports the same clock to the guest as
    /// the core crystal in CPUID leaf 0x15).
    pub fn new(id: u8, bus_hz: u64) -> Self {
        let mut lapic = Lapic {
            id,
            apic_base: BASE | APIC_BASE_ENABLE | APIC_BASE_BSP,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: SVR_RESET,
            isr: Bitmap::default(),
            tmr: Bitmap::default(),
            irr: Bitmap::default(),
            esr: 0,
            errors: 0,
            lvt: [LVT_MASKED; 6],
            icr: [0; 2],
            bus_hz,
            divide: 0,
            initial_count: 0,
            start: Nanos::ZERO,
            count: 0,
            tsc_deadline: None,
            now: Nanos::ZERO,
        };
        lapic.lvt[Lvt::Lint0 as usize] = LINT0_RESET;
        lapic
    }

    fn reset(&mut self) {
        *self = Lapic {
            apic_base: self.apic_base,
            now: self.now,
            ..Lapic::new(self.id, self.bus_hz)
        };
    }

    /// IA32_APIC_BASE as RDMSR returns it.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// WRMSR to IA32_APIC_BASE (the caller raises #GP on an error and moves the MMIO
    /// window if the base changed). Disabling the APIC returns it to its power-on state.
    pub fn set_apic_base(&mut self, value: u64) -> Result<(), LapicError> {
        if value & APIC_BASE_X2APIC != 0 {
            return Err(LapicError::X2ApicUnsupported);
        }
        if value & !(APIC_BASE_ADDRESS | APIC_BASE_ENABLE | APIC_BASE_BSP) != 0 {
            return Err(LapicError::ReservedBits(value));
        }
        let disabling = self.enabled() && value & APIC_BASE_ENABLE == 0;
        self.apic_base =
            value & (APIC_BASE_ADDRESS | APIC_BASE_ENABLE) | self.apic_base & APIC_BASE_BSP;
        if disabling {
            self.reset();
        }
        Ok(())
    }

    /// Hardware-enabled (IA32_APIC_BASE bit 11).
    pub fn enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// The task priority register; CR8 is its bits 7:4 (MOV to CR8 sets TPR = CR8 << 4).
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// Whether the 8259's INTR reaches the CPU: through LINT0 in ExtINT mode, or
    /// directly while the APIC is hardware-disabled.
    pub fn accepts_pic_interrupt(&self) -> bool {
        let lint0 = self.lvt[Lvt::Lint0 as usize];
        !self.enabled()
            || lint0 & LVT_MASKED == 0
                && DeliveryMode::from_bits(lint0 >> DELIVERY_SHIFT) == Some(DeliveryMode::ExtInt)
    }

    fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    fn apr(&self) -> u8 {
        let (irrv, isrv) = (
            self.irr.highest().unwrap_or(0),
            self.isr.highest().unwrap_or(0),
        );
        if self.tpr >> 4 >= irrv >> 4 && self.tpr >> 4 > isrv >> 4 {
            self.tpr
        } else {
            (self.tpr & 0xF0).max(isrv & 0xF0).max(irrv & 0xF0)
        }
    }

    /// The vector the CPU would take now: the highest requested one whose priority
    /// class is above the processor priority, with the APIC enabled.
    pub fn highest_pending(&self) -> Option<u8> {
        if !self.enabled() || !self.software_enabled() {
            return None;
        }
        self.irr.highest().filter(|v| v >> 4 > self.ppr() >> 4)
    }

    /// The CPU takes `vector`: from IRR into service.
    pub fn accept(&mut self, vector: u8) {
        if self.irr.get(vector) {
            self.irr.set(vector, false);
            self.isr.set(vector, true);
        }
    }

    fn is_destination(&self, mode: DestMode, dest: u8) -> bool {
        match mode {
            DestMode::Physical => dest == 0xFF || dest == self.id,
            DestMode::Logical => {
                let logical = (self.ldr >> ID_SHIFT) as u8;
                if self.dfr & DFR_FLAT == DFR_FLAT {
                    logical & dest != 0
                } else {
                    // Cluster model: the high nibbles name the cluster (0xF: all).
                    let cluster = dest >> 4 == 0xF || dest >> 4 == logical >> 4;
                    cluster && logical & dest & 0xF != 0
                }
            }
        }
    }

    /// An APIC bus message. Fixed and lowest-priority interrupts addressed here go
    /// into IRR (and TMR for level-triggered ones); what the CPU must handle itself
    /// comes back as a signal. Messages for other APICs are dropped.
    pub fn receive(&mut self, msg: ApicMessage) -> Option<CpuSignal> {
        if !self.enabled() || !self.is_destination(msg.dest_mode, msg.dest) {
            return None;
        }
        self.deliver(msg.mode, msg.vector, msg.trigger)
    }

    fn deliver(&mut self, mode: DeliveryMode, vector: u8, trigger: Trigger) -> Option<CpuSignal> {
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.request(vector, trigger == Trigger::Level);
                None
            }
            DeliveryMode::Nmi => Some(CpuSignal::Nmi),
            DeliveryMode::Smi => Some(CpuSignal::Smi),
            DeliveryMode::Init => Some(CpuSignal::Init),
            DeliveryMode::Startup => Some(CpuSignal::Startup(vector)),
            DeliveryMode::ExtInt => Some(CpuSignal::ExtInt),
        }
    }

    /// Set `vector` in IRR; vectors 0–15 are illegal and only raise an error.
    fn request(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level);
    }

    fn error(&mut self, bit: u32) {
        self.errors |= bit;
        let lvt = self.lvt[Lvt::Error as usize];
        if lvt & LVT_MASKED == 0 {
            let vector = (lvt & VECTOR) as u8;
            // An illegal error vector cannot recurse: it only sets the bit again.
            if vector >= 16 {
                self.irr.set(vector, true);
                self.tmr.set(vector, false);
            } else {
                self.errors |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
        }
    }

    fn eoi(&mut self) -> IoAccess {
        let Some(v) = self.isr.highest() else {
            return IoAccess::Done;
        };
        self.isr.set(v, false);
        if self.tmr.get(v) {
            IoAccess::EoiBroadcast(v)
        } else {
            IoAccess::Done
        }
    }

    fn send_ipi(&mut self) -> IoAccess {
        let [low, high] = self.icr;
        let Some(mode) = DeliveryMode::from_bits(low >> DELIVERY_SHIFT) else {
            return IoAccess::Done;
        };
        let vector = (low & VECTOR) as u8;
        let to_self = match SHORTHANDS[(low >> ICR_SHORTHAND_SHIFT) as usize & 3] {
            Shorthand::SelfOnly | Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => false,
            Shorthand::None => {
                let dest_mode = if low & ICR_DEST_LOGICAL != 0 {
                    DestMode::Logical
                } else {
                    DestMode::Physical
                };
                self.is_destination(dest_mode, (high >> ICR_DEST_SHIFT) as u8)
            }
        };
        let level = low & ICR_TRIGGER_LEVEL != 0;
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return IoAccess::Done;
        }
        // INIT level de-assert only synchronizes arbitration IDs.
        let deassert = mode == DeliveryMode::Init && level && low & ICR_LEVEL_ASSERT == 0;
        if !to_self || deassert || mode == DeliveryMode::ExtInt {
            return IoAccess::Done;
        }
        match self.deliver(
            mode,
            vector,
            if level { Trigger::Level } else { Trigger::Edge },
        ) {
            Some(signal) => IoAccess::Signal(signal),
            None => IoAccess::Done,
        }
    }

    // Timer.

    fn timer_mode(&self) -> u32 {
        (self.lvt[Lvt::Timer as usize] & TIMER_MODE) >> TIMER_MODE_SHIFT
    }

    fn divisor(&self) -> u64 {
        TIMER_DIVISORS[((self.divide >> 1) & 4 | self.divide & 3) as usize]
    }

    fn ticks_since_start(&self, now: Nanos) -> u64 {
        let t = now.since(self.start) as u128 * self.bus_hz as u128
            / (NANOS_PER_SEC as u128 * self.divisor() as u128);
        t.min(u64::MAX as u128) as u64
    }

    fn tick_time(&self, ticks: u64) -> Nanos {
        if self.bus_hz == 0 {
            return Nanos::MAX;
        }
        let ns = (ticks as u128 * NANOS_PER_SEC as u128 * self.divisor() as u128)
            .div_ceil(self.bus_hz as u128);
        self.start.saturating_add(ns.min(u64::MAX as u128) as u64)
    }

    fn current_count(&self) -> u32 {
        if self.count == 0 || self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
        let e = self.ticks_since_start(self.now);
        if e < self.count as u64 {
            self.count - e as u32
        } else if self.timer_mode() == TIMER_PERIODIC && self.initial_count != 0 {
            let n = self.initial_count as u64;
            (n - (e - self.count as u64) % n) as u32
        } else {
            0
        }
    }

    /// The first time after `after` that the timer reaches zero (in TSC-deadline mode,
    /// the deadline, even if already past).
    fn next_expiry(&self, after: Nanos) -> Option<Nanos> {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return self.tsc_deadline.map(|(_, at)| at);
        }
        if self.count == 0 {
            return None;
        }
        let first = self.tick_time(self.count as u64);
        if first > after || self.timer_mode() != TIMER_PERIODIC || self.initial_count == 0 {
            return (first > after).then_some(first);
        }
        let n = self.initial_count as u64;
        let periods = self
            .ticks_since_start(after)
            .saturating_sub(self.count as u64)
            / n
            + 1;
        Some(self.tick_time((self.count as u64).saturating_add(periods.saturating_mul(n))))
            .filter(|&t| t > after)
    }

    /// Restart counting at `now` from `count`.
    fn start_timer(&mut self, count: u32) {
        self.start = self.now;
        self.count = count;
    }

    /// IA32_TSC_DEADLINE (MSR 0x6E0) as RDMSR returns it: 0 once it has fired.
    pub fn tsc_deadline(&self) -> u64 {
        self.tsc_deadline.map_or(0, |(v, _)| v)
    }

    /// WRMSR to IA32_TSC_DEADLINE at `now`: `at` is when the TSC reaches `value` (the
    /// machine owns the TSC). Ignored outside TSC-deadline mode; 0 disarms.
    pub fn set_tsc_deadline(&mut self, value: u64, at: Nanos, now: Nanos) {
        self.sync(now);
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = (value != 0).then_some((value, at));
        self.sync(now);
    }

    fn sync(&mut self, now: Nanos) {
        let now = now.max(self.now);
        if self.next_expiry(self.now).is_some_and(|at| at <= now) {
            self.fire_timer();
        }
        self.now = now;
    }

    fn fire_timer(&mut self) {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline = None;
        }
        let lvt = self.lvt[Lvt::Timer as usize];
        if lvt & LVT_MASKED == 0 {
            self.request((lvt & VECTOR) as u8, false);
        }
    }

    fn read_register(&self, reg: u64) -> Option<u32> {
        let bitmap = |b: &Bitmap, base: u64| b.0[((reg - base) >> 4) as usize];
        Some(match reg {
            ID => (self.id as u32) << ID_SHIFT,
            VERSION => VERSION_VALUE,
            TPR => self.tpr as u32,
            APR => self.apr() as u32,
            PPR => self.ppr() as u32,
            EOI => 0,
            RRD => 0,
            LDR => self.ldr,
            DFR => self.dfr | DFR_RESERVED_ONES,
            SVR => self.svr,
            ISR..TMR => bitmap(&self.isr, ISR),
            TMR..IRR => bitmap(&self.tmr, TMR),
            IRR..ESR => bitmap(&self.irr, IRR),
            ESR => self.esr,
            ICR_LOW => self.icr[0],
            ICR_HIGH => self.icr[1],
            TIMER_INITIAL_COUNT => self.initial_count,
            TIMER_CURRENT_COUNT => self.current_count(),
            TIMER_DIVIDE => self.divide,
            _ => {
                return LVT
                    .iter()
                    .find(|l| l.1 == reg)
                    .map(|l| self.lvt[l.0 as usize])
            }
        })
    }

    fn write_register(&mut self, reg: u64, v: u32) -> IoAccess {
        match reg {
            ID => self.id = (v >> ID_SHIFT) as u8,
            TPR => self.tpr = v as u8,
            EOI => return self.eoi(),
            LDR => self.ldr = v & LDR_MASK,
            DFR => self.dfr = v | DFR_RESERVED_ONES,
            SVR => {
                self.svr = v & SVR_WRITABLE;
                if !self.software_enabled() {
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            ESR => self.esr = std::mem::take(&mut self.errors),
            ICR_LOW => {
                self.icr[0] = v & ICR_LOW_WRITABLE;
                return self.send_ipi();
            }
            ICR_HIGH => self.icr[1] = v & ICR_DEST,
            TIMER_INITIAL_COUNT => {
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.initial_count = v;
                    self.start_timer(v);
                }
            }
            TIMER_DIVIDE => {
                // The count goes on from where it is, at the new rate.
                let current = self.current_count();
                self.divide = v & DIVIDE_WRITABLE;
                if self.count != 0 {
                    self.start_timer(current);
                }
            }
            VERSION | APR | PPR | RRD | TIMER_CURRENT_COUNT | ISR..ESR => {}
            _ => match LVT.iter().find(|l| l.1 == reg) {
                Some(&(lvt, _, writable)) => self.write_lvt(lvt, v & writable),
                None => self.error(ESR_ILLEGAL_REGISTER),
            },
        }
        IoAccess::Done
    }

    fn write_lvt(&mut self, lvt: Lvt, v: u32) {
        let v = if self.software_enabled() {
            v
        } else {
            v | LVT_MASKED
        };
        if lvt == Lvt::Timer && (v ^ self.lvt[lvt as usize]) & TIMER_MODE != 0 {
            // A mode change disarms the timer (SDM 11.5.4.1).
            self.count = 0;
            self.tsc_deadline = None;
        }
        self.lvt[lvt as usize] = v;
    }
}

impl Timed for Lapic {
    /// The next timer expiry that will request an interrupt.
    fn next_deadline(&self) -> Option<Nanos> {
        if self.lvt[Lvt::Timer as usize] & LVT_MASKED != 0 {
            return None;
        }
        self.next_expiry(self.now)
    }

    fn advance(&mut self, now: Nanos) {
        self.sync(now);
    }
}

impl Device for Lapic {
    fn name(&self) -> &'static str {
        "lapic"
    }
}

/// Registers are 32 bits wide at 16-byte boundaries; narrower reads see their bytes,
/// the other twelve bytes of each slot read as zero, and only aligned writes of 32
/// bits or more take effect.
impl MmioDevice for Lapic {
    fn read(&mut self, _base: u64, offset: u64, size: u8, now: Nanos) -> u64 {
        self.sync(now);
        let (reg, byte) = (offset & !0xF, offset & 0xF);
        let value = match self.read_register(reg) {
            Some(v) => v,
            None => {
                self.error(ESR_ILLEGAL_REGISTER);
                0
            }
        };
        if byte >= 4 {
            0
        } else {
            (value >> (8 * byte)) as u64 & ones(size)
        }
    }

    fn write(&mut self, _base: u64, offset: u64, size: u8, value: u64, now: Nanos) -> IoAccess {
        self.sync(now);
        if offset & 0xF != 0 || size < 4 {
            return IoAccess::Done;
        }
        self.write_register(offset, value as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUS_HZ: u64 = 1_000_000_000;

    fn lapic() -> Lapic {
        let mut l = Lapic::new(0, BUS_HZ);
        w(&mut l, SVR, SVR_ENABLE | 0xFF);
        l
    }

    fn r(l: &mut Lapic, reg: u64) -> u32 {
        l.read(BASE, reg, 4, l.now) as u32
    }

    fn w(l: &mut Lapic, reg: u64, v: u32) -> IoAccess {
        l.write(BASE, reg, 4, v as u64, l.now)
    }

    fn fixed(vector: u8, trigger: Trigger) -> ApicMessage {
        ApicMessage {
            vector,
            mode: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            dest: 0,
            trigger,
        }
    }

    /// Take an interrupt as the CPU does.
    fn take(l: &mut Lapic) -> Option<u8> {
        let v = l.highest_pending()?;
        l.accept(v);
        Some(v)
    }

    #[test]
    fn identification_registers() {
        let mut l = Lapic::new(3, BUS_HZ);
        assert_eq!(r(&mut l, ID), 3 << 24);
        assert_eq!(r(&mut l, VERSION), 0x0005_0014);
        assert_eq!(r(&mut l, DFR), u32::MAX);
        assert_eq!(r(&mut l, SVR), 0xFF);
        assert_eq!(r(&mut l, 0x320), LVT_MASKED);
        assert_eq!(r(&mut l, 0x350), LINT0_RESET);
        assert!(l.accepts_pic_interrupt());
        assert_eq!(l.apic_base(), 0xFEE0_0900);
        // Byte reads see the register's bytes; the rest of a slot is zero.
        assert_eq!(l.read(BASE, VERSION + 2, 1, Nanos::ZERO), 0x05);
        assert_eq!(l.read(BASE, VERSION + 4, 4, Nanos::ZERO), 0);
    }

    #[test]
    fn priority_tpr_ppr_and_nesting() {
        let mut l = lapic();
        l.receive(fixed(0x51, Trigger::Edge));
        l.receive(fixed(0x62, Trigger::Edge));
        assert_eq!(r(&mut l, IRR + 0x30), 0x0000_0004);
        assert_eq!(r(&mut l, IRR + 0x20), 0x0002_0000);
        assert_eq!(take(&mut l), Some(0x62));
        assert_eq!(r(&mut l, PPR), 0x60);
        assert_eq!(r(&mut l, ISR + 0x30), 0x4);
        assert_eq!(
            l.highest_pending(),
            None,
            "0x51 is below the in-service class"
        );
        assert_eq!(w(&mut l, EOI, 0), IoAccess::Done);
        // TPR in the same class as 0x51 holds it off.
        w(&mut l, TPR, 0x50);
        assert_eq!(l.highest_pending(), None);
        assert_eq!(r(&mut l, PPR), 0x50);
        w(&mut l, TPR, 0x4F);
        assert_eq!(take(&mut l), Some(0x51));
        assert_eq!(r(&mut l, APR), 0x50);
    }

    #[test]
    fn level_triggered_eoi_broadcasts() {
        let mut l = lapic();
        l.receive(fixed(0x30, Trigger::Level));
        assert_eq!(r(&mut l, TMR + 0x10), 1 << 16);
        assert_eq!(take(&mut l), Some(0x30));
        assert_eq!(w(&mut l, EOI, 0), IoAccess::EoiBroadcast(0x30));
        assert_eq!(w(&mut l, EOI, 0), IoAccess::Done, "nothing in service");
    }

    #[test]
    fn software_disable_masks_and_holds_interrupts() {
        let mut l = lapic();
        w(&mut l, 0x320, 0x40);
        w(&mut l, SVR, 0xFF);
        assert_eq!(r(&mut l, 0x320), 0x40 | LVT_MASKED);
        w(&mut l, 0x370, 0x41);
        assert_eq!(
            r(&mut l, 0x370),
            0x41 | LVT_MASKED,
            "masks cannot be cleared"
        );
        l.receive(fixed(0x40, Trigger::Edge));
        assert_eq!(l.highest_pending(), None);
        w(&mut l, SVR, SVR_ENABLE | 0xFF);
        assert_eq!(l.highest_pending(), Some(0x40));
    }

    #[test]
    fn destinations_physical_and_logical() {
        let mut l = Lapic::new(2, BUS_HZ);
        let msg = |dest_mode, dest| ApicMessage {
            dest_mode,
            dest,
            ..fixed(0x80, Trigger::Edge)
        };
        w(&mut l, SVR, SVR_ENABLE);
        l.receive(msg(DestMode::Physical, 1));
        assert_eq!(l.highest_pending(), None);
        l.receive(msg(DestMode::Physical, 0xFF));
        assert_eq!(take(&mut l), Some(0x80));
        w(&mut l, EOI, 0);
        // Flat model, logical ID bit 1.
        w(&mut l, LDR, 0x0200_0000);
        l.receive(msg(DestMode::Logical, 0x01));
        assert_eq!(l.highest_pending(), None);
        l.receive(msg(DestMode::Logical, 0x03));
        assert_eq!(take(&mut l), Some(0x80));
        w(&mut l, EOI, 0);
        // Cluster model: cluster 1, member bit 0.
        w(&mut l, DFR, 0x0FFF_FFFF);
        w(&mut l, LDR, 0x1100_0000);
        l.receive(msg(DestMode::Logical, 0x21));
        assert_eq!(l.highest_pending(), None);
        l.receive(msg(DestMode::Logical, 0x11));
        assert_eq!(take(&mut l), Some(0x80));
    }

    #[test]
    fn self_ipis_and_init_sipi() {
        let mut l = lapic();
        // Fixed, shorthand "self".
        assert_eq!(w(&mut l, ICR_LOW, 1 << 18 | 0x90), IoAccess::Done);
        assert_eq!(take(&mut l), Some(0x90));
        assert_eq!(r(&mut l, ICR_LOW) & (1 << 12), 0, "delivery status idle");
        // Fixed to our own physical ID; to another ID it goes nowhere.
        w(&mut l, ICR_HIGH, 0);
        w(&mut l, ICR_LOW, 0x91);
        w(&mut l, ICR_HIGH, 5 << 24);
        w(&mut l, ICR_LOW, 0x92);
        assert_eq!(r(&mut l, IRR + 0x40), 1 << 17);
        // INIT assert to self, INIT de-assert (ignored), SIPI to all including self.
        assert_eq!(
            w(&mut l, ICR_LOW, 1 << 18 | 0x4500),
            IoAccess::Signal(CpuSignal::Init)
        );
        assert_eq!(w(&mut l, ICR_LOW, 1 << 18 | 0x8500), IoAccess::Done);
        assert_eq!(
            w(&mut l, ICR_LOW, 2 << 18 | 0x0609),
            IoAccess::Signal(CpuSignal::Startup(0x09))
        );
        assert_eq!(
            w(&mut l, ICR_LOW, 3 << 18 | 0x0609),
            IoAccess::Done,
            "all excluding self: nobody"
        );
        assert_eq!(
            w(&mut l, ICR_LOW, 1 << 18 | 0x0400),
            IoAccess::Signal(CpuSignal::Nmi)
        );
    }

    #[test]
    fn errors_latch_in_esr_and_interrupt() {
        let mut l = lapic();
        w(&mut l, 0x370, 0xEE);
        w(&mut l, ICR_LOW, 1 << 18 | 0x05);
        l.receive(fixed(0x07, Trigger::Edge));
        assert_eq!(r(&mut l, ESR), 0, "errors show after the next ESR write");
        w(&mut l, ESR, 0);
        assert_eq!(
            r(&mut l, ESR),
            ESR_SEND_ILLEGAL_VECTOR | ESR_RECEIVE_ILLEGAL_VECTOR
        );
        assert_eq!(take(&mut l), Some(0xEE));
        w(&mut l, 0x3F0, 1);
        w(&mut l, ESR, 0);
        assert_eq!(r(&mut l, ESR), ESR_ILLEGAL_REGISTER);
    }

    #[test]
    fn one_shot_timer_on_virtual_time() {
        let mut l = lapic();
        w(&mut l, TIMER_DIVIDE, 0x3); // divide by 16
        w(&mut l, 0x320, 0xEC);
        w(&mut l, TIMER_INITIAL_COUNT, 1000);
        assert_eq!(l.next_deadline(), Some(Nanos(16_000)));
        l.advance(Nanos(8_000));
        assert_eq!(r(&mut l, TIMER_CURRENT_COUNT), 500);
        l.advance(Nanos(16_000));
        assert_eq!(r(&mut l, TIMER_CURRENT_COUNT), 0);
        assert_eq!(take(&mut l), Some(0xEC));
        assert_eq!(l.next_deadline(), None);
        // Writing 0 to the initial count stops a running timer.
        w(&mut l, TIMER_INITIAL_COUNT, 1000);
        w(&mut l, TIMER_INITIAL_COUNT, 0);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn periodic_timer_reloads_and_divide_change_rebases() {
        let mut l = lapic();
        w(&mut l, TIMER_DIVIDE, 0xB); // divide by 1
        w(&mut l, 0x320, 1 << 17 | 0x40);
        w(&mut l, TIMER_INITIAL_COUNT, 100);
        for k in 1..=3u64 {
            assert_eq!(l.next_deadline(), Some(Nanos(100 * k)));
            l.advance(Nanos(100 * k));
            assert_eq!(take(&mut l), Some(0x40));
            w(&mut l, EOI, 0);
        }
        l.advance(Nanos(330));
        assert_eq!(r(&mut l, TIMER_CURRENT_COUNT), 70);
        // Halve the rate: 70 counts left now take 140 ns.
        w(&mut l, TIMER_DIVIDE, 0x0);
        assert_eq!(l.next_deadline(), Some(Nanos(470)));
        // Several periods skipped at once fire one interrupt.
        l.advance(Nanos(2_000));
        assert_eq!(take(&mut l), Some(0x40));
        assert_eq!(l.highest_pending(), None);
        assert!(l.next_deadline().unwrap() > Nanos(2_000));
        // Masked: the count runs on, no interrupt is requested.
        w(&mut l, 0x320, 1 << 17 | LVT_MASKED | 0x40);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn tsc_deadline_mode() {
        let mut l = lapic();
        l.set_tsc_deadline(5000, Nanos(50), Nanos::ZERO);
        assert_eq!(l.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
        w(&mut l, 0x320, 2 << 17 | 0xD0);
        w(&mut l, TIMER_INITIAL_COUNT, 77);
        assert_eq!(
            r(&mut l, TIMER_INITIAL_COUNT),
            0,
            "initial count is ignored in this mode"
        );
        l.set_tsc_deadline(5000, Nanos(50), Nanos::ZERO);
        assert_eq!(l.tsc_deadline(), 5000);
        assert_eq!(l.next_deadline(), Some(Nanos(50)));
        l.advance(Nanos(50));
        assert_eq!(l.tsc_deadline(), 0);
        assert_eq!(take(&mut l), Some(0xD0));
        // A deadline already past fires at once; a mode change disarms.
        l.set_tsc_deadline(1, Nanos(10), Nanos(50));
        assert_eq!(l.tsc_deadline(), 0);
        l.set_tsc_deadline(9000, Nanos(90), Nanos(50));
        w(&mut l, 0x320, 0xD0);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn apic_base_msr() {
        let mut l = lapic();
        assert_eq!(
            l.set_apic_base(BASE | 1 << 10 | 1 << 11),
            Err(LapicError::X2ApicUnsupported)
        );
        assert_eq!(
            l.set_apic_base(BASE | 1),
            Err(LapicError::ReservedBits(BASE | 1))
        );
        w(&mut l, TPR, 0x20);
        l.set_apic_base(BASE).unwrap();
        assert!(!l.enabled());
        assert!(
            l.accepts_pic_interrupt(),
            "a disabled APIC passes INTR through"
        );
        l.receive(fixed(0x40, Trigger::Edge));
        assert_eq!(l.highest_pending(), None);
        l.set_apic_base(0xFED0_0000 | 1 << 11).unwrap();
        assert_eq!(l.apic_base(), 0xFED0_0900);
        assert_eq!(l.tpr(), 0, "disabling reset the APIC");
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let mut l = lapic();
        for offset in (0..SIZE).step_by(4) {
            l.read(BASE, offset, 8, Nanos::ZERO);
            l.write(BASE, offset, 4, u32::MAX as u64, Nanos::ZERO);
            l.write(BASE, offset, 1, 0, Nanos::ZERO);
        }
        l.advance(Nanos::MAX);
        l.next_deadline();
        l.set_tsc_deadline(u64::MAX, Nanos::MAX, Nanos::MAX);
        let mut z = Lapic::new(0, 0);
        z.write(BASE, TIMER_INITIAL_COUNT, 4, 5, Nanos::ZERO);
        assert_eq!(z.next_deadline(), None);
    }
}
