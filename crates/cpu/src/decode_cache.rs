//! The decode cache (DESIGN.md §2): instructions are decoded by iced-x86 once, the first
//! time their physical address runs, into basic blocks keyed by (physical address, IP,
//! code size). Each entry carries its resolved handler and pre-computed memory operand,
//! so executing it is "call the handler". A write to a page holding cached code drops
//! that page's blocks (self-modifying code).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use iced_x86::{Instruction, OpKind, Register};

use crate::exec::Handler;
use crate::state::sreg;

/// Longest block; also bounds how far an instruction budget can be overshot... not at
/// all, since the run loop stops mid-block when the budget ends.
pub const MAX_BLOCK: usize = 64;

/// `MemOperand::base`/`index` value for "no register".
pub const NO_REG: u8 = 0xFF;

/// An explicit memory operand, resolved at decode time.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemOperand {
    /// Displacement; for RIP-relative operands the absolute address (blocks are keyed
    /// by IP, so it is fixed).
    pub disp: u64,
    pub base: u8,
    pub index: u8,
    pub scale_shift: u8,
    /// Effective segment register (prefix or default).
    pub seg: u8,
    /// 0xFFFF, 0xFFFF_FFFF or all ones: the address size.
    pub addr_mask: u64,
}

impl MemOperand {
    pub fn of(i: &Instruction) -> Self {
        let mut m = MemOperand {
            base: NO_REG,
            index: NO_REG,
            seg: sreg::DS as u8,
            ..Default::default()
        };
        let has_mem = (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory);
        if !has_mem {
            return m;
        }
        let (base, index) = (i.memory_base(), i.memory_index());
        let size = if base != Register::None {
            base.size()
        } else if index != Register::None {
            index.size()
        } else {
            match i.memory_displ_size() {
                2 => 2,
                4 => 4,
                _ => 8,
            }
        };
        m.addr_mask = match size {
            2 => 0xFFFF,
            4 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        m.disp = i.memory_displacement64();
        if base != Register::None && !base.is_ip() {
            m.base = base.number() as u8;
        }
        if index != Register::None {
            m.index = index.number() as u8;
            m.scale_shift = i.memory_index_scale().trailing_zeros() as u8;
        }
        m.seg = seg_index(i.memory_segment());
        m
    }
}

/// The sreg number of a segment register.
pub fn seg_index(r: Register) -> u8 {
    (match r {
        Register::ES => sreg::ES,
        Register::CS => sreg::CS,
        Register::SS => sreg::SS,
        Register::FS => sreg::FS,
        Register::GS => sreg::GS,
        _ => sreg::DS,
    }) as u8
}

/// Operands 0 and 1 pre-resolved at decode time (`Entry::ops`), so the generic operand
/// accessors need not ask iced which kind each operand is on every execution.
pub mod opnd {
    /// 0..=15: a GPR by number (8-bit: the low byte, incl. SPL..R15L).
    /// HIGH8 | 0..=3: AH CH DH BH.
    pub const HIGH8: u8 = 0x10;
    pub const MEM: u8 = 0xFD;
    pub const IMM: u8 = 0xFE;
    /// Anything else (segment, control registers, branches...): ask iced.
    pub const OTHER: u8 = 0xFF;
}

fn resolve(i: &Instruction, n: u32) -> u8 {
    if n >= i.op_count() {
        return opnd::OTHER;
    }
    match i.op_kind(n) {
        OpKind::Register => {
            let r = i.op_register(n);
            match r {
                Register::AH | Register::CH | Register::DH | Register::BH => {
                    opnd::HIGH8 | (r.number() as u8 - 4)
                }
                _ if r.is_gpr() => r.full_register().number() as u8,
                _ => opnd::OTHER,
            }
        }
        OpKind::Memory => opnd::MEM,
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => opnd::IMM,
        _ => opnd::OTHER,
    }
}

/// One decoded instruction.
#[derive(Clone)]
pub struct Entry {
    pub exec: Handler,
    /// The instruction's own handler when `exec` is the counting wrapper for sensitive
    /// instructions (see `classify.rs`); otherwise the same as `exec`.
    pub inner: Handler,
    /// `Class::stat_index` of the instruction, or `u8::MAX` for innocuous ones.
    pub class_stat: u8,
    /// IP of the next instruction (wrapped to the code size).
    pub next_ip: u64,
    /// Operands 0 and 1 (`opnd::*`).
    pub ops: [u8; 2],
    /// The immediate of the first immediate operand among 0 and 1 (sign-extended as
    /// the operand kind says).
    pub imm: u64,
    pub mem: MemOperand,
    pub insn: Instruction,
}

impl Entry {
    pub fn new(
        exec: Handler,
        inner: Handler,
        class_stat: u8,
        next_ip: u64,
        insn: Instruction,
    ) -> Self {
        let ops = [resolve(&insn, 0), resolve(&insn, 1)];
        let imm = ops
            .iter()
            .position(|&o| o == opnd::IMM)
            .map_or(0, |n| insn.immediate(n as u32));
        Entry {
            exec,
            inner,
            class_stat,
            next_ip,
            ops,
            imm,
            mem: MemOperand::of(&insn),
            insn,
        }
    }
}

/// Where a block was decoded, and for what: the code size decides the decoding and the
/// CPL decides which instructions fault as privileged (DESIGN.md §3), so both are part
/// of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    pub phys: u64,
    pub ip: u64,
    /// Code size in bits | CPL << 8 | `V86`.
    pub mode: u32,
}

impl Key {
    /// `mode` bit: decoded in virtual-8086 mode.
    pub const V86: u32 = 1 << 16;

    pub fn bits(&self) -> u32 {
        self.mode & 0xFF
    }
    pub fn cpl(&self) -> u8 {
        (self.mode >> 8) as u8
    }
    pub fn v86(&self) -> bool {
        self.mode & Self::V86 != 0
    }
}

const DEAD: Key = Key {
    phys: u64::MAX,
    ip: u64::MAX,
    mode: 0,
};

struct Block {
    key: Key,
    entries: Box<[Entry]>,
}

/// FxHash-style multiplicative hasher: the keys are integers we made ourselves.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

const FAST_SLOTS: usize = 1 << 14;

#[derive(Default, Clone, Copy, Debug)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub invalidated_blocks: u64,
}

pub struct DecodeCache {
    blocks: Vec<Block>,
    free: Vec<u32>,
    map: FastMap<Key, u32>,
    /// Direct-mapped front of `map`.
    fast: Box<[u32]>,
    by_page: FastMap<u64, Vec<u32>>,
    /// Entries of dropped blocks, kept until no block can be executing.
    retired: Vec<Box<[Entry]>>,
    pub stats: CacheStats,
}

impl Default for DecodeCache {
    fn default() -> Self {
        DecodeCache {
            blocks: Vec::new(),
            free: Vec::new(),
            map: FastMap::default(),
            fast: vec![u32::MAX; FAST_SLOTS].into_boxed_slice(),
            by_page: FastMap::default(),
            retired: Vec::new(),
            stats: CacheStats::default(),
        }
    }
}

#[inline(always)]
fn slot(k: &Key) -> usize {
    ((k.phys ^ (k.ip << 7) ^ k.mode as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 50) as usize
        & (FAST_SLOTS - 1)
}

impl DecodeCache {
    /// The block at `key`, as a pointer to its entries. The pointer stays valid until
    /// the next `release_retired` (dropped blocks are freed only there).
    #[inline]
    pub fn lookup(&mut self, key: Key) -> Option<*const [Entry]> {
        let s = slot(&key);
        let id = self.fast[s];
        if let Some(b) = self.blocks.get(id as usize) {
            if b.key == key {
                self.stats.hits += 1;
                return Some(&*b.entries as *const [Entry]);
            }
        }
        let id = *self.map.get(&key)?;
        self.fast[s] = id;
        self.stats.hits += 1;
        Some(&*self.blocks[id as usize].entries as *const [Entry])
    }

    /// Free the entries of dropped blocks. Call only between blocks.
    pub fn release_retired(&mut self) {
        self.retired.clear();
    }

    pub fn insert(&mut self, key: Key, entries: Vec<Entry>) -> *const [Entry] {
        self.stats.misses += 1;
        let block = Block {
            key,
            entries: entries.into_boxed_slice(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = block;
                id
            }
            None => {
                self.blocks.push(block);
                (self.blocks.len() - 1) as u32
            }
        };
        self.map.insert(key, id);
        self.fast[slot(&key)] = id;
        self.by_page.entry(key.phys >> 12).or_default().push(id);
        &*self.blocks[id as usize].entries as *const [Entry]
    }

    /// Drop every block that starts in this physical page.
    pub fn invalidate_page(&mut self, phys: u64) {
        let Some(ids) = self.by_page.remove(&(phys >> 12)) else {
            return;
        };
        for id in ids {
            let b = &mut self.blocks[id as usize];
            self.map.remove(&b.key);
            b.key = DEAD;
            self.retired.push(std::mem::take(&mut b.entries));
            self.free.push(id);
            self.stats.invalidated_blocks += 1;
        }
    }

    /// Drop everything (e.g. a mode change that the key does not capture).
    pub fn clear(&mut self) {
        let pages: Vec<u64> = self.by_page.keys().copied().collect();
        for p in pages {
            self.invalidate_page(p << 12);
        }
    }

    pub fn block_count(&self) -> usize {
        self.map.len()
    }
}
