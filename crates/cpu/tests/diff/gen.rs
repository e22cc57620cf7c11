//! Random inputs and an x86-64 instruction encoder for the differential tests.
//!
//! [`Gen`] draws values biased toward the edges arithmetic cares about. [`Builder`] assembles
//! one instruction (legacy prefixes, REX, opcode, ModRM/SIB/displacement, immediate) together
//! with the input state that makes it legal to run: every memory operand addresses the data or
//! stack page because the builder sets its base/index registers from the address it picked.

use proptest::prelude::Rng;
use proptest::test_runner::TestRng;

use crate::native::{State, CODE_ADDR, DATA_ADDR, DATA_SIZE, STACK_ADDR, STACK_SIZE};

/// One test case: instruction bytes and the input state.
pub type Case = (Vec<u8>, State);

/// The data page and the stack page follow each other: memory operands may go anywhere in
/// `[MEM_LO, MEM_HI)`, including across the page boundary between them.
pub const MEM_LO: u64 = DATA_ADDR;
pub const MEM_HI: u64 = STACK_ADDR + STACK_SIZE as u64;
const _: () = assert!(DATA_ADDR + DATA_SIZE as u64 == STACK_ADDR);

pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// The status flags and DF: the flags a case may set.
pub const INPUT_FLAGS: u64 = 0x0CD5;

pub fn mask(bytes: usize) -> u64 {
    u64::MAX >> (64 - 8 * bytes as u32)
}

/// Random numbers with a bias toward edge values.
pub struct Gen<'a> {
    rng: &'a mut TestRng,
}

impl<'a> Gen<'a> {
    pub fn new(rng: &'a mut TestRng) -> Self {
        Gen { rng }
    }

    pub fn u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// A value whose low `bytes` bytes are usually an edge case at that width (0, 1, -1,
    /// the signed extremes, powers of two, small numbers) and whose upper bytes are random,
    /// zero or all ones, so that merges into wider registers are checked as well.
    pub fn value(&mut self, bytes: usize) -> u64 {
        let w = if self.pct(80) {
            bytes
        } else {
            self.pick(&[1, 2, 4, 8])
        };
        let m = mask(w);
        let bits = 8 * w as u64;
        let low = match self.below(14) {
            0 => 0,
            1 => 1,
            2 => m,
            3 => m >> 1,
            4 => (m >> 1) + 1,
            5 => m - 1,
            6 => (m >> 1) - 1,
            7 => (m >> 1) + 2,
            8 => self.below(33),
            9 => m - self.below(33),
            10 => 1 << self.below(bits),
            11 => (1 << self.below(bits)) - 1,
            _ => self.u64() & m,
        };
        let high = match self.below(4) {
            0 => 0,
            1 => u64::MAX,
            _ => self.u64(),
        };
        low | (high & !m)
    }

    /// Input flags: any combination of CF PF AF ZF SF DF OF.
    pub fn flags(&mut self) -> u64 {
        self.u64() & INPUT_FLAGS
    }

    /// Fill with random bytes (a splitmix stream seeded once: pages are 4 KiB).
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut s = self.u64();
        for chunk in buf.chunks_mut(8) {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Where an operand lives in the input state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// GPR number and the bit position of the operand in it (8 for AH CH DH BH).
    Reg(usize, u32),
    /// Linear address in the data/stack pages.
    Mem(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct Opnd {
    pub loc: Loc,
    pub bytes: usize,
}

impl Opnd {
    pub fn reg(n: usize, bytes: usize) -> Opnd {
        Opnd {
            loc: Loc::Reg(n, 0),
            bytes,
        }
    }
}

/// Read an operand from a state.
pub fn get(st: &State, o: Opnd) -> u64 {
    match o.loc {
        Loc::Reg(n, shift) => (st.gpr[n] >> shift) & mask(o.bytes),
        Loc::Mem(a) => {
            let mut b = [0u8; 8];
            for (i, x) in b.iter_mut().enumerate().take(o.bytes) {
                *x = mem_byte(st, a + i as u64);
            }
            u64::from_le_bytes(b)
        }
    }
}

/// A byte of the data/stack pages; addresses outside them (deliberately bad operands) read
/// as 0 and ignore writes.
fn mem_byte(st: &State, a: u64) -> u8 {
    match a.wrapping_sub(DATA_ADDR) as usize {
        off if off < DATA_SIZE => st.data[off],
        off if off < DATA_SIZE + STACK_SIZE => st.stack[off - DATA_SIZE],
        _ => 0,
    }
}

fn set_mem_byte(st: &mut State, a: u64, v: u8) {
    match a.wrapping_sub(DATA_ADDR) as usize {
        off if off < DATA_SIZE => st.data[off] = v,
        off if off < DATA_SIZE + STACK_SIZE => st.stack[off - DATA_SIZE] = v,
        _ => {}
    }
}

/// Write the low `o.bytes` bytes of `v` into an operand (the rest of a register stays).
pub fn put(st: &mut State, o: Opnd, v: u64) {
    match o.loc {
        Loc::Reg(n, shift) => {
            let m = mask(o.bytes) << shift;
            st.gpr[n] = (st.gpr[n] & !m) | ((v << shift) & m);
        }
        Loc::Mem(a) => {
            for i in 0..o.bytes {
                set_mem_byte(st, a + i as u64, (v >> (8 * i)) as u8);
            }
        }
    }
}

/// The ModRM r/m operand.
enum Rm {
    Reg(u8),
    Mem(MemEnc),
}

/// A memory operand as encoded: the register values were chosen to reach `target`.
struct MemEnc {
    base: Option<u8>,
    index: Option<(u8, u8)>,
    rip: bool,
    disp: i32,
    /// 0, 1 or 4 bytes.
    disp_len: u8,
    target: u64,
}

/// One instruction under construction, and its input state.
pub struct Builder<'g, 'r> {
    pub g: &'g mut Gen<'r>,
    pub st: State,
    prefixes: Vec<u8>,
    /// REX.W R X B as bits 3..0.
    rex: u8,
    /// A byte register SPL BPL SIL DIL (or R8B..) needs a REX prefix.
    rex_needed: bool,
    /// Byte registers 4..7 are AH CH DH BH: the instruction must not have a REX prefix
    /// (see `legacy_bytes`).
    legacy8: bool,
    opcode: Vec<u8>,
    modrm_reg: u8,
    rm: Option<Rm>,
    imm: Vec<u8>,
    /// Registers holding an address: operand writes skip them.
    pinned: u16,
    /// Registers the family generator sets itself: never used for addressing.
    pub avoid: u16,
    /// Memory operands are placed in `[lo, hi)`.
    pub region: (u64, u64),
    /// 67h: 32-bit addressing.
    addr32: bool,
    /// Memory operands must not cross a cache line (see `want_lock`).
    no_split: bool,
}

impl<'g, 'r> Builder<'g, 'r> {
    /// A fresh case: random registers and pages, random input flags.
    pub fn new(g: &'g mut Gen<'r>) -> Self {
        let mut st = State::zeroed();
        for r in st.gpr.iter_mut() {
            *r = g.value(8);
        }
        st.rflags = g.flags();
        g.fill(&mut st.data);
        g.fill(&mut st.stack);
        Builder {
            g,
            st,
            prefixes: Vec::new(),
            rex: 0,
            rex_needed: false,
            legacy8: false,
            opcode: Vec::new(),
            modrm_reg: 0,
            rm: None,
            imm: Vec::new(),
            pinned: 0,
            avoid: 0,
            region: (MEM_LO, MEM_HI),
            addr32: false,
            no_split: false,
        }
    }

    /// For byte forms without REX.W: with probability 30% use only registers 0..7 and make
    /// byte registers 4..7 the legacy AH CH DH BH.
    pub fn legacy_bytes(&mut self) {
        self.legacy8 = self.g.pct(30);
    }

    /// Decide whether a read-modify-write form gets a LOCK prefix (10%), before its memory
    /// operand is placed: a locked operand is kept inside one cache line, because the host
    /// kernel throttles split locks (bus-lock detection), which can stall the oracle.
    /// Returns the decision; `lock` applies it.
    pub fn want_lock(&mut self) -> bool {
        let l = self.g.pct(10);
        self.no_split |= l;
        l
    }

    /// Apply a `want_lock` decision once the destination is known. A LOCK on a register
    /// destination (#UD on both sides) is added to 1% of register forms.
    pub fn lock(&mut self, want: bool, dst: Opnd) {
        let on = match dst.loc {
            Loc::Mem(_) => want,
            Loc::Reg(..) => self.g.pct(1),
        };
        if on {
            self.prefixes.push(0xF0);
        }
    }

    /// Keep memory operands inside one cache line (implicitly locked XCHG).
    pub fn no_split(&mut self) {
        self.no_split = true;
    }

    pub fn prefix(&mut self, p: u8) -> &mut Self {
        self.prefixes.push(p);
        self
    }

    /// Set the operand size the usual way: 66h for 16 bits, REX.W for 64 (sometimes with a
    /// 66h that REX.W overrides).
    pub fn opsize(&mut self, bytes: usize) -> &mut Self {
        match bytes {
            2 => self.prefixes.push(0x66),
            8 => {
                self.rex |= 8;
                if self.g.pct(3) {
                    self.prefixes.push(0x66);
                }
            }
            _ => {}
        }
        self
    }

    /// Operand size of an instruction that defaults to 64 bits (PUSH, POP, ...).
    pub fn opsize64(&mut self, bytes: usize) -> &mut Self {
        if bytes == 2 {
            self.prefixes.push(0x66);
        }
        self
    }

    pub fn rex_w(&mut self) -> &mut Self {
        self.rex |= 8;
        self
    }

    pub fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.opcode.extend_from_slice(bytes);
        self
    }

    /// An immediate of `bytes` bytes.
    pub fn imm(&mut self, bytes: usize, v: u64) -> &mut Self {
        self.imm.extend_from_slice(&v.to_le_bytes()[..bytes]);
        self
    }

    /// Use 32-bit addressing (67h) for this instruction's memory operand.
    pub fn addr32(&mut self) -> &mut Self {
        if !self.addr32 {
            self.addr32 = true;
            self.prefixes.push(0x67);
        }
        self
    }

    /// A random GPR for a register operand of `bytes` bytes (AH..BH when `legacy8` allows).
    fn pick_reg(&mut self, bytes: usize) -> (u8, Loc) {
        let n = if self.legacy8 {
            self.g.below(8) as u8
        } else {
            self.g.below(16) as u8
        };
        if bytes == 1 && (4..8).contains(&n) {
            if self.legacy8 {
                return (n, Loc::Reg(n as usize - 4, 8));
            }
            self.rex_needed = true;
        }
        (n, Loc::Reg(n as usize, 0))
    }

    /// A register operand that gets a fresh biased value.
    fn value_reg(&mut self, bytes: usize) -> (u8, Opnd) {
        let (n, loc) = self.pick_reg(bytes);
        let o = Opnd { loc, bytes };
        let v = self.g.value(bytes);
        self.set(o, v);
        (n, o)
    }

    /// Operand in ModRM.reg.
    pub fn reg(&mut self, bytes: usize) -> Opnd {
        let (n, o) = self.value_reg(bytes);
        self.modrm_reg = n;
        o
    }

    /// `/digit` in ModRM.reg.
    pub fn ext(&mut self, digit: u8) -> &mut Self {
        self.modrm_reg = digit;
        self
    }

    /// Register encoded in the low 3 bits of the last opcode byte (B0+r, 50+r, ...).
    pub fn opreg(&mut self, bytes: usize) -> Opnd {
        let (n, o) = self.value_reg(bytes);
        *self.opcode.last_mut().expect("opcode before opreg") += n & 7;
        self.rex |= n >> 3;
        o
    }

    /// ModRM.r/m: a register (probability 100 - `mem_pct`) or a memory operand.
    pub fn rm(&mut self, bytes: usize, mem_pct: u64) -> Opnd {
        if self.g.pct(mem_pct) {
            self.mem(bytes)
        } else {
            self.rm_reg(bytes)
        }
    }

    /// ModRM.r/m as a register.
    pub fn rm_reg(&mut self, bytes: usize) -> Opnd {
        let (n, o) = self.value_reg(bytes);
        self.rm = Some(Rm::Reg(n));
        o
    }

    /// ModRM.r/m as register `n` of a non-GPR file (XMM, MMX): no GPR is involved.
    pub fn rm_vec(&mut self, n: u8) {
        self.rm = Some(Rm::Reg(n));
    }

    /// ModRM.r/m as a memory operand of `bytes` bytes, `align`-aligned except for
    /// `misaligned_pct` percent of the cases; the contents stay as the pages have them.
    pub fn mem_aligned(&mut self, bytes: usize, align: u64, misaligned_pct: u64) -> Opnd {
        let mut t = self.target(bytes, align);
        if self.g.pct(misaligned_pct) {
            t = (t + self.g.range(1, align.max(2) - 1)).min(self.region.1 - bytes as u64);
        }
        self.mem_at(t, bytes)
    }

    /// ModRM.r/m as a memory operand of `bytes` bytes somewhere in `region`, holding a
    /// biased value. 1% of them get a non-canonical address (#GP/#SS on both sides) where the
    /// addressing form can express one (not with 32-bit addressing, disp32 alone or
    /// RIP-relative: those reach the page address instead).
    pub fn mem(&mut self, bytes: usize) -> Opnd {
        let mut t = self.target(bytes, 1);
        if self.g.pct(1) {
            t |= 1 << self.g.range(47, 63);
        }
        let o = self.mem_at(t, bytes);
        for k in (0..bytes).step_by(8) {
            let b = (bytes - k).min(8);
            let v = self.g.value(b);
            put(
                &mut self.st,
                Opnd {
                    loc: Loc::Mem(t + k as u64),
                    bytes: b,
                },
                v,
            );
        }
        o
    }

    /// A random address in `region` for an operand of `bytes` bytes: often aligned to
    /// `align.max(bytes)`, sometimes straddling the data/stack page boundary.
    pub fn target(&mut self, bytes: usize, align: u64) -> u64 {
        let (lo, hi) = self.region;
        let b = bytes as u64;
        loop {
            let t = match self.g.below(10) {
                0 if lo < STACK_ADDR && STACK_ADDR + b <= hi && b > 1 => {
                    STACK_ADDR - self.g.range(1, b - 1)
                }
                1..=4 => self.g.range(lo, hi - b) & !(b.next_power_of_two().max(align) - 1),
                _ => self.g.range(lo, hi - b) & !(align - 1),
            }
            .max(lo);
            if !self.no_split || t % 64 + b <= 64 {
                return t;
            }
        }
    }

    /// ModRM.r/m as a memory operand at linear address `t` (contents left as they are).
    /// The addressing form is random: base+disp, base+index*scale+disp, index*scale+disp32,
    /// disp32 alone, RIP-relative, and sometimes 32-bit addressing (67h) with garbage in
    /// the upper halves of the address registers.
    pub fn mem_at(&mut self, t: u64, bytes: usize) -> Opnd {
        if self.g.pct(6) {
            self.addr32();
        }
        let a32 = self.addr32;
        let amask = if a32 { 0xFFFF_FFFF } else { u64::MAX };
        let disp_len = self.g.pick(&[0u8, 1, 1, 4]);
        let disp: i32 = match disp_len {
            0 => 0,
            1 => self.g.u64() as i8 as i32,
            _ => self.g.value(4) as i32,
        };
        let mut enc = MemEnc {
            base: None,
            index: None,
            rip: false,
            disp,
            disp_len,
            target: t,
        };
        match self.g.below(20) {
            0 => {
                // RIP-relative: the displacement is fixed up in `finish`.
                enc.rip = true;
                enc.disp_len = 4;
            }
            1 => {
                // disp32 only (SIB with no base and no index).
                enc.disp = t as i32;
                enc.disp_len = 4;
            }
            2 | 3 => {
                // index*scale + disp32, no base.
                let idx = self.addr_reg(true);
                let scale = self.g.below(4) as u8;
                let s = 1u64 << scale;
                // disp = t - iv*s must be a disp32 (sign-extended unless 32-bit addressing).
                let d = (self.g.u64() as i32 as i64 as u64 & !(s - 1)) | (t & (s - 1));
                let iv = (t.wrapping_sub(d) & amask) >> scale;
                enc.disp = d as i32;
                enc.disp_len = 4;
                enc.index = Some((idx, scale));
                self.set_addr_reg(idx, iv, a32);
            }
            k => {
                let base = self.addr_reg(false);
                let mut off = disp as i64 as u64;
                if k < 9 {
                    let mut idx = self.addr_reg(true);
                    while idx == base {
                        idx = self.addr_reg(true);
                    }
                    let scale = self.g.below(4) as u8;
                    let iv = self.g.value(8);
                    off = off.wrapping_add(iv << scale);
                    enc.index = Some((idx, scale));
                    self.set_addr_reg(idx, iv, a32);
                }
                if disp_len == 0 && base & 7 == 5 {
                    // [rbp]/[r13] has no mod=00 form: disp8 = 0.
                    enc.disp_len = 1;
                }
                enc.base = Some(base);
                self.set_addr_reg(base, t.wrapping_sub(off), a32);
            }
        }
        self.rm = Some(Rm::Mem(enc));
        Opnd {
            loc: Loc::Mem(t),
            bytes,
        }
    }

    /// A register for a base (`index` false) or an index: RSP cannot be an index (that
    /// SIB encoding means "no index"; R12 can).
    fn addr_reg(&mut self, index: bool) -> u8 {
        loop {
            let n = if self.legacy8 {
                self.g.below(8) as u8
            } else {
                self.g.below(16) as u8
            };
            let free = self.avoid & (1 << n) == 0 && self.pinned & (1 << n) == 0;
            if free && !(index && n == 4) {
                return n;
            }
        }
    }

    fn set_addr_reg(&mut self, n: u8, v: u64, a32: bool) {
        let n = n as usize;
        self.st.gpr[n] = if a32 {
            // The upper half is ignored by 32-bit addressing: make it garbage sometimes.
            (v & 0xFFFF_FFFF)
                | if self.g.pct(50) {
                    self.g.u64() << 32
                } else {
                    0
                }
        } else {
            v
        };
        self.pinned |= 1 << n;
    }

    /// Give a register operand or memory operand a value; registers holding an address
    /// keep it.
    pub fn set(&mut self, o: Opnd, v: u64) {
        if let Loc::Reg(n, _) = o.loc {
            if self.pinned & (1 << n) != 0 {
                return;
            }
        }
        put(&mut self.st, o, v);
    }

    pub fn get(&self, o: Opnd) -> u64 {
        get(&self.st, o)
    }

    /// Is this register holding a memory address?
    pub fn is_pinned(&self, n: usize) -> bool {
        self.pinned & (1 << n) != 0
    }

    /// Mark a register as holding an address (stack and string pointers).
    pub fn pin(&mut self, n: usize) {
        self.pinned |= 1 << n;
    }

    /// Encode. Returns the instruction bytes and the input state.
    pub fn finish(mut self) -> (Vec<u8>, State) {
        let mut modrm: Vec<u8> = Vec::new();
        let mut rip_fixup = None;
        if let Some(rm) = &self.rm {
            let reg = self.modrm_reg;
            self.rex |= (reg >> 3) << 2;
            match rm {
                Rm::Reg(n) => {
                    self.rex |= n >> 3;
                    modrm.push(0xC0 | (reg & 7) << 3 | (n & 7));
                }
                Rm::Mem(m) => {
                    let md = match m.disp_len {
                        0 => 0,
                        1 => 0x40,
                        _ => 0x80,
                    };
                    if m.rip {
                        modrm.push((reg & 7) << 3 | 5);
                        rip_fixup = Some((modrm.len(), m.target));
                        modrm.extend_from_slice(&[0; 4]);
                    } else {
                        let (md, sib) = match (m.base, m.index) {
                            (None, None) => (0, Some(0x25)),
                            (None, Some((i, s))) => {
                                self.rex |= (i >> 3) << 1;
                                (0, Some(s << 6 | (i & 7) << 3 | 5))
                            }
                            (Some(b), None) if b & 7 != 4 => {
                                self.rex |= b >> 3;
                                modrm.push(md | (reg & 7) << 3 | (b & 7));
                                (md, None)
                            }
                            (Some(b), None) => {
                                self.rex |= b >> 3;
                                (md, Some(0x20 | (b & 7)))
                            }
                            (Some(b), Some((i, s))) => {
                                self.rex |= b >> 3 | (i >> 3) << 1;
                                (md, Some(s << 6 | (i & 7) << 3 | (b & 7)))
                            }
                        };
                        if let Some(sib) = sib {
                            modrm.push(md | (reg & 7) << 3 | 4);
                            modrm.push(sib);
                        }
                        let dl = if m.base.is_none() {
                            4
                        } else {
                            m.disp_len as usize
                        };
                        modrm.extend_from_slice(&m.disp.to_le_bytes()[..dl]);
                    }
                }
            }
        }
        let mut code = self.prefixes.clone();
        if self.rex != 0 || self.rex_needed {
            assert!(!self.legacy8 || self.rex == 0, "AH..BH with a REX prefix");
            code.push(0x40 | self.rex);
        }
        code.extend_from_slice(&self.opcode);
        let at = code.len();
        code.extend_from_slice(&modrm);
        code.extend_from_slice(&self.imm);
        if let Some((off, target)) = rip_fixup {
            let next = CODE_ADDR + code.len() as u64;
            let mut rel = target.wrapping_sub(next);
            if self.addr32 {
                rel &= 0xFFFF_FFFF;
            }
            code[at + off..at + off + 4].copy_from_slice(&(rel as u32).to_le_bytes());
        }
        (code, self.st)
    }
}
