//! The CPUID model (DESIGN.md §2): report exactly what is implemented.
//! Leaves are data: one row per (leaf, subleaf), like a dump of a real part.

/// The TSC's frequency, which leaves 15h and 16h report: the machine runs the TSC at
/// 1 GHz of machine time (crates/machine/src/clock.rs).
pub const TSC_HZ: u64 = 1_000_000_000;

/// The core crystal clock of leaf 15h: the clock of the local APIC timer
/// (crates/machine/src/platform.rs, APIC_BUS_HZ).
pub const CRYSTAL_HZ: u64 = 1_000_000_000;

/// Family 6, model 0x0F (a Core 2-class part), stepping 1.
const SIGNATURE: u32 = 0x0000_06F1;

/// Leaf 1 EDX feature bits that trapeze implements (SDM Vol.2A CPUID, Table 3-11).
mod edx1 {
    /// x87 FPU on chip.
    pub const FPU: u32 = 1 << 0;
    pub const PSE: u32 = 1 << 3;
    /// RDTSC and CR4.TSD.
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const CX8: u32 = 1 << 8;
    /// An on-chip local APIC (the platform's, at IA32_APIC_BASE).
    pub const APIC: u32 = 1 << 9;
    /// SYSENTER/SYSEXIT.
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    /// 4-MByte pages map physical addresses above 4 GiB.
    pub const PSE36: u32 = 1 << 17;
    pub const CLFSH: u32 = 1 << 19;
    pub const MMX: u32 = 1 << 23;
    /// FXSAVE/FXRSTOR and CR4.OSFXSR.
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
}

/// Leaf 1 EBX bits 15:8: CLFLUSH line size in 8-byte units (64 bytes).
const EBX1: u32 = 8 << 8;

/// Leaf 1 ECX feature bits.
mod ecx1 {
    pub const CX16: u32 = 1 << 13;
    /// The local APIC timer's TSC-deadline mode (IA32_TSC_DEADLINE).
    pub const TSC_DEADLINE: u32 = 1 << 24;
}

/// Leaf 8000_0001h EDX feature bits (AMD APM Vol.3 E.4.2).
mod edx_ext1 {
    pub const SYSCALL: u32 = 1 << 11;
    pub const NX: u32 = 1 << 20;
    pub const PAGE1GB: u32 = 1 << 26;
    pub const RDTSCP: u32 = 1 << 27;
    pub const LM: u32 = 1 << 29;
}

/// Leaf 8000_0001h ECX: LAHF/SAHF in 64-bit mode.
const LAHF_LM: u32 = 1 << 0;

const EDX1: u32 = edx1::FPU
    | edx1::PSE
    | edx1::TSC
    | edx1::MSR
    | edx1::PAE
    | edx1::CX8
    | edx1::APIC
    | edx1::SEP
    | edx1::MTRR
    | edx1::PGE
    | edx1::CMOV
    | edx1::PAT
    | edx1::PSE36
    | edx1::CLFSH
    | edx1::MMX
    | edx1::FXSR
    | edx1::SSE
    | edx1::SSE2;

const EDX_EXT1: u32 = edx_ext1::SYSCALL
    | edx_ext1::NX
    | edx_ext1::RDTSCP
    | edx_ext1::LM
    | if trapeze_mmu::paging::GIB_PAGES {
        edx_ext1::PAGE1GB
    } else {
        0
    };

/// Leaf 8000_0008h EAX: linear address bits << 8 | physical address bits.
const ADDRESS_SIZES: u32 = trapeze_mmu::paging::LINEAR_BITS << 8 | trapeze_mmu::paging::MAXPHYADDR;

/// (leaf, eax, ebx, ecx, edx)
const LEAVES: &[(u32, [u32; 4])] = &[
    // Max basic leaf 16h; vendor "TrapezeVMM  " in EBX, EDX, ECX order.
    (
        0x0000_0000,
        [
            0x16,
            u32::from_le_bytes(*b"Trap"),
            u32::from_le_bytes(*b"MM  "),
            u32::from_le_bytes(*b"ezeV"),
        ],
    ),
    (
        0x0000_0001,
        [SIGNATURE, EBX1, ecx1::CX16 | ecx1::TSC_DEADLINE, EDX1],
    ),
    // Time-stamp counter and core crystal clock (SDM Vol.2A CPUID leaf 15h): TSC =
    // ECX * EBX / EAX. The crystal is the local APIC timer's 1 GHz clock.
    (
        0x0000_0015,
        [1, (TSC_HZ / CRYSTAL_HZ) as u32, CRYSTAL_HZ as u32, 0],
    ),
    // Processor frequency information (leaf 16h): base, maximum and bus MHz.
    (
        0x0000_0016,
        [
            (TSC_HZ / 1_000_000) as u32,
            (TSC_HZ / 1_000_000) as u32,
            (CRYSTAL_HZ / 1_000_000) as u32,
            0,
        ],
    ),
    (0x8000_0000, [0x8000_0008, 0, 0, 0]),
    (0x8000_0001, [0, 0, LAHF_LM, EDX_EXT1]),
    (0x8000_0008, [ADDRESS_SIZES, 0, 0, 0]),
];

pub fn signature() -> u32 {
    SIGNATURE
}

/// CPUID for (EAX, ECX) → [EAX, EBX, ECX, EDX]. Leaves above the maximum return the
/// highest basic leaf, as Intel parts do (SDM Vol.2A CPUID).
pub fn cpuid(leaf: u32, _subleaf: u32) -> [u32; 4] {
    let max_basic = LEAVES[0].1[0];
    let max_ext = LEAVES
        .iter()
        .find(|l| l.0 == 0x8000_0000)
        .map_or(0, |l| l.1[0]);
    let leaf = if leaf >= 0x8000_0000 {
        if leaf > max_ext {
            max_basic
        } else {
            leaf
        }
    } else if leaf > max_basic {
        max_basic
    } else {
        leaf
    };
    LEAVES.iter().find(|l| l.0 == leaf).map_or([0; 4], |l| l.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_string_reads_in_ebx_edx_ecx_order() {
        let [_, b, c, d] = cpuid(0, 0);
        let mut v = Vec::new();
        for r in [b, d, c] {
            v.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&v, b"TrapezeVMM  ");
    }

    #[test]
    fn leaf_1_reports_the_local_apic() {
        // SDM Vol.2A Table 3-11: EDX bit 9, APIC; the MSR IA32_APIC_BASE backs it.
        assert_ne!(cpuid(1, 0)[3] & 1 << 9, 0);
    }

    #[test]
    fn out_of_range_leaves_return_the_highest_basic_leaf() {
        assert_eq!(cpuid(0x1234, 0), cpuid(0x16, 0));
        assert_eq!(cpuid(0x8000_0042, 0), cpuid(0x16, 0));
    }

    #[test]
    fn leaves_15h_and_16h_give_the_tsc_frequency() {
        // SDM Vol.2A CPUID: TSC frequency = crystal (ECX) * EBX / EAX.
        let [a, b, c, _] = cpuid(0x15, 0);
        assert_eq!(c as u64 * b as u64 / a as u64, TSC_HZ);
        let [base_mhz, max_mhz, bus_mhz, _] = cpuid(0x16, 0);
        assert_eq!(base_mhz as u64 * 1_000_000, TSC_HZ);
        assert_eq!(max_mhz, base_mhz);
        assert_eq!(bus_mhz as u64 * 1_000_000, CRYSTAL_HZ);
        // Leaves below the maximum that trapeze does not describe read as zeros.
        assert_eq!(cpuid(0x0B, 0), [0; 4]);
    }
}
