//! Intel 8042 keyboard controller at 0x60 (data) and 0x64 (status/command), with a
//! PS/2 keyboard and mouse behind it that answer the commands firmware and Linux send
//! while probing. No keys are ever pressed: there is no host keyboard input.
//!
//! What matters most is what the controller drives: the A20 gate and the reset line
//! (output port bits 1 and 0, and the pulse command 0xFE), and IRQ1/IRQ12 while the
//! output buffer holds keyboard/mouse data and the command byte enables them.

use std::collections::VecDeque;

use crate::bus::{Device, IoAccess};
use crate::clock::Nanos;
use crate::irq::IrqLine;
use crate::port_bus::{read_bytes, write_bytes, PortDevice};

pub const DATA: u16 = 0x60;
pub const STATUS_COMMAND: u16 = 0x64;

/// Status register.
const STATUS_OBF: u8 = 1 << 0;
const STATUS_SYS: u8 = 1 << 2;
/// A2: the last write went to the command port.
const STATUS_CMD: u8 = 1 << 3;
/// The keyboard-inhibit keyswitch is unlocked.
const STATUS_UNLOCKED: u8 = 1 << 4;
const STATUS_AUX_OBF: u8 = 1 << 5;

/// Command byte.
const CB_KBD_INT: u8 = 1 << 0;
const CB_AUX_INT: u8 = 1 << 1;
const CB_SYS: u8 = 1 << 2;
const CB_KBD_DISABLE: u8 = 1 << 4;
const CB_AUX_DISABLE: u8 = 1 << 5;
const CB_XLATE: u8 = 1 << 6;
/// QEMU's power-on command byte: both interrupts enabled.
const RESET_COMMAND_BYTE: u8 = CB_KBD_INT | CB_AUX_INT;

/// Output port.
const OUT_RESET_N: u8 = 1 << 0;
const OUT_A20: u8 = 1 << 1;
const OUT_KBD_OBF: u8 = 1 << 4;
const OUT_AUX_OBF: u8 = 1 << 5;
/// Bits 2, 3, 6, 7 (clock and data lines) read as ones, as in QEMU.
const OUT_ONES: u8 = 0xCC;

/// Controller commands (written to 0x64).
const READ_COMMAND_BYTE: u8 = 0x20;
const WRITE_COMMAND_BYTE: u8 = 0x60;
const DISABLE_AUX: u8 = 0xA7;
const ENABLE_AUX: u8 = 0xA8;
const TEST_AUX: u8 = 0xA9;
const SELF_TEST: u8 = 0xAA;
const TEST_KBD: u8 = 0xAB;
const DISABLE_KBD: u8 = 0xAD;
const ENABLE_KBD: u8 = 0xAE;
const READ_INPUT_PORT: u8 = 0xC0;
const READ_OUTPUT_PORT: u8 = 0xD0;
const WRITE_OUTPUT_PORT: u8 = 0xD1;
const WRITE_KBD_OUTPUT: u8 = 0xD2;
const WRITE_AUX_OUTPUT: u8 = 0xD3;
const WRITE_AUX: u8 = 0xD4;
const DISABLE_A20: u8 = 0xDD;
const ENABLE_A20: u8 = 0xDF;
const READ_TEST_INPUTS: u8 = 0xE0;
/// 0xF0–0xFF pulse the output port bits whose command bits are 0 (0xFE: reset).
const PULSE_OUTPUT: u8 = 0xF0;

const SELF_TEST_OK: u8 = 0x55;
const INTERFACE_OK: u8 = 0x00;
/// Input port: keyboard not inhibited.
const INPUT_PORT: u8 = 0x80;

/// PS/2 device commands and replies.
const SET_LEDS: u8 = 0xED;
const ECHO: u8 = 0xEE;
const SCANCODE_SET: u8 = 0xF0;
const IDENTIFY: u8 = 0xF2;
const TYPEMATIC: u8 = 0xF3;
const RESET: u8 = 0xFF;
const AUX_SET_RESOLUTION: u8 = 0xE8;
const AUX_STATUS_REQUEST: u8 = 0xE9;
const AUX_READ_DATA: u8 = 0xEB;
const AUX_SET_SAMPLE_RATE: u8 = 0xF3;
const ACK: u8 = 0xFA;
const RESEND: u8 = 0xFE;
const BAT_OK: u8 = 0xAA;
/// An MF2 keyboard's ID, and its second byte after scancode translation.
const KBD_ID: [u8; 2] = [0xAB, 0x83];
const KBD_ID_TRANSLATED: u8 = 0x41;
/// Keyboard commands that are acknowledged and need nothing more than an ACK.
const KBD_SIMPLE: [u8; 5] = [0xF4, 0xF5, 0xF6, 0xF7, 0xFA];
/// Mouse replies after the ACK: a standard PS/2 mouse (ID 0), stream mode, 100
/// samples/s, resolution 4 counts/mm, no motion.
const AUX_RESET_REPLY: [u8; 2] = [BAT_OK, 0x00];
const AUX_ID: u8 = 0x00;
const AUX_STATUS: [u8; 3] = [0x00, 0x02, 0x64];
const AUX_PACKET: [u8; 3] = [0x08, 0x00, 0x00];
const DEFAULT_SCANCODE_SET: u8 = 2;

/// A controller command waiting for its data byte at 0x60.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    CommandByte,
    OutputPort,
    KbdOutput,
    AuxOutput,
    Aux,
}

/// Which device's byte sits in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Keyboard,
    Aux,
}

pub struct I8042 {
    command_byte: u8,
    output_port: u8,
    last_was_command: bool,
    awaiting: Option<Awaiting>,
    /// The output buffer: the byte and who sent it.
    obf: Option<(u8, Source)>,
    /// The last byte read, which a read of an empty buffer returns again.
    last_read: u8,
    /// Controller replies come before keyboard bytes; both raise IRQ1.
    controller_out: VecDeque<u8>,
    keyboard_out: VecDeque<u8>,
    aux_out: VecDeque<u8>,
    /// A keyboard command waiting for its argument.
    keyboard_arg: Option<u8>,
    aux_arg: Option<u8>,
    scancode_set: u8,
    irq1: IrqLine,
    irq12: IrqLine,
}

impl I8042 {
    /// `a20` is the gate's state at power-on (the output port's bit 1).
    pub fn new(a20: bool, irq1: IrqLine, irq12: IrqLine) -> Self {
        I8042 {
            command_byte: RESET_COMMAND_BYTE,
            output_port: OUT_ONES | OUT_RESET_N | if a20 { OUT_A20 } else { 0 },
            last_was_command: false,
            awaiting: None,
            obf: None,
            last_read: 0,
            controller_out: VecDeque::new(),
            keyboard_out: VecDeque::new(),
            aux_out: VecDeque::new(),
            keyboard_arg: None,
            aux_arg: None,
            scancode_set: DEFAULT_SCANCODE_SET,
            irq1,
            irq12,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        match self.obf {
            Some((_, Source::Keyboard)) => s |= STATUS_OBF,
            Some((_, Source::Aux)) => s |= STATUS_OBF | STATUS_AUX_OBF,
            None => {}
        }
        if self.command_byte & CB_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        s
    }

    /// Load the output buffer if it is empty and a device may send.
    fn fill(&mut self) {
        if self.obf.is_some() {
            return;
        }
        let kbd_enabled = self.command_byte & CB_KBD_DISABLE == 0;
        let aux_enabled = self.command_byte & CB_AUX_DISABLE == 0;
        let keyboard = self.controller_out.pop_front().or_else(|| {
            if kbd_enabled {
                self.keyboard_out.pop_front()
            } else {
                None
            }
        });
        self.obf = match keyboard {
            Some(b) => Some((b, Source::Keyboard)),
            None if aux_enabled => self.aux_out.pop_front().map(|b| (b, Source::Aux)),
            None => None,
        };
    }

    fn update_irqs(&mut self) {
        self.fill();
        let source = self.obf.map(|(_, s)| s);
        self.irq1
            .set(source == Some(Source::Keyboard) && self.command_byte & CB_KBD_INT != 0);
        self.irq12
            .set(source == Some(Source::Aux) && self.command_byte & CB_AUX_INT != 0);
    }

    fn reply(&mut self, b: u8) {
        self.controller_out.push_back(b);
    }

    fn set_output_port(&mut self, v: u8) -> IoAccess {
        let old = self.output_port;
        self.output_port = v;
        if v & OUT_RESET_N == 0 {
            IoAccess::Reset
        } else if (old ^ v) & OUT_A20 != 0 {
            IoAccess::A20(v & OUT_A20 != 0)
        } else {
            IoAccess::Done
        }
    }

    fn command(&mut self, cmd: u8) -> IoAccess {
        match cmd {
            READ_COMMAND_BYTE => self.reply(self.command_byte),
            WRITE_COMMAND_BYTE => self.awaiting = Some(Awaiting::CommandByte),
            DISABLE_AUX => self.command_byte |= CB_AUX_DISABLE,
            ENABLE_AUX => self.command_byte &= !CB_AUX_DISABLE,
            TEST_AUX | TEST_KBD => self.reply(INTERFACE_OK),
            SELF_TEST => {
                self.command_byte |= CB_SYS;
                self.reply(SELF_TEST_OK);
            }
            DISABLE_KBD => self.command_byte |= CB_KBD_DISABLE,
            ENABLE_KBD => self.command_byte &= !CB_KBD_DISABLE,
            READ_INPUT_PORT => self.reply(INPUT_PORT),
            READ_OUTPUT_PORT => {
                let obf = match self.obf {
                    Some((_, Source::Keyboard)) => OUT_KBD_OBF,
                    Some((_, Source::Aux)) => OUT_AUX_OBF,
                    None => 0,
                };
                self.reply(self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF) | obf);
            }
            WRITE_OUTPUT_PORT => self.awaiting = Some(Awaiting::OutputPort),
            WRITE_KBD_OUTPUT => self.awaiting = Some(Awaiting::KbdOutput),
            WRITE_AUX_OUTPUT => self.awaiting = Some(Awaiting::AuxOutput),
            WRITE_AUX => self.awaiting = Some(Awaiting::Aux),
            DISABLE_A20 => return self.set_output_port(self.output_port & !OUT_A20),
            ENABLE_A20 => return self.set_output_port(self.output_port | OUT_A20),
            READ_TEST_INPUTS => self.reply(0x00),
            // A pulse drives the 0 bits low for 6 µs: only the reset line matters.
            PULSE_OUTPUT..=0xFF if cmd & OUT_RESET_N == 0 => return IoAccess::Reset,
            _ => {}
        }
        IoAccess::Done
    }

    fn data(&mut self, v: u8) -> IoAccess {
        match self.awaiting.take() {
            Some(Awaiting::CommandByte) => self.command_byte = v,
            Some(Awaiting::OutputPort) => return self.set_output_port(v),
            Some(Awaiting::KbdOutput) => self.keyboard_out.push_back(v),
            Some(Awaiting::AuxOutput) => self.aux_out.push_back(v),
            Some(Awaiting::Aux) => self.aux_command(v),
            None => {
                // Sending to the keyboard enables its interface again.
                self.command_byte &= !CB_KBD_DISABLE;
                self.keyboard_command(v);
            }
        }
        IoAccess::Done
    }

    fn keyboard_command(&mut self, v: u8) {
        let out = &mut self.keyboard_out;
        if let Some(cmd) = self.keyboard_arg.take() {
            out.push_back(ACK);
            if cmd == SCANCODE_SET {
                match v {
                    0 => out.push_back(self.scancode_set),
                    1..=3 => self.scancode_set = v,
                    _ => {}
                }
            }
            return;
        }
        match v {
            RESET => {
                self.scancode_set = DEFAULT_SCANCODE_SET;
                out.extend([ACK, BAT_OK]);
            }
            IDENTIFY => {
                let second = if self.command_byte & CB_XLATE != 0 {
                    KBD_ID_TRANSLATED
                } else {
                    KBD_ID[1]
                };
                out.extend([ACK, KBD_ID[0], second]);
            }
            ECHO => out.push_back(ECHO),
            SET_LEDS | SCANCODE_SET | TYPEMATIC => {
                self.keyboard_arg = Some(v);
                out.push_back(ACK);
            }
            _ if KBD_SIMPLE.contains(&v) => out.push_back(ACK),
            _ => out.push_back(RESEND),
        }
    }

    fn aux_command(&mut self, v: u8) {
        let out = &mut self.aux_out;
        out.push_back(ACK);
        if self.aux_arg.take().is_some() {
            return;
        }
        match v {
            RESET => out.extend(AUX_RESET_REPLY),
            IDENTIFY => out.push_back(AUX_ID),
            AUX_STATUS_REQUEST => out.extend(AUX_STATUS),
            AUX_READ_DATA => out.extend(AUX_PACKET),
            AUX_SET_RESOLUTION | AUX_SET_SAMPLE_RATE => self.aux_arg = Some(v),
            _ => {}
        }
    }
}

impl Device for I8042 {
    fn name(&self) -> &'static str {
        "i8042"
    }
}

impl PortDevice for I8042 {
    fn read(&mut self, base: u16, offset: u16, size: u8, _now: Nanos) -> u32 {
        let v = read_bytes(offset, size, |o| match (base, o) {
            (DATA, 0) => {
                if let Some((b, _)) = self.obf.take() {
                    self.last_read = b;
                }
                self.fill();
                self.last_read
            }
            (STATUS_COMMAND, 0) => self.status(),
            _ => 0xFF,
        });
        self.update_irqs();
        v
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        let access = write_bytes(offset, size, value, |o, v| match (base, o) {
            (DATA, 0) => {
                self.last_was_command = false;
                self.data(v)
            }
            (STATUS_COMMAND, 0) => {
                self.last_was_command = true;
                self.awaiting = None;
                self.command(v)
            }
            _ => IoAccess::Done,
        });
        self.update_irqs();
        access
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLines;

    fn kbc() -> (I8042, IrqLines) {
        let lines = IrqLines::new();
        (I8042::new(true, lines.line(1), lines.line(12)), lines)
    }

    fn cmd(k: &mut I8042, v: u8) -> IoAccess {
        k.write(STATUS_COMMAND, 0, 1, v as u32, Nanos::ZERO)
    }

    fn data(k: &mut I8042, v: u8) -> IoAccess {
        k.write(DATA, 0, 1, v as u32, Nanos::ZERO)
    }

    fn status(k: &mut I8042) -> u8 {
        k.read(STATUS_COMMAND, 0, 1, Nanos::ZERO) as u8
    }

    fn read(k: &mut I8042) -> u8 {
        k.read(DATA, 0, 1, Nanos::ZERO) as u8
    }

    /// Everything in the output buffer, as a driver polling OBF reads it.
    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while status(k) & STATUS_OBF != 0 {
            v.push(read(k));
        }
        v
    }

    #[test]
    fn self_test_and_interface_tests() {
        let (mut k, _) = kbc();
        assert_eq!(status(&mut k) & STATUS_SYS, 0);
        cmd(&mut k, SELF_TEST);
        assert_eq!(
            status(&mut k) & (STATUS_OBF | STATUS_CMD),
            STATUS_OBF | STATUS_CMD
        );
        assert_eq!(drain(&mut k), [SELF_TEST_OK]);
        assert_eq!(status(&mut k) & STATUS_SYS, STATUS_SYS);
        cmd(&mut k, TEST_KBD);
        cmd(&mut k, TEST_AUX);
        assert_eq!(drain(&mut k), [INTERFACE_OK, INTERFACE_OK]);
        assert_eq!(
            read(&mut k),
            INTERFACE_OK,
            "an empty buffer reads its last byte again"
        );
    }

    #[test]
    fn command_byte_round_trips_and_gates_irq1() {
        let (mut k, lines) = kbc();
        cmd(&mut k, READ_COMMAND_BYTE);
        assert!(lines.level(1), "replies interrupt on IRQ1 when enabled");
        assert_eq!(drain(&mut k), [RESET_COMMAND_BYTE]);
        assert!(!lines.level(1));
        cmd(&mut k, WRITE_COMMAND_BYTE);
        data(&mut k, CB_XLATE | CB_SYS);
        cmd(&mut k, READ_COMMAND_BYTE);
        assert!(!lines.level(1), "interrupts disabled in the command byte");
        assert_eq!(drain(&mut k), [CB_XLATE | CB_SYS]);
    }

    #[test]
    fn keyboard_reset_identify_and_arguments() {
        let (mut k, lines) = kbc();
        data(&mut k, RESET);
        assert!(lines.level(1));
        assert_eq!(drain(&mut k), [ACK, BAT_OK]);
        data(&mut k, IDENTIFY);
        assert_eq!(drain(&mut k), [ACK, 0xAB, 0x83]);
        data(&mut k, SET_LEDS);
        data(&mut k, 0x07);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        data(&mut k, SCANCODE_SET);
        data(&mut k, 0);
        assert_eq!(drain(&mut k), [ACK, ACK, 2]);
        data(&mut k, 0xF4);
        data(&mut k, ECHO);
        data(&mut k, 0x42);
        assert_eq!(drain(&mut k), [ACK, ECHO, RESEND]);
    }

    #[test]
    fn disabled_keyboard_holds_its_bytes() {
        let (mut k, _) = kbc();
        cmd(&mut k, DISABLE_KBD);
        cmd(&mut k, WRITE_KBD_OUTPUT);
        data(&mut k, 0x1C);
        assert_eq!(drain(&mut k), []);
        cmd(&mut k, ENABLE_KBD);
        assert_eq!(drain(&mut k), [0x1C]);
    }

    #[test]
    fn mouse_bytes_come_with_aux_obf_on_irq12() {
        let (mut k, lines) = kbc();
        cmd(&mut k, WRITE_AUX_OUTPUT);
        data(&mut k, 0x5A);
        assert_eq!(status(&mut k) & STATUS_AUX_OBF, STATUS_AUX_OBF);
        assert!(lines.level(12) && !lines.level(1));
        assert_eq!(drain(&mut k), [0x5A]);
        cmd(&mut k, WRITE_AUX);
        data(&mut k, RESET);
        assert_eq!(drain(&mut k), [ACK, BAT_OK, 0x00]);
        cmd(&mut k, WRITE_AUX);
        data(&mut k, AUX_SET_SAMPLE_RATE);
        cmd(&mut k, WRITE_AUX);
        data(&mut k, 200);
        cmd(&mut k, WRITE_AUX);
        data(&mut k, IDENTIFY);
        assert_eq!(drain(&mut k), [ACK, ACK, ACK, AUX_ID]);
    }

    #[test]
    fn output_port_drives_a20_and_reset() {
        let (mut k, _) = kbc();
        cmd(&mut k, READ_OUTPUT_PORT);
        assert_eq!(drain(&mut k), [OUT_ONES | OUT_A20 | OUT_RESET_N]);
        cmd(&mut k, WRITE_OUTPUT_PORT);
        assert_eq!(data(&mut k, OUT_ONES | OUT_RESET_N), IoAccess::A20(false));
        assert_eq!(cmd(&mut k, ENABLE_A20), IoAccess::A20(true));
        assert_eq!(cmd(&mut k, ENABLE_A20), IoAccess::Done);
        assert_eq!(cmd(&mut k, DISABLE_A20), IoAccess::A20(false));
        cmd(&mut k, WRITE_OUTPUT_PORT);
        assert_eq!(data(&mut k, OUT_A20), IoAccess::Reset);
        assert_eq!(cmd(&mut k, 0xFE), IoAccess::Reset);
        assert_eq!(cmd(&mut k, 0xFF), IoAccess::Done);
    }

    #[test]
    fn a_command_cancels_a_pending_data_byte() {
        let (mut k, _) = kbc();
        cmd(&mut k, WRITE_OUTPUT_PORT);
        cmd(&mut k, READ_COMMAND_BYTE);
        // This byte goes to the keyboard, not to the output port.
        assert_eq!(data(&mut k, 0x00), IoAccess::Done);
        assert_eq!(drain(&mut k), [RESET_COMMAND_BYTE, RESEND]);
        assert_eq!(k.read(DATA, 0, 4, Nanos::ZERO) >> 8, 0xFF_FFFF);
        k.write(STATUS_COMMAND, 0, 2, 0xFFFF, Nanos::ZERO);
    }
}
