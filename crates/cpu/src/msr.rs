//! Model-specific registers (SDM Vol.4 ch. 2; AMD APM Vol.2 A.1): one table of the MSRs
//! trapeze implements, with their reset values and which bits a WRMSR may change.
//! RDMSR/WRMSR of any other index, or a WRMSR that sets a reserved bit, is #GP(0).

use crate::cpu::{canonical, Cpu};
use crate::fault::Fault;
use crate::state::sreg;

/// MSR indices (SDM Vol.4 Table 2-2, "IA-32 Architectural MSRs").
pub mod index {
    pub const TSC: u32 = 0x10;
    /// Owned by the local APIC, a device: RDMSR/WRMSR reach it through the bus.
    pub const APIC_BASE: u32 = 0x1B;
    pub const MTRRCAP: u32 = 0xFE;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const MISC_ENABLE: u32 = 0x1A0;
    /// MTRRphysBase0; MTRRphysMask0 is +1, pair n at +2n.
    pub const MTRR_PHYSBASE0: u32 = 0x200;
    pub const MTRR_FIX64K_00000: u32 = 0x250;
    pub const MTRR_FIX16K_80000: u32 = 0x258;
    pub const MTRR_FIX16K_A0000: u32 = 0x259;
    /// MTRRfix4K_C0000 .. MTRRfix4K_F8000 are 0x268 ..= 0x26F.
    pub const MTRR_FIX4K_C0000: u32 = 0x268;
    pub const PAT: u32 = 0x277;
    /// Owned by the local APIC, like APIC_BASE.
    pub const TSC_DEADLINE: u32 = 0x6E0;
    pub const MTRR_DEF_TYPE: u32 = 0x2FF;
    pub const EFER: u32 = 0xC000_0080;
    pub const STAR: u32 = 0xC000_0081;
    pub const LSTAR: u32 = 0xC000_0082;
    pub const CSTAR: u32 = 0xC000_0083;
    pub const SFMASK: u32 = 0xC000_0084;
    pub const FS_BASE: u32 = 0xC000_0100;
    pub const GS_BASE: u32 = 0xC000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
    pub const TSC_AUX: u32 = 0xC000_0103;
}

/// What a WRMSR checks beyond the reserved bits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    /// WRMSR always faults.
    ReadOnly,
    /// A linear address: non-canonical is #GP(0).
    Canonical,
    /// Every byte a PAT memory type: 0 1 4 5 6 7 (SDM Vol.3 11.12.2).
    PatTypes,
    /// Every byte an MTRR memory type: 0 1 4 5 6 (SDM Vol.3 11.11.1).
    MtrrTypes,
    /// The low byte an MTRR memory type (MTRRdefType, MTRRphysBase).
    MtrrTypeLow,
}

/// Where the value lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In `MsrStore`.
    Stored,
    /// The virtual TSC: a write sets `Cpu::tsc_offset`.
    Tsc,
    /// `Cpu::efer`, written through `Cpu::write_efer`.
    Efer,
    /// The hidden base of a segment register (FS_BASE, GS_BASE).
    SegBase(usize),
}

struct Msr {
    index: u32,
    reset: u64,
    /// Bits a WRMSR stores.
    writable: u64,
    /// Read-only bits: a WRMSR may hold anything there and they keep their value.
    /// Bits neither writable nor ignored are reserved: setting one is #GP(0).
    ignored: u64,
    check: Check,
    place: Place,
}

const fn msr(index: u32, reset: u64, writable: u64, check: Check) -> Msr {
    Msr {
        index,
        reset,
        writable,
        ignored: 0,
        check,
        place: Place::Stored,
    }
}

const ALL: u64 = u64::MAX;
const LOW32: u64 = 0xFFFF_FFFF;
/// Physical address bits 39:12 (MAXPHYADDR 40), as in APIC_BASE and the variable MTRRs.
const PHYS_PAGE: u64 = ((1 << trapeze_mmu::paging::MAXPHYADDR) - 1) & !0xFFF;
/// MTRRphysMask valid bit.
const MTRR_V: u64 = 1 << 11;
/// MTRRcap: 8 variable ranges, fixed ranges, write-combining (SDM Vol.3 11.11.1).
const MTRRCAP_VALUE: u64 = 8 | 1 << 8 | 1 << 10;
/// MISC_ENABLE: fast strings on; branch-trace and PEBS storage unavailable (read-only).
const MISC_FAST_STRINGS: u64 = 1 << 0;
const MISC_READ_ONLY: u64 = 1 << 11 | 1 << 12;

const fn variable_mtrr(n: u32) -> [Msr; 2] {
    [
        msr(
            index::MTRR_PHYSBASE0 + 2 * n,
            0,
            PHYS_PAGE | 0xFF,
            Check::MtrrTypeLow,
        ),
        msr(
            index::MTRR_PHYSBASE0 + 2 * n + 1,
            0,
            PHYS_PAGE | MTRR_V,
            Check::None,
        ),
    ]
}

const fn fixed_mtrr(index: u32) -> Msr {
    msr(index, 0, ALL, Check::MtrrTypes)
}

/// Every implemented MSR, sorted by index.
static MSRS: [Msr; 44] = {
    let [b0, m0] = variable_mtrr(0);
    let [b1, m1] = variable_mtrr(1);
    let [b2, m2] = variable_mtrr(2);
    let [b3, m3] = variable_mtrr(3);
    let [b4, m4] = variable_mtrr(4);
    let [b5, m5] = variable_mtrr(5);
    let [b6, m6] = variable_mtrr(6);
    let [b7, m7] = variable_mtrr(7);
    [
        Msr {
            place: Place::Tsc,
            ..msr(index::TSC, 0, ALL, Check::None)
        },
        msr(index::MTRRCAP, MTRRCAP_VALUE, 0, Check::ReadOnly),
        // Bits 63:32 of SYSENTER_CS are not used; writes there are ignored.
        Msr {
            ignored: !LOW32,
            ..msr(index::SYSENTER_CS, 0, LOW32, Check::None)
        },
        msr(index::SYSENTER_ESP, 0, ALL, Check::Canonical),
        msr(index::SYSENTER_EIP, 0, ALL, Check::Canonical),
        Msr {
            ignored: MISC_READ_ONLY,
            ..msr(
                index::MISC_ENABLE,
                MISC_FAST_STRINGS | MISC_READ_ONLY,
                MISC_FAST_STRINGS,
                Check::None,
            )
        },
        b0,
        m0,
        b1,
        m1,
        b2,
        m2,
        b3,
        m3,
        b4,
        m4,
        b5,
        m5,
        b6,
        m6,
        b7,
        m7,
        fixed_mtrr(index::MTRR_FIX64K_00000),
        fixed_mtrr(index::MTRR_FIX16K_80000),
        fixed_mtrr(index::MTRR_FIX16K_A0000),
        fixed_mtrr(index::MTRR_FIX4K_C0000),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 1),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 2),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 3),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 4),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 5),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 6),
        fixed_mtrr(index::MTRR_FIX4K_C0000 + 7),
        // PAT reset value: WB WT UC- UC in PA0-3 and again in PA4-7 (SDM Vol.3 11.12.4).
        msr(index::PAT, 0x0007_0406_0007_0406, ALL, Check::PatTypes),
        // MTRRdefType: type 7:0, fixed-range enable 10, enable 11.
        msr(
            index::MTRR_DEF_TYPE,
            0,
            0xFF | 1 << 10 | 1 << 11,
            Check::MtrrTypeLow,
        ),
        Msr {
            place: Place::Efer,
            ..msr(index::EFER, 0, ALL, Check::None)
        },
        msr(index::STAR, 0, ALL, Check::None),
        msr(index::LSTAR, 0, ALL, Check::Canonical),
        msr(index::CSTAR, 0, ALL, Check::Canonical),
        msr(index::SFMASK, 0, LOW32, Check::None),
        Msr {
            place: Place::SegBase(sreg::FS),
            ..msr(index::FS_BASE, 0, ALL, Check::Canonical)
        },
        Msr {
            place: Place::SegBase(sreg::GS),
            ..msr(index::GS_BASE, 0, ALL, Check::Canonical)
        },
        msr(index::KERNEL_GS_BASE, 0, ALL, Check::Canonical),
        msr(index::TSC_AUX, 0, LOW32, Check::None),
    ]
};

fn find(index: u32) -> Option<usize> {
    MSRS.binary_search_by_key(&index, |m| m.index).ok()
}

/// The values of the MSRs kept here (`Place::Stored`), in table order.
#[derive(Clone, Debug)]
pub struct MsrStore {
    values: [u64; MSRS.len()],
}

impl Default for MsrStore {
    /// The values after RESET.
    fn default() -> Self {
        let mut values = [0; MSRS.len()];
        for (v, m) in values.iter_mut().zip(MSRS.iter()) {
            *v = m.reset;
        }
        MsrStore { values }
    }
}

impl MsrStore {
    /// A stored MSR (STAR, LSTAR, SYSENTER_CS ...). Zero for an index not in the table,
    /// which no caller passes.
    pub fn get(&self, index: u32) -> u64 {
        find(index).map_or(0, |i| self.values[i])
    }

    pub fn set(&mut self, index: u32, v: u64) {
        if let Some(i) = find(index) {
            self.values[i] = v;
        }
    }
}

/// Is `b` a memory type the PAT (or, without 7 = UC-, an MTRR) accepts?
fn valid_type(b: u8, pat: bool) -> bool {
    matches!(b, 0 | 1 | 4 | 5 | 6) || (pat && b == 7)
}

impl Cpu {
    /// RDMSR (the CPL check is the classifier's, DESIGN.md §3).
    pub fn rdmsr(&self, index: u32) -> Result<u64, Fault> {
        let i = find(index).ok_or(Fault::gp(0))?;
        Ok(match MSRS[i].place {
            Place::Stored => self.msr.values[i],
            Place::Tsc => self.tsc(),
            Place::Efer => self.efer,
            Place::SegBase(s) => self.seg[s].base,
        })
    }

    /// WRMSR: #GP(0) for an unknown index, a reserved bit, or a value the MSR's check
    /// rejects; nothing changes then.
    pub fn wrmsr(&mut self, index: u32, v: u64) -> Result<(), Fault> {
        let i = find(index).ok_or(Fault::gp(0))?;
        let m = &MSRS[i];
        let bytes = v.to_le_bytes();
        let ok = v & !(m.writable | m.ignored) == 0
            && match m.check {
                Check::None => true,
                Check::ReadOnly => false,
                Check::Canonical => canonical(v),
                Check::PatTypes => bytes.iter().all(|&b| valid_type(b, true)),
                Check::MtrrTypes => bytes.iter().all(|&b| valid_type(b, false)),
                Check::MtrrTypeLow => valid_type(bytes[0], false),
            };
        if !ok {
            return Err(Fault::gp(0));
        }
        match m.place {
            Place::Stored => {
                self.msr.values[i] = (self.msr.values[i] & !m.writable) | (v & m.writable)
            }
            // TSC writes set the offset from virtual time (SDM Vol.3 17.17).
            Place::Tsc => {
                self.tsc_offset = v.wrapping_sub(self.icount.wrapping_mul(self.tsc_per_insn))
            }
            Place::Efer => return self.write_efer(v),
            Place::SegBase(s) => self.seg[s].base = v,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mmu, PhysMem};

    fn cpu() -> Cpu {
        let mut p = PhysMem::new();
        p.add_ram(0, 0x10_0000).unwrap();
        Cpu::new(Mmu::new(p))
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(MSRS.windows(2).all(|w| w[0].index < w[1].index));
    }

    #[test]
    fn reset_values() {
        let c = cpu();
        // The local APIC's MSRs are the platform's, not the CPU's.
        assert_eq!(c.rdmsr(index::APIC_BASE), Err(Fault::gp(0)));
        assert_eq!(c.rdmsr(index::PAT), Ok(0x0007_0406_0007_0406));
        assert_eq!(c.rdmsr(index::MTRRCAP), Ok(0x508));
        assert_eq!(c.rdmsr(index::EFER), Ok(0));
    }

    #[test]
    fn unknown_msrs_and_reserved_bits_fault() {
        let mut c = cpu();
        assert_eq!(c.rdmsr(0x1234), Err(Fault::gp(0)));
        assert_eq!(c.wrmsr(0x1234, 0), Err(Fault::gp(0)));
        assert_eq!(c.wrmsr(index::SFMASK, 1 << 32), Err(Fault::gp(0)));
        assert_eq!(c.wrmsr(index::TSC_AUX, 1 << 40), Err(Fault::gp(0)));
        assert_eq!(c.wrmsr(index::MTRRCAP, MTRRCAP_VALUE), Err(Fault::gp(0)));
        // A PAT entry of type 2 or 3 is reserved; MTRRs do not take 7 (UC-).
        assert_eq!(
            c.wrmsr(index::PAT, 0x0007_0406_0007_0402),
            Err(Fault::gp(0))
        );
        assert_eq!(c.wrmsr(index::MTRR_DEF_TYPE, 7), Err(Fault::gp(0)));
        assert_eq!(
            c.wrmsr(index::MTRR_FIX4K_C0000 + 3, 0x0606_0606_0606_0607),
            Err(Fault::gp(0))
        );
        assert_eq!(
            c.wrmsr(index::LSTAR, 0x0000_8000_0000_0000),
            Err(Fault::gp(0))
        );
        assert_eq!(c.rdmsr(index::LSTAR), Ok(0));
    }

    #[test]
    fn writes_store_within_masks() {
        let mut c = cpu();
        c.wrmsr(index::MTRR_PHYSBASE0 + 2, 0x1234_5000 | 6).unwrap();
        assert_eq!(c.rdmsr(index::MTRR_PHYSBASE0 + 2), Ok(0x1234_5006));
        c.wrmsr(index::MTRR_PHYSBASE0 + 3, 0xFF_FFF0_0000 | MTRR_V)
            .unwrap();
        assert_eq!(c.rdmsr(index::MTRR_PHYSBASE0 + 3), Ok(0xFF_FFF0_0800));
        // Read-only bits keep their value whatever the write holds.
        c.wrmsr(index::MISC_ENABLE, 0).unwrap();
        assert_eq!(c.rdmsr(index::MISC_ENABLE), Ok(MISC_READ_ONLY));
        c.wrmsr(index::SYSENTER_CS, 0xDEAD_0000_0000_0008).unwrap();
        assert_eq!(c.rdmsr(index::SYSENTER_CS), Ok(8));
    }

    #[test]
    fn fs_and_gs_base_alias_the_segment_caches() {
        let mut c = cpu();
        c.wrmsr(index::GS_BASE, 0xFFFF_8000_1234_0000).unwrap();
        assert_eq!(c.seg[sreg::GS].base, 0xFFFF_8000_1234_0000);
        c.seg[sreg::FS].base = 0x5000;
        assert_eq!(c.rdmsr(index::FS_BASE), Ok(0x5000));
    }

    #[test]
    fn tsc_writes_set_the_offset() {
        let mut c = cpu();
        c.icount = 1000;
        c.wrmsr(index::TSC, 50).unwrap();
        assert_eq!(c.rdmsr(index::TSC), Ok(50));
        c.icount = 1010;
        assert_eq!(c.rdmsr(index::TSC), Ok(60));
    }
}
