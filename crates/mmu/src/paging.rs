//! Linear-address translation (SDM Vol.3 ch. 4): the paging modes, their entry
//! formats and the page walk, with the access-rights checks of 4.6, the #PF error code
//! of 4.7 and the accessed/dirty flags of 4.8.
//!
//! Paging structures are read from the physical map without the [`crate::Bus`]: an
//! entry that is not in RAM or ROM reads as all ones (what a floating bus returns),
//! which in PAE and 4-level paging is a present entry with reserved bits set (#PF with
//! RSVD), and A/D updates to it are dropped. A walk never touches a device.

use crate::mmu::{Access, MemFault, Mmu};

/// MAXPHYADDR (CPUID 8000_0008h EAX[7:0]): physical address bits. QEMU's default.
pub const MAXPHYADDR: u32 = 40;
/// Linear address bits with 4-level paging (CPUID 8000_0008h EAX[15:8]).
pub const LINEAR_BITS: u32 = 48;
/// 1-GByte pages with 4-level paging (CPUID 8000_0001h EDX.Page1GB).
pub const GIB_PAGES: bool = true;

/// Paging-structure entry bits (SDM Vol.3 4.3, 4.4.2, 4.5, Tables 4-4 to 4-20).
pub mod pte {
    pub const P: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const US: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const A: u64 = 1 << 5;
    pub const D: u64 = 1 << 6;
    /// PS in a PDE/PDPTE; PAT in a PTE that maps a 4-KByte page.
    pub const PS: u64 = 1 << 7;
    pub const PAT_4K: u64 = 1 << 7;
    pub const G: u64 = 1 << 8;
    /// PAT in an entry that maps a 2-MByte, 4-MByte or 1-GByte page.
    pub const PAT_LARGE: u64 = 1 << 12;
    pub const XD: u64 = 1 << 63;
}

/// #PF error code bits (SDM Vol.3 4.7, Figure 4-12).
pub mod pf {
    /// 0: no translation (a P flag was 0); 1: a protection or reserved-bit violation.
    pub const P: u32 = 1 << 0;
    pub const W: u32 = 1 << 1;
    pub const U: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const ID: u32 = 1 << 4;
}

/// The paging mode (SDM Vol.3 4.1.1, Table 4-1). 5-level paging is not advertised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// CR0.PG = 0: linear = physical.
    #[default]
    Off,
    /// CR4.PAE = 0.
    Bits32,
    /// CR4.PAE = 1, EFER.LME = 0.
    Pae,
    /// CR4.PAE = 1, EFER.LME = 1 (IA-32e).
    Level4,
}

/// What the paging unit takes from CR0, CR4 and EFER. The CPU hands it over with
/// [`Mmu::set_paging`] after every write to one of those registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    pub mode: Mode,
    /// CR0.WP: supervisor writes honour R/W.
    pub wp: bool,
    /// CR4.PSE: 4-MByte pages with 32-bit paging.
    pub pse: bool,
    /// CR4.PGE: global pages survive MOV CR3.
    pub pge: bool,
    /// EFER.NXE: bit 63 of PAE and 4-level entries is XD rather than reserved.
    pub nxe: bool,
}

/// CR3 or a PDPTE named a PAE page-directory-pointer table with a present entry that
/// sets a reserved bit (SDM Vol.3 4.4.1): MOV CR0/CR3/CR4 raise #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPdpte;

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Physical address of the byte at the linear address.
    pub phys: u64,
    /// log2 of the page size: 12, 21, 22 or 30.
    pub page_shift: u32,
    /// The final entry had G set and CR4.PGE is on.
    pub global: bool,
    /// PAT index (PAT << 2 | PCD << 1 | PWT) of the page (SDM Vol.3 11.12.3). The
    /// memory type does not change what trapeze does, but the bits are carried.
    pub pat_index: u8,
}

/// One paging-structure entry a walk read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The linear-address bit the level's index starts at: 39 (PML4E), 30 (PDPTE),
    /// 22 or 21 (PDE), 12 (PTE).
    pub shift: u32,
    /// Physical address of the entry.
    pub addr: u64,
    pub entry: u64,
}

/// The entries of one walk, top level first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Steps {
    /// With PAE paging: the PDPTE register used (loaded with CR3, not read by the walk).
    pub pdpte: Option<u64>,
    steps: [Step; 4],
    len: usize,
}

impl Steps {
    fn push(&mut self, s: Step) {
        self.steps[self.len] = s;
        self.len += 1;
    }

    pub fn entries(&self) -> &[Step] {
        &self.steps[..self.len]
    }
}

/// How a level's entry may map a page instead of pointing at a table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Large {
    /// PS is reserved (PML4E).
    Never,
    /// PS maps a page if CR4.PSE (32-bit PDE).
    IfPse,
    /// PS maps a page (PAE/4-level PDE; PDPTE with 1-GByte pages).
    Always,
    /// Always a page (PTE).
    Leaf,
}

struct Level {
    shift: u32,
    index_bits: u32,
    large: Large,
}

const LEVELS_32: [Level; 2] = [
    Level {
        shift: 22,
        index_bits: 10,
        large: Large::IfPse,
    },
    Level {
        shift: 12,
        index_bits: 10,
        large: Large::Leaf,
    },
];
/// PAE below the PDPTE registers.
const LEVELS_PAE: [Level; 2] = [
    Level {
        shift: 21,
        index_bits: 9,
        large: Large::Always,
    },
    Level {
        shift: 12,
        index_bits: 9,
        large: Large::Leaf,
    },
];
const LEVELS_4: [Level; 4] = [
    Level {
        shift: 39,
        index_bits: 9,
        large: Large::Never,
    },
    Level {
        shift: 30,
        index_bits: 9,
        large: if GIB_PAGES {
            Large::Always
        } else {
            Large::Never
        },
    },
    Level {
        shift: 21,
        index_bits: 9,
        large: Large::Always,
    },
    Level {
        shift: 12,
        index_bits: 9,
        large: Large::Leaf,
    },
];

/// Bits (M-1):12: a table or 4-KByte frame address in a 64-bit entry.
const ADDR_MASK: u64 = ((1 << MAXPHYADDR) - 1) & !0xFFF;
/// Bits 51:M, reserved in 4-level entries (bits 62:52 are ignored there).
const RSVD_4LEVEL: u64 = ((1 << 52) - 1) & !((1 << MAXPHYADDR) - 1);
/// Bits 62:M, reserved in PAE entries (SDM Vol.3 Tables 4-8 to 4-11).
const RSVD_PAE: u64 = ((1 << 63) - 1) & !((1 << MAXPHYADDR) - 1);
/// PDPTE register bits 2:1 and 8:5 (and 63:M), reserved (SDM Vol.3 Table 4-8).
const RSVD_PDPTE: u64 = 0x1E6 | pte::XD | RSVD_PAE;
/// 32-bit PDE for a 4-MByte page: bits 20:13 hold physical bits 39:32 (PSE-36 with
/// MAXPHYADDR 40), bit 21 is reserved (SDM Vol.3 Table 4-4).
const RSVD_PDE_4M: u64 = 1 << 21;

impl Paging {
    fn levels(&self) -> &'static [Level] {
        match self.mode {
            Mode::Off => &[],
            Mode::Bits32 => &LEVELS_32,
            Mode::Pae => &LEVELS_PAE,
            Mode::Level4 => &LEVELS_4,
        }
    }

    /// Reserved bits of an entry at `level` (its shift), `large` if it maps a page.
    fn reserved(&self, shift: u32, large: bool) -> u64 {
        if self.mode == Mode::Bits32 {
            return if large { RSVD_PDE_4M } else { 0 };
        }
        let mut r = if self.mode == Mode::Pae {
            RSVD_PAE
        } else {
            RSVD_4LEVEL
        };
        if !self.nxe {
            r |= pte::XD;
        }
        if large && shift > 12 {
            // The frame's low bits, 20:13 or 29:13, above the PAT bit.
            r |= ((1 << shift) - 1) & !0x1FFF;
        }
        r
    }

    /// I/D is reported only where XD exists (SDM Vol.3 4.7; no SMEP here).
    fn reports_fetch(&self) -> bool {
        matches!(self.mode, Mode::Pae | Mode::Level4) && self.nxe
    }
}

/// The paging unit's registers: the mode, CR3 and the PAE PDPTE registers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Unit {
    pub cfg: Paging,
    pub cr3: u64,
    /// PAE paging reads its top level from these, loaded with CR3 (SDM Vol.3 4.4.1).
    pub pdpte: [u64; 4],
}

impl Mmu {
    /// Read a paging-structure entry (4 or 8 bytes): all ones outside RAM and ROM.
    fn table_load(&self, phys: u64, wide: bool) -> u64 {
        self.phys
            .load(phys, if wide { 8 } else { 4 })
            .unwrap_or(u64::MAX)
    }

    /// The four PDPTEs a PAE CR3 names, or `BadPdpte` if a present one sets a reserved bit.
    pub(crate) fn load_pdptes(&self, cr3: u64) -> Result<[u64; 4], BadPdpte> {
        let base = cr3 & 0xFFFF_FFE0;
        let mut r = [0; 4];
        for (i, slot) in r.iter_mut().enumerate() {
            let e = self.table_load((base + 8 * i as u64) & self.a20_mask, true);
            if e & pte::P != 0 && e & RSVD_PDPTE != 0 {
                return Err(BadPdpte);
            }
            *slot = e;
        }
        Ok(r)
    }

    /// Translate `lin` for `access` at the current privilege. On success the accessed
    /// flags of every entry used, and the dirty flag of the final one for a write, are
    /// set; a walk that faults writes nothing (SDM Vol.3 4.8; Intel parts walk first and
    /// update A/D only for a translation that succeeds, as Bochs models it).
    pub(crate) fn walk(&mut self, lin: u64, access: Access) -> Result<Walk, MemFault> {
        let mut steps = Steps::default();
        let w = self.lookup(lin, access, self.user, &mut steps)?;
        if let Some((last, upper)) = steps.entries().split_last() {
            for s in upper {
                self.table_set_bits(s.addr, pte::A);
            }
            let write = access == Access::Write;
            self.table_set_bits(last.addr, pte::A | if write { pte::D } else { 0 });
        }
        Ok(w)
    }

    /// The walk for `lin` as the debugger shows it: every entry read, and the
    /// translation or fault of a supervisor read, with no side effect (no A/D update,
    /// no TLB fill).
    pub fn inspect(&self, lin: u64) -> (Steps, Result<Walk, MemFault>) {
        let mut steps = Steps::default();
        let r = self.lookup(lin, Access::Read, false, &mut steps);
        (steps, r)
    }

    /// The pure part of a walk: the entries it reads go to `steps`.
    fn lookup(
        &self,
        lin: u64,
        access: Access,
        user: bool,
        steps: &mut Steps,
    ) -> Result<Walk, MemFault> {
        let cfg = self.unit.cfg;
        if cfg.mode == Mode::Off {
            return Ok(Walk {
                phys: lin & self.a20_mask,
                page_shift: 12,
                global: false,
                pat_index: 0,
            });
        }
        let write = access == Access::Write;
        let fetch = access == Access::Fetch;
        let fault = |bits: u32| MemFault::Page {
            addr: lin,
            error_code: bits
                | if write { pf::W } else { 0 }
                | if user { pf::U } else { 0 }
                | if fetch && cfg.reports_fetch() {
                    pf::ID
                } else {
                    0
                },
        };
        let wide = cfg.mode != Mode::Bits32;
        let mut table = match cfg.mode {
            Mode::Bits32 => self.unit.cr3 & 0xFFFF_F000,
            Mode::Pae => {
                let e = self.unit.pdpte[(lin >> 30) as usize & 3];
                steps.pdpte = Some(e);
                if e & pte::P == 0 {
                    return Err(fault(0));
                }
                e & ADDR_MASK
            }
            _ => self.unit.cr3 & ADDR_MASK,
        };
        let (mut rw, mut us, mut xd) = (true, true, false);
        let mut leaf = (0u64, 12u32);
        for lv in cfg.levels() {
            let idx = (lin >> lv.shift) & ((1 << lv.index_bits) - 1);
            let addr = (table + (idx << if wide { 3 } else { 2 })) & self.a20_mask;
            let e = self.table_load(addr, wide);
            steps.push(Step {
                shift: lv.shift,
                addr,
                entry: e,
            });
            if e & pte::P == 0 {
                return Err(fault(0));
            }
            let large = match lv.large {
                Large::Leaf => true,
                Large::Always => e & pte::PS != 0,
                Large::IfPse => cfg.pse && e & pte::PS != 0,
                Large::Never => false,
            };
            let mut rsvd = cfg.reserved(lv.shift, large && lv.large != Large::Leaf);
            if lv.large == Large::Never && cfg.mode == Mode::Level4 {
                rsvd |= pte::PS;
            }
            if e & rsvd != 0 {
                return Err(fault(pf::P | pf::RSVD));
            }
            rw &= e & pte::RW != 0;
            us &= e & pte::US != 0;
            xd |= cfg.nxe && e & pte::XD != 0;
            if large {
                leaf = (e, lv.shift);
                break;
            }
            table = if wide { e & ADDR_MASK } else { e & 0xFFFF_F000 };
        }
        let (e, shift) = leaf;
        // Access rights (SDM Vol.3 4.6): user accesses need U/S and, to write, R/W at
        // every level; supervisor writes need R/W only with CR0.WP; XD forbids fetches.
        let writable = rw || (!user && !cfg.wp);
        if (user && !us) || (write && !writable) || (fetch && xd) {
            return Err(fault(pf::P));
        }
        let frame = if !wide && shift == 22 {
            (e & 0xFFC0_0000) | ((e >> 13) & 0xFF) << 32
        } else if wide {
            e & ADDR_MASK & !((1 << shift) - 1)
        } else {
            e & 0xFFFF_F000
        };
        let pat = if shift == 12 {
            e & pte::PAT_4K != 0
        } else {
            e & pte::PAT_LARGE != 0
        };
        Ok(Walk {
            phys: (frame | (lin & ((1 << shift) - 1))) & self.a20_mask,
            page_shift: shift,
            global: cfg.pge && e & pte::G != 0,
            pat_index: (pat as u8) << 2 | ((e & (pte::PCD | pte::PWT)) >> 3) as u8,
        })
    }

    /// Set A/D bits (all in an entry's low byte) if they are not set yet. The update
    /// is a write to RAM like any other: it invalidates decoded code on that page.
    fn table_set_bits(&mut self, addr: u64, bits: u64) {
        let old = self.table_load(addr, false);
        if old & bits != bits {
            self.ram_write(addr, 1, old | bits);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Page walks over a small RAM built by each test. Expected values come from the
    //! SDM Vol.3 ch. 4 tables and rules cited in each test, not from the code above.

    use super::*;
    use crate::{NullBus, PhysMem};

    const RAM: u64 = 0x80_0000;

    fn mmu() -> Mmu {
        let mut p = PhysMem::new();
        p.add_ram(0, RAM).unwrap();
        Mmu::new(p)
    }

    fn put32(m: &mut Mmu, addr: u64, v: u32) {
        m.phys.write_bytes(addr, &v.to_le_bytes()).unwrap();
    }
    fn put64(m: &mut Mmu, addr: u64, v: u64) {
        m.phys.write_bytes(addr, &v.to_le_bytes()).unwrap();
    }
    fn get32(m: &Mmu, addr: u64) -> u32 {
        let mut b = [0; 4];
        m.phys.read_bytes(addr, &mut b).unwrap();
        u32::from_le_bytes(b)
    }
    fn get64(m: &Mmu, addr: u64) -> u64 {
        let mut b = [0; 8];
        m.phys.read_bytes(addr, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    const P: u64 = pte::P;
    const RW: u64 = pte::RW;
    const US: u64 = pte::US;

    fn page_fault(addr: u64, error_code: u32) -> MemFault {
        MemFault::Page { addr, error_code }
    }

    /// 32-bit paging, CR3 = 0x1000: PD at 0x1000, one PT at 0x2000 for 0..4 MiB.
    fn bits32(pse: bool, wp: bool) -> Mmu {
        let mut m = mmu();
        put32(&mut m, 0x1000, 0x2000 | (P | RW | US) as u32);
        m.set_paging(
            Paging {
                mode: Mode::Bits32,
                wp,
                pse,
                ..Default::default()
            },
            0x1000,
        )
        .unwrap();
        m
    }

    #[test]
    fn bits32_4k_translation_sets_accessed_then_dirty() {
        let mut m = bits32(false, false);
        let bus = &mut NullBus;
        // Linear 0x5123 → PTE 5 of the PT at 0x2000 → frame 0x7000 (SDM Figure 4-2).
        put32(&mut m, 0x2000 + 5 * 4, 0x7000 | (P | RW | US) as u32);
        put32(&mut m, 0x7123, 0xCAFEBABE);
        assert_eq!(m.read::<u32>(bus, 0x5123), Ok(0xCAFEBABE));
        // SDM 4.8: A set in every entry used; D only on a write.
        assert_eq!(get32(&m, 0x1000) as u64 & (pte::A | pte::D), pte::A);
        assert_eq!(get32(&m, 0x2014) as u64 & (pte::A | pte::D), pte::A);
        m.write::<u8>(bus, 0x5000, 1).unwrap();
        // The PDE has no dirty flag (it references a table); the PTE gets D.
        assert_eq!(get32(&m, 0x1000) as u64 & pte::D, 0);
        assert_eq!(
            get32(&m, 0x2014) as u64 & (pte::A | pte::D),
            pte::A | pte::D
        );
        assert_eq!(get32(&m, 0x7000) & 0xFF, 1);
    }

    #[test]
    fn bits32_pse_maps_4m_pages_with_high_physical_bits() {
        let mut m = bits32(true, false);
        // PDE 1 (linear 4..8 MiB): PS, frame bits 31:22 = 0x00400000 and bits 20:13
        // = physical bits 39:32 (Table 4-4). Physical 1_0040_0000 is beyond RAM, so
        // check the translation rather than data.
        put32(
            &mut m,
            0x1004,
            0x0040_0000 | 1 << 13 | (P | RW | pte::PS) as u32,
        );
        let w = m.walk(0x0041_2345, Access::Read).unwrap();
        assert_eq!(w.phys, 0x1_0041_2345);
        assert_eq!(w.page_shift, 22);
        // Bit 21 is reserved in a 4-MByte PDE: #PF with P and RSVD.
        put32(
            &mut m,
            0x1004,
            0x0040_0000 | 1 << 21 | (P | RW | pte::PS) as u32,
        );
        m.flush_tlb();
        assert_eq!(
            m.walk(0x0041_2345, Access::Read),
            Err(page_fault(0x0041_2345, pf::P | pf::RSVD))
        );
    }

    #[test]
    fn bits32_without_pse_ignores_ps() {
        let mut m = bits32(false, false);
        // PS set but CR4.PSE = 0: the PDE references a page table (SDM 4.3).
        put32(&mut m, 0x1004, 0x3000 | (P | RW | pte::PS) as u32);
        put32(&mut m, 0x3000 + 4, 0x7000 | (P | RW) as u32);
        assert_eq!(m.walk(0x0040_1010, Access::Read).unwrap().phys, 0x7010);
    }

    #[test]
    fn not_present_faults_at_any_level_with_p_clear() {
        let mut m = bits32(false, false);
        // PDE 2 absent; PTE 6 absent.
        assert_eq!(
            m.walk(0x0080_0000, Access::Read),
            Err(page_fault(0x0080_0000, 0))
        );
        assert_eq!(
            m.walk(0x6004, Access::Write),
            Err(page_fault(0x6004, pf::W))
        );
        m.set_user(true);
        assert_eq!(
            m.walk(0x6004, Access::Fetch),
            Err(page_fault(0x6004, pf::U))
        );
    }

    /// SDM Vol.3 4.6.1 with the page's R/W and U/S combined over both levels.
    #[test]
    fn access_rights_and_cr0_wp() {
        let bus = &mut NullBus;
        for wp in [false, true] {
            let mut m = bits32(false, wp);
            put32(&mut m, 0x2000 + 4 * 8, 0x8000 | P as u32); // supervisor, read-only
            put32(&mut m, 0x2000 + 4 * 9, 0x9000 | (P | US) as u32); // user, read-only
            put32(&mut m, 0x2000 + 4 * 10, 0xA000 | (P | US | RW) as u32); // user, writable
                                                                           // Supervisor: reads anywhere; writes to read-only pages fault only with WP.
            assert!(m.read::<u8>(bus, 0x8000).is_ok());
            let ro = if wp {
                Err(page_fault(0x8000, pf::P | pf::W))
            } else {
                Ok(())
            };
            assert_eq!(m.write::<u8>(bus, 0x8000, 1), ro);
            let ro = if wp {
                Err(page_fault(0x9000, pf::P | pf::W))
            } else {
                Ok(())
            };
            assert_eq!(m.write::<u8>(bus, 0x9000, 1), ro);
            assert!(m.write::<u8>(bus, 0xA000, 1).is_ok());
            // User: no supervisor pages; writes need R/W whatever WP says.
            m.set_user(true);
            assert_eq!(
                m.read::<u8>(bus, 0x8000),
                Err(page_fault(0x8000, pf::P | pf::U))
            );
            assert_eq!(
                m.write::<u8>(bus, 0x8000, 1),
                Err(page_fault(0x8000, pf::P | pf::W | pf::U))
            );
            assert!(m.read::<u8>(bus, 0x9000).is_ok());
            assert_eq!(
                m.write::<u8>(bus, 0x9000, 1),
                Err(page_fault(0x9000, pf::P | pf::W | pf::U))
            );
            assert!(m.write::<u8>(bus, 0xA000, 1).is_ok());
            assert!(m.fetch_phys(0x9000).is_ok());
            assert_eq!(m.fetch_phys(0x8000), Err(page_fault(0x8000, pf::P | pf::U)));
        }
    }

    #[test]
    fn a_pde_without_us_or_rw_restricts_the_whole_table() {
        let bus = &mut NullBus;
        let mut m = bits32(false, true);
        put32(&mut m, 0x1000, 0x2000 | P as u32); // PDE: supervisor, read-only
        put32(&mut m, 0x2000 + 4 * 10, 0xA000 | (P | US | RW) as u32);
        assert_eq!(
            m.write::<u8>(bus, 0xA000, 1),
            Err(page_fault(0xA000, pf::P | pf::W))
        );
        m.set_user(true);
        assert_eq!(
            m.read::<u8>(bus, 0xA000),
            Err(page_fault(0xA000, pf::P | pf::U))
        );
    }

    #[test]
    fn no_accessed_or_dirty_update_on_a_faulting_walk() {
        let bus = &mut NullBus;
        let mut m = bits32(false, true);
        put32(&mut m, 0x2000 + 4 * 8, 0x8000 | P as u32);
        assert!(m.write::<u8>(bus, 0x8000, 1).is_err());
        // Neither the PDE nor the PTE was used for a translation that succeeded.
        assert_eq!(get32(&m, 0x1000) as u64 & pte::A, 0);
        assert_eq!(get32(&m, 0x2020) as u64 & (pte::A | pte::D), 0);
        m.set_user(true);
        assert!(m.read::<u8>(bus, 0x8000).is_err());
        assert_eq!(get32(&m, 0x1000) as u64 & pte::A, 0);
        // A not-present PTE below a present PDE: the PDE's A stays clear too.
        assert!(m.read::<u8>(bus, 0x6000).is_err());
        assert_eq!(get32(&m, 0x1000) as u64 & pte::A, 0);
        // Now a read that succeeds sets both A flags but no D.
        m.set_user(false);
        assert!(m.read::<u8>(bus, 0x8000).is_ok());
        assert_eq!(get32(&m, 0x1000) as u64 & pte::A, pte::A);
        assert_eq!(get32(&m, 0x2020) as u64 & (pte::A | pte::D), pte::A);
    }

    /// PAE: CR3 → 4 PDPTE registers → PD at 0x2000 → PT at 0x3000.
    fn pae(nxe: bool) -> Mmu {
        let mut m = mmu();
        put64(&mut m, 0x1000, 0x2000 | P);
        put64(&mut m, 0x2000, 0x3000 | P | RW | US);
        m.set_paging(
            Paging {
                mode: Mode::Pae,
                nxe,
                wp: true,
                ..Default::default()
            },
            0x1000,
        )
        .unwrap();
        m
    }

    #[test]
    fn pae_4k_and_2m_pages() {
        let mut m = pae(false);
        put64(&mut m, 0x3000 + 8 * 7, 0x7000 | P | RW);
        assert_eq!(m.walk(0x7ABC, Access::Read).unwrap().phys, 0x7ABC);
        // PDE 1: a 2-MByte page at physical 0x40_0000 (Table 4-9); PS is honoured
        // whatever CR4.PSE says.
        put64(&mut m, 0x2008, 0x40_0000 | P | RW | pte::PS);
        let w = m.walk(0x0023_4567, Access::Write).unwrap();
        assert_eq!((w.phys, w.page_shift), (0x43_4567, 21));
        assert_eq!(get64(&m, 0x2008) & (pte::A | pte::D), pte::A | pte::D);
        // Bits 20:13 of a 2-MByte PDE are reserved.
        put64(&mut m, 0x2008, 0x40_0000 | 1 << 13 | P | RW | pte::PS);
        assert_eq!(
            m.walk(0x0023_4567, Access::Read),
            Err(page_fault(0x0023_4567, pf::P | pf::RSVD))
        );
        // A PDPTE register that is not present: #PF, P clear.
        assert_eq!(
            m.walk(0x4000_0000, Access::Read),
            Err(page_fault(0x4000_0000, 0))
        );
    }

    #[test]
    fn pae_pdptes_are_registers_loaded_with_cr3() {
        let mut m = pae(false);
        put64(&mut m, 0x3000 + 8 * 7, 0x7000 | P | RW);
        // Changing the PDPTE in memory does nothing until CR3 is loaded (SDM 4.4.1).
        put64(&mut m, 0x1000, 0);
        m.flush_tlb();
        assert!(m.walk(0x7000, Access::Read).is_ok());
        m.set_cr3(0x1000).unwrap();
        assert_eq!(m.walk(0x7000, Access::Read), Err(page_fault(0x7000, 0)));
        // A present PDPTE with a reserved bit (bit 1, or XD) cannot be loaded: MOV CR3
        // fails (#GP) and the old registers stay.
        put64(&mut m, 0x1008, 0x5000 | P | RW);
        assert_eq!(m.set_cr3(0x1000), Err(BadPdpte));
        put64(&mut m, 0x1008, 0x5000 | P | pte::XD);
        assert_eq!(m.set_cr3(0x1000), Err(BadPdpte));
        // A non-present one may hold anything.
        put64(&mut m, 0x1008, u64::MAX - 1);
        assert_eq!(m.set_cr3(0x1000), Ok(()));
    }

    #[test]
    fn xd_needs_nxe_and_blocks_fetches() {
        let bus = &mut NullBus;
        // Without EFER.NXE bit 63 is reserved: any access faults with RSVD, and I/D
        // stays 0 (SDM 4.7: I/D needs CR4.PAE and EFER.NXE).
        let mut m = pae(false);
        put64(&mut m, 0x3000 + 8 * 7, 0x7000 | P | RW | pte::XD);
        assert_eq!(
            m.read::<u8>(bus, 0x7000),
            Err(page_fault(0x7000, pf::P | pf::RSVD))
        );
        assert_eq!(
            m.fetch_phys(0x7000),
            Err(page_fault(0x7000, pf::P | pf::RSVD))
        );
        // With NXE: data accesses are fine, fetches fault with I/D.
        let mut m = pae(true);
        put64(&mut m, 0x3000 + 8 * 7, 0x7000 | P | RW | pte::XD);
        assert!(m.read::<u8>(bus, 0x7000).is_ok());
        assert!(m.write::<u8>(bus, 0x7000, 1).is_ok());
        assert_eq!(
            m.fetch_phys(0x7000),
            Err(page_fault(0x7000, pf::P | pf::ID))
        );
        // XD on a higher level covers the whole region.
        put64(&mut m, 0x2000, 0x3000 | P | RW | US | pte::XD);
        put64(&mut m, 0x3000 + 8 * 8, 0x8000 | P | RW);
        m.flush_tlb();
        assert_eq!(
            m.fetch_phys(0x8000),
            Err(page_fault(0x8000, pf::P | pf::ID))
        );
        // A not-present fetch reports I/D too.
        assert_eq!(m.fetch_phys(0x9000), Err(page_fault(0x9000, pf::ID)));
    }

    /// 4-level: PML4 0x1000 → PDPT 0x2000 → PD 0x3000 → PT 0x4000.
    fn level4() -> Mmu {
        let mut m = mmu();
        put64(&mut m, 0x1000, 0x2000 | P | RW | US);
        put64(&mut m, 0x2000, 0x3000 | P | RW | US);
        put64(&mut m, 0x3000, 0x4000 | P | RW | US);
        m.set_paging(
            Paging {
                mode: Mode::Level4,
                nxe: true,
                wp: true,
                pge: true,
                ..Default::default()
            },
            0x1000,
        )
        .unwrap();
        m
    }

    #[test]
    fn level4_walks_all_page_sizes() {
        let bus = &mut NullBus;
        let mut m = level4();
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | RW);
        m.write::<u32>(bus, 0x5010, 0x1234_5678).unwrap();
        assert_eq!(get32(&m, 0x7010), 0x1234_5678);
        for a in [0x1000, 0x2000, 0x3000] {
            assert_eq!(
                get64(&m, a) & (pte::A | pte::D),
                pte::A,
                "non-leaf at {a:#x}"
            );
        }
        assert_eq!(get64(&m, 0x4028) & (pte::A | pte::D), pte::A | pte::D);
        // 2-MByte page: PD entry 1.
        put64(&mut m, 0x3008, 0x60_0000 | P | RW | pte::PS);
        assert_eq!(m.walk(0x20_0042, Access::Read).unwrap().phys, 0x60_0042);
        // 1-GByte page: PDPT entry 1 (linear 1..2 GiB), frame bits 39:30.
        put64(&mut m, 0x2008, 0x80_4000_0000 | P | RW | pte::PS);
        let w = m.walk(0x4123_4567, Access::Read).unwrap();
        assert_eq!((w.phys, w.page_shift), (0x80_4123_4567, 30));
        // Bits 29:13 of a 1-GByte PDPTE are reserved.
        put64(&mut m, 0x2008, 0x80_4000_0000 | 1 << 20 | P | RW | pte::PS);
        assert_eq!(
            m.walk(0x4123_4567, Access::Read),
            Err(page_fault(0x4123_4567, pf::P | pf::RSVD))
        );
        // Higher half: PML4 entry 511 (sign-extended linear address).
        put64(&mut m, 0x1000 + 8 * 511, 0x2000 | P | RW);
        assert_eq!(
            m.walk(0xFFFF_FF80_0000_5010, Access::Read).unwrap().phys,
            0x7010
        );
    }

    #[test]
    fn level4_reserved_bits() {
        let mut m = level4();
        // PS in a PML4E is reserved.
        put64(&mut m, 0x1008, 0x2000 | P | RW | pte::PS);
        assert_eq!(
            m.walk(0x80_0000_0000, Access::Read),
            Err(page_fault(0x80_0000_0000, pf::P | pf::RSVD))
        );
        // Bits 51:MAXPHYADDR are reserved; 62:52 are ignored.
        put64(&mut m, 0x1008, 0x2000 | 1 << 45 | P | RW);
        assert_eq!(
            m.walk(0x80_0000_0000, Access::Write),
            Err(page_fault(0x80_0000_0000, pf::P | pf::RSVD | pf::W))
        );
        put64(&mut m, 0x1008, 0x2000 | 1 << 55 | P | RW);
        put64(&mut m, 0x4000, 0x9000 | P | RW | 1 << 60);
        assert_eq!(m.walk(0x80_0000_0000, Access::Read).unwrap().phys, 0x9000);
    }

    #[test]
    fn global_entries_survive_cr3_loads_but_not_invlpg() {
        let bus = &mut NullBus;
        let mut m = level4();
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | RW | pte::G);
        put64(&mut m, 0x4000 + 8 * 6, 0x7000 | P | RW);
        put32(&mut m, 0x7000, 0x1111);
        put32(&mut m, 0x8000, 0x2222);
        assert_eq!(m.read::<u32>(bus, 0x5000), Ok(0x1111));
        assert_eq!(m.read::<u32>(bus, 0x6000), Ok(0x1111));
        // Remap both pages to 0x8000 without telling the TLB.
        put64(&mut m, 0x4000 + 8 * 5, 0x8000 | P | RW | pte::G);
        put64(&mut m, 0x4000 + 8 * 6, 0x8000 | P | RW);
        // MOV CR3 invalidates non-global translations only (SDM 4.10.4.1).
        m.set_cr3(0x1000).unwrap();
        assert_eq!(m.read::<u32>(bus, 0x5000), Ok(0x1111), "global entry kept");
        assert_eq!(m.read::<u32>(bus, 0x6000), Ok(0x2222));
        // INVLPG invalidates global ones too.
        m.invlpg(0x5123);
        assert_eq!(m.read::<u32>(bus, 0x5000), Ok(0x2222));
        // With CR4.PGE clear, G means nothing.
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | RW | pte::G);
        let cfg = Paging {
            pge: false,
            ..m.paging()
        };
        m.set_paging(cfg, 0x1000).unwrap();
        assert_eq!(m.read::<u32>(bus, 0x5000), Ok(0x1111));
        put64(&mut m, 0x4000 + 8 * 5, 0x8000 | P | RW | pte::G);
        m.set_cr3(0x1000).unwrap();
        assert_eq!(m.read::<u32>(bus, 0x5000), Ok(0x2222));
    }

    #[test]
    fn invlpg_in_a_large_page_drops_all_of_it() {
        let bus = &mut NullBus;
        let mut m = level4();
        put64(&mut m, 0x3008, 0x40_0000 | P | RW | pte::PS);
        put32(&mut m, 0x40_0000, 1);
        put32(&mut m, 0x5F_F000, 2);
        put32(&mut m, 0x60_0000, 3);
        put32(&mut m, 0x7F_F000, 4);
        assert_eq!(m.read::<u32>(bus, 0x20_0000), Ok(1));
        assert_eq!(m.read::<u32>(bus, 0x3F_F000), Ok(2));
        put64(&mut m, 0x3008, 0x60_0000 | P | RW | pte::PS);
        // INVLPG of any address in the 2-MByte page invalidates the whole page.
        m.invlpg(0x20_0000);
        assert_eq!(m.read::<u32>(bus, 0x3F_F000), Ok(4));
    }

    #[test]
    fn tlb_entries_are_per_privilege() {
        let bus = &mut NullBus;
        let mut m = level4();
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | RW); // supervisor only
        assert!(m.read::<u8>(bus, 0x5000).is_ok());
        assert!(m.write::<u8>(bus, 0x5000, 1).is_ok());
        m.set_user(true);
        // The supervisor's TLB entries must not let a user access through.
        assert_eq!(
            m.read::<u8>(bus, 0x5000),
            Err(page_fault(0x5000, pf::P | pf::U))
        );
        assert_eq!(
            m.write::<u8>(bus, 0x5000, 1),
            Err(page_fault(0x5000, pf::P | pf::W | pf::U))
        );
        assert!(m.rmw_ptr(0x5000, 1).is_none());
        // Implicit supervisor accesses (descriptor tables, IDT, TSS; SDM 4.6) at CPL 3.
        assert!(m.read_sys::<u8>(bus, 0x5000).is_ok());
        assert!(m.write_sys::<u8>(bus, 0x5000, 2).is_ok());
        assert!(m.user());
        assert_eq!(get32(&m, 0x7000) & 0xFF, 2);
    }

    #[test]
    fn a_write_through_a_read_entry_sets_dirty() {
        let bus = &mut NullBus;
        let mut m = level4();
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | RW);
        assert!(m.read::<u8>(bus, 0x5000).is_ok());
        assert_eq!(get64(&m, 0x4028) & pte::D, 0);
        m.write::<u8>(bus, 0x5001, 1).unwrap();
        assert_eq!(get64(&m, 0x4028) & pte::D, pte::D);
    }

    #[test]
    fn tables_outside_ram_read_as_all_ones() {
        let mut m = level4();
        // PML4 entry 2 points at a PDPT beyond RAM: all ones is present with reserved
        // bits set.
        put64(&mut m, 0x1010, 0xF0_0000_0000 | P | RW);
        assert_eq!(
            m.walk(0x100_0000_0000, Access::Read),
            Err(page_fault(0x100_0000_0000, pf::P | pf::RSVD))
        );
        // And a CR3 beyond RAM with 32-bit paging translates without panicking.
        let mut m = mmu();
        m.set_paging(
            Paging {
                mode: Mode::Bits32,
                ..Default::default()
            },
            0xF000_0000,
        )
        .unwrap();
        assert!(m.walk(0x1234, Access::Read).is_ok());
    }

    #[test]
    fn accessed_and_dirty_updates_invalidate_code_on_the_table_page() {
        let bus = &mut NullBus;
        let mut m = bits32(false, false);
        put32(&mut m, 0x2000 + 4 * 7, 0x7000 | (P | RW) as u32);
        m.mark_code_page(0x2000);
        m.read::<u8>(bus, 0x7000).unwrap();
        assert_eq!(m.take_written_code(), vec![0x2000]);
    }

    #[test]
    fn pat_bits_are_carried() {
        let mut m = level4();
        put64(&mut m, 0x4000 + 8 * 5, 0x7000 | P | pte::PAT_4K | pte::PWT);
        assert_eq!(m.walk(0x5000, Access::Read).unwrap().pat_index, 0b101);
        put64(
            &mut m,
            0x3008,
            0x40_0000 | P | pte::PS | pte::PAT_LARGE | pte::PCD,
        );
        assert_eq!(m.walk(0x20_0000, Access::Read).unwrap().pat_index, 0b110);
    }
}
