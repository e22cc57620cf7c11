//! The devices wired as a PC, the way the machine does it: buses, shared handles,
//! interrupt lines routed to the PIC and the IOAPIC, timed devices advanced to their
//! deadlines. Then a guest that hammers every port and MMIO window with random
//! accesses, which must never panic.

use std::io::sink;

use trapeze_devices::bus::{lock, shared, Shared};
use trapeze_devices::fw_cfg::{self, FwCfg};
use trapeze_devices::i8042::{self, I8042};
use trapeze_devices::ioapic::{self, IoApic};
use trapeze_devices::irq::{IrqLines, LINES};
use trapeze_devices::lapic::{self, Lapic};
use trapeze_devices::pci::host_bridge::I440fx;
use trapeze_devices::pci::isa_bridge::Piix3;
use trapeze_devices::pci::testdev::PciTestdev;
use trapeze_devices::pci::{self, PciBus};
use trapeze_devices::pic::{self, Pic};
use trapeze_devices::pit::{self, Pit};
use trapeze_devices::rtc::{self, DateTime, Rtc, RtcConfig};
use trapeze_devices::sysctrl::{self, ResetControl, SystemControlA};
use trapeze_devices::testdev::{self, PcTestdev};
use trapeze_devices::uart::{self, Uart};
use trapeze_devices::{IoAccess, MmioBus, Nanos, PortBus, Timed};

struct Pc {
    ports: PortBus,
    mmio: MmioBus,
    lines: IrqLines,
    pic: Shared<Pic>,
    ioapic: Shared<IoApic>,
    lapic: Shared<Lapic>,
    timed: Vec<Box<dyn Timed>>,
}

impl Pc {
    fn new() -> Pc {
        let lines = IrqLines::new();
        let pic = shared(Pic::new());
        let pit = shared(Pit::new(lines.line(0)));
        let rtc = shared(Rtc::new(
            RtcConfig {
                start: DateTime::from_unix(946_684_800),
                below_4g: 128 << 20,
                above_4g: 0,
            },
            lines.line(8),
        ));
        let com1 = shared(Uart::new(Box::new(sink()), lines.line(uart::COM1_IRQ)));
        let kbc = shared(I8042::new(true, lines.line(1), lines.line(12)));
        let lapic = shared(Lapic::new(0, 1_000_000_000));
        let ioapic = shared(IoApic::new(0));
        let testdev = shared(PcTestdev::new(lines.clone()));
        let mut pci = PciBus::new();
        pci.add(0, 0, Box::new(I440fx::new())).unwrap();
        pci.add(1, 0, Box::new(Piix3::new())).unwrap();
        pci.add(2, 0, Box::new(PciTestdev::new())).unwrap();
        let pci = shared(pci);

        let mut ports = PortBus::new();
        let id = ports
            .register(pic::MASTER, pic::PORTS, Box::new(pic.clone()))
            .unwrap();
        ports.add_range(id, pic::SLAVE, pic::PORTS).unwrap();
        ports.add_range(id, pic::ELCR, pic::PORTS).unwrap();
        let id = ports
            .register(pit::BASE, pit::PORTS, Box::new(pit.clone()))
            .unwrap();
        ports.add_range(id, pit::PORT_B, 1).unwrap();
        ports
            .register(rtc::PORT, rtc::PORTS, Box::new(rtc.clone()))
            .unwrap();
        ports
            .register(uart::COM1, uart::PORTS, Box::new(com1.clone()))
            .unwrap();
        let id = ports.register(i8042::DATA, 1, Box::new(kbc)).unwrap();
        ports.add_range(id, i8042::STATUS_COMMAND, 1).unwrap();
        ports
            .register(sysctrl::PORT, 1, Box::new(SystemControlA::new(true)))
            .unwrap();
        ports
            .register(sysctrl::RESET_CONTROL, 1, Box::new(ResetControl::new()))
            .unwrap();
        let id = ports
            .register(
                fw_cfg::PORT,
                fw_cfg::PORTS,
                Box::new(FwCfg::new(128 << 20, 1, None)),
            )
            .unwrap();
        ports
            .add_range(id, fw_cfg::DMA_PORT, fw_cfg::DMA_PORTS)
            .unwrap();
        let id = ports
            .register(testdev::SCRATCH, testdev::PORTS, Box::new(testdev.clone()))
            .unwrap();
        ports.add_range(id, testdev::FLUSH, testdev::PORTS).unwrap();
        ports
            .add_range(id, testdev::SCRATCH_BYTES, testdev::PORTS)
            .unwrap();
        ports
            .add_range(id, testdev::IRQ_LINES, testdev::IRQ_LINES_LEN)
            .unwrap();
        let id = ports
            .register(
                pci::CONFIG_ADDRESS,
                pci::CONFIG_ADDRESS_PORTS,
                Box::new(pci.clone()),
            )
            .unwrap();
        ports
            .add_range(id, pci::CONFIG_DATA, pci::CONFIG_DATA_PORTS)
            .unwrap();
        ports.set_fallback(id).unwrap();

        let mut mmio = MmioBus::new();
        mmio.register(lapic::BASE, lapic::SIZE, Box::new(lapic.clone()))
            .unwrap();
        mmio.register(ioapic::BASE, ioapic::SIZE, Box::new(ioapic.clone()))
            .unwrap();
        mmio.register(testdev::IOMEM, testdev::IOMEM_LEN, Box::new(testdev))
            .unwrap();
        let id = mmio.add(Box::new(pci));
        mmio.set_fallback(id).unwrap();

        let mut pc = Pc {
            ports,
            mmio,
            lines,
            pic,
            ioapic,
            lapic: lapic.clone(),
            timed: vec![
                Box::new(pit),
                Box::new(rtc),
                Box::new(com1),
                Box::new(lapic),
            ],
        };
        // The lines' power-on levels (IRQ0 is high: the PIT starts in mode 3).
        pc.route();
        pc
    }

    /// Replay line changes on the PIC (ISA IRQs) and the IOAPIC (GSIs, IRQ0 on pin 2).
    fn route(&mut self) {
        let Some(changes) = self.lines.take_changes() else {
            return;
        };
        for (line, level) in changes.steps() {
            lock(&self.pic).set_irq(line, level);
            let pin = if line == 0 { 2 } else { line };
            if let Some(msg) = lock(&self.ioapic).set_irq(pin, level) {
                lock(&self.lapic).receive(msg);
            }
        }
    }

    /// What the machine does with a write's answer.
    fn handle(&mut self, access: IoAccess) {
        match access {
            IoAccess::Interrupt(msg) => {
                lock(&self.lapic).receive(msg);
            }
            IoAccess::EoiBroadcast(v) => {
                for msg in lock(&self.ioapic).eoi(v) {
                    lock(&self.lapic).receive(msg);
                }
            }
            _ => {}
        }
        self.route();
    }

    fn outb(&mut self, port: u16, v: u8, now: Nanos) {
        let a = self.ports.write(port, 1, v as u32, now);
        self.handle(a);
    }

    /// Advance every timed device to the earliest deadline; false if there is none.
    fn run_to_next_deadline(&mut self) -> Option<Nanos> {
        let next = self.timed.iter().filter_map(|t| t.next_deadline()).min()?;
        for t in &mut self.timed {
            t.advance(next);
        }
        self.route();
        Some(next)
    }

    /// The CPU's INTA: the local APIC first, then the 8259 through LINT0.
    fn acknowledge(&mut self) -> Option<u8> {
        let mut lapic = lock(&self.lapic);
        if let Some(v) = lapic.highest_pending() {
            lapic.accept(v);
            return Some(v);
        }
        let mut pic = lock(&self.pic);
        (lapic.accepts_pic_interrupt() && pic.has_interrupt()).then(|| pic.acknowledge())
    }
}

#[test]
fn pit_interrupt_reaches_the_cpu_through_the_pic() {
    let mut pc = Pc::new();
    let t0 = Nanos::ZERO;
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xFE),
    ] {
        pc.outb(port, v, t0);
    }
    for (port, v) in [
        (0xA0, 0x11),
        (0xA1, 0x28),
        (0xA1, 0x02),
        (0xA1, 0x01),
        (0xA1, 0xFF),
    ] {
        pc.outb(port, v, t0);
    }
    // Channel 0, rate generator, 1193 ticks: a 1 kHz tick.
    pc.outb(0x43, 0x34, t0);
    let count: u16 = 1193;
    pc.outb(0x40, count as u8, t0);
    pc.outb(0x40, (count >> 8) as u8, t0);
    let mut ticks = 0;
    let mut last = t0;
    while ticks < 5 {
        last = pc.run_to_next_deadline().unwrap();
        if let Some(v) = pc.acknowledge() {
            assert_eq!(v, 0x20);
            pc.outb(0x20, 0x20, last);
            ticks += 1;
        }
    }
    // Five ticks of 1193 PIT clocks (plus the load clock) take just over 5 ms.
    assert!(
        last > Nanos::from_micros(5000) && last < Nanos::from_micros(5010),
        "{last:?}"
    );
}

#[test]
fn lapic_timer_and_ioapic_routed_testdev_line() {
    let mut pc = Pc::new();
    let w = |pc: &mut Pc, addr: u64, v: u32| {
        let a = pc.mmio.write(addr, 4, v as u64, Nanos::ZERO);
        pc.handle(a);
    };
    // The 8259s stay masked: everything goes through the APICs.
    pc.outb(0x21, 0xFF, Nanos::ZERO);
    pc.outb(0xA1, 0xFF, Nanos::ZERO);
    w(&mut pc, lapic::BASE + 0xF0, 0x1FF);
    // GSI 10, level-triggered, vector 0x4A; raised through pc-testdev.
    w(&mut pc, ioapic::BASE, 0x10 + 2 * 10);
    w(&mut pc, ioapic::BASE + 0x10, 0x8000 | 0x4A);
    pc.outb(testdev::IRQ_LINES + 10, 1, Nanos::ZERO);
    assert_eq!(pc.acknowledge(), Some(0x4A));
    // EOI while the line is still up: the IOAPIC sends it again.
    w(&mut pc, lapic::BASE + 0xB0, 0);
    assert_eq!(pc.acknowledge(), Some(0x4A));
    pc.outb(testdev::IRQ_LINES + 10, 0, Nanos::ZERO);
    w(&mut pc, lapic::BASE + 0xB0, 0);
    assert_eq!(pc.acknowledge(), None);
    // One-shot timer, divide by 1, 1000 counts at 1 GHz.
    w(&mut pc, lapic::BASE + 0x3E0, 0xB);
    w(&mut pc, lapic::BASE + 0x320, 0x70);
    w(&mut pc, lapic::BASE + 0x380, 1000);
    loop {
        let now = pc.run_to_next_deadline().unwrap();
        if let Some(v) = pc.acknowledge() {
            assert_eq!((v, now), (0x70, Nanos(1000)));
            break;
        }
    }
}

/// xorshift64*: a deterministic stream without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn random_guest_accesses_never_panic() {
    for seed in [
        0x1234_5678_9ABC_DEF1,
        0xDEAD_BEEF,
        0x0F0F_F0F0_5555_AAAA,
        42,
    ] {
        hammer(seed);
    }
}

fn hammer(seed: u64) {
    let mut pc = Pc::new();
    let mut rng = Rng(seed);
    let ports: Vec<u16> = [
        0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x60, 0x64, 0x70, 0x71,
        0x92,
    ]
    .into_iter()
    .chain(0x3F8..0x400)
    .chain(0x510..0x51C)
    .chain(0xCF8..0xD00)
    .chain(0xE0..0xEC)
    .chain(0x2000..0x2018)
    .chain([0xC000, 0xC0FF, 0x5A5A])
    .collect();
    let windows = [lapic::BASE, ioapic::BASE, testdev::IOMEM, 0xFEB0_0000];
    let mut now = Nanos::ZERO;
    for _ in 0..200_000 {
        now = now.saturating_add(rng.next() % 5_000);
        let r = rng.next();
        let size = rng.pick(&[1u8, 2, 4, 8]);
        match r % 8 {
            0..=3 => {
                let port = rng.pick(&ports);
                if r & 0x100 != 0 {
                    pc.ports.read(port, size.min(4), now);
                } else {
                    let a = pc.ports.write(port, size.min(4), rng.next() as u32, now);
                    pc.handle(a);
                }
            }
            4 | 5 => {
                let addr = rng.pick(&windows) + rng.next() % 0x1000;
                if r & 0x100 != 0 {
                    pc.mmio.read(addr, size, now);
                } else {
                    let a = pc.mmio.write(addr, size, rng.next(), now);
                    pc.handle(a);
                }
            }
            6 => {
                pc.run_to_next_deadline();
            }
            _ => {
                for t in &mut pc.timed {
                    t.advance(now);
                }
                pc.route();
                pc.acknowledge();
                let line = (rng.next() % (LINES as u64 + 8)) as u8;
                lock(&pc.pic).set_irq(line, r & 0x200 != 0);
            }
        }
    }
    // The deadlines the devices report are never in the past.
    for t in &pc.timed {
        if let Some(d) = t.next_deadline() {
            assert!(d > Nanos::ZERO);
        }
    }
}
