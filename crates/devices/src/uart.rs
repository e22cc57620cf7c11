//! National Semiconductor 16550A UART (COM1 at 0x3F8 on IRQ4, COM2 at 0x2F8 on IRQ3):
//! 16-byte FIFOs, the divisor latch, modem control with loopback, scratch, and the four
//! interrupt sources with the IIR priorities of the datasheet.
//!
//! Transmission is instant: a byte written to THR goes to the host at once and THR is
//! empty again, so THRE interrupts follow every write. Host input waits in a line
//! buffer and moves into the receive FIFO as the guest makes room (the flow control a
//! real terminal would need). The character timeout runs on virtual time: four
//! character times at the programmed baud rate and frame format.
//!
//! As in QEMU, the interrupt output is not gated by MCR OUT2.

use std::collections::VecDeque;
use std::io::Write;

use crate::bus::{Device, IoAccess};
use crate::clock::{Nanos, Timed, NANOS_PER_SEC};
use crate::irq::IrqLine;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const COM1: u16 = 0x3F8;
pub const COM1_IRQ: u8 = 4;
pub const COM2: u16 = 0x2F8;
pub const COM2_IRQ: u8 = 3;
pub const PORTS: u16 = 8;

/// Register offsets (16550A datasheet Table 2); DLL and DLM replace RBR/THR and IER
/// while LCR.DLAB is set.
const RBR_THR: u16 = 0;
const IER: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const IER_ERBFI: u8 = 1 << 0;
const IER_ETBEI: u8 = 1 << 1;
const IER_ELSI: u8 = 1 << 2;
const IER_EDSSI: u8 = 1 << 3;
const IER_MASK: u8 = 0x0F;

const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_FIFOS_ENABLED: u8 = 0xC0;
/// Interrupt identification codes, highest priority first.
const IIR_RECEIVER_LINE_STATUS: u8 = 0x06;
const IIR_RECEIVED_DATA: u8 = 0x04;
const IIR_CHARACTER_TIMEOUT: u8 = 0x0C;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_MODEM_STATUS: u8 = 0x00;
const PRIORITY: [u8; 5] = [
    IIR_RECEIVER_LINE_STATUS,
    IIR_RECEIVED_DATA,
    IIR_CHARACTER_TIMEOUT,
    IIR_THR_EMPTY,
    IIR_MODEM_STATUS,
];

const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const FCR_CLEAR_TX: u8 = 1 << 2;
const FCR_TRIGGER_SHIFT: u8 = 6;
/// Receiver FIFO trigger levels by FCR bits 7:6.
const RX_TRIGGER: [usize; 4] = [1, 4, 8, 14];

const LCR_WORD_LENGTH: u8 = 0x03;
const LCR_STOP_BITS: u8 = 1 << 2;
const LCR_PARITY_ENABLE: u8 = 1 << 3;
const LCR_DLAB: u8 = 1 << 7;

const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const MCR_OUT1: u8 = 1 << 2;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;
const MCR_MASK: u8 = 0x1F;

const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

const MSR_TERI: u8 = 1 << 2;
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_RI: u8 = 1 << 6;
const MSR_DCD: u8 = 1 << 7;
const MSR_DELTAS: u8 = 0x0F;
/// With no modem behind it, the port sees CTS, DSR and DCD asserted (as QEMU's does).
const MSR_HOST_LINES: u8 = MSR_CTS | MSR_DSR | MSR_DCD;
/// Loopback wires MCR DTR, RTS, OUT1, OUT2 to MSR DSR, CTS, RI, DCD.
const LOOPBACK: [(u8, u8); 4] = [
    (MCR_DTR, MSR_DSR),
    (MCR_RTS, MSR_CTS),
    (MCR_OUT1, MSR_RI),
    (MCR_OUT2, MSR_DCD),
];

const FIFO_LEN: usize = 16;
/// Host input waiting for FIFO room; beyond this `receive` refuses bytes.
const INPUT_LEN: usize = 4096;
/// The 1.8432 MHz crystal the divisor divides (baud = 115200 / divisor).
const CLOCK_HZ: u64 = 1_843_200;
/// Character timeout: four character times without FIFO activity.
const TIMEOUT_CHARS: u64 = 4;

pub struct Uart {
    out: Box<dyn Write + Send>,
    irq: IrqLine,
    rx: VecDeque<u8>,
    input: VecDeque<u8>,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits (OE, PE, FE, BI) latched until LSR is read.
    lsr_errors: u8,
    msr: u8,
    scr: u8,
    divisor: u16,
    /// The THR-empty interrupt is pending (cleared by reading it from IIR or writing THR).
    thre_pending: bool,
    /// The last receive-FIFO activity (a byte in, a byte read), for the timeout.
    rx_activity: Nanos,
    now: Nanos,
}

impl Uart {
    pub fn new(out: Box<dyn Write + Send>, irq: IrqLine) -> Self {
        Uart {
            out,
            irq,
            rx: VecDeque::with_capacity(FIFO_LEN),
            input: VecDeque::new(),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr: MSR_HOST_LINES,
            scr: 0,
            divisor: 12,
            thre_pending: false,
            rx_activity: Nanos::ZERO,
            now: Nanos::ZERO,
        }
    }

    /// Bytes from the host (a terminal, a file) arriving on the receive line at `now`.
    /// Returns how many were taken; the rest must be offered again later.
    pub fn receive(&mut self, bytes: &[u8], now: Nanos) -> usize {
        self.now = self.now.max(now);
        let n = bytes.len().min(INPUT_LEN - self.input.len());
        self.input.extend(&bytes[..n]);
        self.fill_rx();
        self.update_irq();
        n
    }

    /// The interrupt output.
    pub fn irq_level(&self) -> bool {
        self.interrupt().is_some()
    }

    /// Push buffered output to the host (the machine calls this when the guest stops).
    pub fn flush(&mut self) {
        // Host output errors (a closed pipe) must not stop the guest.
        let _ = self.out.flush();
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_LEN
        } else {
            1
        }
    }

    fn fill_rx(&mut self) {
        let before = self.rx.len();
        while self.rx.len() < self.rx_capacity() {
            match self.input.pop_front() {
                Some(b) => self.rx.push_back(b),
                None => break,
            }
        }
        if self.rx.len() != before {
            self.rx_activity = self.now;
        }
    }

    fn char_time(&self) -> u64 {
        let data = 5 + (self.lcr & LCR_WORD_LENGTH) as u64;
        let parity = u64::from(self.lcr & LCR_PARITY_ENABLE != 0);
        let stop = if self.lcr & LCR_STOP_BITS != 0 { 2 } else { 1 };
        let bits = 1 + data + parity + stop;
        let divisor = self.divisor.max(1) as u64;
        bits * divisor * 16 * NANOS_PER_SEC / CLOCK_HZ
    }

    fn timeout_at(&self) -> Nanos {
        self.rx_activity
            .saturating_add(TIMEOUT_CHARS * self.char_time())
    }

    /// The highest-priority pending interrupt's IIR code.
    fn interrupt(&self) -> Option<u8> {
        let trigger = if self.fifo_enabled() {
            RX_TRIGGER[(self.fcr >> FCR_TRIGGER_SHIFT) as usize]
        } else {
            1
        };
        let data = self.ier & IER_ERBFI != 0;
        let pending = [
            self.ier & IER_ELSI != 0 && self.lsr_errors != 0,
            data && self.rx.len() >= trigger,
            data && self.fifo_enabled() && !self.rx.is_empty() && self.now >= self.timeout_at(),
            self.ier & IER_ETBEI != 0 && self.thre_pending,
            self.ier & IER_EDSSI != 0 && self.msr & MSR_DELTAS != 0,
        ];
        PRIORITY
            .iter()
            .zip(pending)
            .find(|(_, p)| *p)
            .map(|(code, _)| *code)
    }

    fn update_irq(&mut self) {
        self.irq.set(self.interrupt().is_some());
    }

    fn set_modem_inputs(&mut self) {
        let lines = if self.mcr & MCR_LOOP != 0 {
            LOOPBACK
                .iter()
                .filter(|(m, _)| self.mcr & m != 0)
                .fold(0, |v, (_, s)| v | s)
        } else {
            MSR_HOST_LINES
        };
        let old = self.msr;
        let changed = (old ^ lines) & (MSR_CTS | MSR_DSR | MSR_DCD);
        // Deltas: DCD, DSR, CTS (bits 7, 5, 4) report in bits 3, 1, 0; RI only its
        // trailing edge.
        let mut deltas = changed >> 4;
        if old & MSR_RI != 0 && lines & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.msr = lines | (old & MSR_DELTAS) | deltas;
    }

    fn transmit(&mut self, b: u8) {
        if self.mcr & MCR_LOOP != 0 {
            if self.rx.len() < self.rx_capacity() {
                self.rx.push_back(b);
                self.rx_activity = self.now;
            } else {
                self.lsr_errors |= LSR_OE;
            }
        } else {
            // Host output errors (a closed pipe) must not stop the guest.
            let _ = self.out.write_all(&[b]);
            if b == b'\n' {
                let _ = self.out.flush();
            }
        }
        self.thre_pending = true;
    }

    fn read_register(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR if dlab => self.divisor as u8,
            IER if dlab => (self.divisor >> 8) as u8,
            RBR_THR => {
                let b = self.rx.pop_front().unwrap_or(0);
                self.rx_activity = self.now;
                self.fill_rx();
                b
            }
            IER => self.ier,
            IIR_FCR => {
                let code = self.interrupt();
                if code == Some(IIR_THR_EMPTY) {
                    self.thre_pending = false;
                }
                let fifo = if self.fifo_enabled() {
                    IIR_FIFOS_ENABLED
                } else {
                    0
                };
                code.unwrap_or(IIR_NO_INTERRUPT) | fifo
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
                let lsr = dr | self.lsr_errors | LSR_THRE | LSR_TEMT;
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = self.msr;
                self.msr &= !MSR_DELTAS;
                msr
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_register(&mut self, offset: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR if dlab => self.divisor = self.divisor & 0xFF00 | v as u16,
            IER if dlab => self.divisor = self.divisor & 0x00FF | (v as u16) << 8,
            RBR_THR => self.transmit(v),
            IER => {
                let enabled = v & !self.ier;
                self.ier = v & IER_MASK;
                // Enabling ETBEI with THR empty raises the THRE interrupt.
                if enabled & IER_ETBEI != 0 {
                    self.thre_pending = true;
                }
            }
            IIR_FCR => {
                if (v ^ self.fcr) & FCR_ENABLE != 0 || v & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                // FCR_CLEAR_TX: the transmitter is always empty.
                self.fcr = v & !(FCR_CLEAR_RX | FCR_CLEAR_TX);
                self.fill_rx();
            }
            LCR => self.lcr = v,
            MCR => {
                self.mcr = v & MCR_MASK;
                self.set_modem_inputs();
            }
            SCR => self.scr = v,
            _ => {}
        }
    }
}

impl Timed for Uart {
    /// The character timeout, if it would interrupt.
    fn next_deadline(&self) -> Option<Nanos> {
        let armed = self.ier & IER_ERBFI != 0 && self.fifo_enabled() && !self.rx.is_empty();
        let at = self.timeout_at();
        (armed && at > self.now).then_some(at)
    }

    fn advance(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        self.update_irq();
    }
}

impl Device for Uart {
    fn name(&self) -> &'static str {
        "uart"
    }
}

impl PortDevice for Uart {
    fn read(&mut self, _base: u16, offset: u16, size: u8, now: Nanos) -> u32 {
        self.now = self.now.max(now);
        let v = read_bytes(offset, size, |o| self.read_register(o));
        self.update_irq();
        v
    }

    fn write(&mut self, _base: u16, offset: u16, size: u8, value: u32, now: Nanos) -> IoAccess {
        self.now = self.now.max(now);
        let access = write_bytes(offset, size, value, |o, v| {
            self.write_register(o, v);
            IoAccess::Done
        });
        self.update_irq();
        access
    }
}

impl Drop for Uart {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLines;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Uart, Sink) {
        let sink = Sink::default();
        let lines = IrqLines::new();
        (
            Uart::new(Box::new(sink.clone()), lines.line(COM1_IRQ)),
            sink,
        )
    }

    fn out(u: &mut Uart, reg: u16, v: u8) {
        u.write(COM1, reg, 1, v as u32, Nanos::ZERO);
    }

    fn inb(u: &mut Uart, reg: u16) -> u8 {
        u.read(COM1, reg, 1, Nanos::ZERO) as u8
    }

    #[test]
    fn transmit_and_divisor_latch() {
        let (mut u, sink) = uart();
        out(&mut u, LCR, LCR_DLAB | 0x03);
        out(&mut u, RBR_THR, 0x01);
        out(&mut u, IER, 0x00);
        assert_eq!(inb(&mut u, RBR_THR), 0x01);
        out(&mut u, LCR, 0x03);
        for b in b"ok\n" {
            out(&mut u, RBR_THR, *b);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
        assert_eq!(inb(&mut u, LSR), LSR_THRE | LSR_TEMT);
        out(&mut u, SCR, 0x5A);
        assert_eq!(inb(&mut u, SCR), 0x5A);
        assert_eq!(u.divisor, 1);
    }

    #[test]
    fn thr_empty_interrupt_on_enable_cleared_by_iir_read() {
        let (mut u, _) = uart();
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NO_INTERRUPT);
        out(&mut u, IER, IER_ETBEI);
        assert!(u.irq_level());
        assert_eq!(inb(&mut u, IIR_FCR), IIR_THR_EMPTY);
        assert!(!u.irq_level());
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NO_INTERRUPT);
        out(&mut u, RBR_THR, b'x');
        assert_eq!(
            inb(&mut u, IIR_FCR),
            IIR_THR_EMPTY,
            "THR empty again after the write"
        );
    }

    #[test]
    fn receive_data_interrupt_and_fifo_trigger() {
        let (mut u, _) = uart();
        out(&mut u, IER, IER_ERBFI);
        assert_eq!(u.receive(b"ab", Nanos::ZERO), 2);
        assert!(u.irq_level());
        assert_eq!(inb(&mut u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_RECEIVED_DATA);
        // Without FIFOs the receiver holds one byte; the next arrives as it is read.
        assert_eq!(inb(&mut u, RBR_THR), b'a');
        assert_eq!(inb(&mut u, RBR_THR), b'b');
        assert!(!u.irq_level());
        // FIFO with trigger level 4: three bytes do not interrupt, four do.
        out(&mut u, IIR_FCR, 0x41);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_FIFOS_ENABLED | IIR_NO_INTERRUPT);
        u.receive(b"123", Nanos::ZERO);
        assert!(!u.irq_level());
        u.receive(b"4", Nanos::ZERO);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_FIFOS_ENABLED | IIR_RECEIVED_DATA);
        out(&mut u, IIR_FCR, 0x41 | FCR_CLEAR_RX);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn host_input_waits_for_fifo_room() {
        let (mut u, _) = uart();
        out(&mut u, IIR_FCR, FCR_ENABLE);
        let text = [b'x'; 40];
        assert_eq!(u.receive(&text, Nanos::ZERO), 40);
        assert_eq!(u.rx.len(), FIFO_LEN);
        let got: Vec<u8> = (0..40).map(|_| inb(&mut u, RBR_THR)).collect();
        assert_eq!(got, text);
        assert_eq!(inb(&mut u, LSR) & (LSR_DR | LSR_OE), 0);
        assert_eq!(u.receive(&vec![0; INPUT_LEN + 10], Nanos::ZERO), INPUT_LEN);
    }

    #[test]
    fn character_timeout_after_four_character_times() {
        let (mut u, _) = uart();
        out(&mut u, LCR, LCR_DLAB);
        out(&mut u, RBR_THR, 1); // 115200 baud
        out(&mut u, LCR, 0x03); // 8N1: 10 bits a character
        out(&mut u, IIR_FCR, 0xC1); // trigger level 14
        out(&mut u, IER, IER_ERBFI);
        u.receive(b"hi", Nanos::ZERO);
        assert!(!u.irq_level());
        let due = u.next_deadline().unwrap();
        assert_eq!(due, Nanos(4 * (10 * 16 * NANOS_PER_SEC / CLOCK_HZ)));
        u.advance(Nanos(due.0 - 1));
        assert!(!u.irq_level());
        u.advance(due);
        assert!(u.irq_level());
        assert_eq!(
            u.read(COM1, IIR_FCR, 1, due) as u8,
            IIR_FIFOS_ENABLED | IIR_CHARACTER_TIMEOUT
        );
        // Reading a byte restarts the timer.
        u.read(COM1, RBR_THR, 1, due);
        assert!(!u.irq_level());
        assert!(u.next_deadline().unwrap() > due);
    }

    #[test]
    fn loopback_and_modem_status() {
        let (mut u, sink) = uart();
        assert_eq!(inb(&mut u, MSR), MSR_HOST_LINES);
        out(&mut u, IER, IER_EDSSI | IER_ERBFI);
        out(&mut u, MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
        // The loop drops DSR: a delta, and a modem status interrupt.
        assert_eq!(inb(&mut u, IIR_FCR), IIR_MODEM_STATUS);
        assert_eq!(inb(&mut u, MSR), MSR_CTS | MSR_DCD | 0x02);
        assert_eq!(inb(&mut u, MSR), MSR_CTS | MSR_DCD);
        out(&mut u, RBR_THR, 0x55);
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "loopback keeps bytes off the line"
        );
        assert_eq!(inb(&mut u, IIR_FCR), IIR_RECEIVED_DATA);
        assert_eq!(inb(&mut u, RBR_THR), 0x55);
        // Without FIFOs, a second byte overruns the first.
        out(&mut u, RBR_THR, 1);
        out(&mut u, RBR_THR, 2);
        out(&mut u, IER, IER_ELSI);
        assert_eq!(inb(&mut u, IIR_FCR), IIR_RECEIVER_LINE_STATUS);
        assert_eq!(inb(&mut u, LSR) & LSR_OE, LSR_OE);
        assert_eq!(inb(&mut u, LSR) & LSR_OE, 0);
        // RI's trailing edge.
        out(&mut u, MCR, MCR_LOOP | MCR_OUT1);
        inb(&mut u, MSR);
        out(&mut u, MCR, MCR_LOOP);
        assert_eq!(inb(&mut u, MSR) & MSR_TERI, MSR_TERI);
    }

    #[test]
    fn iir_priorities_follow_the_datasheet() {
        let (mut u, _) = uart();
        out(&mut u, IER, IER_MASK);
        out(&mut u, MCR, MCR_LOOP);
        out(&mut u, RBR_THR, 1);
        out(&mut u, RBR_THR, 2);
        // Line status, received data, THR empty and modem status are all pending.
        let mut seen = Vec::new();
        for _ in 0..4 {
            let iir = inb(&mut u, IIR_FCR);
            seen.push(iir);
            // Each source's service routine clears it.
            let clear = match iir {
                IIR_RECEIVER_LINE_STATUS => LSR,
                IIR_RECEIVED_DATA => RBR_THR,
                IIR_MODEM_STATUS => MSR,
                _ => continue,
            };
            inb(&mut u, clear);
        }
        assert_eq!(
            seen,
            [
                IIR_RECEIVER_LINE_STATUS,
                IIR_RECEIVED_DATA,
                IIR_THR_EMPTY,
                IIR_MODEM_STATUS
            ]
        );
        assert_eq!(inb(&mut u, IIR_FCR), IIR_NO_INTERRUPT);
    }

    #[test]
    fn wide_and_odd_accesses_are_harmless() {
        let (mut u, _) = uart();
        u.write(COM1, 0, 4, u32::MAX, Nanos::ZERO);
        u.read(COM1, 6, 4, Nanos::ZERO);
        u.write(COM1, 9, 1, 0, Nanos::ZERO);
        assert_eq!(u.read(COM1, 9, 1, Nanos::ZERO), 0xFF);
        out(&mut u, LCR, LCR_DLAB);
        out(&mut u, RBR_THR, 0);
        out(&mut u, IER, 0);
        out(&mut u, LCR, 0);
        assert!(u.char_time() > 0, "a zero divisor counts as one");
    }
}
