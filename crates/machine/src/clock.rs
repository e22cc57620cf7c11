//! The machine's clock (DESIGN.md §6). Virtual by default: time is retired instructions
//! at a nominal rate, plus the idle time HLT skipped, so every run of a guest sees the
//! same time at the same instruction. With `--realtime` it follows the host's
//! monotonic clock instead, and runs are no longer reproducible.

use std::time::Instant;

use trapeze_devices::Nanos;

/// Virtual time advances one nanosecond per retired instruction (1000 MIPS nominal),
/// whatever the host's speed.
pub const NS_PER_INSN: u64 = 1;

/// The TSC's frequency: it counts nanoseconds of machine time (1 GHz), and CPUID leaves
/// 15h/16h report it.
pub const TSC_HZ: u64 = trapeze_cpu::cpuid::TSC_HZ;
/// TSC ticks per retired instruction at the nominal rate.
pub const TSC_PER_INSN: u64 = TSC_HZ / 1_000_000_000 * NS_PER_INSN;

/// Nanoseconds of machine time in `ticks` of the TSC.
pub fn tsc_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / TSC_HZ as u128).min(u64::MAX as u128) as u64
}

#[derive(Clone, Debug)]
pub struct Clock {
    /// `Some(start)`: host time since `start` (realtime mode).
    host: Option<Instant>,
    /// Instruction times skipped while halted (virtual mode).
    skipped: u64,
}

impl Clock {
    pub fn new(realtime: bool) -> Self {
        Clock {
            host: realtime.then(Instant::now),
            skipped: 0,
        }
    }

    pub fn realtime(&self) -> bool {
        self.host.is_some()
    }

    /// Machine time after `retired` instructions.
    pub fn now(&self, retired: u64) -> Nanos {
        match self.host {
            Some(start) => Nanos(start.elapsed().as_nanos().min(u64::MAX as u128) as u64),
            None => Nanos(
                retired
                    .saturating_add(self.skipped)
                    .saturating_mul(NS_PER_INSN),
            ),
        }
    }

    /// Instruction times from `retired` until time `t` (at least 1). In realtime mode
    /// this assumes the nominal rate, which the host never exceeds, so a slice ends
    /// no later than `t`.
    pub fn insns_until(&self, retired: u64, t: Nanos) -> u64 {
        t.0.saturating_sub(self.now(retired).0)
            .div_ceil(NS_PER_INSN)
            .max(1)
    }

    /// Let `insns` instruction times pass without retiring anything (HLT in virtual
    /// mode jumps to the next device deadline instead of spinning).
    pub fn skip(&mut self, insns: u64) {
        self.skipped = self.skipped.saturating_add(insns);
    }

    /// Instruction times skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}
