//! Intel 82093AA I/O APIC at 0xFEC00000: IOREGSEL/IOWIN, ID, version (24 redirection
//! entries), arbitration ID and the redirection table, with edge- and level-triggered
//! inputs and the remote IRR handshake.
//!
//! For the machine: `set_irq` drives input pin (GSI) n and returns the message to hand
//! to the local APIC, if one is sent; `eoi` is the local APIC's EOI broadcast for a
//! level-triggered vector, and may resend lines still asserted; unmasking an entry
//! whose line waits answers the MMIO write with `IoAccess::Interrupt`. On a PC, ISA
//! IRQ0 arrives on pin 2 (the MADT's interrupt source override); the machine routes it.
//!
//! As in QEMU, `level` is the line's logical assertion: the polarity bit is stored for
//! the guest to read back but does not invert the input. Edge requests that arrive
//! while their entry is masked are kept and delivered when it is unmasked.

use crate::bus::{Device, IoAccess};
use crate::clock::Nanos;
use crate::irq::{ApicMessage, DeliveryMode, DestMode, Trigger};
use crate::mmio_bus::MmioDevice;

pub const BASE: u64 = 0xFEC0_0000;
pub const SIZE: u64 = 0x1000;
pub const PINS: u8 = 24;

/// Direct registers.
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Indirect registers (82093AA datasheet 3.2).
const IOAPICID: u8 = 0x00;
const IOAPICVER: u8 = 0x01;
const IOAPICARB: u8 = 0x02;
const IOREDTBL: u8 = 0x10;
const IOREDTBL_END: u8 = IOREDTBL + 2 * PINS;

const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0x0F;
/// Version 0x11, maximum redirection entry 23.
const VERSION: u32 = ((PINS as u32 - 1) << 16) | 0x11;

/// Redirection table entry bits.
const VECTOR: u64 = 0xFF;
const DELIVERY_SHIFT: u32 = 8;
const DEST_LOGICAL: u64 = 1 << 11;
const REMOTE_IRR: u64 = 1 << 14;
const TRIGGER_LEVEL: u64 = 1 << 15;
const MASKED: u64 = 1 << 16;
const DEST_SHIFT: u32 = 56;
/// Vector, delivery mode, destination mode, polarity, trigger mode, mask; destination.
/// Delivery status (bit 12) and remote IRR (bit 14) are read-only.
const WRITABLE: u64 = 0xFF00_0000_0001_AFFF;

pub struct IoApic {
    id: u8,
    regsel: u8,
    table: [u64; PINS as usize],
    /// Input levels, to find edges.
    level: u32,
    /// Requests not yet delivered: an edge while masked, or an asserted level line.
    pending: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new(0)
    }
}

impl IoApic {
    /// `id` is the IOAPIC ID the MADT reports.
    pub fn new(id: u8) -> Self {
        IoApic {
            id: id & ID_MASK as u8,
            regsel: 0,
            table: [MASKED; PINS as usize],
            level: 0,
            pending: 0,
        }
    }

    /// Drive input `pin`. A rising edge (or an asserted level line not awaiting EOI)
    /// sends its entry's message unless the entry is masked.
    pub fn set_irq(&mut self, pin: u8, level: bool) -> Option<ApicMessage> {
        if pin >= PINS {
            return None;
        }
        let bit = 1 << pin;
        let rising = level && self.level & bit == 0;
        if level {
            self.level |= bit;
        } else {
            self.level &= !bit;
        }
        if self.table[pin as usize] & TRIGGER_LEVEL != 0 {
            if level {
                self.pending |= bit;
            } else {
                self.pending &= !bit;
            }
        } else if rising {
            self.pending |= bit;
        }
        self.service(pin)
    }

    /// The local APIC ended level-triggered `vector`: clear remote IRR of the entries
    /// using it, and resend those whose line is still asserted.
    pub fn eoi(&mut self, vector: u8) -> Vec<ApicMessage> {
        let mut resent = Vec::new();
        for pin in 0..PINS {
            let e = &mut self.table[pin as usize];
            if *e & VECTOR == vector as u64 && *e & REMOTE_IRR != 0 {
                *e &= !REMOTE_IRR;
                resent.extend(self.service(pin));
            }
        }
        resent
    }

    /// Deliver `pin`'s request if it has one and may send it now.
    fn service(&mut self, pin: u8) -> Option<ApicMessage> {
        let bit = 1 << pin;
        let e = self.table[pin as usize];
        if self.pending & bit == 0 || e & MASKED != 0 || e & REMOTE_IRR != 0 {
            return None;
        }
        let mode = DeliveryMode::from_bits((e >> DELIVERY_SHIFT) as u32)?;
        let trigger = if e & TRIGGER_LEVEL != 0 {
            // Remote IRR holds the level line until the EOI.
            self.table[pin as usize] |= REMOTE_IRR;
            Trigger::Level
        } else {
            self.pending &= !bit;
            Trigger::Edge
        };
        Some(ApicMessage {
            vector: (e & VECTOR) as u8,
            mode,
            dest_mode: if e & DEST_LOGICAL != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            dest: (e >> DEST_SHIFT) as u8,
            trigger,
        })
    }

    fn read_register(&self) -> u32 {
        match self.regsel {
            IOAPICID | IOAPICARB => (self.id as u32) << ID_SHIFT,
            IOAPICVER => VERSION,
            IOREDTBL..IOREDTBL_END => {
                let i = (self.regsel - IOREDTBL) as usize;
                (self.table[i / 2] >> (32 * (i % 2))) as u32
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, v: u32) -> IoAccess {
        match self.regsel {
            IOAPICID => self.id = ((v >> ID_SHIFT) & ID_MASK) as u8,
            IOREDTBL..IOREDTBL_END => {
                let i = (self.regsel - IOREDTBL) as usize;
                let (pin, shift) = (i / 2, 32 * (i % 2));
                let old = self.table[pin];
                let half = (0xFFFF_FFFFu64 << shift) & WRITABLE;
                let mut e = old & !half | (v as u64) << shift & half;
                let bit = 1u32 << pin;
                if e & TRIGGER_LEVEL == 0 {
                    // An edge entry has no remote IRR.
                    e &= !REMOTE_IRR;
                    if old & TRIGGER_LEVEL != 0 {
                        self.pending &= !bit;
                    }
                } else if self.level & bit != 0 {
                    self.pending |= bit;
                }
                self.table[pin] = e;
                if let Some(msg) = self.service(pin as u8) {
                    return IoAccess::Interrupt(msg);
                }
            }
            _ => {}
        }
        IoAccess::Done
    }
}

impl Device for IoApic {
    fn name(&self) -> &'static str {
        "ioapic"
    }
}

impl MmioDevice for IoApic {
    fn read(&mut self, _base: u64, offset: u64, _size: u8, _now: Nanos) -> u64 {
        match offset {
            IOREGSEL => self.regsel as u64,
            IOWIN => self.read_register() as u64,
            _ => 0,
        }
    }

    fn write(&mut self, _base: u64, offset: u64, size: u8, value: u64, _now: Nanos) -> IoAccess {
        match offset {
            IOREGSEL => self.regsel = value as u8,
            IOWIN if size == 4 => return self.write_register(value as u32),
            _ => {}
        }
        IoAccess::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(io: &mut IoApic, index: u8) -> u32 {
        io.write(BASE, IOREGSEL, 4, index as u64, Nanos::ZERO);
        io.read(BASE, IOWIN, 4, Nanos::ZERO) as u32
    }

    fn set(io: &mut IoApic, index: u8, v: u32) -> IoAccess {
        io.write(BASE, IOREGSEL, 4, index as u64, Nanos::ZERO);
        io.write(BASE, IOWIN, 4, v as u64, Nanos::ZERO)
    }

    /// Program pin `pin` with a 64-bit entry, high half first as Linux does.
    fn route(io: &mut IoApic, pin: u8, entry: u64) -> IoAccess {
        set(io, IOREDTBL + 2 * pin + 1, (entry >> 32) as u32);
        set(io, IOREDTBL + 2 * pin, entry as u32)
    }

    fn msg(vector: u8, trigger: Trigger, dest: u8) -> ApicMessage {
        ApicMessage {
            vector,
            mode: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            dest,
            trigger,
        }
    }

    #[test]
    fn identification_and_reset_state() {
        let mut io = IoApic::new(2);
        assert_eq!(reg(&mut io, IOAPICID), 2 << 24);
        assert_eq!(reg(&mut io, IOAPICVER), 0x0017_0011);
        assert_eq!(reg(&mut io, IOAPICARB), 2 << 24);
        assert_eq!(
            reg(&mut io, IOREDTBL),
            MASKED as u32,
            "entries power on masked"
        );
        set(&mut io, IOAPICID, 0xFF00_0000);
        assert_eq!(reg(&mut io, IOAPICID), 0x0F00_0000);
        set(&mut io, IOAPICVER, 0);
        assert_eq!(reg(&mut io, IOAPICVER), 0x0017_0011);
        assert_eq!(io.read(BASE, IOREGSEL, 4, Nanos::ZERO), IOAPICVER as u64);
        assert_eq!(reg(&mut io, 0x40), 0, "past the table");
    }

    #[test]
    fn edge_triggered_delivery() {
        let mut io = IoApic::default();
        assert_eq!(io.set_irq(4, true), None, "masked");
        io.set_irq(4, false);
        route(&mut io, 4, 0x0300_0000_0000_0031 | MASKED);
        assert_eq!(reg(&mut io, IOREDTBL + 9), 0x0300_0000);
        // The edge that came while masked is delivered at the unmask.
        assert_eq!(
            route(&mut io, 4, 0x0300_0000_0000_0031),
            IoAccess::Interrupt(msg(0x31, Trigger::Edge, 3))
        );
        assert_eq!(io.set_irq(4, true), Some(msg(0x31, Trigger::Edge, 3)));
        assert_eq!(io.set_irq(4, true), None, "no new edge");
        io.set_irq(4, false);
        assert_eq!(io.set_irq(4, true), Some(msg(0x31, Trigger::Edge, 3)));
    }

    #[test]
    fn level_triggered_remote_irr_handshake() {
        let mut io = IoApic::default();
        route(&mut io, 10, TRIGGER_LEVEL | 0x45);
        assert_eq!(io.set_irq(10, true), Some(msg(0x45, Trigger::Level, 0)));
        assert_eq!(
            reg(&mut io, IOREDTBL + 20) & REMOTE_IRR as u32,
            REMOTE_IRR as u32
        );
        // Remote IRR holds further deliveries until the EOI.
        io.set_irq(10, false);
        assert_eq!(io.set_irq(10, true), None);
        assert_eq!(
            io.eoi(0x45),
            vec![msg(0x45, Trigger::Level, 0)],
            "still asserted: sent again"
        );
        io.set_irq(10, false);
        assert_eq!(io.eoi(0x45), vec![]);
        assert_eq!(reg(&mut io, IOREDTBL + 20) & REMOTE_IRR as u32, 0);
        assert_eq!(io.eoi(0x99), vec![]);
    }

    #[test]
    fn unmasking_an_asserted_level_line_delivers() {
        let mut io = IoApic::default();
        route(&mut io, 11, TRIGGER_LEVEL | MASKED | 0x50);
        assert_eq!(io.set_irq(11, true), None);
        let logical = TRIGGER_LEVEL | DEST_LOGICAL | 0x50 | 0x0100;
        assert_eq!(
            set(&mut io, IOREDTBL + 22, logical as u32),
            IoAccess::Interrupt(ApicMessage {
                vector: 0x50,
                mode: DeliveryMode::LowestPriority,
                dest_mode: DestMode::Logical,
                dest: 0,
                trigger: Trigger::Level,
            })
        );
        // Read-only bits are kept: remote IRR cannot be written away.
        set(&mut io, IOREDTBL + 22, 0x50 | TRIGGER_LEVEL as u32);
        assert_ne!(reg(&mut io, IOREDTBL + 22) & REMOTE_IRR as u32, 0);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let mut io = IoApic::default();
        assert_eq!(io.set_irq(24, true), None);
        assert_eq!(io.set_irq(255, true), None);
        for index in 0..=255u8 {
            set(&mut io, index, u32::MAX);
            reg(&mut io, index);
        }
        io.write(BASE, IOWIN, 1, 0, Nanos::ZERO);
        io.read(BASE, 0x40, 8, Nanos::ZERO);
        for pin in 0..30 {
            io.set_irq(pin, true);
        }
        io.eoi(0xFF);
    }
}
