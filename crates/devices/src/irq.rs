//! Interrupt plumbing shared by devices and the machine, so no device needs to know
//! another: the platform's interrupt lines (devices drive them, the machine routes their
//! changes to the PIC and the IOAPIC), and the APIC bus message the IOAPIC sends and the
//! local APIC receives.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// GSIs on this platform: the IOAPIC's 24 inputs; ISA IRQ n is line n.
pub const LINES: u8 = 24;

#[derive(Debug, Default)]
struct LineState {
    level: AtomicU32,
    /// Lines that went from low to high since the last drain.
    raised: AtomicU32,
    /// Lines whose level moved since the last drain.
    changed: AtomicU32,
}

/// The interrupt lines of the platform. Devices hold an `IrqLine` each and drive it;
/// after every access and every `Timed::advance` the machine drains the changes with
/// `take_changes` and replays them on the interrupt controllers. Each line has one
/// driver, except that pc-testdev may drive any line (as QEMU's does) for tests that
/// leave that line's device out. Lines above 31 do not exist: driving one does nothing.
#[derive(Clone, Debug, Default)]
pub struct IrqLines(Arc<LineState>);

impl IrqLines {
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle for the device that drives line `n`.
    pub fn line(&self, n: u8) -> IrqLine {
        IrqLine {
            lines: self.clone(),
            n,
        }
    }

    pub fn set(&self, n: u8, level: bool) {
        let Some(bit) = 1u32.checked_shl(n as u32) else {
            return;
        };
        let s = &self.0;
        if level {
            if s.level.fetch_or(bit, Ordering::SeqCst) & bit == 0 {
                s.raised.fetch_or(bit, Ordering::SeqCst);
                s.changed.fetch_or(bit, Ordering::SeqCst);
            }
        } else if s.level.fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
            s.changed.fetch_or(bit, Ordering::SeqCst);
        }
    }

    pub fn level(&self, n: u8) -> bool {
        1u32.checked_shl(n as u32)
            .is_some_and(|bit| self.0.level.load(Ordering::SeqCst) & bit != 0)
    }

    /// What moved since the last call, or `None` (one atomic load) if nothing did.
    pub fn take_changes(&self) -> Option<LineChanges> {
        let s = &self.0;
        if s.changed.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let changed = s.changed.swap(0, Ordering::SeqCst);
        let raised = s.raised.swap(0, Ordering::SeqCst);
        Some(LineChanges {
            changed,
            raised,
            level: s.level.load(Ordering::SeqCst),
        })
    }
}

/// The changes of the lines between two drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineChanges {
    pub changed: u32,
    pub raised: u32,
    pub level: u32,
}

impl LineChanges {
    /// The `(line, level)` steps that replay the changes on a controller's
    /// `set_irq`. A line that rose since the last drain is driven low and then high, so
    /// an edge-triggered input latches the edge even if the line was high at both
    /// drains; it ends at its present level.
    pub fn steps(&self) -> Vec<(u8, bool)> {
        let mut steps = Vec::new();
        for n in 0..32u8 {
            let bit = 1u32 << n;
            if self.changed & bit == 0 {
                continue;
            }
            let high = self.level & bit != 0;
            if self.raised & bit != 0 {
                steps.extend([(n, false), (n, true)]);
                if !high {
                    steps.push((n, false));
                }
            } else {
                steps.push((n, high));
            }
        }
        steps
    }
}

/// One device's interrupt output.
#[derive(Clone, Debug)]
pub struct IrqLine {
    lines: IrqLines,
    n: u8,
}

impl IrqLine {
    pub fn set(&self, level: bool) {
        self.lines.set(self.n, level)
    }

    pub fn level(&self) -> bool {
        self.lines.level(self.n)
    }

    /// A rising then falling edge (an edge-triggered source that never holds its line).
    pub fn pulse(&self) {
        self.set(true);
        self.set(false);
    }

    pub fn number(&self) -> u8 {
        self.n
    }
}

/// APIC delivery modes (SDM Vol. 3 Table 11-1; the ICR, LVT entries and IOAPIC
/// redirection entries share the encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    Startup,
    ExtInt,
}

const DELIVERY_MODES: [Option<DeliveryMode>; 8] = [
    Some(DeliveryMode::Fixed),
    Some(DeliveryMode::LowestPriority),
    Some(DeliveryMode::Smi),
    None,
    Some(DeliveryMode::Nmi),
    Some(DeliveryMode::Init),
    Some(DeliveryMode::Startup),
    Some(DeliveryMode::ExtInt),
];

impl DeliveryMode {
    /// Decode bits 10:8 of an APIC register (given shifted down); 011 is reserved.
    pub fn from_bits(bits: u32) -> Option<DeliveryMode> {
        DELIVERY_MODES[(bits & 7) as usize]
    }

    pub fn bits(self) -> u32 {
        DELIVERY_MODES
            .iter()
            .position(|m| *m == Some(self))
            .unwrap_or(0) as u32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    Physical,
    Logical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// An interrupt message on the APIC bus (or, the same thing, a PCI MSI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMessage {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest_mode: DestMode,
    /// APIC ID (physical) or logical destination bits; 0xFF is a broadcast.
    pub dest: u8,
    pub trigger: Trigger,
}

/// What a local APIC cannot handle through its IRR: the CPU must act itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSignal {
    Nmi,
    Smi,
    /// INIT: the CPU resets to its INIT state (and an AP waits for a SIPI).
    Init,
    /// Start-up IPI: an AP in wait-for-SIPI starts in real mode at vector << 12.
    Startup(u8),
    /// ExtINT: take the vector from the 8259 with an INTA cycle.
    ExtInt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_record_levels_and_edges_between_drains() {
        let lines = IrqLines::new();
        let irq4 = lines.line(4);
        assert_eq!(lines.take_changes(), None);
        irq4.set(true);
        irq4.set(true);
        assert!(lines.level(4) && irq4.level());
        assert_eq!(
            lines.take_changes().unwrap().steps(),
            vec![(4, false), (4, true)]
        );
        assert_eq!(lines.take_changes(), None);
        // Low then high again between drains: the edge must not be lost.
        irq4.set(false);
        irq4.set(true);
        assert_eq!(
            lines.take_changes().unwrap().steps(),
            vec![(4, false), (4, true)]
        );
        // A pulse is an edge that ends low.
        lines.line(0).pulse();
        irq4.set(false);
        assert_eq!(
            lines.take_changes().unwrap().steps(),
            vec![(0, false), (0, true), (0, false), (4, false)]
        );
    }

    #[test]
    fn lines_beyond_the_platform_do_nothing() {
        let lines = IrqLines::new();
        lines.line(200).set(true);
        assert!(!lines.level(200));
        assert_eq!(lines.take_changes(), None);
    }

    #[test]
    fn delivery_mode_encoding_round_trips() {
        for bits in 0..8 {
            match DeliveryMode::from_bits(bits) {
                Some(m) => assert_eq!(m.bits(), bits),
                None => assert_eq!(bits, 3),
            }
        }
    }
}
