//! The guest physical address space: RAM (anonymous memmap2 mappings), ROM, and
//! everything else, which is MMIO and goes to the [`crate::Bus`].

use memmap2::MmapMut;
use thiserror::Error;

pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MapError {
    #[error("region at {base:#x} of {size:#x} bytes is empty or wraps the address space")]
    BadRange { base: u64, size: u64 },
    #[error("region at {base:#x} of {size:#x} bytes overlaps another region of the same kind")]
    Overlap { base: u64, size: u64 },
    #[error("cannot allocate {size} bytes of guest RAM: {reason}")]
    Alloc { size: u64, reason: String },
    #[error("guest physical range {addr:#x}+{len:#x} is not RAM")]
    NotRam { addr: u64, len: u64 },
}

enum Backing {
    Ram(MmapMut),
    Rom(Box<[u8]>),
}

struct Region {
    base: u64,
    size: u64,
    backing: Backing,
}

impl Region {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
    fn host_ptr(&self) -> *mut u8 {
        match &self.backing {
            Backing::Ram(m) => m.as_ptr() as *mut u8,
            Backing::Rom(b) => b.as_ptr() as *mut u8,
        }
    }
}

/// Where a guest physical page lives on the host.
#[derive(Clone, Copy, Debug)]
pub struct HostPage {
    /// Host address of the first byte of the page.
    pub ptr: *mut u8,
    /// RAM is writable; ROM is not (guest writes to it are dropped).
    pub writable: bool,
}

/// The physical map. ROM regions shadow RAM (as the BIOS area does on a PC); anything
/// that is neither is MMIO.
#[derive(Default)]
pub struct PhysMem {
    /// ROM first, then RAM: lookups take the first region that contains the address.
    regions: Vec<Region>,
    /// One bit per RAM page below `ram_end`: the decode cache holds code from this page.
    code_pages: Vec<u64>,
}

impl PhysMem {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `size` bytes of zeroed RAM at `base`. Both must be page-aligned.
    pub fn add_ram(&mut self, base: u64, size: u64) -> Result<(), MapError> {
        self.check_new(base, size, false)?;
        let len = usize::try_from(size).map_err(|_| MapError::BadRange { base, size })?;
        let map = MmapMut::map_anon(len).map_err(|e| MapError::Alloc {
            size,
            reason: e.to_string(),
        })?;
        self.regions.push(Region {
            base,
            size,
            backing: Backing::Ram(map),
        });
        let pages = (self.ram_end() >> PAGE_SHIFT) as usize;
        self.code_pages.resize(pages.div_ceil(64), 0);
        Ok(())
    }

    /// Map a read-only copy of `data` at `base`, in front of any RAM there.
    pub fn add_rom(&mut self, base: u64, data: &[u8]) -> Result<(), MapError> {
        let size = data.len() as u64;
        self.check_new(base, size, true)?;
        self.regions.insert(
            0,
            Region {
                base,
                size,
                backing: Backing::Rom(data.into()),
            },
        );
        Ok(())
    }

    fn check_new(&self, base: u64, size: u64, rom: bool) -> Result<(), MapError> {
        if size == 0 || base.checked_add(size).is_none() {
            return Err(MapError::BadRange { base, size });
        }
        let same_kind = |r: &&Region| matches!(r.backing, Backing::Rom(_)) == rom;
        if self
            .regions
            .iter()
            .filter(same_kind)
            .any(|r| base < r.base + r.size && r.base < base + size)
        {
            return Err(MapError::Overlap { base, size });
        }
        Ok(())
    }

    /// One past the highest RAM address.
    pub fn ram_end(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| matches!(r.backing, Backing::Ram(_)))
            .map(|r| r.base + r.size)
            .max()
            .unwrap_or(0)
    }

    /// Total bytes of RAM.
    pub fn ram_size(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| matches!(r.backing, Backing::Ram(_)))
            .map(|r| r.size)
            .sum()
    }

    /// The host location of the page holding `phys`, or None for MMIO.
    pub fn host_page(&self, phys: u64) -> Option<HostPage> {
        let page = phys & !(PAGE_SIZE - 1);
        let r = self.regions.iter().find(|r| r.contains(page))?;
        // A region smaller than a page (or not page-aligned) is never handed out whole.
        if page + PAGE_SIZE > r.base + r.size || page < r.base {
            return None;
        }
        // SAFETY: page lies inside the region, which lives as long as self.
        let ptr = unsafe { r.host_ptr().add((page - r.base) as usize) };
        Some(HostPage {
            ptr,
            writable: matches!(r.backing, Backing::Ram(_)),
        })
    }

    /// The bytes of a RAM or ROM page, for the decoder.
    pub fn page_bytes(&self, phys: u64) -> Option<&[u8]> {
        let hp = self.host_page(phys)?;
        // SAFETY: host_page returned a whole page inside a live region.
        Some(unsafe { std::slice::from_raw_parts(hp.ptr, PAGE_SIZE as usize) })
    }

    /// Byte access for the slow path and for partial pages: None means MMIO.
    pub(crate) fn byte_ptr(&self, phys: u64) -> Option<(*mut u8, bool)> {
        let r = self.regions.iter().find(|r| r.contains(phys))?;
        // SAFETY: phys lies inside the region.
        let ptr = unsafe { r.host_ptr().add((phys - r.base) as usize) };
        Some((ptr, matches!(r.backing, Backing::Ram(_))))
    }

    /// A little-endian load of `size` (1..=8) bytes from RAM or ROM, or None if any of
    /// them is elsewhere (page walks read their tables with it).
    pub(crate) fn load(&self, phys: u64, size: usize) -> Option<u64> {
        let r = self.regions.iter().find(|r| r.contains(phys))?;
        if !r.contains(phys.checked_add(size as u64 - 1)?) {
            return None;
        }
        let mut b = [0u8; 8];
        // SAFETY: the range lies inside the region.
        unsafe {
            std::ptr::copy_nonoverlapping(
                r.host_ptr().add((phys - r.base) as usize),
                b.as_mut_ptr(),
                size,
            )
        };
        Some(u64::from_le_bytes(b))
    }

    /// Copy host bytes into guest RAM (loaders, tests). Fails unless the whole range is RAM.
    pub fn write_bytes(&mut self, addr: u64, data: &[u8]) -> Result<(), MapError> {
        let len = data.len() as u64;
        let r = self.ram_covering(addr, len)?;
        let off = (addr - r.base) as usize;
        if let Backing::Ram(m) = &mut self.regions[r.index].backing {
            m[off..off + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    /// Copy guest RAM or ROM out to the host (tests, debugger).
    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> Result<(), MapError> {
        let len = out.len() as u64;
        let r = self
            .regions
            .iter()
            .find(|r| r.contains(addr) && addr + len <= r.base + r.size)
            .ok_or(MapError::NotRam { addr, len })?;
        let off = (addr - r.base) as usize;
        // SAFETY: the range lies inside the region.
        let src = unsafe { std::slice::from_raw_parts(r.host_ptr().add(off), out.len()) };
        out.copy_from_slice(src);
        Ok(())
    }

    fn ram_covering(&self, addr: u64, len: u64) -> Result<RamRef, MapError> {
        let not_ram = MapError::NotRam { addr, len };
        let end = addr
            .checked_add(len)
            .ok_or(MapError::NotRam { addr, len })?;
        if self
            .regions
            .iter()
            .any(|r| matches!(r.backing, Backing::Rom(_)) && addr < r.base + r.size && r.base < end)
        {
            return Err(not_ram);
        }
        self.regions
            .iter()
            .enumerate()
            .find(|(_, r)| {
                matches!(r.backing, Backing::Ram(_)) && r.contains(addr) && end <= r.base + r.size
            })
            .map(|(index, r)| RamRef {
                index,
                base: r.base,
            })
            .ok_or(not_ram)
    }

    /// Does the decode cache hold code from this page?
    pub fn is_code_page(&self, phys: u64) -> bool {
        let p = (phys >> PAGE_SHIFT) as usize;
        self.code_pages
            .get(p / 64)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    pub(crate) fn set_code_page(&mut self, phys: u64, on: bool) {
        let p = (phys >> PAGE_SHIFT) as usize;
        if let Some(w) = self.code_pages.get_mut(p / 64) {
            if on {
                *w |= 1 << (p % 64);
            } else {
                *w &= !(1 << (p % 64));
            }
        }
    }
}

struct RamRef {
    index: usize,
    base: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rom_shadows_ram_and_rejects_host_writes() {
        let mut m = PhysMem::new();
        m.add_ram(0, 0x10_0000).unwrap();
        m.add_rom(0xF_0000, &[0xAA; 0x1_0000]).unwrap();
        let mut b = [0u8; 2];
        m.read_bytes(0xF_FFFE, &mut b).unwrap();
        assert_eq!(b, [0xAA, 0xAA]);
        assert!(m.write_bytes(0xF_0000, &[1]).is_err());
        assert!(!m.host_page(0xF_0000).unwrap().writable);
        assert!(m.host_page(0x1000).unwrap().writable);
    }

    #[test]
    fn bounds_are_checked() {
        let mut m = PhysMem::new();
        m.add_ram(0, 0x2000).unwrap();
        assert!(m.write_bytes(0x1FFF, &[1, 2]).is_err());
        assert!(m.write_bytes(u64::MAX, &[1]).is_err());
        assert!(m.host_page(0x2000).is_none());
        assert_eq!(
            m.add_ram(0x1000, 0x1000),
            Err(MapError::Overlap {
                base: 0x1000,
                size: 0x1000
            })
        );
        assert!(matches!(
            m.add_ram(0x10000, 0),
            Err(MapError::BadRange { .. })
        ));
    }

    #[test]
    fn code_page_bits() {
        let mut m = PhysMem::new();
        m.add_ram(0, 0x10_0000).unwrap();
        assert!(!m.is_code_page(0x7C00));
        m.set_code_page(0x7C00, true);
        assert!(m.is_code_page(0x7FFF));
        assert!(!m.is_code_page(0x8000));
        m.set_code_page(0x7000, false);
        assert!(!m.is_code_page(0x7C00));
    }
}
