//! Architectural state that is plain data: segment registers with their hidden
//! descriptor caches, descriptor-table registers, control registers, and the operand
//! scalar type the executor is generic over.

use trapeze_mmu::Pod;

/// Segment register numbers, in the order of the ModRM `sreg` field.
pub mod sreg {
    pub const ES: usize = 0;
    pub const CS: usize = 1;
    pub const SS: usize = 2;
    pub const DS: usize = 3;
    pub const FS: usize = 4;
    pub const GS: usize = 5;
    pub const NAMES: [&str; 6] = ["es", "cs", "ss", "ds", "fs", "gs"];
}

/// GPR numbers in encoding order.
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
}

/// Descriptor attribute bits as kept in the hidden part of a segment register
/// (the descriptor's bits 40..56, SDM Vol.3 3.4.5), packed into 16 bits.
pub mod attr {
    pub const ACCESSED: u16 = 1 << 0;
    /// Data: writable. Code: readable.
    pub const RW: u16 = 1 << 1;
    /// Data: expand-down. Code: conforming.
    pub const DC: u16 = 1 << 2;
    pub const CODE: u16 = 1 << 3;
    /// S: code/data (1) or system (0).
    pub const S: u16 = 1 << 4;
    pub const DPL_SHIFT: u16 = 5;
    pub const P: u16 = 1 << 7;
    pub const AVL: u16 = 1 << 12;
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 13;
    /// D/B: 32-bit default operand size (code) or big stack (SS).
    pub const DB: u16 = 1 << 14;
    pub const G: u16 = 1 << 15;
}

/// A segment register: the visible selector and the hidden descriptor cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    /// Effective limit in bytes (granularity already applied).
    pub limit: u32,
    pub attr: u16,
}

impl Segment {
    /// A segment as real mode leaves it: base = selector * 16, 64 KiB, data read/write.
    pub fn real(selector: u16) -> Self {
        Segment {
            selector,
            base: (selector as u64) << 4,
            limit: 0xFFFF,
            attr: attr::P | attr::S | attr::RW | attr::ACCESSED,
        }
    }

    pub fn dpl(&self) -> u8 {
        ((self.attr >> attr::DPL_SHIFT) & 3) as u8
    }

    /// Offsets `[lo, hi]` that are inside the segment (SDM Vol.3 5.3: expand-down data
    /// segments hold the offsets above the limit).
    #[inline(always)]
    pub fn valid_range(&self) -> (u64, u64) {
        let top = if self.attr & attr::DB != 0 {
            0xFFFF_FFFF
        } else {
            0xFFFF
        };
        if self.attr & (attr::CODE | attr::DC) == attr::DC {
            (self.limit as u64 + 1, top)
        } else {
            (0, self.limit as u64)
        }
    }
}

/// GDTR / IDTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TableReg {
    pub base: u64,
    pub limit: u16,
}

/// CR0 bits (SDM Vol.3 2.5).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits (SDM Vol.3 2.5).
pub mod cr4 {
    /// RDTSC/RDTSCP at CPL > 0 are #GP(0).
    pub const TSD: u64 = 1 << 2;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const PGE: u64 = 1 << 7;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
}

/// EFER bits (AMD APM Vol.2 3.1.7).
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

/// Operand scalars: u8, u16, u32, u64. Handlers are generic over it, so one body
/// serves every operand size.
pub trait Word: Pod + Eq + Ord + std::fmt::Debug {
    const BITS: u32;
    const MASK: u64 = u64::MAX >> (64 - Self::BITS);
    /// Write this value into a 64-bit register the way x86 does: 8- and 16-bit writes
    /// keep the upper bits, 32-bit writes zero-extend (in 64-bit mode and everywhere
    /// else, since the upper half is invisible outside long mode).
    fn merge(old: u64, v: Self) -> u64;
    /// Sign-extend to 64 bits.
    fn sext(self) -> u64;
}

macro_rules! word {
    ($t:ty, $s:ty, $bits:expr, $merge:expr) => {
        impl Word for $t {
            const BITS: u32 = $bits;
            #[inline(always)]
            fn merge(old: u64, v: Self) -> u64 {
                $merge(old, v)
            }
            #[inline(always)]
            fn sext(self) -> u64 {
                self as $s as i64 as u64
            }
        }
    };
}
word!(u8, i8, 8, |old: u64, v: u8| (old & !0xFF) | v as u64);
word!(u16, i16, 16, |old: u64, v: u16| (old & !0xFFFF) | v as u64);
word!(u32, i32, 32, |_old: u64, v: u32| v as u64);
word!(u64, i64, 64, |_old: u64, v: u64| v);
