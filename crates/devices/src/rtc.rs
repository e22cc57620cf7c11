//! Motorola MC146818A real-time clock and CMOS RAM at 0x70 (index, with the NMI mask in
//! bit 7) and 0x71 (data), interrupting on IRQ8.
//!
//! The clock runs on virtual time from the date the machine gives: a fixed one for
//! deterministic runs, the host's in realtime mode. The 32.768 kHz time base counts from
//! a second boundary (`epoch`); registers, flags and the update-in-progress bit are
//! brought up to date lazily at each access and at `Timed::advance`. The time registers
//! are kept as written fields, as the chip keeps them, so a guest may set them one at a
//! time (with SET) through dates that do not exist yet; each update carries them
//! forward as a calendar would.

use crate::bus::{Device, IoAccess};
use crate::clock::{Nanos, Timed, NANOS_PER_SEC};
use crate::irq::IrqLine;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const PORT: u16 = 0x70;
pub const PORTS: u16 = 2;
const INDEX: u16 = 0;
const DATA: u16 = 1;
/// Port 0x70 bit 7: NMI disabled.
const NMI_DISABLE: u8 = 0x80;
const INDEX_MASK: u8 = 0x7F;

/// Register indices (MC146818A datasheet, "Address Map").
const SECONDS: u8 = 0x00;
const SECONDS_ALARM: u8 = 0x01;
const MINUTES: u8 = 0x02;
const MINUTES_ALARM: u8 = 0x03;
const HOURS: u8 = 0x04;
const HOURS_ALARM: u8 = 0x05;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const REG_C: u8 = 0x0C;
const REG_D: u8 = 0x0D;
/// The IBM PC's century byte in CMOS RAM.
const CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
const A_DV: u8 = 0x70;
/// DV = 010: a 32.768 kHz time base, divider running.
const A_DV_RUNNING: u8 = 0x20;
const A_RS: u8 = 0x0F;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
/// PIE, AIE, UIE sit at the same bits as PF, AF, UF in register C.
const B_INTERRUPT_ENABLES: u8 = B_PIE | B_AIE | B_UIE;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;
/// Alarm bytes with both high bits set match any value.
const ALARM_ANY: u8 = 0xC0;
const HOUR_PM: u8 = 0x80;

/// QEMU's power-on register A (DV running, 1024 Hz periodic rate) and B (24-hour BCD).
const RESET_A: u8 = 0x26;
const RESET_B: u8 = B_24H;

/// CMOS bytes firmware reads for the memory size (as QEMU's pc_cmos_init sets them).
const BASE_MEMORY: u8 = 0x15;
const EXTENDED_MEMORY: u8 = 0x17;
const EXTENDED_MEMORY_2: u8 = 0x30;
const MEMORY_ABOVE_16M: u8 = 0x34;
const MEMORY_ABOVE_4G: u8 = 0x5B;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

const TIME_BASE_HZ: u64 = 32_768;
/// Periodic interrupt period in time-base cycles, by rate select RS3–RS0 (datasheet
/// "Periodic Interrupt Rate" table: 0 none, 1 = 3.90625 ms, ..., 6 = 976.5625 µs, 15 = 500 ms).
const PERIODIC_CYCLES: [u64; 16] = [
    0, 128, 256, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
];
/// UIP rises 244 µs before an update and the update takes 1984 µs: 73 cycles.
const UIP_CYCLES: u64 = 73;
const SECONDS_PER_DAY: i64 = 86_400;

/// A civil date and time, proleptic Gregorian, as the RTC's registers hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// Seconds since 1970-01-01 00:00:00 (which the machine gets from the host clock in
    /// realtime mode), clamped to the years 0–9999 the registers can show.
    pub fn from_unix(secs: i64) -> DateTime {
        let secs = secs.clamp(MIN_UNIX, MAX_UNIX);
        let (y, m, d) = civil_from_days(secs.div_euclid(SECONDS_PER_DAY));
        let s = secs.rem_euclid(SECONDS_PER_DAY);
        DateTime {
            year: y as u16,
            month: m,
            day: d,
            hour: (s / 3600) as u8,
            minute: (s / 60 % 60) as u8,
            second: (s % 60) as u8,
        }
    }

    /// Fields out of range count on, as a calendar would (the 32nd of January is the
    /// 1st of February).
    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year as i64, self.month.clamp(1, 12), self.day as i64)
            * SECONDS_PER_DAY
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64
    }

    /// 1 = Sunday, as the day-of-week register counts.
    pub fn weekday(&self) -> u8 {
        ((self.to_unix().div_euclid(SECONDS_PER_DAY) + 4).rem_euclid(7) + 1) as u8
    }
}

const MIN_UNIX: i64 = -62_167_219_200; // 0000-01-01
const MAX_UNIX: i64 = 253_402_300_799; // 9999-12-31 23:59:59

/// Howard Hinnant's days_from_civil: days since 1970-01-01.
fn days_from_civil(y: i64, m: u8, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What the machine tells the RTC at power-on.
#[derive(Clone, Copy, Debug)]
pub struct RtcConfig {
    pub start: DateTime,
    /// RAM below 4 GiB and above it, in bytes, for the CMOS memory-size bytes.
    pub below_4g: u64,
    pub above_4g: u64,
}

pub struct Rtc {
    index: u8,
    nmi_disabled: bool,
    /// RAM, and the storage of the alarm bytes and registers A and B.
    cmos: [u8; 128],
    time: DateTime,
    weekday: u8,
    /// The latched flags of register C (PF, AF, UF).
    flags: u8,
    /// The time base's cycle 0, a second boundary, in ns (may precede time zero).
    epoch: i128,
    /// Time-base cycles since `epoch` the device has run to.
    synced: u64,
    irq: IrqLine,
}

impl Rtc {
    pub fn new(config: RtcConfig, irq: IrqLine) -> Self {
        let mut cmos = [0u8; 128];
        cmos[REG_A as usize] = RESET_A;
        cmos[REG_B as usize] = RESET_B;
        let mut put = |at: u8, value: u64, bytes: usize| {
            for i in 0..bytes {
                cmos[at as usize + i] = (value >> (8 * i)) as u8;
            }
        };
        let low = config.below_4g;
        put(BASE_MEMORY, (low / KIB).min(640), 2);
        let extended = (low.saturating_sub(MIB) / KIB).min(0xFFFF);
        put(EXTENDED_MEMORY, extended, 2);
        put(EXTENDED_MEMORY_2, extended, 2);
        put(
            MEMORY_ABOVE_16M,
            (low.saturating_sub(16 * MIB) / (64 * KIB)).min(0xFFFF),
            2,
        );
        put(
            MEMORY_ABOVE_4G,
            (config.above_4g / (64 * KIB)).min(0xFF_FFFF),
            3,
        );
        Rtc {
            index: 0,
            nmi_disabled: false,
            cmos,
            time: config.start,
            weekday: config.start.weekday(),
            flags: 0,
            epoch: 0,
            synced: 0,
            irq,
        }
    }

    /// Port 0x70 bit 7, as last written: the machine must not deliver NMIs while set.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// Set a CMOS RAM byte the firmware reads (equipment, boot order, CPU count).
    /// Indices of clock registers are left alone.
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        if (REG_D + 1..0x80).contains(&index) && index != CENTURY {
            self.cmos[index as usize] = value;
        }
    }

    fn reg(&self, r: u8) -> u8 {
        self.cmos[r as usize]
    }

    fn divider_running(&self) -> bool {
        self.reg(REG_A) & A_DV == A_DV_RUNNING
    }

    fn updating(&self) -> bool {
        self.divider_running() && self.reg(REG_B) & B_SET == 0
    }

    fn cycles(&self, now: Nanos) -> u64 {
        let ns = (now.0 as i128 - self.epoch).max(0);
        (ns * TIME_BASE_HZ as i128 / NANOS_PER_SEC as i128) as u64
    }

    fn cycle_time(&self, cycle: u64) -> Nanos {
        let ns = self.epoch
            + (cycle as u128 * NANOS_PER_SEC as u128).div_ceil(TIME_BASE_HZ as u128) as i128;
        Nanos(ns.clamp(0, u64::MAX as i128) as u64)
    }

    /// Bring the clock and the flags up to `now`.
    fn sync(&mut self, now: Nanos) {
        if !self.divider_running() {
            return;
        }
        let (old, new) = (self.synced, self.cycles(now));
        if new <= old {
            return;
        }
        let period = PERIODIC_CYCLES[(self.reg(REG_A) & A_RS) as usize];
        if period != 0 && new / period > old / period {
            self.flags |= C_PF;
        }
        let seconds = new / TIME_BASE_HZ - old / TIME_BASE_HZ;
        if seconds > 0 && self.updating() {
            let from = self.time.to_unix();
            // An alarm repeats at most daily: a day of updates covers every match.
            let first = seconds.saturating_sub(SECONDS_PER_DAY as u64 - 1).max(1);
            if (first..=seconds).any(|k| self.alarm_matches(from + k as i64)) {
                self.flags |= C_AF;
            }
            self.step(seconds as i64);
            self.flags |= C_UF;
        }
        self.synced = new;
        self.update_irq();
    }

    /// Carry the time registers `n` seconds forward.
    fn step(&mut self, n: i64) {
        let from = self.time.to_unix();
        let to = from.saturating_add(n).clamp(MIN_UNIX, MAX_UNIX);
        let days = to.div_euclid(SECONDS_PER_DAY) - from.div_euclid(SECONDS_PER_DAY);
        self.weekday = ((self.weekday as i64 - 1 + days).rem_euclid(7) + 1) as u8;
        self.time = DateTime::from_unix(to);
    }

    fn alarm_matches(&self, unix: i64) -> bool {
        let t = DateTime::from_unix(unix);
        [
            (SECONDS_ALARM, self.encode(t.second)),
            (MINUTES_ALARM, self.encode(t.minute)),
            (HOURS_ALARM, self.encode_hour(t.hour)),
        ]
        .iter()
        .all(|&(alarm, now)| self.reg(alarm) & ALARM_ANY == ALARM_ANY || self.reg(alarm) == now)
    }

    /// IRQF: a flag is up together with its enable. IRQ8 follows it.
    fn irqf(&self) -> bool {
        self.flags & self.reg(REG_B) & B_INTERRUPT_ENABLES != 0
    }

    fn update_irq(&mut self) {
        self.irq.set(self.irqf());
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            (v >> 4).saturating_mul(10).saturating_add(v & 0xF)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.encode(h);
        }
        let h12 = match h % 12 {
            0 => 12,
            h12 => h12,
        };
        self.encode(h12) | if h >= 12 { HOUR_PM } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.decode(v);
        }
        let pm = if v & HOUR_PM != 0 { 12 } else { 0 };
        self.decode(v & !HOUR_PM) % 12 + pm
    }

    fn read_register(&mut self, r: u8) -> u8 {
        let t = self.time;
        match r {
            SECONDS => self.encode(t.second),
            MINUTES => self.encode(t.minute),
            HOURS => self.encode_hour(t.hour),
            DAY_OF_WEEK => self.encode(self.weekday),
            DAY_OF_MONTH => self.encode(t.day),
            MONTH => self.encode(t.month),
            YEAR => self.encode((t.year % 100) as u8),
            CENTURY => self.encode((t.year / 100) as u8),
            REG_A => {
                let uip =
                    self.updating() && self.synced % TIME_BASE_HZ >= TIME_BASE_HZ - UIP_CYCLES;
                self.reg(REG_A) | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                let irqf = if self.irqf() { C_IRQF } else { 0 };
                let c = self.flags | irqf;
                self.flags = 0;
                self.update_irq();
                c
            }
            REG_D => D_VRT,
            _ => self.reg(r),
        }
    }

    fn write_register(&mut self, r: u8, v: u8, now: Nanos) {
        let d = self.decode(v);
        let hour = self.decode_hour(v);
        let t = &mut self.time;
        match r {
            SECONDS => t.second = d.min(59),
            MINUTES => t.minute = d.min(59),
            HOURS => t.hour = hour.min(23),
            DAY_OF_WEEK => self.weekday = d.clamp(1, 7),
            DAY_OF_MONTH => t.day = d.clamp(1, 31),
            MONTH => t.month = d.clamp(1, 12),
            YEAR => t.year = t.year / 100 * 100 + d.min(99) as u16,
            CENTURY => t.year = d.min(99) as u16 * 100 + t.year % 100,
            REG_A => {
                let was_running = self.divider_running();
                self.cmos[REG_A as usize] = v & !A_UIP;
                if self.divider_running() && !was_running {
                    // Out of divider reset, the first update comes half a second later.
                    self.epoch = now.0 as i128 - (NANOS_PER_SEC / 2) as i128;
                    self.synced = self.cycles(now);
                }
            }
            REG_B => {
                // SET stops updates and clears UIE.
                let v = if v & B_SET != 0 { v & !B_UIE } else { v };
                self.cmos[REG_B as usize] = v;
                self.update_irq();
            }
            REG_C | REG_D => {}
            _ => self.cmos[r as usize] = v,
        }
    }
}

impl Timed for Rtc {
    /// The next periodic tick or update whose interrupt is enabled, while IRQ8 is low
    /// (once it is high, only a read of register C lowers it).
    fn next_deadline(&self) -> Option<Nanos> {
        if self.irqf() || !self.divider_running() {
            return None;
        }
        let b = self.reg(REG_B);
        let period = PERIODIC_CYCLES[(self.reg(REG_A) & A_RS) as usize];
        let periodic = (b & B_PIE != 0 && period != 0).then(|| (self.synced / period + 1) * period);
        let update = (b & (B_AIE | B_UIE) != 0 && self.updating())
            .then(|| (self.synced / TIME_BASE_HZ + 1) * TIME_BASE_HZ);
        let cycle = match (periodic, update) {
            (Some(p), Some(u)) => p.min(u),
            (p, u) => p.or(u)?,
        };
        Some(self.cycle_time(cycle))
    }

    fn advance(&mut self, now: Nanos) {
        self.sync(now);
    }
}

impl Device for Rtc {
    fn name(&self) -> &'static str {
        "rtc"
    }
}

impl PortDevice for Rtc {
    fn read(&mut self, _base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        self.sync(now);
        read_bytes(offset, size, |o| match o {
            DATA => self.read_register(self.index),
            // The index register is write-only.
            _ => 0xFF,
        })
    }

    fn write(&mut self, _base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        self.sync(now);
        write_bytes(offset, size, value, |o, v| {
            match o {
                INDEX => {
                    self.index = v & INDEX_MASK;
                    self.nmi_disabled = v & NMI_DISABLE != 0;
                }
                DATA => self.write_register(self.index, v, now),
                _ => {}
            }
            IoAccess::Done
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLines;

    const DATE: DateTime = DateTime {
        year: 2024,
        month: 2,
        day: 29,
        hour: 23,
        minute: 59,
        second: 58,
    };

    fn rtc(below_4g: u64, above_4g: u64) -> (Rtc, IrqLines) {
        let lines = IrqLines::new();
        let config = RtcConfig {
            start: DATE,
            below_4g,
            above_4g,
        };
        (Rtc::new(config, lines.line(8)), lines)
    }

    fn read(r: &mut Rtc, reg: u8, now: Nanos) -> u8 {
        r.write(PORT, INDEX, 1, reg as u32, now);
        r.read(PORT, DATA, 1, now) as u8
    }

    fn write(r: &mut Rtc, reg: u8, v: u8, now: Nanos) {
        r.write(PORT, INDEX, 1, reg as u32, now);
        r.write(PORT, DATA, 1, v as u32, now);
    }

    fn ms(n: u64) -> Nanos {
        Nanos(n * 1_000_000)
    }

    #[test]
    fn calendar_conversions() {
        assert_eq!(
            DateTime::from_unix(0).weekday(),
            5,
            "1970-01-01 was a Thursday"
        );
        assert_eq!(DATE.weekday(), 5, "2024-02-29 was a Thursday");
        assert_eq!(DateTime::from_unix(DATE.to_unix()), DATE);
        assert_eq!(
            DateTime::from_unix(951_782_400).day,
            29,
            "2000 was a leap year"
        );
        let jan32 = DateTime {
            month: 1,
            day: 32,
            ..DATE
        };
        assert_eq!(DateTime::from_unix(jan32.to_unix()).month, 2);
        assert_eq!(DateTime::from_unix(i64::MAX).year, 9999);
        assert_eq!(DateTime::from_unix(i64::MIN).year, 0);
    }

    #[test]
    fn time_reads_in_bcd_and_rolls_over_midnight_and_leap_day() {
        let (mut r, _) = rtc(0, 0);
        assert_eq!(read(&mut r, SECONDS, Nanos::ZERO), 0x58);
        assert_eq!(read(&mut r, HOURS, Nanos::ZERO), 0x23);
        assert_eq!(read(&mut r, DAY_OF_WEEK, Nanos::ZERO), 5);
        assert_eq!(read(&mut r, CENTURY, Nanos::ZERO), 0x20);
        let t = Nanos::from_secs(2);
        assert_eq!(
            [
                SECONDS,
                MINUTES,
                HOURS,
                DAY_OF_WEEK,
                DAY_OF_MONTH,
                MONTH,
                YEAR
            ]
            .map(|reg| read(&mut r, reg, t)),
            [0x00, 0x00, 0x00, 6, 0x01, 0x03, 0x24]
        );
        assert_eq!(read(&mut r, REG_D, t), D_VRT);
    }

    #[test]
    fn binary_and_12_hour_formats() {
        let (mut r, _) = rtc(0, 0);
        write(&mut r, REG_B, B_BINARY, Nanos::ZERO);
        assert_eq!(read(&mut r, HOURS, Nanos::ZERO), 11 | HOUR_PM);
        assert_eq!(read(&mut r, SECONDS, Nanos::ZERO), 58);
        write(&mut r, HOURS, 12, Nanos::ZERO); // 12 AM is midnight
        assert_eq!(r.time.hour, 0);
        write(&mut r, REG_B, B_24H, Nanos::ZERO);
        assert_eq!(read(&mut r, HOURS, Nanos::ZERO), 0x00);
        write(&mut r, REG_B, 0, Nanos::ZERO);
        write(&mut r, HOURS, 0x12 | HOUR_PM, Nanos::ZERO); // 12 PM is noon
        assert_eq!(r.time.hour, 12);
    }

    #[test]
    fn set_bit_freezes_the_clock_while_fields_are_written() {
        let (mut r, _) = rtc(0, 0);
        write(&mut r, REG_B, B_SET | B_24H | B_UIE, Nanos::ZERO);
        assert_eq!(
            read(&mut r, REG_B, Nanos::ZERO) & B_UIE,
            0,
            "SET clears UIE"
        );
        // Through a date that does not exist yet: the 31st, still in February.
        for (reg, v) in [
            (DAY_OF_MONTH, 0x31),
            (MONTH, 0x12),
            (YEAR, 0x99),
            (CENTURY, 0x19),
            (HOURS, 0x23),
            (MINUTES, 0x59),
            (SECONDS, 0x59),
        ] {
            write(&mut r, reg, v, Nanos::ZERO);
        }
        assert_eq!(
            read(&mut r, SECONDS, Nanos::from_secs(5)),
            0x59,
            "no updates while SET"
        );
        write(&mut r, REG_B, B_24H, Nanos::from_secs(5));
        let t = Nanos::from_secs(6);
        assert_eq!(
            [YEAR, CENTURY, MONTH, DAY_OF_MONTH].map(|reg| read(&mut r, reg, t)),
            [0x00, 0x20, 0x01, 0x01]
        );
    }

    #[test]
    fn update_in_progress_precedes_each_update() {
        let (mut r, _) = rtc(0, 0);
        assert_eq!(read(&mut r, REG_A, ms(500)), RESET_A);
        assert_eq!(read(&mut r, REG_A, ms(998)) & A_UIP, A_UIP);
        assert_eq!(
            read(&mut r, SECONDS, ms(998)),
            0x58,
            "the old second until the update"
        );
        assert_eq!(read(&mut r, REG_A, ms(1000)) & A_UIP, 0);
        assert_eq!(read(&mut r, SECONDS, ms(1000)), 0x59);
    }

    #[test]
    fn periodic_interrupt_at_1024_hz_and_register_c_clears() {
        let (mut r, lines) = rtc(0, 0);
        assert_eq!(r.next_deadline(), None, "no interrupt enabled");
        write(&mut r, REG_B, B_24H | B_PIE, Nanos::ZERO);
        let first = r.next_deadline().unwrap();
        assert_eq!(first, Nanos(976_563), "rate 6: 976.5625 µs");
        r.advance(first);
        assert!(lines.level(8));
        assert_eq!(
            r.next_deadline(),
            None,
            "IRQ8 stays high until register C is read"
        );
        assert_eq!(read(&mut r, REG_C, first), C_IRQF | C_PF);
        assert!(!lines.level(8));
        assert_eq!(read(&mut r, REG_C, first), 0);
        // Rate 15: 2 Hz.
        write(&mut r, REG_A, A_DV_RUNNING | 15, first);
        assert_eq!(r.next_deadline(), Some(ms(500)));
    }

    #[test]
    fn flags_latch_without_their_enables() {
        let (mut r, lines) = rtc(0, 0);
        // The alarm bytes power on as 0, which matches midnight.
        assert_eq!(read(&mut r, REG_C, Nanos::from_secs(3)), C_PF | C_AF | C_UF);
        assert!(!lines.level(8));
        // Enabling an interrupt whose flag is already set raises IRQ8 at once.
        r.advance(Nanos::from_secs(4));
        write(&mut r, REG_B, B_24H | B_UIE, Nanos::from_secs(4));
        assert!(lines.level(8));
    }

    #[test]
    fn alarm_and_update_ended_interrupts() {
        let (mut r, lines) = rtc(0, 0);
        // Alarm at 00:00:01 (hour "don't care").
        write(&mut r, SECONDS_ALARM, 0x01, Nanos::ZERO);
        write(&mut r, MINUTES_ALARM, 0x00, Nanos::ZERO);
        write(&mut r, HOURS_ALARM, 0xFF, Nanos::ZERO);
        write(&mut r, REG_B, B_24H | B_AIE, Nanos::ZERO);
        let mut now = Nanos::ZERO;
        while !lines.level(8) {
            now = r.next_deadline().unwrap();
            r.advance(now);
        }
        assert_eq!(now, Nanos::from_secs(3));
        assert_eq!(read(&mut r, REG_C, now) & (C_IRQF | C_AF), C_IRQF | C_AF);
        write(&mut r, REG_B, B_24H | B_UIE, now);
        assert_eq!(r.next_deadline(), Some(Nanos::from_secs(4)));
    }

    #[test]
    fn divider_reset_holds_the_clock() {
        let (mut r, _) = rtc(0, 0);
        write(&mut r, REG_A, 0x70, ms(100));
        assert_eq!(read(&mut r, SECONDS, Nanos::from_secs(10)), 0x58);
        write(&mut r, REG_A, RESET_A, Nanos::from_secs(10));
        assert_eq!(read(&mut r, SECONDS, ms(10_499)), 0x58);
        assert_eq!(
            read(&mut r, SECONDS, ms(10_500)),
            0x59,
            "first update half a second later"
        );
    }

    #[test]
    fn nmi_mask_and_cmos_ram() {
        let (mut r, _) = rtc(0, 0);
        r.write(PORT, INDEX, 1, 0x80 | 0x40, Nanos::ZERO);
        assert!(r.nmi_disabled());
        r.write(PORT, DATA, 1, 0xAB, Nanos::ZERO);
        assert_eq!(read(&mut r, 0x40, Nanos::ZERO), 0xAB);
        assert!(!r.nmi_disabled());
        assert_eq!(r.read(PORT, INDEX, 1, Nanos::ZERO), 0xFF);
        r.set_cmos(0x5F, 3);
        r.set_cmos(REG_B, 0xFF);
        assert_eq!(read(&mut r, 0x5F, Nanos::ZERO), 3);
        assert_eq!(read(&mut r, REG_B, Nanos::ZERO), RESET_B);
    }

    #[test]
    fn memory_size_bytes() {
        let (mut r, _) = rtc(3 * 1024 * MIB, 2 * 1024 * MIB);
        let word = |r: &mut Rtc, at: u8| {
            read(r, at, Nanos::ZERO) as u32 | (read(r, at + 1, Nanos::ZERO) as u32) << 8
        };
        assert_eq!(word(&mut r, BASE_MEMORY), 640);
        assert_eq!(word(&mut r, EXTENDED_MEMORY), 0xFFFF);
        assert_eq!(word(&mut r, EXTENDED_MEMORY_2), 0xFFFF);
        assert_eq!(
            word(&mut r, MEMORY_ABOVE_16M),
            ((3 * 1024 - 16) * 16) as u32
        );
        let above = word(&mut r, MEMORY_ABOVE_4G)
            | (read(&mut r, MEMORY_ABOVE_4G + 2, Nanos::ZERO) as u32) << 16;
        assert_eq!(above, 2 * 1024 * 16);
        let (mut small, _) = rtc(32 * MIB, 0);
        assert_eq!(word(&mut small, EXTENDED_MEMORY), 31 * 1024);
        assert_eq!(word(&mut small, MEMORY_ABOVE_16M), 16 * 16);
    }

    #[test]
    fn garbage_writes_never_panic() {
        let (mut r, _) = rtc(0, 0);
        for reg in 0..0x80u8 {
            write(&mut r, reg, 0xFF, Nanos::ZERO);
        }
        write(&mut r, REG_A, RESET_A, Nanos::ZERO);
        write(&mut r, REG_B, 0x7F, Nanos::ZERO);
        r.advance(Nanos::from_secs(1_000_000_000));
        r.next_deadline();
        for reg in 0..0x80u8 {
            read(&mut r, reg, Nanos::from_secs(1_000_000_001));
        }
        r.write(PORT, INDEX, 4, u32::MAX, Nanos::MAX);
        r.read(PORT, INDEX, 4, Nanos::MAX);
    }
}
