//! Faults are values (DESIGN.md §2): a check that fails returns `Err(Fault)`, which
//! unwinds to the instruction boundary, where it is delivered through the IVT/IDT.

use trapeze_mmu::MemFault;

/// Exception vectors (SDM Vol.3 6.3.1, Table 6-1).
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

/// An exception raised by an instruction.
///
/// Packed into 16 bytes so that `Result<(), Fault>`, which every handler returns,
/// comes back in two registers instead of through memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// For #PF: the faulting linear address, loaded into CR2 on delivery.
    pub cr2: u64,
    code: u32,
    pub vector: u8,
    has_code: bool,
}

impl Fault {
    pub const fn new(vector: u8) -> Self {
        Fault {
            cr2: 0,
            code: 0,
            vector,
            has_code: false,
        }
    }
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Fault {
            cr2: 0,
            code,
            vector,
            has_code: true,
        }
    }
    pub const fn error_code(&self) -> Option<u32> {
        if self.has_code {
            Some(self.code)
        } else {
            None
        }
    }
    pub const fn de() -> Self {
        Self::new(vector::DE)
    }
    pub const fn ud() -> Self {
        Self::new(vector::UD)
    }
    pub const fn gp(code: u32) -> Self {
        Self::with_code(vector::GP, code)
    }
    pub const fn ss(code: u32) -> Self {
        Self::with_code(vector::SS, code)
    }
    pub const fn np(code: u32) -> Self {
        Self::with_code(vector::NP, code)
    }
    pub const fn ts(code: u32) -> Self {
        Self::with_code(vector::TS, code)
    }
    /// The same fault raised while delivering an external event or exception: EXT
    /// (bit 0) set in its error code; #PF error codes have no EXT bit (SDM Vol.3 6.13).
    pub const fn with_ext(self) -> Self {
        if self.has_code && self.vector != vector::PF {
            Fault {
                code: self.code | 1,
                ..self
            }
        } else {
            self
        }
    }
}

impl From<MemFault> for Fault {
    fn from(f: MemFault) -> Self {
        match f {
            MemFault::Page { addr, error_code } => Fault {
                cr2: addr,
                ..Fault::with_code(vector::PF, error_code)
            },
        }
    }
}

const _: () = assert!(std::mem::size_of::<Result<(), Fault>>() == 16);

/// Exception classes for the double-fault rules (SDM Vol.3 6.15, Table 6-4/6-5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Benign,
    Contributory,
    PageFault,
}

pub fn class(v: u8) -> Class {
    match v {
        vector::DE | vector::TS | vector::NP | vector::SS | vector::GP => Class::Contributory,
        vector::PF => Class::PageFault,
        _ => Class::Benign,
    }
}

/// Does a second exception while delivering the first make a #DF (Table 6-5)?
pub fn is_double_fault(first: u8, second: u8) -> bool {
    matches!(
        (class(first), class(second)),
        (Class::Contributory, Class::Contributory)
            | (Class::PageFault, Class::Contributory)
            | (Class::PageFault, Class::PageFault)
    )
}

/// Vectors whose exceptions push an error code in protected mode (Table 6-1).
pub fn has_error_code(v: u8) -> bool {
    matches!(
        v,
        vector::DF | vector::TS | vector::NP | vector::SS | vector::GP | vector::PF | vector::AC
    )
}
