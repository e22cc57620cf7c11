//! The machine's device wiring seen through the CPU's bus: PCI BAR sizing, the RTC's
//! fixed start date, the APICs' MMIO windows, pc-testdev IRQ lines through the PIC.

use trapeze_devices::Timed;
use trapeze_machine::{Config, Image, Machine};
use trapeze_mmu::Bus;

fn machine() -> Machine {
    Machine::new(&Config::quiet(
        Image::Flat {
            data: vec![0xF4],
            load: 0x7c00,
        },
        16 << 20,
    ))
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

/// IA32_TSC_DEADLINE reaches the local APIC through the bus, and its deadline is where
/// the 1 GHz TSC (CPUID leaf 15h) reaches the value.
#[test]
fn tsc_deadline_msr_arms_the_lapic_timer() {
    let mut m = machine();
    let p = &mut m.platform;
    p.mmio_write(0xFEE0_00F0, 4, 0x1FF); // SVR: software-enabled
    p.mmio_write(0xFEE0_0320, 4, 0x4_0040); // LVT timer: TSC-deadline, vector 40h
    let lapic_deadline = |p: &trapeze_machine::platform::Platform| {
        trapeze_devices::bus::lock(&p.lapic).next_deadline()
    };
    assert_eq!(lapic_deadline(p), None);
    let [a, b, c, _] = trapeze_cpu::cpuid::cpuid(0x15, 0);
    let tsc_hz = c as u64 * b as u64 / a as u64;
    // At TSC 1000, a deadline 5000 ticks later.
    assert_eq!(
        p.wrmsr(0x6E0, 6000, 1000),
        Some(Ok(trapeze_mmu::BusFlow::Stop))
    );
    let ns = 5000 * 1_000_000_000 / tsc_hz;
    assert_eq!(
        p.next_deadline(),
        Some(trapeze_devices::Nanos(p.now.0 + ns))
    );
    assert_eq!(p.rdmsr(0x6E0, 1000), Some(6000));
    // IA32_APIC_BASE: the BSP's APIC at FEE00000h, enabled (SDM Vol.3 10.4.4).
    assert_eq!(p.rdmsr(0x1B, 0), Some(0xFEE0_0900));
    // x2APIC mode is not implemented: #GP.
    assert_eq!(
        p.wrmsr(0x1B, 0xFEE0_0000 | 1 << 10 | 1 << 11, 0),
        Some(Err(()))
    );
    // Other MSRs are the CPU's.
    assert_eq!(p.rdmsr(0x10, 0), None);
}
