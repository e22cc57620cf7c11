//! The PC's pair of Intel 8259A programmable interrupt controllers: master at
//! 0x20/0x21 with the slave cascaded on its IR2, slave at 0xA0/0xA1, and the PIIX edge/
//! level control registers (ELCR) at 0x4D0/0x4D1. Behaviour follows the 8259A datasheet
//! (and QEMU's i8259 where the datasheet leaves a choice).
//!
//! The machine drives the 16 ISA lines with `set_irq`, reads the INTR output with
//! `has_interrupt` and runs the INTA cycle with `acknowledge`.

use crate::bus::{Device, IoAccess};
use crate::clock::Nanos;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const MASTER: u16 = 0x20;
pub const SLAVE: u16 = 0xA0;
/// ELCR1 (master) at 0x4D0, ELCR2 (slave) at 0x4D1.
pub const ELCR: u16 = 0x4D0;
/// Each of the three ranges is two ports long.
pub const PORTS: u16 = 2;

/// ICW1 (A0 = 0, D4 = 1).
const ICW1: u8 = 1 << 4;
const ICW1_IC4: u8 = 1 << 0;
const ICW1_SNGL: u8 = 1 << 1;
/// OCW3 (A0 = 0, D4 = 0, D3 = 1); otherwise OCW2.
const OCW3: u8 = 1 << 3;
const OCW3_RIS: u8 = 1 << 0;
const OCW3_RR: u8 = 1 << 1;
const OCW3_P: u8 = 1 << 2;
const OCW3_SMM: u8 = 1 << 5;
const OCW3_ESMM: u8 = 1 << 6;
const ICW4_AEOI: u8 = 1 << 1;
const ICW4_SFNM: u8 = 1 << 4;
/// The poll word's "interrupt present" bit.
const POLL_INT: u8 = 1 << 7;

/// The master input the slave's INT drives.
const CASCADE: u8 = 2;
/// Lines the PIIX lets be level-triggered: not IRQ0-2 (master), not IRQ8 and IRQ13.
const ELCR_MASK: [u8; 2] = [0xF8, 0xDE];

/// OCW2's R, SL, EOI bits (D7–D5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ocw2 {
    ClearRotateInAeoi,
    NonSpecificEoi,
    Nop,
    SpecificEoi,
    SetRotateInAeoi,
    RotateOnNonSpecificEoi,
    SetPriority,
    RotateOnSpecificEoi,
}

const OCW2: [Ocw2; 8] = [
    Ocw2::ClearRotateInAeoi,
    Ocw2::NonSpecificEoi,
    Ocw2::Nop,
    Ocw2::SpecificEoi,
    Ocw2::SetRotateInAeoi,
    Ocw2::RotateOnNonSpecificEoi,
    Ocw2::SetPriority,
    Ocw2::RotateOnSpecificEoi,
];

/// Which initialization word the chip expects next on its odd port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Init {
    #[default]
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

#[derive(Clone, Debug, Default)]
struct Chip {
    irr: u8,
    imr: u8,
    isr: u8,
    /// The levels of the IR inputs, to find edges.
    input: u8,
    elcr: u8,
    elcr_mask: u8,
    /// ICW2: T7–T3 of the vectors.
    base: u8,
    /// The IR that has the highest priority is `lowest_priority + 1` (rotation).
    priority_add: u8,
    init: Init,
    icw4_needed: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_aeoi: bool,
    special_fully_nested: bool,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
}

impl Chip {
    fn new(elcr_mask: u8) -> Chip {
        Chip {
            elcr_mask,
            ..Chip::default()
        }
    }

    /// Drive input `ir`. Edge mode latches IRR on a rising edge only; level mode makes
    /// IRR follow the line.
    fn set_input(&mut self, ir: u8, level: bool) {
        let bit = 1 << ir;
        if self.elcr & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.input & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.input |= bit;
        } else {
            self.input &= !bit;
        }
    }

    /// Priority rank (0 highest) of the best bit in `mask`, or 8 for none.
    fn priority(&self, mask: u8) -> u8 {
        (0..8)
            .find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
            .unwrap_or(8)
    }

    /// The IR this chip would interrupt the CPU with, respecting the mask, the
    /// in-service levels and special mask / special fully nested modes.
    fn pending(&self, is_master: bool) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested && is_master {
            // A higher-priority slave interrupt may nest inside a slave interrupt.
            in_service &= !(1 << CASCADE);
        }
        (p < self.priority(in_service)).then_some((p + self.priority_add) & 7)
    }

    /// INTA for `ir`: into service (unless auto-EOI), out of IRR if edge-triggered.
    fn intack(&mut self, ir: u8) {
        let bit = 1 << ir;
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_add = (ir + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & ICW1 != 0 {
            // ICW1 starts initialization: all state but the ELCR goes back to reset.
            *self = Chip {
                elcr: self.elcr,
                elcr_mask: self.elcr_mask,
                irr: self.irr & self.elcr,
                input: self.input & self.elcr,
                init: Init::Icw2,
                icw4_needed: v & ICW1_IC4 != 0,
                single: v & ICW1_SNGL != 0,
                ..Chip::default()
            };
        } else if v & OCW3 != 0 {
            if v & OCW3_P != 0 {
                self.poll = true;
            }
            if v & OCW3_RR != 0 {
                self.read_isr = v & OCW3_RIS != 0;
            }
            if v & OCW3_ESMM != 0 {
                self.special_mask = v & OCW3_SMM != 0;
            }
        } else {
            let level = v & 7;
            let highest_in_service = || {
                let p = self.priority(self.isr);
                (p != 8).then_some((p + self.priority_add) & 7)
            };
            match OCW2[(v >> 5) as usize] {
                Ocw2::ClearRotateInAeoi => self.rotate_on_aeoi = false,
                Ocw2::SetRotateInAeoi => self.rotate_on_aeoi = true,
                Ocw2::Nop => {}
                Ocw2::NonSpecificEoi => {
                    if let Some(ir) = highest_in_service() {
                        self.isr &= !(1 << ir);
                    }
                }
                Ocw2::RotateOnNonSpecificEoi => {
                    if let Some(ir) = highest_in_service() {
                        self.isr &= !(1 << ir);
                        self.priority_add = (ir + 1) & 7;
                    }
                }
                Ocw2::SpecificEoi => self.isr &= !(1 << level),
                Ocw2::RotateOnSpecificEoi => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                Ocw2::SetPriority => self.priority_add = (level + 1) & 7,
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        self.init = match self.init {
            Init::Ready => {
                self.imr = v;
                Init::Ready
            }
            Init::Icw2 => {
                self.base = v & 0xF8;
                match (self.single, self.icw4_needed) {
                    (false, _) => Init::Icw3,
                    (true, true) => Init::Icw4,
                    (true, false) => Init::Ready,
                }
            }
            // ICW3 names the cascade wiring, which on a PC is fixed.
            Init::Icw3 if self.icw4_needed => Init::Icw4,
            Init::Icw3 => Init::Ready,
            Init::Icw4 => {
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.special_fully_nested = v & ICW4_SFNM != 0;
                Init::Ready
            }
        };
    }
}

/// The cascaded pair.
#[derive(Clone, Debug)]
pub struct Pic {
    /// [master, slave]
    chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    pub fn new() -> Self {
        Pic {
            chips: [Chip::new(ELCR_MASK[0]), Chip::new(ELCR_MASK[1])],
        }
    }

    /// Drive ISA interrupt line 0–15. Line 2 is the cascade input, which only the slave
    /// drives; other lines do not exist on the 8259s and are ignored.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 if line != CASCADE => self.chips[0].set_input(line, level),
            8..=15 => {
                self.chips[1].set_input(line - 8, level);
                self.update_cascade();
            }
            _ => {}
        }
    }

    /// The INTR output: the master has an interrupt for the CPU.
    pub fn has_interrupt(&self) -> bool {
        self.chips[0].pending(true).is_some()
    }

    /// The INTA cycle: the vector of the highest-priority request, which goes into
    /// service. With nothing pending, the spurious IRQ7 vector (IRQ15 if the slave's
    /// request went away after the master saw it) with nothing put in service.
    pub fn acknowledge(&mut self) -> u8 {
        let [master, slave] = &mut self.chips;
        let vector = match master.pending(true) {
            Some(CASCADE) => {
                let ir = slave.pending(false);
                if let Some(ir) = ir {
                    slave.intack(ir);
                }
                master.intack(CASCADE);
                slave.base | ir.unwrap_or(7)
            }
            Some(ir) => {
                master.intack(ir);
                master.base | ir
            }
            None => master.base | 7,
        };
        // The INTA cycle ends the slave's request on the cascade line; if the slave
        // still has one, it is a new edge.
        self.chips[0].set_input(CASCADE, false);
        self.update_cascade();
        vector
    }

    fn update_cascade(&mut self) {
        let slave_int = self.chips[1].pending(false).is_some();
        self.chips[0].set_input(CASCADE, slave_int);
    }

    /// Poll command (OCW3 P): the read acknowledges like an INTA and returns
    /// 0x80 | IR, or 0 with nothing pending.
    fn poll(&mut self, chip: usize) -> u8 {
        let c = &mut self.chips[chip];
        c.poll = false;
        let word = match c.pending(chip == 0) {
            Some(ir) => {
                c.intack(ir);
                POLL_INT | ir
            }
            None => 0,
        };
        self.update_cascade();
        word
    }

    fn read_port(&mut self, base: u16, offset: u16) -> u8 {
        let Some(chip) = chip_of(base) else {
            return match (base, offset) {
                (ELCR, 0 | 1) => self.chips[offset as usize].elcr,
                _ => 0xFF,
            };
        };
        match offset {
            _ if self.chips[chip].poll && offset < PORTS => self.poll(chip),
            0 if self.chips[chip].read_isr => self.chips[chip].isr,
            0 => self.chips[chip].irr,
            1 => self.chips[chip].imr,
            _ => 0xFF,
        }
    }

    fn write_port(&mut self, base: u16, offset: u16, v: u8) {
        match (chip_of(base), offset) {
            (Some(chip), 0) => self.chips[chip].write_command(v),
            (Some(chip), 1) => self.chips[chip].write_data(v),
            (None, 0 | 1) if base == ELCR => {
                let c = &mut self.chips[offset as usize];
                c.elcr = v & c.elcr_mask;
                // A line switched to level mode is pending if it is high now.
                c.irr |= c.elcr & c.input;
            }
            _ => {}
        }
        self.update_cascade();
    }
}

fn chip_of(base: u16) -> Option<usize> {
    match base {
        MASTER => Some(0),
        SLAVE => Some(1),
        _ => None,
    }
}

impl Device for Pic {
    fn name(&self) -> &'static str {
        "pic"
    }
}

impl PortDevice for Pic {
    fn read(&mut self, base: u16, offset: u16, size: u8, _now: Nanos) -> u32 {
        read_bytes(offset, size, |o| self.read_port(base, o))
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        write_bytes(offset, size, value, |o, v| {
            self.write_port(base, o, v);
            IoAccess::Done
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &mut Pic, port: u16, v: u8) {
        p.write(port & !1, port & 1, 1, v as u32, Nanos::ZERO);
    }

    fn inb(p: &mut Pic, port: u16) -> u8 {
        p.read(port & !1, port & 1, 1, Nanos::ZERO) as u8
    }

    /// The BIOS/Linux initialization: ICW1 edge+ICW4, vectors 0x20/0x28, cascade on 2,
    /// 8086 mode.
    fn initialized() -> Pic {
        let mut p = Pic::new();
        for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
            out(&mut p, port, v);
        }
        for (port, v) in [(0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x01)] {
            out(&mut p, port, v);
        }
        out(&mut p, 0x21, 0);
        out(&mut p, 0xA1, 0);
        p
    }

    fn eoi(p: &mut Pic, port: u16) {
        out(p, port, 0x20);
    }

    #[test]
    fn edge_interrupt_goes_through_irr_isr_and_eoi() {
        let mut p = initialized();
        assert!(!p.has_interrupt());
        p.set_irq(0, true);
        assert!(p.has_interrupt());
        assert_eq!(inb(&mut p, 0x20), 0x01, "IRR");
        assert_eq!(p.acknowledge(), 0x20);
        assert!(!p.has_interrupt());
        out(&mut p, 0x20, 0x0B); // OCW3: read ISR
        assert_eq!(inb(&mut p, 0x20), 0x01);
        // Still high: no new edge, no new interrupt after EOI.
        eoi(&mut p, 0x20);
        assert_eq!(inb(&mut p, 0x20), 0x00);
        assert!(!p.has_interrupt());
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert!(p.has_interrupt());
    }

    #[test]
    fn priorities_nest_and_mask() {
        let mut p = initialized();
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x23);
        // IRQ4 is lower priority than IRQ3 in service: held off.
        p.set_irq(4, true);
        assert!(!p.has_interrupt());
        // IRQ1 is higher: it nests.
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x21);
        eoi(&mut p, 0x20); // ends IRQ1, the highest in service
        eoi(&mut p, 0x20); // ends IRQ3
        assert_eq!(p.acknowledge(), 0x24);
        eoi(&mut p, 0x20);
        // Masked requests stay in IRR without interrupting.
        out(&mut p, 0x21, 0x20);
        p.set_irq(5, true);
        assert!(!p.has_interrupt());
        assert_eq!(inb(&mut p, 0x21), 0x20);
        out(&mut p, 0x21, 0x00);
        assert_eq!(p.acknowledge(), 0x25);
    }

    #[test]
    fn slave_cascades_through_ir2() {
        let mut p = initialized();
        p.set_irq(14, true);
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x2E);
        out(&mut p, 0x0A0, 0x0B);
        out(&mut p, 0x020, 0x0B);
        assert_eq!(inb(&mut p, 0xA0), 0x40, "slave ISR");
        assert_eq!(inb(&mut p, 0x20), 0x04, "master ISR: the cascade");
        eoi(&mut p, 0xA0);
        eoi(&mut p, 0x20);
        assert_eq!(inb(&mut p, 0x20), 0);
        // Two slave requests come one after the other through the one cascade input.
        p.set_irq(8, true);
        p.set_irq(12, true);
        assert_eq!(p.acknowledge(), 0x28);
        eoi(&mut p, 0xA0);
        eoi(&mut p, 0x20);
        assert_eq!(p.acknowledge(), 0x2C);
    }

    #[test]
    fn specific_eoi_and_rotation() {
        let mut p = initialized();
        p.set_irq(6, true);
        p.set_irq(7, true);
        assert_eq!(p.acknowledge(), 0x26);
        out(&mut p, 0x20, 0x66); // specific EOI for IR6
        assert_eq!(p.acknowledge(), 0x27);
        // Rotate on specific EOI 7: IR7 becomes lowest, IR0 highest.
        out(&mut p, 0x20, 0xE7);
        // Set priority: IR4 lowest, so IR5 is now highest and beats IR1.
        out(&mut p, 0x20, 0xC4);
        p.set_irq(1, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x25);
    }

    #[test]
    fn level_triggered_lines_via_elcr() {
        let mut p = initialized();
        out(&mut p, 0x4D1, 0xFF);
        assert_eq!(inb(&mut p, 0x4D1), 0xDE, "IRQ8 and IRQ13 are edge-only");
        out(&mut p, 0x4D0, 0xFF);
        assert_eq!(inb(&mut p, 0x4D0), 0xF8, "IRQ0-2 are edge-only");
        p.set_irq(11, true);
        assert_eq!(p.acknowledge(), 0x2B);
        eoi(&mut p, 0xA0);
        eoi(&mut p, 0x20);
        // Still asserted: a level line interrupts again.
        assert_eq!(p.acknowledge(), 0x2B);
        // The handler quiets the device before its EOIs: no further interrupt.
        p.set_irq(11, false);
        eoi(&mut p, 0xA0);
        eoi(&mut p, 0x20);
        assert!(!p.has_interrupt());
    }

    #[test]
    fn spurious_interrupts_give_ir7_without_in_service() {
        let mut p = initialized();
        assert_eq!(p.acknowledge(), 0x27);
        out(&mut p, 0x20, 0x0B);
        assert_eq!(inb(&mut p, 0x20), 0, "a spurious IRQ7 is not in service");
        // A level request that goes away after the master latched the cascade: the
        // slave answers with its IR7.
        out(&mut p, 0x4D1, 0x08);
        p.set_irq(11, true);
        p.set_irq(11, false);
        assert_eq!(p.acknowledge(), 0x2F);
        out(&mut p, 0xA0, 0x0B);
        assert_eq!(inb(&mut p, 0xA0), 0, "a spurious IRQ15 is not in service");
    }

    #[test]
    fn auto_eoi_leaves_nothing_in_service() {
        let mut p = Pic::new();
        for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x03)] {
            out(&mut p, port, v);
        }
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x09);
        out(&mut p, 0x20, 0x0B);
        assert_eq!(inb(&mut p, 0x20), 0);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x0C);
    }

    #[test]
    fn poll_mode_reads_and_acknowledges() {
        let mut p = initialized();
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x20), 0x00, "nothing pending");
        p.set_irq(5, true);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x21), 0x85);
        assert!(!p.has_interrupt(), "the poll acknowledged IR5");
        assert_eq!(
            inb(&mut p, 0x21),
            0x00,
            "poll mode ends with the read: IMR again"
        );
    }

    #[test]
    fn special_mask_mode_lets_lower_priorities_through() {
        let mut p = initialized();
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x21);
        out(&mut p, 0x21, 0x02); // mask IR1 while it is in service
        out(&mut p, 0x20, 0x68); // OCW3: set special mask mode
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x25);
        out(&mut p, 0x20, 0x48); // reset special mask mode
        p.set_irq(6, true);
        assert!(!p.has_interrupt(), "IR1 and IR5 in service block IR6 again");
    }

    #[test]
    fn reinitialization_and_odd_accesses_are_harmless() {
        let mut p = initialized();
        p.set_irq(3, true);
        // ICW1 clears the mask, IRR of edge lines and ISR; the vectors come from ICW2.
        for (port, v) in [(0x20, 0x13), (0x21, 0x40), (0x21, 0x01)] {
            out(&mut p, port, v);
        }
        assert!(!p.has_interrupt());
        p.set_irq(3, false);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x43);
        // Wide accesses split into bytes; lines that do not exist are ignored.
        assert_eq!(p.read(MASTER, 0, 4, Nanos::ZERO) >> 16, 0xFFFF);
        p.write(ELCR, 0, 2, 0xFFFF, Nanos::ZERO);
        assert_eq!(inb(&mut p, 0x4D1), 0xDE);
        p.set_irq(2, true);
        p.set_irq(99, true);
        assert_eq!(p.read(0x4D2, 0, 1, Nanos::ZERO), 0xFF);
    }
}
