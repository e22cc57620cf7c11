//! The CPUID model (DESIGN.md §2): report exactly what is implemented.
//! Leaves are data: one row per (leaf, subleaf), like a dump of a real part.

/// Family 6, model 0x0F (a Core 2-class part), stepping 1.
const SIGNATURE: u32 = 0x0000_06F1;

/// Leaf 1 EDX feature bits that trapeze implements (SDM Vol.2A CPUID, Table 3-11).
mod edx1 {
    pub const TSC: u32 = 1 << 4;
    pub const CX8: u32 = 1 << 8;
    pub const CMOV: u32 = 1 << 15;
}

/// Leaf 1 ECX feature bits.
mod ecx1 {
    pub const CX16: u32 = 1 << 13;
}

/// Leaf 0x8000_0001 ECX: LAHF/SAHF in 64-bit mode.
const LAHF_LM: u32 = 1 << 0;

/// (leaf, eax, ebx, ecx, edx)
const LEAVES: &[(u32, [u32; 4])] = &[
    // Max basic leaf 1; vendor "TrapezeVMM  " in EBX, EDX, ECX order.
    (0x0000_0000, [1, u32::from_le_bytes(*b"Trap"), u32::from_le_bytes(*b"MM  "), u32::from_le_bytes(*b"ezeV")]),
    (0x0000_0001, [SIGNATURE, 0, ecx1::CX16, edx1::TSC | edx1::CX8 | edx1::CMOV]),
    (0x8000_0000, [0x8000_0001, 0, 0, 0]),
    (0x8000_0001, [0, 0, LAHF_LM, 0]),
];

pub fn signature() -> u32 {
    SIGNATURE
}

/// CPUID for (EAX, ECX) → [EAX, EBX, ECX, EDX]. Leaves above the maximum return the
/// highest basic leaf, as Intel parts do (SDM Vol.2A CPUID).
pub fn cpuid(leaf: u32, _subleaf: u32) -> [u32; 4] {
    let max_basic = LEAVES[0].1[0];
    let max_ext = LEAVES.iter().find(|l| l.0 == 0x8000_0000).map_or(0, |l| l.1[0]);
    let leaf = if leaf >= 0x8000_0000 {
        if leaf > max_ext { max_basic } else { leaf }
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
    fn out_of_range_leaves_return_the_highest_basic_leaf() {
        assert_eq!(cpuid(0x1234, 0), cpuid(1, 0));
        assert_eq!(cpuid(0x8000_0042, 0), cpuid(1, 0));
    }
}
