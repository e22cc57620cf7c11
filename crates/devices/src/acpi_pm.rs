//! ACPI fixed hardware (ACPI 6.5 section 4.8): the PM1a event block (PM1_STS, PM1_EN),
//! the PM1a control block (PM1_CNT: SCI_EN, SLP_TYP, SLP_EN) and the power management
//! timer (PM_TMR, 3.579545 MHz), in one I/O block laid out as PIIX4's PMBASE is:
//! event block at +0, control block at +4, timer at +8. The FADT (machine's acpi
//! module) points at these ports; the DSDT's `\_S5` package carries `SLP_TYP_S5`.
//!
//! The timer counts on the virtual clock from time zero, so it is deterministic. The
//! SCI is a level on one interrupt line: high while SCI_EN is set and an enabled status
//! bit is set (4.8.2.1).

use crate::bus::{Device, IoAccess};
use crate::clock::{Nanos, Timed};
use crate::irq::IrqLine;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

/// Where the block sits (PIIX4's default PMBASE, as QEMU) and its length.
pub const BASE: u16 = 0x600;
pub const PORTS: u16 = 12;
/// Offsets of the three register blocks within it, and their lengths for the FADT.
pub const PM1_EVT: u16 = 0;
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT: u16 = 4;
pub const PM1_CNT_LEN: u8 = 2;
pub const PM_TMR: u16 = 8;
pub const PM_TMR_LEN: u8 = 4;
/// The SCI's ISA interrupt (as PIIX4 and QEMU).
pub const SCI_IRQ: u8 = 9;

/// PM timer frequency (4.8.3.3): 3.579545 MHz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1_STS / PM1_EN bits (Tables 4.16, 4.17).
pub mod pm1 {
    pub const TMR_STS: u16 = 1 << 0;
    pub const BM_STS: u16 = 1 << 4;
    pub const GBL_STS: u16 = 1 << 5;
    pub const PWRBTN_STS: u16 = 1 << 8;
    pub const SLPBTN_STS: u16 = 1 << 9;
    pub const RTC_STS: u16 = 1 << 10;
    pub const WAK_STS: u16 = 1 << 15;
    /// The status bits this block implements (the enables are at the same positions,
    /// BM_STS and WAK_STS have none).
    pub const STS_BITS: u16 =
        TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS;
    pub const EN_BITS: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;
}

/// PM1_CNT bits (Table 4.18).
pub mod cnt {
    pub const SCI_EN: u16 = 1 << 0;
    pub const BM_RLD: u16 = 1 << 1;
    pub const GBL_RLS: u16 = 1 << 2;
    pub const SLP_TYP_SHIFT: u16 = 10;
    pub const SLP_TYP: u16 = 7 << SLP_TYP_SHIFT;
    /// Write-only: reads as 0.
    pub const SLP_EN: u16 = 1 << 13;
}

/// The SLP_TYP value this platform gives the soft-off state; the DSDT's `\_S5`
/// package returns it.
pub const SLP_TYP_S5: u8 = 5;

/// The timer is 32 bits wide (the FADT sets TMR_VAL_EXT); TMR_STS is set each time its
/// top bit changes.
const TMR_MSB: u32 = 31;

pub struct AcpiPm {
    sts: u16,
    en: u16,
    cnt: u16,
    /// How many times the timer's top bit had changed when TMR_STS was last cleared.
    tmr_cleared_at: u64,
    sci: IrqLine,
}

impl AcpiPm {
    /// `sci` is the SCI's interrupt line. SCI_EN is set at power-on: with no SMI
    /// command port in the FADT the platform is always in ACPI mode (4.8.2.5).
    pub fn new(sci: IrqLine) -> Self {
        AcpiPm {
            sts: 0,
            en: 0,
            cnt: cnt::SCI_EN,
            tmr_cleared_at: 0,
            sci,
        }
    }

    /// TMR_VAL: free-running 3.579545 MHz ticks since power-on.
    pub fn timer(now: Nanos) -> u32 {
        now.ticks(PM_TIMER_HZ) as u32
    }

    fn msb_changes(now: Nanos) -> u64 {
        now.ticks(PM_TIMER_HZ) >> TMR_MSB
    }

    fn status(&self, now: Nanos) -> u16 {
        let tmr = if Self::msb_changes(now) > self.tmr_cleared_at {
            pm1::TMR_STS
        } else {
            0
        };
        self.sts | tmr
    }

    fn update_sci(&self, now: Nanos) {
        let level = self.cnt & cnt::SCI_EN != 0 && self.status(now) & self.en != 0;
        self.sci.set(level);
    }

    fn register(&self, offset: u16, now: Nanos) -> u16 {
        match offset & !1 {
            0 => self.status(now),
            2 => self.en,
            4 => self.cnt & !cnt::SLP_EN,
            _ => 0,
        }
    }

    fn write_byte(&mut self, offset: u16, v: u8, now: Nanos) -> IoAccess {
        let shift = 8 * (offset & 1);
        let bits = (v as u16) << shift;
        let byte = 0xFFu16 << shift;
        match offset & !1 {
            // Status bits are cleared by writing 1 (4.8.3.1.1).
            0 => {
                if bits & pm1::TMR_STS != 0 {
                    self.tmr_cleared_at = Self::msb_changes(now);
                }
                self.sts &= !(bits & pm1::STS_BITS);
            }
            2 => self.en = (self.en & !byte) | (bits & pm1::EN_BITS),
            4 => {
                self.cnt = (self.cnt & !byte) | (bits & !cnt::SLP_EN);
                // SCI_EN is read-only to OSPM on a platform without SMI_CMD.
                self.cnt |= cnt::SCI_EN;
                if bits & cnt::SLP_EN != 0 {
                    let typ = ((self.cnt & cnt::SLP_TYP) >> cnt::SLP_TYP_SHIFT) as u8;
                    if typ == SLP_TYP_S5 {
                        return IoAccess::PowerOff;
                    }
                }
            }
            _ => {}
        }
        IoAccess::Done
    }
}

impl Device for AcpiPm {
    fn name(&self) -> &'static str {
        "acpi-pm"
    }
}

impl PortDevice for AcpiPm {
    fn read(&mut self, _base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        if offset >= PM_TMR {
            // The timer is read as a whole 32-bit register (4.8.3.3).
            return Self::timer(now) >> (8 * (offset - PM_TMR));
        }
        read_bytes(offset, size, |o| {
            (self.register(o, now) >> (8 * (o & 1))) as u8
        })
    }

    fn write(&mut self, _base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        let a = write_bytes(offset, size, value, |o, v| self.write_byte(o, v, now));
        self.update_sci(now);
        a
    }
}

impl Timed for AcpiPm {
    /// Only an enabled timer interrupt needs the clock: the next change of the top bit.
    fn next_deadline(&self) -> Option<Nanos> {
        if self.en & pm1::TMR_STS == 0 {
            return None;
        }
        Nanos::at_tick((self.tmr_cleared_at + 1) << TMR_MSB, PM_TIMER_HZ)
    }

    fn advance(&mut self, now: Nanos) {
        self.update_sci(now);
    }
}

#[cfg(test)]
mod tests {
    //! Expectations from ACPI 6.5 section 4.8 (fixed hardware registers).

    use super::*;
    use crate::irq::IrqLines;

    fn pm() -> (AcpiPm, IrqLines) {
        let lines = IrqLines::new();
        (AcpiPm::new(lines.line(SCI_IRQ)), lines)
    }

    #[test]
    fn timer_counts_at_3_579545_mhz() {
        let (mut p, _) = pm();
        assert_eq!(p.read(BASE, PM_TMR, 4, Nanos::ZERO), 0);
        // One second is 3,579,545 ticks; 1 ms is 3579 whole ticks.
        assert_eq!(p.read(BASE, PM_TMR, 4, Nanos::from_secs(1)), 3_579_545);
        assert_eq!(p.read(BASE, PM_TMR, 4, Nanos::from_micros(1000)), 3579);
        // The counter wraps at 2^32 ticks (TMR_VAL_EXT), about 1200 s.
        let wrap = Nanos::at_tick(1 << 32, PM_TIMER_HZ).unwrap();
        assert_eq!(p.read(BASE, PM_TMR, 4, wrap), 0);
        // Monotonic between two reads a tick apart.
        let t = Nanos::at_tick(1000, PM_TIMER_HZ).unwrap();
        let a = p.read(BASE, PM_TMR, 4, t);
        let b = p.read(BASE, PM_TMR, 4, Nanos(t.0 + 280));
        assert_eq!(b, a + 1);
    }

    #[test]
    fn s5_sleep_enable_powers_off() {
        let (mut p, _) = pm();
        // SCI_EN reads 1: the platform is in ACPI mode without an SMI handshake.
        assert_eq!(
            p.read(BASE, PM1_CNT, 2, Nanos::ZERO) as u16 & cnt::SCI_EN,
            1
        );
        let typ = (SLP_TYP_S5 as u32) << cnt::SLP_TYP_SHIFT;
        // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN (4.8.3.2.1).
        assert_eq!(p.write(BASE, PM1_CNT, 2, typ, Nanos::ZERO), IoAccess::Done);
        assert_eq!(
            p.read(BASE, PM1_CNT, 2, Nanos::ZERO) as u16 & cnt::SLP_TYP,
            typ as u16
        );
        assert_eq!(
            p.write(BASE, PM1_CNT, 2, typ | cnt::SLP_EN as u32, Nanos::ZERO),
            IoAccess::PowerOff
        );
        // SLP_EN is write-only.
        assert_eq!(
            p.read(BASE, PM1_CNT, 2, Nanos::ZERO) as u16 & cnt::SLP_EN,
            0
        );
        // Another sleep type (S1 here) is not a power-off.
        assert_eq!(
            p.write(
                BASE,
                PM1_CNT,
                2,
                1 << cnt::SLP_TYP_SHIFT | cnt::SLP_EN as u32,
                Nanos::ZERO
            ),
            IoAccess::Done
        );
        // A byte write of the control block's high byte works as well.
        let high = (typ | cnt::SLP_EN as u32) >> 8;
        assert_eq!(
            p.write(BASE, PM1_CNT + 1, 1, high, Nanos::ZERO),
            IoAccess::PowerOff
        );
    }

    #[test]
    fn timer_status_sets_on_msb_change_and_clears_by_writing_one() {
        let (mut p, lines) = pm();
        let flip = Nanos::at_tick(1 << TMR_MSB, PM_TIMER_HZ).unwrap();
        assert_eq!(p.read(BASE, PM1_EVT, 2, Nanos(flip.0 - 1)), 0);
        assert_eq!(p.read(BASE, PM1_EVT, 2, flip) as u16, pm1::TMR_STS);
        // Enabling TMR_EN with TMR_STS set raises the SCI.
        assert_eq!(
            p.write(BASE, PM1_EVT + 2, 2, pm1::TMR_STS as u32, flip),
            IoAccess::Done
        );
        assert!(lines.level(SCI_IRQ));
        // Writing 0 leaves status alone; writing 1 clears it and lowers the SCI.
        p.write(BASE, PM1_EVT, 2, 0, flip);
        assert_eq!(p.read(BASE, PM1_EVT, 2, flip) as u16, pm1::TMR_STS);
        p.write(BASE, PM1_EVT, 2, pm1::TMR_STS as u32, flip);
        assert_eq!(p.read(BASE, PM1_EVT, 2, flip), 0);
        assert!(!lines.level(SCI_IRQ));
        // The next deadline is the next change of the top bit.
        let next = Nanos::at_tick(2 << TMR_MSB, PM_TIMER_HZ).unwrap();
        assert_eq!(p.next_deadline(), Some(next));
        p.advance(next);
        assert!(lines.level(SCI_IRQ));
    }

    #[test]
    fn enable_register_keeps_only_defined_bits() {
        let (mut p, lines) = pm();
        p.write(BASE, PM1_EVT + 2, 2, 0xFFFF, Nanos::ZERO);
        assert_eq!(
            p.read(BASE, PM1_EVT + 2, 2, Nanos::ZERO) as u16,
            pm1::EN_BITS
        );
        assert!(!lines.level(SCI_IRQ), "no status bit set, no SCI");
        assert!(p.next_deadline().is_some());
        p.write(BASE, PM1_EVT + 2, 2, 0, Nanos::ZERO);
        assert_eq!(p.next_deadline(), None);
    }
}
