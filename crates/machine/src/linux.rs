//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit entry: check
//! a bzImage's setup header, load its protected-mode kernel, place the initrd and the
//! command line, build boot_params (the "zero page") with an e820 map and the ACPI RSDP
//! address, and enter the kernel in 64-bit mode at load address + 0x200 with identity-
//! mapped page tables, a flat GDT (__BOOT_CS = 0x10, __BOOT_DS = 0x18), RSI pointing at
//! boot_params and interrupts off — what QEMU's -kernel and Firecracker do, without the
//! real-mode setup code or a BIOS.
//!
//! boot_params and setup_header are linux-loader's (rust-vmm) bindgen layouts of the
//! kernel's own structures; the loading is done here against our `PhysMem`.

use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, CAN_USE_HEAP, LOADED_HIGH, XLF_KERNEL_64,
};
use trapeze_cpu::{attr, cr0, cr4, efer, gpr, sreg, Cpu, Segment, TableReg};
use trapeze_mmu::PhysMem;
use vm_memory::ByteValued;

use crate::config::MachineError;

/// Where the setup header starts in the image and in boot_params (boot.rst "The real-
/// mode kernel header").
const HEADER_OFFSET: usize = 0x1F1;
const BOOT_FLAG: u16 = 0xAA55;
/// "HdrS".
const HEADER_MAGIC: u32 = 0x5372_6448;
/// 2.12: the first protocol with xloadflags, whose XLF_KERNEL_64 promises the 64-bit
/// entry point at load address + 0x200.
const MIN_VERSION: u16 = 0x020C;
const ENTRY_64: u64 = 0x200;
/// type_of_loader: 0xFF, "undefined" (no assigned loader ID).
const LOADER_UNDEFINED: u8 = 0xFF;
/// heap_end_ptr: the setup heap ends here, relative to the real-mode code (boot.rst
/// sample: 0xFE00 for a 0x10000-byte real-mode segment).
const HEAP_END: u16 = 0xFE00;
/// Without `pref_address` (protocol < 2.10) the kernel goes where bzImage kernels always
/// went: 1 MiB.
const HIGH_LOAD: u64 = 0x10_0000;

/// Fixed low-memory layout of what the loader builds, as Firecracker lays it out: all
/// below the EBDA, none touched by the kernel before it has read them.
const GDT_ADDR: u64 = 0x500;
pub const ZERO_PAGE: u64 = 0x7000;
const STACK_TOP: u64 = 0x8FF0;
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xA000;
/// Four page directories of 2 MiB pages: the first 4 GiB identity-mapped.
const PD: u64 = 0xB000;
const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: u64 = 0x1_0000;

/// A PC's low memory: the EBDA in the top KiB below 640 KiB, and the VGA and BIOS
/// areas up to 1 MiB.
const EBDA: u64 = 0x9_FC00;
const LOW_END: u64 = 0xA_0000;

/// e820 types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// GDT: null, null, 64-bit code (0x10), data (0x18).
const CODE_SEL: u16 = 0x10;
const DATA_SEL: u16 = 0x18;
const GDT: [u64; 4] = [0, 0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

#[derive(Clone, Debug)]
pub struct LinuxImage {
    pub path: PathBuf,
    pub header: setup_header,
    /// The protected-mode kernel: the image after the setup sectors.
    pub kernel: Vec<u8>,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: String,
}

/// What `load` placed, for entering the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub entry: u64,
    pub zero_page: u64,
}

impl LinuxImage {
    /// Check the setup header (boot.rst) and split off the protected-mode kernel.
    pub fn parse(
        path: &Path,
        image: &[u8],
        initrd: Option<Vec<u8>>,
        cmdline: String,
    ) -> Result<Self, MachineError> {
        let err = |reason: String| MachineError::Linux {
            path: path.to_owned(),
            reason,
        };
        if image.len() < HEADER_OFFSET + std::mem::size_of::<setup_header>() {
            return Err(err(format!(
                "{} bytes is too short for a bzImage setup header",
                image.len()
            )));
        }
        let header = *setup_header::from_slice(
            &image[HEADER_OFFSET..HEADER_OFFSET + std::mem::size_of::<setup_header>()],
        )
        .expect("slice has the header's size");
        let (boot_flag, magic, version) = (header.boot_flag, header.header, header.version);
        if boot_flag != BOOT_FLAG || magic != HEADER_MAGIC {
            return Err(err(format!(
                "not a Linux bzImage: no boot flag 0xAA55 at 0x1FE and \"HdrS\" at 0x202 (found {boot_flag:#06x}, {magic:#010x})"
            )));
        }
        if version < MIN_VERSION {
            return Err(err(format!(
                "boot protocol {}.{:02} is older than 2.12, the first with a 64-bit entry point",
                version >> 8,
                version & 0xFF
            )));
        }
        let (loadflags, xloadflags) = (header.loadflags, header.xloadflags);
        if loadflags & LOADED_HIGH == 0 {
            return Err(err(
                "a zImage (loadflags.LOADED_HIGH clear): only bzImages load at 1 MiB".into(),
            ));
        }
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(err(
                "xloadflags.XLF_KERNEL_64 is clear: the kernel has no 64-bit entry point".into(),
            ));
        }
        // setup_sects = 0 means 4 (boot.rst).
        let setup_sects = match header.setup_sects {
            0 => 4,
            n => n as usize,
        };
        let kernel_off = (setup_sects + 1) * 512;
        if image.len() <= kernel_off + ENTRY_64 as usize {
            return Err(err(format!(
                "the image ends before its protected-mode kernel (setup_sects {setup_sects})"
            )));
        }
        let cmdline_size = header.cmdline_size as usize;
        if cmdline.len() > cmdline_size || cmdline.len() as u64 >= CMDLINE_MAX {
            return Err(err(format!(
                "command line of {} bytes exceeds the kernel's cmdline_size {cmdline_size}",
                cmdline.len()
            )));
        }
        Ok(LinuxImage {
            path: path.to_owned(),
            header,
            kernel: image[kernel_off..].to_vec(),
            initrd,
            cmdline,
        })
    }

    /// Where the protected-mode kernel goes: its preferred address (2.10+), which for a
    /// relocatable kernel is also where it decompresses itself without moving.
    fn load_address(&self) -> u64 {
        match self.header.pref_address {
            0 => HIGH_LOAD,
            a => a,
        }
    }

    /// Load everything into RAM `[0, low)` (and `high` bytes at 4 GiB, for the e820
    /// map) and build boot_params with the ACPI RSDP at `rsdp`.
    pub fn load(
        &self,
        phys: &mut PhysMem,
        low: u64,
        high: u64,
        rsdp: u64,
    ) -> Result<BootInfo, MachineError> {
        let err = |reason: String| MachineError::Linux {
            path: self.path.clone(),
            reason,
        };
        let load = self.load_address();
        // The kernel needs init_size bytes from its load address to decompress in place.
        let kernel_end = load + (self.header.init_size as u64).max(self.kernel.len() as u64);
        if kernel_end > low {
            return Err(err(format!(
                "the kernel needs {load:#x}..{kernel_end:#x} but RAM below 4 GiB ends at {low:#x} (use a larger --memory)"
            )));
        }
        phys.write_bytes(load, &self.kernel)?;

        let mut params = boot_params {
            hdr: self.header,
            ..Default::default()
        };
        let hdr = &mut params.hdr;
        hdr.type_of_loader = LOADER_UNDEFINED;
        hdr.loadflags |= CAN_USE_HEAP;
        hdr.heap_end_ptr = HEAP_END;
        hdr.code32_start = load as u32;
        hdr.cmd_line_ptr = CMDLINE as u32;
        let mut cmdline = self.cmdline.clone().into_bytes();
        cmdline.push(0);
        phys.write_bytes(CMDLINE, &cmdline)?;

        if let Some(initrd) = &self.initrd {
            // As high as initrd_addr_max and RAM allow, page-aligned, above the kernel.
            let max = (self.header.initrd_addr_max as u64).min(low - 1);
            let size = initrd.len() as u64;
            let at = (max + 1).checked_sub(size).map(|a| a & !0xFFF);
            let at = match at {
                Some(a) if a >= kernel_end => a,
                _ => {
                    return Err(err(format!(
                        "the initrd ({size} bytes) does not fit between the kernel's end {kernel_end:#x} and {:#x} (initrd_addr_max or --memory)",
                        max + 1
                    )))
                }
            };
            phys.write_bytes(at, initrd)?;
            hdr.ramdisk_image = at as u32;
            hdr.ramdisk_size = size as u32;
        }

        params.acpi_rsdp_addr = rsdp;
        let map = e820(low, high);
        for (slot, &(addr, size, r#type)) in params.e820_table.iter_mut().zip(&map) {
            *slot = boot_e820_entry { addr, size, r#type };
        }
        params.e820_entries = map.len() as u8;
        phys.write_bytes(ZERO_PAGE, params.as_slice())?;

        let gdt: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
        phys.write_bytes(GDT_ADDR, &gdt)?;
        write_identity_map(phys)?;
        Ok(BootInfo {
            entry: load + ENTRY_64,
            zero_page: ZERO_PAGE,
        })
    }
}

/// The e820 map (address, size, type): conventional memory below the EBDA, the EBDA
/// and the BIOS area (where the ACPI tables are) reserved, RAM from 1 MiB and above
/// 4 GiB. The VGA window and option-ROM space (0xA0000-0xDFFFF) are not listed.
pub fn e820(low: u64, high: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA, E820_RAM),
        (EBDA, LOW_END - EBDA, E820_RESERVED),
        (
            crate::acpi::AREA_START,
            crate::acpi::AREA_END - crate::acpi::AREA_START,
            E820_RESERVED,
        ),
    ];
    if low > HIGH_LOAD {
        map.push((HIGH_LOAD, low - HIGH_LOAD, E820_RAM));
    }
    if high > 0 {
        map.push((1 << 32, high, E820_RAM));
    }
    map
}

/// PML4[0] → PDPT[0..4] → four page directories of 2 MiB pages: 0..4 GiB identity-
/// mapped, present and writable (boot.rst: "the range with setup_header.init_size from
/// start address of loaded kernel and zero page and command line buffer get ident
/// mapping").
fn write_identity_map(phys: &mut PhysMem) -> Result<(), MachineError> {
    const P_RW: u64 = 0b11;
    const PS: u64 = 1 << 7;
    phys.write_bytes(PML4, &(PDPT | P_RW).to_le_bytes())?;
    let pdpt: Vec<u8> = (0..4u64)
        .flat_map(|i| ((PD + i * 0x1000) | P_RW).to_le_bytes())
        .collect();
    phys.write_bytes(PDPT, &pdpt)?;
    let pd: Vec<u8> = (0..4 * 512u64)
        .flat_map(|i| ((i << 21) | PS | P_RW).to_le_bytes())
        .collect();
    phys.write_bytes(PD, &pd)?;
    Ok(())
}

/// Put the CPU in 64-bit mode as boot.rst's "64-bit Boot Protocol" requires.
pub fn enter(cpu: &mut Cpu, boot: &BootInfo) {
    let seg = |selector: u16, kind: u16| Segment {
        selector,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr: kind | attr::S | attr::P | attr::ACCESSED | attr::G,
    };
    cpu.gdtr = TableReg {
        base: GDT_ADDR,
        limit: (8 * GDT.len() - 1) as u16,
    };
    cpu.mmu.set_a20(true);
    cpu.set_rflags(0);
    for s in [sreg::DS, sreg::ES, sreg::FS, sreg::GS, sreg::SS] {
        cpu.seg[s] = seg(DATA_SEL, attr::RW | attr::DB);
    }
    // The architectural way into IA-32e mode (SDM Vol.3 9.8.5): PAE, CR3, EFER.LME,
    // then CR0.PG with a CS that is not yet 64-bit; these values cannot fault.
    cpu.seg[sreg::CS] = seg(CODE_SEL, attr::CODE | attr::RW | attr::DB);
    cpu.cr0 = cr0::ET | cr0::PE;
    let entered = cpu
        .write_cr4(cr4::PAE)
        .and_then(|_| cpu.write_cr3(PML4))
        .and_then(|_| cpu.write_efer(efer::LME))
        .and_then(|_| cpu.write_cr0(cr0::ET | cr0::PE | cr0::PG));
    debug_assert!(entered.is_ok() && cpu.efer & efer::LMA != 0);
    cpu.seg[sreg::CS] = seg(CODE_SEL, attr::CODE | attr::RW | attr::L);
    cpu.rip = boot.entry;
    cpu.gpr[gpr::RSI] = boot.zero_page;
    cpu.gpr[gpr::RSP] = STACK_TOP;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bzImage-shaped buffer: header fields at their boot.rst offsets.
    fn image(version: u16, loadflags: u8, xloadflags: u16) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000];
        d[0x1F1] = 1; // setup_sects
        d[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        d[0x211] = loadflags;
        d[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
        d[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        d[0x238..0x23C].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        d[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
        d[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes()); // init_size
        d
    }

    fn parse(d: &[u8], cmdline: &str) -> Result<LinuxImage, String> {
        LinuxImage::parse(Path::new("k"), d, Some(vec![7; 5000]), cmdline.into())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn header_fields_are_read_at_their_documented_offsets() {
        let img = parse(&image(0x020F, LOADED_HIGH, XLF_KERNEL_64), "console=ttyS0").unwrap();
        assert_eq!({ img.header.version }, 0x020F);
        assert_eq!({ img.header.pref_address }, 0x100_0000);
        assert_eq!({ img.header.init_size }, 0x10_0000);
        assert_eq!(img.kernel.len(), 0x1000 - 2 * 512);
    }

    #[test]
    fn malformed_and_old_images_are_refused() {
        assert!(parse(&[0; 100], "").unwrap_err().contains("too short"));
        assert!(parse(&[0; 0x1000], "")
            .unwrap_err()
            .contains("not a Linux bzImage"));
        let e = parse(&image(0x0206, LOADED_HIGH, XLF_KERNEL_64), "").unwrap_err();
        assert!(e.contains("2.06 is older than 2.12"), "{e}");
        assert!(parse(&image(0x020F, 0, XLF_KERNEL_64), "")
            .unwrap_err()
            .contains("zImage"));
        assert!(parse(&image(0x020F, LOADED_HIGH, 0), "")
            .unwrap_err()
            .contains("XLF_KERNEL_64"));
        let long = "x".repeat(3000);
        assert!(parse(&image(0x020F, LOADED_HIGH, XLF_KERNEL_64), &long)
            .unwrap_err()
            .contains("cmdline_size"));
    }

    #[test]
    fn zero_page_holds_what_boot_rst_asks_for() {
        let img = parse(&image(0x020F, LOADED_HIGH, XLF_KERNEL_64), "console=ttyS0").unwrap();
        let low = 64 << 20;
        let mut phys = PhysMem::new();
        phys.add_ram(0, low).unwrap();
        let boot = img.load(&mut phys, low, 0, 0xE0000).unwrap();
        assert_eq!(boot.entry, 0x100_0200);
        let mut zp = vec![0u8; 4096];
        phys.read_bytes(ZERO_PAGE, &mut zp).unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(zp[o..o + 4].try_into().unwrap());
        // Offsets from boot.rst and zero-page.rst, not from the struct.
        assert_eq!(zp[0x210], LOADER_UNDEFINED, "type_of_loader");
        assert_eq!(
            zp[0x211] & (LOADED_HIGH | CAN_USE_HEAP),
            LOADED_HIGH | CAN_USE_HEAP
        );
        assert_eq!(u32_at(0x228), CMDLINE as u32, "cmd_line_ptr");
        let (ramdisk, size) = (u32_at(0x218) as u64, u32_at(0x21C));
        assert_eq!(size, 5000);
        assert_eq!(ramdisk % 4096, 0);
        assert!(
            ramdisk + 5000 <= low && ramdisk + 4096 + 5000 > low,
            "as high as possible"
        );
        assert_eq!(
            u64::from_le_bytes(zp[0x70..0x78].try_into().unwrap()),
            0xE0000,
            "acpi_rsdp_addr"
        );
        assert_eq!(zp[0x1E8], 4, "e820_entries");
        // e820 entry 3 (at 0x2D0 + 3 * 20): RAM from 1 MiB to the end of memory.
        let e = 0x2D0 + 3 * 20;
        assert_eq!(
            u64::from_le_bytes(zp[e..e + 8].try_into().unwrap()),
            0x10_0000
        );
        assert_eq!(
            u64::from_le_bytes(zp[e + 8..e + 16].try_into().unwrap()),
            low - 0x10_0000
        );
        assert_eq!(u32_at(e + 16), E820_RAM);
        let mut c = vec![0u8; 14];
        phys.read_bytes(CMDLINE, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
    }

    #[test]
    fn a_kernel_or_initrd_that_does_not_fit_is_an_error() {
        let img = parse(&image(0x020F, LOADED_HIGH, XLF_KERNEL_64), "").unwrap();
        let mut phys = PhysMem::new();
        phys.add_ram(0, 16 << 20).unwrap();
        let e = img.load(&mut phys, 16 << 20, 0, 0).unwrap_err().to_string();
        assert!(e.contains("larger --memory"), "{e}");
    }

    #[test]
    fn entry_state_is_64_bit_with_rsi_at_the_zero_page() {
        let img = parse(&image(0x020F, LOADED_HIGH, XLF_KERNEL_64), "").unwrap();
        let low = 64 << 20;
        let mut phys = PhysMem::new();
        phys.add_ram(0, low).unwrap();
        let boot = img.load(&mut phys, low, 0, 0).unwrap();
        let mut cpu = Cpu::new(trapeze_cpu::Mmu::new(phys));
        enter(&mut cpu, &boot);
        assert!(cpu.long64());
        assert_eq!(cpu.efer & efer::LMA, efer::LMA);
        assert_eq!(cpu.gpr[gpr::RSI], ZERO_PAGE);
        assert_eq!(cpu.rip, 0x100_0200);
        assert_eq!(cpu.rflags() & trapeze_cpu::rf::IF, 0);
        assert_eq!(cpu.seg[sreg::CS].selector, 0x10);
        assert_eq!(cpu.seg[sreg::DS].selector, 0x18);
    }
}
