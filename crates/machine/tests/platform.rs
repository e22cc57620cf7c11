//! The machine's device wiring seen through the CPU's bus: PCI BAR sizing, the RTC's
//! fixed start date, the APICs' MMIO windows, pc-testdev IRQ lines through the PIC.

use trapeze_machine::{Config, Image, Machine, Output};
use trapeze_mmu::Bus;

fn machine() -> Machine {
    Machine::new(&Config {
        memory: 16 << 20,
        image: Image::Flat {
            data: vec![0xF4],
            load: 0x7c00,
        },
        debugcon: Output::None,
        serial: Output::None,
        pg_strict: false,
    })
    .unwrap()
}

fn cfg_read(m: &mut Machine, addr: u32) -> u32 {
    m.platform.io_out(0xCF8, 4, addr);
    m.platform.io_in(0xCFC, 4)
}

#[test]
fn pci_testdev_bar_sizing() {
    let mut m = machine();
    // 00:02.0 is pci-testdev (Red Hat 1b36:0005).
    assert_eq!(cfg_read(&mut m, 0x8000_1000), 0x0005_1b36);
    m.platform.io_out(0xCF8, 4, 0x8000_1010);
    m.platform.io_out(0xCFC, 4, 0xFFFF_FFFF);
    let mask = m.platform.io_in(0xCFC, 4);
    // A 4 KiB memory BAR: the size bits read back as zero.
    assert_eq!(mask & 0xFFFF_FFF0, 0xFFFF_F000, "{mask:#x}");
}

#[test]
fn rtc_starts_at_the_fixed_date() {
    let mut m = machine();
    let cmos = |m: &mut Machine, r: u8| {
        m.platform.io_out(0x70, 1, r as u32);
        m.platform.io_in(0x71, 1) as u8
    };
    // BCD: 2024-01-01 00:00:00.
    assert_eq!(
        [9, 8, 7, 4, 2, 0].map(|r| cmos(&mut m, r)),
        [0x24, 0x01, 0x01, 0, 0, 0]
    );
}

#[test]
fn apic_windows_answer() {
    let mut m = machine();
    // LAPIC version register: version 0x14 in bits 7:0.
    assert_eq!(m.platform.mmio_read(0xFEE0_0030, 4) & 0xFF, 0x14);
    // IOAPIC version through IOREGSEL/IOWIN.
    m.platform.mmio_write(0xFEC0_0000, 4, 1);
    assert_eq!(m.platform.mmio_read(0xFEC0_0010, 4) & 0xFF, 0x11);
}

#[test]
fn testdev_irq_line_reaches_the_pic() {
    let mut m = machine();
    for (p, v) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 4),
        (0x21, 1),
        (0x21, 0xF7),
    ] {
        m.platform.io_out(p, 1, v);
    }
    assert!(!m.platform.interrupt_pending());
    // Raising IRQ3 through pc-testdev asks the CPU to re-sample INTR.
    assert_eq!(m.platform.io_out(0x2003, 1, 1), trapeze_mmu::BusFlow::Stop);
    assert!(m.platform.interrupt_pending());
    assert_eq!(m.platform.acknowledge_interrupt(), Some(0x23));
}
