//! The PC's devices and the machine's side of the CPU's `Bus` (DESIGN.md §6): the port
//! and MMIO buses, the interrupt lines routed to the 8259 pair and the IOAPIC, the
//! IOAPIC's messages to the local APIC, and the timed devices the run loop advances.
//! The wiring follows crates/devices/tests/platform.rs.
//!
//! Devices see the machine time `now` (clock.rs), which the run loop sets at every slice
//! boundary (in virtual time a slice never crosses a device deadline). A port access or
//! a device MSR in the middle of a slice is dated by the instructions retired before it
//! (`Bus::clock`); an MMIO access sees the time at which the slice began.
//!
//! The CPU samples its INTR input (`Cpu::intr`) only from the run loop; when a write
//! changes whether an interrupt is deliverable (an EOI, an unmask, a pc-testdev line),
//! the write answers `BusFlow::Stop` so that the CPU ends the slice after the
//! instruction and the run loop updates INTR at once.

use std::io::Write;

use trapeze_cpu::msr::index as msr;
use trapeze_devices::acpi_pm::{self, AcpiPm};
use trapeze_devices::bus::{lock, shared, Shared};
use trapeze_devices::debug_exit::{self, DebugExit, ExitCode};
use trapeze_devices::debugcon::{self, DebugCon};
use trapeze_devices::fw_cfg::{self, FwCfg};
use trapeze_devices::i8042::{self, I8042};
use trapeze_devices::ioapic::{self, IoApic};
use trapeze_devices::irq::CpuSignal;
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
use trapeze_devices::{IoAccess, IrqLines, MmioBus, Nanos, PortBus, Timed};
use trapeze_mmu::{Bus, BusFlow};

use crate::clock::{tsc_to_ns, Clock};

/// The RTC's date at power-on: fixed, so that runs are deterministic
/// (2024-01-01 00:00:00 UTC); the host's date with `--realtime`.
pub const RTC_START_UNIX: i64 = 1_704_067_200;

/// The local APIC timer's input clock (the "bus clock"), as QEMU's 1 GHz; CPUID leaf
/// 15h reports it as the core crystal clock.
pub const APIC_BUS_HZ: u64 = trapeze_cpu::cpuid::CRYSTAL_HZ;

/// What the platform is built from.
pub struct PlatformConfig {
    /// RAM below and above 4 GiB, for the CMOS memory-size bytes and fw_cfg.
    pub below_4g: u64,
    pub above_4g: u64,
    pub debugcon: Box<dyn Write + Send>,
    pub serial: Box<dyn Write + Send>,
    /// `--realtime`: the clock follows the host's.
    pub realtime: bool,
}

pub struct Platform {
    pub ports: PortBus,
    pub mmio: MmioBus,
    pub lines: IrqLines,
    pub pic: Shared<Pic>,
    pub ioapic: Shared<IoApic>,
    pub lapic: Shared<Lapic>,
    /// COM1, which host input (a terminal, a pipe) reaches.
    pub com1: Shared<Uart>,
    pub timed: Vec<Box<dyn Timed>>,
    /// The debug-exit port's value, once written.
    pub exit_code: ExitCode,
    /// The machine's clock, and the time devices see: set by the run loop at each
    /// slice, and by `Bus::clock` to the exact time of a port or MSR access.
    pub clock: Clock,
    pub now: Nanos,
    /// What the run loop last put on the CPU's INTR input.
    pub intr: bool,
    /// A reset line was pulsed (port 0x92, 0xCF9, i8042).
    pub reset: bool,
    /// The guest turned the machine off (ACPI S5).
    pub power_off: bool,
    /// An NMI for the CPU (a LAPIC self-IPI or LINT1).
    pub nmi: bool,
}

impl Platform {
    pub fn new(cfg: PlatformConfig) -> Result<Platform, crate::MachineError> {
        let ram = cfg.below_4g + cfg.above_4g;
        let lines = IrqLines::new();
        let exit_code = ExitCode::default();
        let pic = shared(Pic::new());
        let pit = shared(Pit::new(lines.line(0)));
        let rtc = shared(Rtc::new(
            RtcConfig {
                start: DateTime::from_unix(if cfg.realtime {
                    host_unix_time()
                } else {
                    RTC_START_UNIX
                }),
                below_4g: cfg.below_4g,
                above_4g: cfg.above_4g,
            },
            lines.line(8),
        ));
        let com1 = shared(Uart::new(cfg.serial, lines.line(uart::COM1_IRQ)));
        let kbc = I8042::new(true, lines.line(1), lines.line(12));
        let lapic = shared(Lapic::new(0, APIC_BUS_HZ));
        let ioapic = shared(IoApic::new(0));
        let testdev = shared(PcTestdev::new(lines.clone()));
        let pm = shared(AcpiPm::new(lines.line(acpi_pm::SCI_IRQ)));
        let mut pci = PciBus::new();
        pci.add(0, 0, Box::new(I440fx::new())).map_err(wiring)?;
        pci.add(1, 0, Box::new(Piix3::new())).map_err(wiring)?;
        pci.add(2, 0, Box::new(PciTestdev::new())).map_err(wiring)?;
        let pci = shared(pci);

        let mut ports = PortBus::new();
        ports.register(debugcon::PORT, 1, Box::new(DebugCon::new(cfg.debugcon)))?;
        ports.register(
            debug_exit::PORT,
            debug_exit::LEN,
            Box::new(DebugExit::new(exit_code.clone())),
        )?;
        let id = ports.register(pic::MASTER, pic::PORTS, Box::new(pic.clone()))?;
        ports.add_range(id, pic::SLAVE, pic::PORTS)?;
        ports.add_range(id, pic::ELCR, pic::PORTS)?;
        let id = ports.register(pit::BASE, pit::PORTS, Box::new(pit.clone()))?;
        ports.add_range(id, pit::PORT_B, 1)?;
        ports.register(rtc::PORT, rtc::PORTS, Box::new(rtc.clone()))?;
        ports.register(uart::COM1, uart::PORTS, Box::new(com1.clone()))?;
        let id = ports.register(i8042::DATA, 1, Box::new(kbc))?;
        ports.add_range(id, i8042::STATUS_COMMAND, 1)?;
        ports.register(sysctrl::PORT, 1, Box::new(SystemControlA::new(true)))?;
        ports.register(sysctrl::RESET_CONTROL, 1, Box::new(ResetControl::new()))?;
        ports.register(acpi_pm::BASE, acpi_pm::PORTS, Box::new(pm.clone()))?;
        let id = ports.register(
            fw_cfg::PORT,
            fw_cfg::PORTS,
            Box::new(FwCfg::new(ram, 1, None)),
        )?;
        ports.add_range(id, fw_cfg::DMA_PORT, fw_cfg::DMA_PORTS)?;
        // pc-testdev without its byte-wide scratch window 0xE8–0xEB, which holds the
        // 0xE9 debug console.
        let id = ports.register(testdev::SCRATCH, testdev::PORTS, Box::new(testdev.clone()))?;
        ports.add_range(id, testdev::FLUSH, testdev::PORTS)?;
        ports.add_range(id, testdev::IRQ_LINES, testdev::IRQ_LINES_LEN)?;
        let id = ports.register(
            pci::CONFIG_ADDRESS,
            pci::CONFIG_ADDRESS_PORTS,
            Box::new(pci.clone()),
        )?;
        ports.add_range(id, pci::CONFIG_DATA, pci::CONFIG_DATA_PORTS)?;
        ports.set_fallback(id)?;

        let mut mmio = MmioBus::new();
        mmio.register(lapic::BASE, lapic::SIZE, Box::new(lapic.clone()))
            .map_err(wiring)?;
        mmio.register(ioapic::BASE, ioapic::SIZE, Box::new(ioapic.clone()))
            .map_err(wiring)?;
        mmio.register(testdev::IOMEM, testdev::IOMEM_LEN, Box::new(testdev))
            .map_err(wiring)?;
        let id = mmio.add(Box::new(pci));
        mmio.set_fallback(id).map_err(wiring)?;

        let p = Platform {
            ports,
            mmio,
            lines,
            pic,
            ioapic,
            lapic: lapic.clone(),
            com1: com1.clone(),
            timed: vec![
                Box::new(pit),
                Box::new(rtc),
                Box::new(com1),
                Box::new(lapic),
                Box::new(pm),
            ],
            clock: Clock::new(cfg.realtime),
            exit_code,
            now: Nanos::ZERO,
            intr: false,
            reset: false,
            power_off: false,
            nmi: false,
        };
        // The lines' power-on levels (IRQ0 is high: the PIT starts in mode 3) are not
        // replayed as edges: the controllers power on after the lines settled, so
        // IRQ0 first interrupts on the PIT's next rising edge. A guest that opens a
        // short STI window before programming anything (prot_v86) sees no stale IRQ.
        let _ = p.lines.take_changes();
        Ok(p)
    }

    /// Replay line changes on the PIC (ISA IRQs) and the IOAPIC (GSIs, IRQ0 on pin 2).
    pub fn route(&mut self) {
        let Some(changes) = self.lines.take_changes() else {
            return;
        };
        for (line, level) in changes.steps() {
            lock(&self.pic).set_irq(line, level);
            let pin = if line == 0 { 2 } else { line };
            let msg = lock(&self.ioapic).set_irq(pin, level);
            if let Some(msg) = msg {
                self.deliver_to_lapic(msg);
            }
        }
    }

    fn deliver_to_lapic(&mut self, msg: trapeze_devices::irq::ApicMessage) {
        let sig = lock(&self.lapic).receive(msg);
        if let Some(sig) = sig {
            self.signal(sig);
        }
    }

    fn signal(&mut self, sig: CpuSignal) {
        // A single CPU: INIT/SIPI/SMI have nothing to do; ExtINT is the PIC path,
        // which `interrupt_pending` already follows.
        if sig == CpuSignal::Nmi {
            self.nmi = true;
        }
    }

    /// Whether an interrupt is deliverable to the CPU: a LAPIC vector above the
    /// processor priority, or the 8259's INTR through LINT0.
    pub fn interrupt_pending(&self) -> bool {
        let lapic = lock(&self.lapic);
        lapic.highest_pending().is_some()
            || (lapic.accepts_pic_interrupt() && lock(&self.pic).has_interrupt())
    }

    /// The earliest time any timed device must run.
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.timed.iter().filter_map(|t| t.next_deadline()).min()
    }

    /// Bring every timed device to `now` and route what their lines did.
    pub fn advance(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        for t in &mut self.timed {
            t.advance(self.now);
        }
        self.route();
    }

    /// Bytes from the host for COM1's receive line; how many it took (the rest must be
    /// offered again later).
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        let n = lock(&self.com1).receive(bytes, self.now);
        self.route();
        n
    }

    /// Push COM1's buffered output to the host: the guest is idle (a prompt without a
    /// newline must reach the terminal) or the run ends.
    pub fn flush_output(&mut self) {
        lock(&self.com1).flush();
    }

    /// What the machine does with a write's answer; `Stop` when the CPU must return
    /// to the run loop (a reset, a debug exit, an NMI, or a change of INTR).
    fn handle(&mut self, access: IoAccess) -> BusFlow {
        let flow = match access {
            IoAccess::Done => BusFlow::Continue,
            IoAccess::Stop => BusFlow::Stop,
            IoAccess::Reset => {
                self.reset = true;
                BusFlow::Stop
            }
            IoAccess::PowerOff => {
                self.power_off = true;
                BusFlow::Stop
            }
            IoAccess::A20(on) => BusFlow::A20(on),
            IoAccess::Interrupt(msg) => {
                self.deliver_to_lapic(msg);
                BusFlow::Continue
            }
            IoAccess::EoiBroadcast(v) => {
                let msgs = lock(&self.ioapic).eoi(v);
                for msg in msgs {
                    self.deliver_to_lapic(msg);
                }
                BusFlow::Continue
            }
            IoAccess::Signal(sig) => {
                self.signal(sig);
                BusFlow::Continue
            }
        };
        self.route();
        if flow == BusFlow::Continue && (self.nmi || self.interrupt_pending() != self.intr) {
            return BusFlow::Stop;
        }
        flow
    }
}

/// Seconds since 1970 by the host's clock (the RTC's start in realtime mode).
fn host_unix_time() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(RTC_START_UNIX, |d| d.as_secs() as i64)
}

fn wiring(e: impl std::fmt::Display) -> crate::MachineError {
    crate::MachineError::Wiring(e.to_string())
}

impl Bus for Platform {
    fn clock(&mut self, retired: u64) {
        let now = self.clock.now(retired);
        // In virtual time a slice never crosses a deadline; with the host clock it can.
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.advance(now);
        } else {
            self.now = self.now.max(now);
        }
    }

    /// The local APIC's MSRs: IA32_APIC_BASE and IA32_TSC_DEADLINE.
    fn rdmsr(&mut self, index: u32, _tsc: u64) -> Option<u64> {
        let lapic = lock(&self.lapic);
        match index {
            msr::APIC_BASE => Some(lapic.apic_base()),
            msr::TSC_DEADLINE => Some(lapic.tsc_deadline()),
            _ => None,
        }
    }

    fn wrmsr(&mut self, index: u32, value: u64, tsc: u64) -> Option<Result<BusFlow, ()>> {
        let now = self.now;
        let mut lapic = lock(&self.lapic);
        match index {
            msr::APIC_BASE => {
                // The MMIO window stays at its reset address (SDM Vol.3 10.4.5 allows
                // moving it; no PC firmware or Linux does).
                if value & lapic::APIC_BASE_ADDRESS != lapic::BASE {
                    eprintln!(
                        "trapeze: relocating the local APIC to {value:#x} is not implemented (#GP)"
                    );
                    return Some(Err(()));
                }
                Some(
                    lapic
                        .set_apic_base(value)
                        .map(|()| BusFlow::Stop)
                        .map_err(|_| ()),
                )
            }
            msr::TSC_DEADLINE => {
                // The TSC runs on the machine's clock (clock.rs).
                let at = Nanos(now.0.saturating_add(tsc_to_ns(value.saturating_sub(tsc))));
                lapic.set_tsc_deadline(value, at, now);
                // The next deadline moved: end the slice so the run loop sees it.
                Some(Ok(BusFlow::Stop))
            }
            _ => None,
        }
    }

    fn io_in(&mut self, port: u16, size: u8) -> u32 {
        let v = self.ports.read(port, size, self.now);
        // Reads can lower lines (UART IIR/RBR, RTC register C, PIC poll).
        self.route();
        v
    }

    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusFlow {
        let a = self.ports.write(port, size, value, self.now);
        self.handle(a)
    }

    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        let v = self.mmio.read(addr, size, self.now);
        self.route();
        v
    }

    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) -> BusFlow {
        let a = self.mmio.write(addr, size, value, self.now);
        self.handle(a)
    }

    /// INTA: the local APIC's highest pending vector first, then the 8259 through
    /// LINT0. `None` if the request went away (the CPU then takes nothing).
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        let v = {
            let mut lapic = lock(&self.lapic);
            if let Some(v) = lapic.highest_pending() {
                lapic.accept(v);
                Some(v)
            } else {
                let mut pic = lock(&self.pic);
                (lapic.accepts_pic_interrupt() && pic.has_interrupt()).then(|| pic.acknowledge())
            }
        };
        // `intr` keeps mirroring the CPU's input, which the acknowledge does not
        // change: the next write that finds nothing pending (the EOI) ends the slice
        // and the run loop lowers it.
        self.route();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        Platform::new(PlatformConfig {
            below_4g: 16 << 20,
            above_4g: 0,
            debugcon: Box::new(std::io::sink()),
            serial: Box::new(std::io::sink()),
            realtime: false,
        })
        .unwrap()
    }

    #[test]
    fn a_port_read_mid_slice_sees_its_own_instruction_time() {
        use crate::clock::NS_PER_INSN;
        let mut p = platform();
        let pm_tmr = acpi_pm::BASE + acpi_pm::PM_TMR;
        // 1 ms of retired instructions into the run.
        p.clock(1_000_000 / NS_PER_INSN);
        assert_eq!(p.io_in(pm_tmr, 4), 3579, "1 ms of 3.579545 MHz");
        // One virtual second later, in the same slice.
        p.clock(1_001_000_000 / NS_PER_INSN);
        let t1 = p.io_in(pm_tmr, 4);
        assert_eq!(t1, 3_583_124, "1.001 s");
        // Time never runs backwards, whatever count the CPU reports.
        p.clock(0);
        assert_eq!(p.io_in(pm_tmr, 4), t1);
    }
}
