//! Intel 8254 programmable interval timer at 0x40–0x43, clocked at 1.193182 MHz, with
//! the PC's wiring: channel 0's OUT is IRQ0, channel 1 (DRAM refresh) is unconnected,
//! channel 2's GATE is bit 0 of system control port B (0x61) and its OUT reads back as
//! bit 5 there, next to the refresh toggle (bit 4).
//!
//! Nothing counts in the background. Each channel remembers the tick its counting
//! element (CE) was loaded and with what; the CE and OUT at any later tick follow from
//! the mode's rule. A count written while modes 2 and 3 run waits, as the datasheet
//! says, for the end of the current cycle (or half-cycle).
//!
//! Like the datasheet, a count reaches the CE on the CLK pulse after it is written (or
//! after the gate trigger in modes 1 and 5). Like QEMU, every channel powers on in
//! mode 3 with count 0 (65536), so channel 0 ticks at 18.2 Hz before any firmware runs.

use crate::bus::{Device, IoAccess};
use crate::clock::{Nanos, Timed};
use crate::irq::IrqLine;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const PIT_HZ: u64 = 1_193_182;
pub const BASE: u16 = 0x40;
pub const PORTS: u16 = 4;
/// System control port B.
pub const PORT_B: u16 = 0x61;

const CONTROL_WORD: u16 = 3;
/// Control word fields (8254 datasheet, "Control Word Format").
const SC_SHIFT: u8 = 6;
const SC_READ_BACK: u8 = 3;
const RW_SHIFT: u8 = 4;
const RW_LATCH: u8 = 0;
const M_SHIFT: u8 = 1;
const BCD: u8 = 1 << 0;
/// Read-back command: bits 5 and 4 are active low; bits 3..1 select counters 2..0.
const RB_COUNT_N: u8 = 1 << 5;
const RB_STATUS_N: u8 = 1 << 4;
/// Status byte: OUT, NULL COUNT, then the programmed RW/M/BCD bits.
const STATUS_OUT: u8 = 1 << 7;
const STATUS_NULL_COUNT: u8 = 1 << 6;
const STATUS_PROGRAMMED: u8 = 0x3F;

/// Port B: bits 3..0 are read/write (GATE2, speaker data, parity and channel check
/// enables); bit 4 toggles with every DRAM refresh request (15.085 µs); bit 5 is OUT2.
const B_GATE2: u8 = 1 << 0;
const B_WRITABLE: u8 = 0x0F;
const B_REFRESH: u8 = 1 << 4;
const B_OUT2: u8 = 1 << 5;
const REFRESH_NS: u64 = 15_085;

/// Power-on programming: LSB then MSB, mode 3, binary.
const RESET_CONTROL: u8 = 0x36;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rw {
    Lsb,
    Msb,
    Word,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// Not counting: the CE holds `ce`, OUT is `out`; `armed` carries a one-shot's
    /// pending terminal count across a pause of the gate (modes 0 and 4).
    Stopped { ce: u32, out: bool, armed: bool },
    /// The CE was loaded with `initial` at tick `start`; before then OUT is
    /// `out_before`. `armed`: the one-shot event of modes 0, 1, 4, 5 is still ahead.
    Counting {
        start: u64,
        initial: u32,
        armed: bool,
        out_before: bool,
    },
}

/// A count written during modes 2 and 3, loaded at tick `at` as a cycle that
/// (virtually) began at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    at: u64,
    start: u64,
}

#[derive(Clone, Debug)]
struct Channel {
    /// RW, M and BCD bits as programmed, for the status byte.
    control: u8,
    rw: Rw,
    mode: u8,
    bcd: bool,
    gate: bool,
    /// The count register in binary, 1..=modulus (a written 0 is the modulus).
    count: u32,
    has_count: bool,
    /// A word write's LSB, waiting for its MSB.
    lsb: Option<u8>,
    /// A word read's next byte is the MSB.
    read_msb: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    /// NULL COUNT holds until the written count reaches the CE at this tick.
    null_until: u64,
    run: Run,
    pending: Option<Pending>,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        let mut c = Channel {
            control: 0,
            rw: Rw::Word,
            mode: 0,
            bcd: false,
            gate,
            count: 0,
            has_count: false,
            lsb: None,
            read_msb: false,
            latched_count: None,
            latched_status: None,
            null_until: 0,
            run: Run::Stopped {
                ce: 0,
                out: true,
                armed: false,
            },
            pending: None,
        };
        c.program(RESET_CONTROL, 0);
        c.count = c.modulus();
        c.has_count = true;
        if gate {
            c.run = Run::Counting {
                start: 0,
                initial: c.count,
                armed: false,
                out_before: true,
            };
        }
        c
    }

    fn modulus(&self) -> u32 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// Apply a pending reload that is due by tick `t`.
    fn sync(&mut self, t: u64) {
        if let Some(p) = self.pending.filter(|p| p.at <= t) {
            self.pending = None;
            self.run = Run::Counting {
                start: p.start,
                initial: self.count,
                armed: false,
                out_before: true,
            };
        }
    }

    /// (CE, OUT) at tick `t`, for `t` not before the last sync.
    fn state(&self, t: u64) -> (u32, bool) {
        let (start, n, armed, out_before) = match self.run {
            Run::Stopped { ce, out, .. } => return (ce, out),
            Run::Counting {
                start,
                initial,
                armed,
                out_before,
            } => (start, initial.max(1), armed, out_before),
        };
        if t < start {
            return (n, out_before);
        }
        let d = t - start;
        let m = self.modulus() as u64;
        let down = ((n as u64 + m - d % m) % m) as u32;
        match self.mode {
            0 | 1 => (down, !armed || d >= n as u64),
            2 => {
                let r = d % n as u64;
                (n - r as u32, r != n as u64 - 1)
            }
            3 => {
                let r = d % n as u64;
                (n - ((2 * r) % n as u64) as u32, r < (n as u64).div_ceil(2))
            }
            _ => (down, !(armed && d == n as u64)),
        }
    }

    fn out(&self, t: u64) -> bool {
        self.state(t).1
    }

    /// The first tick after `t` at which OUT changes or a pending count loads.
    fn next_event(&self, t: u64) -> Option<u64> {
        let change = match self.run {
            Run::Stopped { .. } => None,
            Run::Counting {
                start, out_before, ..
            } if t < start => {
                if self.out(start) != out_before {
                    Some(start)
                } else {
                    self.next_change(start)
                }
            }
            Run::Counting { .. } => self.next_change(t),
        };
        match (change, self.pending) {
            (Some(c), Some(p)) => Some(c.min(p.at)),
            (c, p) => c.or(p.map(|p| p.at)),
        }
    }

    /// The first tick after `t` (not before the CE load) at which OUT changes.
    fn next_change(&self, t: u64) -> Option<u64> {
        let Run::Counting {
            start,
            initial,
            armed,
            ..
        } = self.run
        else {
            return None;
        };
        let (d, n) = (t - start, initial.max(1) as u64);
        match self.mode {
            0 | 1 => (armed && d < n).then_some(start + n),
            2 if n > 1 => {
                let r = d % n;
                Some(if r < n - 1 { t + (n - 1 - r) } else { t + 1 })
            }
            3 if n > 1 => {
                let (r, high) = (d % n, n.div_ceil(2));
                Some(if r < high {
                    t + (high - r)
                } else {
                    t + (n - r)
                })
            }
            4 | 5 if armed && d < n => Some(start + n),
            4 | 5 if armed && d == n => Some(t + 1),
            _ => None,
        }
    }

    /// A control word: new mode, counting stops until a count is written; OUT goes
    /// low in mode 0 and high in the others.
    fn program(&mut self, control: u8, t: u64) {
        let (ce, _) = self.state(t);
        self.control = control & STATUS_PROGRAMMED;
        self.rw = match (control >> RW_SHIFT) & 3 {
            1 => Rw::Lsb,
            2 => Rw::Msb,
            _ => Rw::Word,
        };
        let mode = (control >> M_SHIFT) & 7;
        self.mode = if mode > 5 { mode - 4 } else { mode };
        self.bcd = control & BCD != 0;
        self.has_count = false;
        self.lsb = None;
        self.read_msb = false;
        self.latched_count = None;
        self.latched_status = None;
        self.null_until = u64::MAX;
        self.pending = None;
        self.run = Run::Stopped {
            ce,
            out: self.mode != 0,
            armed: false,
        };
    }

    fn write_count(&mut self, byte: u8, t: u64) {
        let value = match (self.rw, self.lsb.take()) {
            (Rw::Lsb, _) => byte as u16,
            (Rw::Msb, _) => (byte as u16) << 8,
            (Rw::Word, Some(lsb)) => (byte as u16) << 8 | lsb as u16,
            (Rw::Word, None) => {
                self.lsb = Some(byte);
                if self.mode == 0 {
                    // Writing the first byte stops counting and sets OUT low at once.
                    let (ce, _) = self.state(t);
                    self.run = Run::Stopped {
                        ce,
                        out: false,
                        armed: true,
                    };
                }
                return;
            }
        };
        self.load(value, t);
    }

    fn load(&mut self, value: u16, t: u64) {
        let m = self.modulus();
        let count = if self.bcd {
            from_bcd(value)
        } else {
            value as u32
        };
        self.count = if count == 0 { m } else { count.min(m) };
        self.has_count = true;
        let running = matches!(self.run, Run::Counting { .. });
        match self.mode {
            0 | 4 => {
                self.null_until = t + 1;
                let out = self.mode == 4 && self.out(t);
                self.run = if self.gate {
                    Run::Counting {
                        start: t + 1,
                        initial: self.count,
                        armed: true,
                        out_before: out,
                    }
                } else {
                    Run::Stopped {
                        ce: self.count,
                        out,
                        armed: true,
                    }
                };
            }
            // The one-shots wait for a gate trigger.
            1 | 5 => self.null_until = u64::MAX,
            _ if running => {
                let Run::Counting { start, initial, .. } = self.run else {
                    return;
                };
                let (d, n) = (t.saturating_sub(start), initial.max(1) as u64);
                let r = d % n;
                let high = n.div_ceil(2);
                let pending = if self.mode == 3 && r < high {
                    // Loaded at the end of the high half: the new cycle enters its low half.
                    let at = t + (high - r);
                    Pending {
                        at,
                        start: at.saturating_sub(self.count.div_ceil(2) as u64),
                    }
                } else {
                    let at = t + (n - r);
                    Pending { at, start: at }
                };
                self.null_until = pending.at;
                self.pending = Some(pending);
            }
            _ if self.gate => {
                self.null_until = t + 1;
                self.run = Run::Counting {
                    start: t + 1,
                    initial: self.count,
                    armed: false,
                    out_before: true,
                };
            }
            _ => self.null_until = u64::MAX,
        }
    }

    fn set_gate(&mut self, gate: bool, t: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        let (ce, out) = self.state(t);
        match (self.mode, gate, self.run) {
            (
                0 | 4,
                false,
                Run::Counting {
                    start,
                    initial,
                    armed,
                    ..
                },
            ) => {
                let ahead = t < start || (t - start) < initial as u64;
                self.run = Run::Stopped {
                    ce,
                    out,
                    armed: armed && ahead,
                };
            }
            (0 | 4, true, Run::Stopped { ce, out, armed }) if self.has_count => {
                self.run = Run::Counting {
                    start: t + 1,
                    initial: ce,
                    armed,
                    out_before: out,
                };
            }
            (1 | 5, true, _) if self.has_count => {
                self.null_until = self.null_until.min(t + 1);
                self.run = Run::Counting {
                    start: t + 1,
                    initial: self.count,
                    armed: true,
                    out_before: out,
                };
            }
            (2 | 3, false, _) => {
                // Gate low forces OUT high at once and stops the count.
                self.pending = None;
                self.run = Run::Stopped {
                    ce,
                    out: true,
                    armed: false,
                };
            }
            (2 | 3, true, _) if self.has_count => {
                self.null_until = self.null_until.min(t + 1);
                self.run = Run::Counting {
                    start: t + 1,
                    initial: self.count,
                    armed: false,
                    out_before: true,
                };
            }
            _ => {}
        }
    }

    fn latch_count(&mut self, t: u64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.register(self.state(t).0));
        }
    }

    fn latch_status(&mut self, t: u64) {
        if self.latched_status.is_none() {
            let out = if self.out(t) { STATUS_OUT } else { 0 };
            let null = if t < self.null_until {
                STATUS_NULL_COUNT
            } else {
                0
            };
            self.latched_status = Some(out | null | self.control);
        }
    }

    /// The CE as the count register format shows it.
    fn register(&self, ce: u32) -> u16 {
        if self.bcd {
            to_bcd(ce % 10_000)
        } else {
            ce as u16
        }
    }

    fn read(&mut self, t: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let latched = self.latched_count;
        let value = latched.unwrap_or_else(|| self.register(self.state(t).0));
        let msb = match self.rw {
            Rw::Lsb => false,
            Rw::Msb => true,
            Rw::Word => {
                self.read_msb = !self.read_msb;
                !self.read_msb
            }
        };
        if latched.is_some() && (msb || self.rw == Rw::Lsb) {
            self.latched_count = None;
        }
        if msb {
            (value >> 8) as u8
        } else {
            value as u8
        }
    }
}

fn from_bcd(v: u16) -> u32 {
    (0..4)
        .rev()
        .fold(0, |n, i| n * 10 + ((v >> (4 * i)) & 0xF) as u32)
}

fn to_bcd(n: u32) -> u16 {
    (0..4).fold(0, |v, i| v | (((n / 10u32.pow(i)) % 10) as u16) << (4 * i))
}

pub struct Pit {
    channels: [Channel; 3],
    /// Port B bits 3..0 as written.
    port_b: u8,
    /// The tick the device has run to.
    tick: u64,
    irq0: IrqLine,
}

impl Pit {
    /// Powered on at time zero; channel 0's OUT drives `irq0`.
    pub fn new(irq0: IrqLine) -> Self {
        let pit = Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            tick: 0,
            irq0,
        };
        pit.irq0.set(pit.channels[0].out(0));
        pit
    }

    /// Run to `now`: apply due reloads and move IRQ0 as channel 0's OUT moved, with a
    /// low-high pulse if it rose on the way (so an edge-triggered input sees it).
    fn run_to(&mut self, now: Nanos) -> u64 {
        let t = now.ticks(PIT_HZ).max(self.tick);
        let ch0 = &mut self.channels[0];
        let mut at = self.tick;
        let mut rose = false;
        while let Some(next) = ch0.next_event(at).filter(|&n| n <= t && !rose) {
            let before = ch0.out(at);
            ch0.sync(next);
            rose = !before && ch0.out(next);
            at = next;
        }
        for c in &mut self.channels {
            c.sync(t);
        }
        self.tick = t;
        if rose {
            self.irq0.set(false);
            self.irq0.set(true);
        }
        self.irq0.set(self.channels[0].out(t));
        t
    }

    fn control_word(&mut self, v: u8, t: u64) {
        match v >> SC_SHIFT {
            SC_READ_BACK => {
                for (i, c) in self.channels.iter_mut().enumerate() {
                    if v & (2 << i) == 0 {
                        continue;
                    }
                    if v & RB_STATUS_N == 0 {
                        c.latch_status(t);
                    }
                    if v & RB_COUNT_N == 0 {
                        c.latch_count(t);
                    }
                }
            }
            sc => {
                let c = &mut self.channels[sc as usize];
                if (v >> RW_SHIFT) & 3 == RW_LATCH {
                    c.latch_count(t);
                } else {
                    c.program(v, t);
                }
            }
        }
    }

    fn read_port(&mut self, base: u16, offset: u16, t: u64, now: Nanos) -> u8 {
        match (base, offset) {
            (BASE, 0..=2) => self.channels[offset as usize].read(t),
            (PORT_B, 0) => {
                let refresh = if (now.0 / REFRESH_NS) & 1 != 0 {
                    B_REFRESH
                } else {
                    0
                };
                let out2 = if self.channels[2].out(t) { B_OUT2 } else { 0 };
                self.port_b | refresh | out2
            }
            // The control word register cannot be read.
            _ => 0xFF,
        }
    }

    fn write_port(&mut self, base: u16, offset: u16, v: u8, t: u64) {
        match (base, offset) {
            (BASE, 0..=2) => self.channels[offset as usize].write_count(v, t),
            (BASE, CONTROL_WORD) => self.control_word(v, t),
            (PORT_B, 0) => {
                self.port_b = v & B_WRITABLE;
                self.channels[2].set_gate(v & B_GATE2 != 0, t);
            }
            _ => {}
        }
    }
}

impl Timed for Pit {
    /// When channel 0's OUT (IRQ0) next moves.
    fn next_deadline(&self) -> Option<Nanos> {
        let tick = self.channels[0].next_event(self.tick)?;
        Nanos::at_tick(tick, PIT_HZ)
    }

    fn advance(&mut self, now: Nanos) {
        self.run_to(now);
    }
}

impl Device for Pit {
    fn name(&self) -> &'static str {
        "pit"
    }
}

impl PortDevice for Pit {
    fn read(&mut self, base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        let t = self.run_to(now);
        read_bytes(offset, size, |o| self.read_port(base, o, t, now))
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        let t = self.run_to(now);
        let access = write_bytes(offset, size, value, |o, v| {
            self.write_port(base, o, v, t);
            IoAccess::Done
        });
        self.irq0.set(self.channels[0].out(t));
        access
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLines;

    /// A PIT and its IRQ0 line; times are in PIT ticks.
    fn pit() -> (Pit, IrqLines) {
        let lines = IrqLines::new();
        (Pit::new(lines.line(0)), lines)
    }

    fn at(tick: u64) -> Nanos {
        Nanos::at_tick(tick, PIT_HZ).unwrap()
    }

    fn out(p: &mut Pit, port: u16, v: u8, tick: u64) {
        let (base, off) = if port == PORT_B {
            (PORT_B, 0)
        } else {
            (BASE, port - BASE)
        };
        p.write(base, off, 1, v as u32, at(tick));
    }

    fn inb(p: &mut Pit, port: u16, tick: u64) -> u8 {
        let (base, off) = if port == PORT_B {
            (PORT_B, 0)
        } else {
            (BASE, port - BASE)
        };
        p.read(base, off, 1, at(tick)) as u8
    }

    /// Latch and read a channel's 16-bit count.
    fn count(p: &mut Pit, ch: u16, tick: u64) -> u16 {
        out(p, 0x43, (ch as u8) << 6, tick);
        let lo = inb(p, 0x40 + ch, tick) as u16;
        lo | (inb(p, 0x40 + ch, tick) as u16) << 8
    }

    fn status(p: &mut Pit, ch: u16, tick: u64) -> u8 {
        out(p, 0x43, 0xE0 | 2 << ch, tick);
        inb(p, 0x40 + ch, tick)
    }

    /// Program a channel with an LSB-MSB count.
    fn program(p: &mut Pit, ch: u16, mode: u8, n: u16, tick: u64) {
        out(p, 0x43, (ch as u8) << 6 | 0x30 | mode << 1, tick);
        out(p, 0x40 + ch, n as u8, tick);
        out(p, 0x40 + ch, (n >> 8) as u8, tick);
    }

    #[test]
    fn power_on_state_is_mode_3_at_18_2_hz() {
        let (mut p, lines) = pit();
        assert!(lines.level(0));
        // The first half period of 65536 ticks ends at 32768.
        assert_eq!(p.next_deadline(), Some(at(32768)));
        p.advance(at(32768));
        assert!(!lines.level(0));
        assert_eq!(p.next_deadline(), Some(at(65536)));
        assert_eq!(status(&mut p, 0, 65535) & 0x3F, RESET_CONTROL);
    }

    #[test]
    fn mode_0_interrupts_on_terminal_count() {
        let (mut p, lines) = pit();
        program(&mut p, 0, 0, 100, 1000);
        assert!(!lines.level(0), "OUT low after the mode 0 count is written");
        assert_eq!(
            status(&mut p, 0, 1000) & (STATUS_OUT | STATUS_NULL_COUNT),
            STATUS_NULL_COUNT
        );
        // Loaded on the next CLK, then 100 decrements.
        assert_eq!(count(&mut p, 0, 1001), 100);
        assert_eq!(count(&mut p, 0, 1051), 50);
        assert_eq!(status(&mut p, 0, 1051) & STATUS_NULL_COUNT, 0);
        assert_eq!(p.next_deadline(), Some(at(1101)));
        p.advance(at(1100));
        assert!(!lines.level(0));
        p.advance(at(1101));
        assert!(lines.level(0));
        // The CE wraps and keeps counting; OUT stays high.
        assert_eq!(count(&mut p, 0, 1102), 0xFFFF);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn mode_0_first_byte_stops_counting() {
        let (mut p, lines) = pit();
        program(&mut p, 0, 0, 10, 0);
        p.advance(at(20));
        assert!(lines.level(0));
        out(&mut p, 0x40, 0x05, 30);
        assert!(!lines.level(0));
        assert_eq!(p.next_deadline(), None, "counting waits for the MSB");
        out(&mut p, 0x40, 0x00, 40);
        assert_eq!(p.next_deadline(), Some(at(46)));
    }

    #[test]
    fn mode_2_rate_generator_pulses_low_for_one_clock() {
        let (mut p, lines) = pit();
        program(&mut p, 0, 2, 1000, 0);
        assert!(lines.level(0));
        // CE loaded at tick 1 with 1000, reaches 1 at tick 1000: OUT low for that clock.
        assert_eq!(p.next_deadline(), Some(at(1000)));
        p.advance(at(1000));
        assert!(!lines.level(0));
        assert_eq!(p.next_deadline(), Some(at(1001)));
        p.advance(at(1001));
        assert!(lines.level(0));
        assert_eq!(count(&mut p, 0, 1001), 1000);
        assert_eq!(p.next_deadline(), Some(at(2000)));
        // Skipping several periods still reports a rising edge.
        lines.take_changes();
        p.advance(at(5500));
        let c = lines.take_changes().unwrap();
        assert_eq!(c.raised & 1, 1);
        assert!(lines.level(0));
    }

    #[test]
    fn mode_2_new_count_waits_for_the_cycle_end() {
        let (mut p, _) = pit();
        program(&mut p, 0, 2, 100, 0);
        // Written at tick 150 (CE = 51): the current cycle still ends at tick 201.
        out(&mut p, 0x40, 10, 150);
        out(&mut p, 0x40, 0, 150);
        assert_eq!(
            status(&mut p, 0, 150) & STATUS_NULL_COUNT,
            STATUS_NULL_COUNT
        );
        assert_eq!(count(&mut p, 0, 160), 41);
        assert_eq!(count(&mut p, 0, 201), 10);
        assert_eq!(count(&mut p, 0, 205), 6);
        assert_eq!(status(&mut p, 0, 205) & STATUS_NULL_COUNT, 0);
    }

    #[test]
    fn mode_3_square_wave_halves() {
        let (mut p, lines) = pit();
        // Odd count 5: high for 3 clocks, low for 2.
        program(&mut p, 0, 3, 5, 0);
        p.advance(at(3));
        assert!(lines.level(0));
        p.advance(at(4));
        assert!(!lines.level(0));
        p.advance(at(6));
        assert!(lines.level(0));
        // Even count: the CE counts down by two.
        program(&mut p, 0, 3, 8, 100);
        assert_eq!(count(&mut p, 0, 101), 8);
        assert_eq!(count(&mut p, 0, 102), 6);
        assert_eq!(p.next_deadline(), Some(at(105)));
    }

    #[test]
    fn mode_4_strobes_once() {
        let (mut p, lines) = pit();
        program(&mut p, 0, 4, 10, 0);
        assert!(lines.level(0));
        p.advance(at(11));
        assert!(!lines.level(0));
        p.advance(at(12));
        assert!(lines.level(0));
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn channel_2_gate_and_out_on_port_b() {
        let (mut p, _) = pit();
        // The classic calibration: mode 0 on channel 2 with the gate low, then raise it.
        program(&mut p, 2, 0, 1000, 0);
        assert_eq!(inb(&mut p, PORT_B, 10) & B_OUT2, 0);
        assert_eq!(count(&mut p, 2, 500), 1000, "gate low: not counting");
        out(&mut p, PORT_B, 0x01, 500);
        assert_eq!(inb(&mut p, PORT_B, 500) & 0x0F, 0x01);
        assert_eq!(inb(&mut p, PORT_B, 1500) & B_OUT2, 0);
        assert_eq!(inb(&mut p, PORT_B, 1501) & B_OUT2, B_OUT2);
        // Mode 2 with the gate dropped: OUT high at once, and no counting.
        program(&mut p, 2, 2, 100, 2000);
        out(&mut p, PORT_B, 0x00, 2050);
        let ce = count(&mut p, 2, 2050);
        assert_eq!(count(&mut p, 2, 2500), ce);
        assert_ne!(inb(&mut p, PORT_B, 2500) & B_OUT2, 0);
        // Raising the gate reloads on the next clock.
        out(&mut p, PORT_B, 0x01, 3000);
        assert_eq!(count(&mut p, 2, 3001), 100);
    }

    #[test]
    fn mode_1_is_a_gate_triggered_one_shot() {
        let (mut p, _) = pit();
        program(&mut p, 2, 1, 50, 0);
        assert_ne!(
            inb(&mut p, PORT_B, 10) & B_OUT2,
            0,
            "OUT high until triggered"
        );
        out(&mut p, PORT_B, 0x01, 100);
        assert_eq!(inb(&mut p, PORT_B, 101) & B_OUT2, 0);
        assert_eq!(inb(&mut p, PORT_B, 150) & B_OUT2, 0);
        assert_ne!(inb(&mut p, PORT_B, 151) & B_OUT2, 0);
        // Retriggered by a new rising edge.
        out(&mut p, PORT_B, 0x00, 200);
        out(&mut p, PORT_B, 0x01, 201);
        assert_eq!(inb(&mut p, PORT_B, 202) & B_OUT2, 0);
    }

    #[test]
    fn refresh_bit_toggles_every_15_us() {
        let (mut p, _) = pit();
        let b = |p: &mut Pit, ns: u64| p.read(PORT_B, 0, 1, Nanos(ns)) as u8 & B_REFRESH;
        assert_eq!(b(&mut p, 0), 0);
        assert_eq!(b(&mut p, REFRESH_NS), B_REFRESH);
        assert_eq!(b(&mut p, 2 * REFRESH_NS), 0);
    }

    #[test]
    fn latches_read_back_and_byte_modes() {
        let (mut p, _) = pit();
        program(&mut p, 1, 2, 0x1234, 0);
        // A latched count survives while the counter runs on; a second latch before
        // the read is ignored.
        out(&mut p, 0x43, 0x40, 1);
        out(&mut p, 0x43, 0x40, 100);
        assert_eq!(inb(&mut p, 0x41, 200), 0x34);
        assert_eq!(inb(&mut p, 0x41, 300), 0x12);
        // Read-back of status and count of counter 1: status first.
        out(&mut p, 0x43, 0xC4, 0x135);
        assert_eq!(inb(&mut p, 0x41, 0x300), STATUS_OUT | 0x34);
        assert_eq!(inb(&mut p, 0x41, 0x300), 0x00);
        assert_eq!(inb(&mut p, 0x41, 0x300), 0x11);
        // MSB-only access.
        out(&mut p, 0x43, 0x60 | 2 << 1, 0x400);
        out(&mut p, 0x41, 0x02, 0x400);
        assert_eq!(inb(&mut p, 0x41, 0x401), 0x02);
        assert_eq!(inb(&mut p, 0x41, 0x501), 0x01);
        // LSB-only access with a count of 0x80.
        out(&mut p, 0x43, 0x50 | 2 << 1, 0x600);
        out(&mut p, 0x41, 0x80, 0x600);
        assert_eq!(inb(&mut p, 0x41, 0x611), 0x70);
        assert_eq!(inb(&mut p, 0x43, 0x611), 0xFF);
    }

    #[test]
    fn bcd_counting() {
        let (mut p, _) = pit();
        out(&mut p, 0x43, 0x31, 0); // channel 0, LSB-MSB, mode 0, BCD
        out(&mut p, 0x40, 0x00, 0);
        out(&mut p, 0x40, 0x10, 0); // 1000 decimal
        assert_eq!(count(&mut p, 0, 1), 0x1000);
        assert_eq!(count(&mut p, 0, 2), 0x0999);
        assert_eq!(count(&mut p, 0, 1001), 0x0000);
        assert_eq!(count(&mut p, 0, 1002), 0x9999, "BCD wraps at 10000");
        assert_eq!(from_bcd(0x9999), 9999);
        assert_eq!(to_bcd(1234), 0x1234);
    }

    #[test]
    fn deadlines_always_make_progress() {
        let (mut p, _) = pit();
        program(&mut p, 0, 2, 3, 0);
        let mut now = Nanos::ZERO;
        for _ in 0..20 {
            let d = p.next_deadline().unwrap();
            assert!(d > now);
            p.advance(d);
            now = d;
        }
        // Odd writes never panic: counts of 0 and 1, modes 6 and 7, wide accesses.
        for v in [0x3E, 0x3C, 0x34, 0xFF, 0x00] {
            out(&mut p, 0x43, v, 100);
            out(&mut p, 0x40, 1, 100);
            out(&mut p, 0x40, 0, 100);
            p.advance(at(200));
            p.next_deadline();
        }
        p.write(BASE, 0, 4, u32::MAX, at(300));
        p.read(BASE, 2, 4, at(300));
        p.read(PORT_B, 0, 2, at(300));
        p.advance(at(10));
    }
}
