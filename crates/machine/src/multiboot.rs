//! Multiboot v1 (Multiboot Specification 0.6.96): find and check the header, load an
//! ELF32 or a.out-kludge kernel, place modules, build the boot information structure
//! and enter the kernel in flat 32-bit protected mode (spec section 3.2).

use std::path::{Path, PathBuf};

use trapeze_cpu::{attr, cr0, gpr, rf, sreg, Cpu, Segment, TableReg};
use trapeze_mmu::PhysMem;

use crate::config::MachineError;

/// Header magic (in the image) and the value the kernel finds in EAX.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
pub const BOOT_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie, 32-bit aligned, within the first 8 KiB of the image.
pub const SEARCH_LEN: usize = 8192;

/// Header flags: bit 0 page-align modules, bit 1 memory information, bit 2 video
/// mode (ignored: trapeze has no framebuffer), bit 16 the a.out-kludge address fields.
pub const FLAG_ALIGN: u32 = 1 << 0;
pub const FLAG_MEMINFO: u32 = 1 << 1;
pub const FLAG_VIDEO: u32 = 1 << 2;
pub const FLAG_AOUT: u32 = 1 << 16;

/// Info-structure flags trapeze provides.
pub const INFO_MEM: u32 = 1 << 0;
pub const INFO_CMDLINE: u32 = 1 << 2;
pub const INFO_MODS: u32 = 1 << 3;
pub const INFO_MMAP: u32 = 1 << 6;
pub const INFO_LOADER_NAME: u32 = 1 << 9;

/// Size of the 0.6.96 info structure (through the VBE fields).
const INFO_SIZE: u64 = 88;
/// Flat GDT: null, 0x08 32-bit code, 0x10 data.
pub const CODE_SEL: u16 = 0x08;
pub const DATA_SEL: u16 = 0x10;
/// Start of the (reserved) extended BIOS data area: mem_lower is 639 KiB.
const EBDA: u64 = 0x9_FC00;
const GDT: [u64; 3] = [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];

#[derive(Clone, Debug)]
pub struct Module {
    pub data: Vec<u8>,
    /// The module's string: its file name and arguments.
    pub string: String,
}

/// One piece of the kernel: `data[offset..offset + file_len]` copied to `addr`, then
/// zeros up to `mem_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub offset: usize,
    pub file_len: usize,
    pub addr: u64,
    pub mem_len: u64,
}

#[derive(Clone, Debug)]
pub struct MultibootImage {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub header_flags: u32,
    pub segments: Vec<LoadSegment>,
    pub entry: u32,
    pub cmdline: String,
    pub modules: Vec<Module>,
    /// Things the user should know (e.g. an ignored video-mode request).
    pub notes: Vec<String>,
}

/// Where `load` put things, for entering the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub entry: u32,
    pub info_addr: u32,
    pub gdt_addr: u32,
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off.checked_add(4)?)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    d.get(off..off.checked_add(2)?)
        .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
}

impl MultibootImage {
    /// Find and validate the header and work out what to load where.
    pub fn parse(
        path: &Path,
        data: Vec<u8>,
        cmdline: String,
        modules: Vec<Module>,
    ) -> Result<Self, MachineError> {
        let err = |reason: String| MachineError::Multiboot {
            path: path.to_owned(),
            reason,
        };
        let window = &data[..data.len().min(SEARCH_LEN)];
        let hdr = (0..window.len().saturating_sub(11))
            .step_by(4)
            .find(|&o| u32_at(window, o) == Some(HEADER_MAGIC))
            .ok_or_else(|| {
                err(format!(
                    "no multiboot header (magic {HEADER_MAGIC:#010x}) in the first 8 KiB"
                ))
            })?;
        let flags = u32_at(&data, hdr + 4).unwrap();
        let checksum = u32_at(&data, hdr + 8).unwrap();
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) != 0 {
            return Err(err(format!(
                "bad header checksum at offset {hdr:#x} (magic + flags + checksum = {:#x}, must be 0)",
                HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum)
            )));
        }
        // Bits 0-15 are requirements: refuse ones we do not understand.
        let unknown = flags & 0xFFFF & !(FLAG_ALIGN | FLAG_MEMINFO | FLAG_VIDEO);
        if unknown != 0 {
            return Err(err(format!(
                "unsupported required header flags {unknown:#x} (flags {flags:#x})"
            )));
        }
        let mut notes = Vec::new();
        if flags & FLAG_VIDEO != 0 {
            notes.push(
                "the kernel asks for a video mode (header flag 2): ignored, no framebuffer info is passed"
                    .to_string(),
            );
        }
        let (segments, entry) = if flags & FLAG_AOUT != 0 {
            aout_kludge(&data, hdr).map_err(err)?
        } else {
            elf32(&data).map_err(err)?
        };
        Ok(MultibootImage {
            path: path.to_owned(),
            data,
            header_flags: flags,
            segments,
            entry,
            cmdline,
            modules,
            notes,
        })
    }

    /// Copy the kernel and modules into guest RAM `[0, low)` and build the info
    /// structure and GDT after them. `high` is RAM mapped at 4 GiB (bytes).
    pub fn load(&self, phys: &mut PhysMem, low: u64, high: u64) -> Result<BootInfo, MachineError> {
        let outside = |what: String| MachineError::Multiboot {
            path: self.path.clone(),
            reason: format!("{what} lies outside the {low:#x} bytes of RAM below 4 GiB"),
        };
        let mut end = 0x10_0000u64;
        for s in &self.segments {
            let seg_end = s.addr + s.mem_len;
            if seg_end > low {
                return Err(outside(format!("segment {:#x}..{:#x}", s.addr, seg_end)));
            }
            phys.write_bytes(s.addr, &self.data[s.offset..s.offset + s.file_len])?;
            let bss = s.mem_len - s.file_len as u64;
            if bss > 0 {
                phys.write_bytes(s.addr + s.file_len as u64, &vec![0; bss as usize])?;
            }
            end = end.max(seg_end);
        }
        let page = |a: u64| (a + 0xFFF) & !0xFFF;
        let mut cursor = page(end);
        let mut mods = Vec::new();
        for (i, m) in self.modules.iter().enumerate() {
            let start = page(cursor);
            let mod_end = start + m.data.len() as u64;
            if mod_end > low {
                return Err(outside(format!(
                    "module {} ({} bytes)",
                    i + 1,
                    m.data.len()
                )));
            }
            phys.write_bytes(start, &m.data)?;
            mods.push((start, mod_end));
            cursor = mod_end;
        }

        // The info block: structure, module list, memory map, strings, GDT.
        // As a PC BIOS reports it: the top KiB of conventional memory is the EBDA
        // and 0xF0000 the BIOS (kept reserved so kernels that expect them find RAM
        // there unused); 0xA0000-0xEFFFF (VGA, option ROMs) is not listed.
        let mut mmap: Vec<(u64, u64, u32)> = vec![
            (0, EBDA, 1),
            (EBDA, 0xA_0000 - EBDA, 2),
            (0xF_0000, 0x1_0000, 2),
        ];
        if low > 0x10_0000 {
            mmap.push((0x10_0000, low - 0x10_0000, 1));
        }
        if high > 0 {
            mmap.push((1 << 32, high, 1));
        }
        let base = page(cursor);
        let mods_addr = base + INFO_SIZE;
        let mmap_addr = mods_addr + 16 * mods.len() as u64;
        let mmap_len = 24 * mmap.len() as u64;
        let mut strings = Vec::new();
        let mut string_at = |s: &str| {
            let at = mmap_addr + mmap_len + strings.len() as u64;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at as u32
        };
        let cmdline_addr = string_at(&self.cmdline);
        let loader_addr = string_at(concat!("trapeze ", env!("CARGO_PKG_VERSION")));
        let mod_strings: Vec<u32> = self.modules.iter().map(|m| string_at(&m.string)).collect();
        let gdt_addr = (mmap_addr + mmap_len + strings.len() as u64 + 7) & !7;
        let block_end = gdt_addr + 8 * GDT.len() as u64;
        if block_end > low {
            return Err(outside(format!(
                "the boot information at {base:#x}..{block_end:#x}"
            )));
        }

        let mut block = vec![0u8; (block_end - base) as usize];
        let mut put = |addr: u64, v: u32| {
            let o = (addr - base) as usize;
            block[o..o + 4].copy_from_slice(&v.to_le_bytes());
        };
        put(
            base,
            INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME,
        );
        put(base + 4, (EBDA / 1024) as u32);
        put(base + 8, ((low - 0x10_0000.min(low)) / 1024) as u32);
        put(base + 16, cmdline_addr);
        put(base + 20, mods.len() as u32);
        put(base + 24, mods_addr as u32);
        put(base + 44, mmap_len as u32);
        put(base + 48, mmap_addr as u32);
        put(base + 64, loader_addr);
        for (i, (&(s, e), &str_addr)) in mods.iter().zip(&mod_strings).enumerate() {
            let a = mods_addr + 16 * i as u64;
            put(a, s as u32);
            put(a + 4, e as u32);
            put(a + 8, str_addr);
        }
        for (i, &(b, l, t)) in mmap.iter().enumerate() {
            let a = mmap_addr + 24 * i as u64;
            put(a, 20);
            put(a + 4, b as u32);
            put(a + 8, (b >> 32) as u32);
            put(a + 12, l as u32);
            put(a + 16, (l >> 32) as u32);
            put(a + 20, t);
        }
        let so = (mmap_addr + mmap_len - base) as usize;
        block[so..so + strings.len()].copy_from_slice(&strings);
        for (i, d) in GDT.iter().enumerate() {
            let o = (gdt_addr - base) as usize + 8 * i;
            block[o..o + 8].copy_from_slice(&d.to_le_bytes());
        }
        phys.write_bytes(base, &block)?;
        Ok(BootInfo {
            entry: self.entry,
            info_addr: base as u32,
            gdt_addr: gdt_addr as u32,
        })
    }
}

/// Put the CPU in the state the specification (3.2) requires.
pub fn enter(cpu: &mut Cpu, boot: &BootInfo) {
    let flat = |selector: u16, kind: u16| Segment {
        selector,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr: kind | attr::S | attr::P | attr::ACCESSED | attr::DB | attr::G,
    };
    cpu.gdtr = TableReg {
        base: boot.gdt_addr as u64,
        limit: (8 * GDT.len() - 1) as u16,
    };
    cpu.cr0 = cr0::ET | cr0::PE;
    cpu.mmu.set_a20(true);
    cpu.set_rflags(0);
    debug_assert_eq!(cpu.rflags() & (rf::IF | rf::VM), 0);
    for s in [sreg::DS, sreg::ES, sreg::FS, sreg::GS, sreg::SS] {
        cpu.seg[s] = flat(DATA_SEL, attr::RW);
    }
    cpu.seg[sreg::CS] = flat(CODE_SEL, attr::CODE | attr::RW);
    cpu.rip = boot.entry as u64;
    cpu.gpr[gpr::RAX] = BOOT_MAGIC as u64;
    cpu.gpr[gpr::RBX] = boot.info_addr as u64;
}

/// Header fields 12..32: header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr.
fn aout_kludge(data: &[u8], hdr: usize) -> Result<(Vec<LoadSegment>, u32), String> {
    let f = |i: usize| {
        u32_at(data, hdr + 12 + 4 * i)
            .map(u64::from)
            .ok_or("header truncated: flag 16 needs the address fields".to_string())
    };
    let (header_addr, load_addr, load_end, bss_end, entry) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?);
    if load_addr > header_addr || header_addr - load_addr > hdr as u64 {
        return Err(format!(
            "a.out kludge: load_addr {load_addr:#x} does not fit header_addr {header_addr:#x} at offset {hdr:#x}"
        ));
    }
    let offset = hdr - (header_addr - load_addr) as usize;
    let file_len = if load_end == 0 {
        (data.len() - offset) as u64
    } else if load_end < load_addr || load_end - load_addr > (data.len() - offset) as u64 {
        return Err(format!(
            "a.out kludge: load_end_addr {load_end:#x} is before load_addr or past the end of the file"
        ));
    } else {
        load_end - load_addr
    };
    let mem_end = if bss_end == 0 {
        load_addr + file_len
    } else if bss_end < load_addr + file_len {
        return Err(format!(
            "a.out kludge: bss_end_addr {bss_end:#x} is below load_end_addr"
        ));
    } else {
        bss_end
    };
    if entry < load_addr || entry >= load_addr.max(mem_end) {
        return Err(format!(
            "a.out kludge: entry_addr {entry:#x} is outside the loaded image"
        ));
    }
    Ok((
        vec![LoadSegment {
            offset,
            file_len: file_len as usize,
            addr: load_addr,
            mem_len: mem_end - load_addr,
        }],
        entry as u32,
    ))
}

/// An ELF32 i386 executable: its PT_LOAD program headers, at their physical addresses.
fn elf32(data: &[u8]) -> Result<(Vec<LoadSegment>, u32), String> {
    if data.get(..4) != Some(b"\x7fELF") {
        return Err(
            "neither an ELF file nor an a.out-kludge kernel (header flag 16 clear)".to_string(),
        );
    }
    if data.get(4) != Some(&1) || data.get(5) != Some(&1) {
        return Err("ELF is not 32-bit little-endian (ELFCLASS32, ELFDATA2LSB)".to_string());
    }
    let short = || "ELF header truncated".to_string();
    let machine = u16_at(data, 18).ok_or_else(short)?;
    if machine != 3 {
        return Err(format!("ELF machine {machine} is not x86 (EM_386 = 3)"));
    }
    let etype = u16_at(data, 16).ok_or_else(short)?;
    if etype != 2 {
        return Err(format!("ELF type {etype} is not an executable (ET_EXEC)"));
    }
    let entry = u32_at(data, 24).ok_or_else(short)?;
    let phoff = u32_at(data, 28).ok_or_else(short)? as usize;
    let phentsize = u16_at(data, 42).ok_or_else(short)? as usize;
    let phnum = u16_at(data, 44).ok_or_else(short)? as usize;
    if phentsize < 32 {
        return Err(format!("ELF program header size {phentsize} is too small"));
    }
    let mut segs = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .filter(|&p| p.checked_add(32).is_some_and(|e| e <= data.len()))
            .ok_or("ELF program headers lie past the end of the file")?;
        let w = |k: usize| u32_at(data, ph + 4 * k).unwrap();
        if w(0) != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz, memsz) =
            (w(1) as usize, w(3) as u64, w(4) as usize, w(5) as u64);
        if filesz as u64 > memsz {
            return Err(format!("ELF segment {i}: file size exceeds memory size"));
        }
        if offset.checked_add(filesz).is_none_or(|e| e > data.len()) {
            return Err(format!("ELF segment {i} lies past the end of the file"));
        }
        if paddr + memsz > 1 << 32 {
            return Err(format!("ELF segment {i} crosses 4 GiB"));
        }
        if memsz > 0 {
            segs.push(LoadSegment {
                offset,
                file_len: filesz,
                addr: paddr,
                mem_len: memsz,
            });
        }
    }
    if segs.is_empty() {
        return Err("ELF has no loadable segments".to_string());
    }
    Ok((segs, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kludge(flags: u32, load: u32, load_end: u32, bss_end: u32, entry: u32) -> Vec<u8> {
        let mut d = vec![0u8; 64];
        let fields = [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
            load,
            load,
            load_end,
            bss_end,
            entry,
        ];
        for (i, f) in fields.iter().enumerate() {
            d[4 * i..4 * i + 4].copy_from_slice(&f.to_le_bytes());
        }
        d
    }

    fn parse(d: Vec<u8>) -> Result<MultibootImage, MachineError> {
        MultibootImage::parse(Path::new("k"), d, "k".into(), vec![])
    }

    #[test]
    fn kludge_image_loads_and_builds_info() {
        let img = parse(kludge(
            FLAG_AOUT | FLAG_ALIGN,
            0x10_0000,
            0,
            0x10_2000,
            0x10_0020,
        ))
        .unwrap();
        assert_eq!(img.entry, 0x10_0020);
        assert_eq!(img.segments[0].mem_len, 0x2000);
        let mut phys = PhysMem::new();
        phys.add_ram(0, 16 << 20).unwrap();
        let boot = img.load(&mut phys, 16 << 20, 0).unwrap();
        assert_eq!(boot.info_addr, 0x10_2000);
    }

    #[test]
    fn malformed_headers_are_errors() {
        let msg = |d| parse(d).unwrap_err().to_string();
        assert!(msg(vec![0; 100]).contains("no multiboot header"));
        let mut bad = kludge(FLAG_AOUT, 0x10_0000, 0, 0, 0x10_0000);
        bad[8] ^= 1;
        assert!(msg(bad).contains("checksum"));
        assert!(msg(kludge(FLAG_AOUT | 1 << 5, 0x10_0000, 0, 0, 0x10_0000)).contains("unsupported"));
        assert!(msg(kludge(0, 0, 0, 0, 0)).contains("neither an ELF"));
        assert!(msg(kludge(FLAG_AOUT, 0x10_0000, 0, 0, 0x20_0000)).contains("entry"));
        let img = parse(kludge(FLAG_AOUT, 0x400_0000, 0, 0, 0x400_0000)).unwrap();
        let mut phys = PhysMem::new();
        phys.add_ram(0, 16 << 20).unwrap();
        assert!(img
            .load(&mut phys, 16 << 20, 0)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // The header must come after the ELF ident: put it at offset 32.
        let mut d = elf;
        d[32..64].copy_from_slice(&kludge(0, 0, 0, 0, 0)[..32]);
        assert!(msg(d).contains("32-bit"));
    }
}
