//! ACPI tables (ACPI 6.5 chapter 5) describing this PC to an OS: RSDP, XSDT, FADT with
//! FACS and DSDT, and MADT. They are built with the acpi_tables crate and placed in the
//! BIOS area (0xE0000-0xFFFFF), where an OS that is not told the RSDP's address finds
//! it by scanning (5.2.5.1); the Linux loader also passes it in boot_params.
//!
//! What they describe is platform.rs's wiring: one local APIC (id 0), the IOAPIC at
//! 0xFEC00000 with GSI base 0, ISA IRQ 0 on IOAPIC pin 2 and every other ISA IRQ on the
//! pin of its number, the ACPI PM block of crates/devices/src/acpi_pm.rs with its SCI
//! on IRQ 9, and the PIIX reset control register 0xCF9.

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use trapeze_devices::{acpi_pm, ioapic, lapic, sysctrl};
use trapeze_mmu::PhysMem;

use crate::config::MachineError;

/// The BIOS read-only area the tables live in; the e820 map reserves it.
pub const AREA_START: u64 = 0xE_0000;
pub const AREA_END: u64 = 0x10_0000;
/// The RSDP, on a 16-byte boundary inside the area (5.2.5.1).
pub const RSDP_ADDR: u64 = AREA_START;

const OEM_ID: [u8; 6] = *b"TRAPEZ";
const OEM_TABLE_ID: [u8; 8] = *b"TRAPEZE ";
const OEM_REVISION: u32 = 1;

/// MADT flags (5.2.12): the PC also has dual 8259s.
const PCAT_COMPAT: u32 = 1 << 0;
/// MADT Interrupt Source Override (5.2.12.5): type 2, 10 bytes.
const MADT_ISO: u8 = 2;
/// MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2 (Table 5.26).
const ACTIVE_HIGH: u16 = 0b01;
const LEVEL: u16 = 0b11 << 2;

/// FADT IA-PC boot architecture flags (Table 5.11): ISA devices and an 8042.
const LEGACY_DEVICES: u16 = 1 << 0;
const I8042: u16 = 1 << 1;
const VGA_NOT_PRESENT: u16 = 1 << 2;
/// The RTC's century register (CMOS index 0x32).
const RTC_CENTURY: u8 = 0x32;

/// An ISA IRQ, the GSI it arrives on, and its MPS INTI flags.
struct Override {
    irq: u8,
    gsi: u32,
    flags: u16,
}

/// The ISA IRQs that do not reach the IOAPIC pin of their own number with ISA's
/// polarity (edge, active high): the PIT's IRQ 0 on pin 2 (Platform::route), and the
/// SCI, which ACPI makes level-triggered, kept active high as the PM block drives it.
const OVERRIDES: [Override; 2] = [
    Override {
        irq: 0,
        gsi: 2,
        flags: 0,
    },
    Override {
        irq: acpi_pm::SCI_IRQ,
        gsi: acpi_pm::SCI_IRQ as u32,
        flags: ACTIVE_HIGH | LEVEL,
    },
];

/// The tables and where each goes.
pub struct Tables {
    pub blobs: Vec<(u64, Vec<u8>)>,
}

fn aml_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn align16(a: u64) -> u64 {
    (a + 15) & !15
}

/// The DSDT: only `\_S5`, the soft-off sleep type (7.4.2), so the OS can power off.
fn dsdt() -> Vec<u8> {
    let mut t = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let s5 = acpi_pm::SLP_TYP_S5;
    // Package { SLP_TYPa, SLP_TYPb, reserved, reserved }.
    let zero = 0u8;
    let pkg = aml::Package::new(vec![&s5, &s5, &zero, &zero]);
    t.append_slice(&aml_bytes(&aml::Name::new("_S5_".into(), &pkg)));
    t.as_slice().to_vec()
}

fn madt() -> Vec<u8> {
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, lapic::BASE as u32);
    t.write_u32(40, PCAT_COMPAT);
    t.append_slice(&aml_bytes(&ProcessorLocalApic::new(
        0,
        0,
        EnabledStatus::Enabled,
    )));
    t.append_slice(&aml_bytes(&IoApic::new(0, ioapic::BASE as u32, 0)));
    for o in &OVERRIDES {
        let mut s = vec![MADT_ISO, 10, 0, o.irq];
        s.extend_from_slice(&o.gsi.to_le_bytes());
        s.extend_from_slice(&o.flags.to_le_bytes());
        t.append_slice(&s);
    }
    t.as_slice().to_vec()
}

fn io_gas(port: u16, len: u8) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8 * len,
        0,
        AccessSize::Undefined,
        port as u64,
    )
}

fn fadt(facs: u64, dsdt: u64) -> Vec<u8> {
    let pm = |off: u16| acpi_pm::BASE + off;
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt)
        .firmware_ctrl_64(facs)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::TmrValExt)
        .flag(Flags::ResetRegSup);
    // No SMI command port: the platform is always in ACPI mode (5.2.9).
    f.sci_int = (acpi_pm::SCI_IRQ as u16).into();
    f.pm1a_evt_blk = (pm(acpi_pm::PM1_EVT) as u32).into();
    f.pm1a_cnt_blk = (pm(acpi_pm::PM1_CNT) as u32).into();
    f.pm_tmr_blk = (pm(acpi_pm::PM_TMR) as u32).into();
    f.pm1_evt_len = acpi_pm::PM1_EVT_LEN;
    f.pm1_cnt_len = acpi_pm::PM1_CNT_LEN;
    f.pm_tmr_len = acpi_pm::PM_TMR_LEN;
    f.x_pm1a_evt_blk = io_gas(pm(acpi_pm::PM1_EVT), acpi_pm::PM1_EVT_LEN);
    f.x_pm1a_cnt_blk = io_gas(pm(acpi_pm::PM1_CNT), acpi_pm::PM1_CNT_LEN);
    f.x_pm_tmr_blk = io_gas(pm(acpi_pm::PM_TMR), acpi_pm::PM_TMR_LEN);
    // C2/C3 are not supported (latencies above 100 / 1000 us).
    f.p_lvl2_lat = 101.into();
    f.p_lvl3_lat = 1001.into();
    f.century = RTC_CENTURY;
    f.iapc_boot_arch = (LEGACY_DEVICES | I8042 | VGA_NOT_PRESENT).into();
    // Reset: write 0x06 (RCPU | SRST) to the PIIX reset control register.
    f.reset_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        sysctrl::RESET_CONTROL as u64,
    );
    f.reset_value = 0x06;
    aml_bytes(&f.finalize())
}

/// Build every table and lay them out from `AREA_START`: RSDP, FACS (64-byte
/// aligned, 5.2.10), XSDT, FADT, MADT, DSDT.
pub fn build() -> Tables {
    let facs_addr = RSDP_ADDR + 64;
    let facs = aml_bytes(&FACS::new());
    let xsdt_addr = align16(facs_addr + facs.len() as u64);
    let dsdt = dsdt();
    let madt = madt();
    // The XSDT has two entries: 36 + 16 bytes.
    let fadt_addr = align16(xsdt_addr + 36 + 16);
    let fadt_len = acpi_tables::fadt::FADT::len() as u64;
    let madt_addr = align16(fadt_addr + fadt_len);
    let dsdt_addr = align16(madt_addr + madt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    Tables {
        blobs: vec![
            (RSDP_ADDR, aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr))),
            (facs_addr, facs),
            (xsdt_addr, aml_bytes(&xsdt)),
            (fadt_addr, fadt(facs_addr, dsdt_addr)),
            (madt_addr, madt),
            (dsdt_addr, dsdt),
        ],
    }
}

/// Write the tables into guest RAM; returns the RSDP's address.
pub fn install(phys: &mut PhysMem) -> Result<u64, MachineError> {
    for (addr, bytes) in build().blobs {
        debug_assert!(addr + bytes.len() as u64 <= AREA_END);
        phys.write_bytes(addr, &bytes)?;
    }
    Ok(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    //! The tables are checked by disassembling them with ACPICA's iasl (Debian package
    //! acpica-tools), an independent parser that also verifies lengths and checksums.

    use super::*;
    use std::process::Command;

    /// Disassemble every table with `iasl -d`; `None` (and a loud note) if iasl is not
    /// installed outside CI, where .ci/run installs it.
    fn disassemble() -> Option<Vec<(u64, String)>> {
        if Command::new("iasl").arg("-v").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "iasl is missing in CI: .ci/run must install acpica-tools"
            );
            eprintln!("\n*** SKIPPED: iasl not installed (apt-get install acpica-tools) ***\n");
            return None;
        }
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("trapeze-acpi-{}-{run}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = Vec::new();
        // iasl disassembles system description tables, not the RSDP (checked on its own).
        for (i, (addr, bytes)) in build().blobs.into_iter().enumerate().skip(1) {
            let dat = dir.join(format!("t{i}.dat"));
            std::fs::write(&dat, &bytes).unwrap();
            let r = Command::new("iasl").arg("-d").arg(&dat).output().unwrap();
            if std::env::var_os("TRAPEZE_ACPI_KEEP").is_some() {
                eprintln!("{}", dat.display());
            }
            assert!(
                r.status.success(),
                "iasl -d on table {i} at {addr:#x}: {}{}",
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            );
            out.push((
                addr,
                std::fs::read_to_string(dir.join(format!("t{i}.dsl"))).unwrap(),
            ));
        }
        if std::env::var_os("TRAPEZE_ACPI_KEEP").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        Some(out)
    }

    /// The disassembly of the table whose text contains `signature`.
    fn table<'a>(all: &'a [(u64, String)], signature: &str) -> (u64, &'a str) {
        // Data tables print `Signature : "FACP"`, the DSDT `DefinitionBlock ("", "DSDT"`.
        let (a, t) = all
            .iter()
            .find(|(_, t)| {
                t.contains(&format!("Signature : \"{signature}\""))
                    || t.contains(&format!("DefinitionBlock (\"\", \"{signature}\""))
            })
            .unwrap_or_else(|| panic!("no table with {signature}"));
        (*a, t.as_str())
    }

    /// The value iasl prints for field `name` (`name : value`), without leading zeros.
    fn field<'a>(dsl: &'a str, name: &str) -> &'a str {
        dsl.lines()
            .find_map(|l| {
                // "[038h 0056   4]     Address : FEC00000"
                let l = l.split_once(']').map_or(l, |(_, rest)| rest);
                let (k, v) = l.split_once(" : ")?;
                (k.trim() == name).then(|| v.trim())
            })
            .unwrap_or_else(|| panic!("no field '{name}' in\n{dsl}"))
    }

    fn hex(v: &str) -> u64 {
        let h = v.split_whitespace().next().unwrap();
        u64::from_str_radix(h, 16).unwrap_or_else(|_| panic!("not hex: {v}"))
    }

    #[test]
    fn checksums_and_pointers_agree() {
        let Some(all) = disassemble() else { return };
        for (_, t) in &all {
            assert!(
                !t.to_lowercase().contains("incorrect"),
                "bad checksum/length:\n{t}"
            );
        }
        let (xsdt_addr, xsdt) = table(&all, "XSDT");
        // RSDP (5.2.5.3): signature, checksum over the first 20 bytes, revision 2,
        // length 36, XSDT address at 24, extended checksum over all 36 bytes.
        let (rsdp_addr, rsdp) = &build().blobs[0];
        assert_eq!(*rsdp_addr % 16, 0);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(rsdp[15], 2);
        assert_eq!(u32::from_le_bytes(rsdp[20..24].try_into().unwrap()), 36);
        assert_eq!(rsdp.len(), 36);
        assert_eq!(sum(rsdp), 0);
        assert_eq!(
            u64::from_le_bytes(rsdp[24..32].try_into().unwrap()),
            xsdt_addr
        );
        let (fadt_addr, fadt) = table(&all, "FACP");
        let (madt_addr, _) = table(&all, "APIC");
        let entries: Vec<u64> = xsdt
            .lines()
            .filter(|l| l.contains("ACPI Table Address"))
            .map(|l| hex(l.split(" : ").nth(1).unwrap()))
            .collect();
        assert_eq!(entries, vec![fadt_addr, madt_addr]);
        let (dsdt_addr, _) = table(&all, "DSDT");
        let (facs_addr, _) = table(&all, "FACS");
        // The 64-bit X_FIRMWARE_CTRL and X_DSDT follow the reset value.
        let x = fadt.split("Value to cause reset").nth(1).unwrap();
        assert_eq!(hex(field(x, "DSDT Address")), dsdt_addr);
        assert_eq!(hex(field(x, "FACS Address")), facs_addr);
        assert_eq!(facs_addr % 64, 0, "FACS alignment (5.2.10)");
        assert!(all.iter().all(|(a, _)| (AREA_START..AREA_END).contains(a)));
    }

    #[test]
    fn fadt_points_at_the_pm_block_and_reset_register() {
        let Some(all) = disassemble() else { return };
        let (_, f) = table(&all, "FACP");
        assert_eq!(hex(field(f, "SCI Interrupt")), 9);
        assert_eq!(hex(field(f, "SMI Command Port")), 0);
        assert_eq!(hex(field(f, "PM1A Event Block Address")), 0x600);
        assert_eq!(hex(field(f, "PM1A Control Block Address")), 0x604);
        assert_eq!(hex(field(f, "PM Timer Block Address")), 0x608);
        assert_eq!(hex(field(f, "PM1 Event Block Length")), 4);
        assert_eq!(hex(field(f, "PM1 Control Block Length")), 2);
        assert_eq!(hex(field(f, "PM Timer Block Length")), 4);
        assert_eq!(field(f, "Use Platform Timer (V4)"), "0");
        assert_eq!(field(f, "32-bit PM Timer (V1)"), "1");
        assert_eq!(field(f, "Reset Register Supported (V2)"), "1");
        assert_eq!(field(f, "Hardware Reduced (V5)"), "0");
        assert_eq!(hex(field(f, "Value to cause reset")), 6);
        // The reset register: system I/O space, 8 bits at 0xCF9.
        let reset = f.split("Reset Register :").nth(1).unwrap();
        assert_eq!(hex(field(reset, "Space ID")), 1);
        assert_eq!(hex(field(reset, "Bit Width")), 8);
        assert_eq!(hex(field(reset, "Address")), 0xCF9);
        let x_cnt = f.split("PM1A Control Block :").nth(1).unwrap();
        assert_eq!(hex(field(x_cnt, "Address")), 0x604);
    }

    #[test]
    fn madt_describes_the_platform_wiring() {
        let Some(all) = disassemble() else { return };
        let (_, m) = table(&all, "APIC");
        assert_eq!(hex(field(m, "Local Apic Address")), 0xFEE0_0000);
        assert_eq!(field(m, "PC-AT Compatibility"), "1");
        let sub: Vec<&str> = m.split("Subtable Type").skip(1).collect();
        assert_eq!(sub.len(), 4);
        assert!(sub[0].contains("[Processor Local APIC]"));
        assert_eq!(hex(field(sub[0], "Local Apic ID")), 0);
        assert_eq!(field(sub[0], "Processor Enabled"), "1");
        assert!(sub[1].contains("[I/O APIC]"));
        assert_eq!(hex(field(sub[1], "Address")), 0xFEC0_0000);
        assert_eq!(hex(field(sub[1], "Interrupt")), 0);
        // IRQ 0 arrives on IOAPIC pin 2 (Platform::route).
        assert!(sub[2].contains("[Interrupt Source Override]"));
        assert_eq!(hex(field(sub[2], "Source")), 0);
        assert_eq!(hex(field(sub[2], "Interrupt")), 2);
        // The SCI: IRQ 9, level-triggered, active high.
        assert_eq!(hex(field(sub[3], "Source")), 9);
        assert_eq!(hex(field(sub[3], "Interrupt")), 9);
        assert_eq!(field(sub[3], "Polarity"), "1");
        assert_eq!(field(sub[3], "Trigger Mode"), "3");
        assert_eq!(field(sub[2], "Polarity"), "0", "conforms to the bus");
    }

    #[test]
    fn dsdt_has_the_s5_sleep_type_the_pm_block_powers_off_on() {
        let Some(all) = disassemble() else { return };
        let (_, d) = table(&all, "DSDT");
        let s5 = d
            .split("Name (_S5, Package")
            .nth(1)
            .expect("\\_S5 in the DSDT");
        let body: String = s5
            .split('}')
            .next()
            .unwrap()
            .split('{')
            .nth(1)
            .unwrap()
            .into();
        let items: Vec<&str> = body.split(',').map(|s| s.trim()).collect();
        let typ = format!("0x{:02X}", acpi_pm::SLP_TYP_S5);
        assert_eq!(items, vec![typ.as_str(), typ.as_str(), "Zero", "Zero"]);
    }
}
