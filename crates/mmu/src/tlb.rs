//! The software TLB (DESIGN.md §4): direct-mapped, one array per access kind (read,
//! write, fetch) and privilege (user, supervisor), holding the host address of RAM/ROM
//! pages so a hit is a compare and an add.
//!
//! An entry in an array means "this access kind at this privilege was checked by a
//! walk": a write entry exists only after a write walk set the dirty flag, a fetch
//! entry only where XD and U/S allow execution. A user and a supervisor access to the
//! same page therefore never share an entry. Only the arrays of the current privilege
//! are in `cur`; a privilege change swaps the two sets (three pointer swaps), so the
//! hit path does not look at the privilege at all.
//!
//! Flushes are frequent (every MOV CR3, twice per system call under a kernel with page
//! table isolation), so the TLB remembers which slots it filled and a flush clears
//! only those; INVLPG scans for pieces of large pages only when its address lies in a
//! large page the TLB holds.

use crate::mmu::Access;
use crate::phys::PAGE_SIZE;

pub(crate) const TLB_ENTRIES: usize = 1024;
const INVALID: u64 = u64::MAX;
/// Beyond this many filled slots a flush clears every array instead.
const MAX_TRACKED: usize = 2048;
/// Beyond this many distinct large pages INVLPG always scans.
const MAX_LARGE: usize = 16;

/// Flags kept in the low bits of `Entry::phys` (a page address).
pub(crate) mod flag {
    /// From a global page (G with CR4.PGE): survives MOV CR3.
    pub const GLOBAL: u64 = 1 << 0;
    /// Part of a page larger than 4 KiB: INVLPG anywhere in it must drop it.
    pub const LARGE: u64 = 1 << 1;
}

#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// Linear page number (linear address >> 12), or INVALID.
    pub tag: u64,
    /// Host address of the start of the page.
    pub host: *mut u8,
    /// Guest physical address of the start of the page, | `flag::*`.
    pub phys: u64,
}

const EMPTY: Entry = Entry {
    tag: INVALID,
    host: std::ptr::null_mut(),
    phys: 0,
};

impl Entry {
    fn valid(&self) -> bool {
        self.tag != INVALID
    }
}

/// A valid TLB entry as the debugger lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    pub user: bool,
    pub kind: Access,
    /// Linear and physical address of the 4-KiB page.
    pub lin: u64,
    pub phys: u64,
    pub global: bool,
    /// Part of a larger page.
    pub large: bool,
}

pub(crate) type Table = [Entry; TLB_ENTRIES];

/// The three arrays of one privilege.
pub(crate) struct Set {
    pub read: Box<Table>,
    pub write: Box<Table>,
    pub fetch: Box<Table>,
}

impl Set {
    fn new() -> Self {
        Set {
            read: Box::new([EMPTY; TLB_ENTRIES]),
            write: Box::new([EMPTY; TLB_ENTRIES]),
            fetch: Box::new([EMPTY; TLB_ENTRIES]),
        }
    }

    fn table(&mut self, kind: Access) -> &mut Table {
        match kind {
            Access::Read => &mut self.read,
            Access::Write => &mut self.write,
            Access::Fetch => &mut self.fetch,
        }
    }
}

/// A filled slot: privilege, access kind and index, packed as user << 12 | kind << 10 |
/// index.
#[derive(Clone, Copy)]
struct Slot(u16);

const KINDS: [Access; 3] = [Access::Read, Access::Write, Access::Fetch];

impl Slot {
    fn new(user: bool, kind: Access, index: usize) -> Self {
        Slot((user as u16) << 12 | (kind as u16) << 10 | index as u16)
    }
    fn user(self) -> bool {
        self.0 >> 12 != 0
    }
    fn kind(self) -> Access {
        KINDS[(self.0 >> 10 & 3) as usize]
    }
    fn index(self) -> usize {
        (self.0 & 0x3FF) as usize
    }
}

pub(crate) struct Tlb {
    /// The arrays of the current privilege.
    pub cur: Set,
    /// The arrays of the other privilege.
    alt: Set,
    /// `cur` holds the user arrays.
    cur_user: bool,
    /// Slots filled since the last full flush (some may have been dropped since), or
    /// None when there were too many: then every slot may be valid.
    filled: Option<Vec<Slot>>,
    /// The large pages entries were made from, as (linear address >> shift, shift), or
    /// None when there were too many.
    large: Option<Vec<(u64, u32)>>,
}

#[inline(always)]
pub(crate) fn index(lin: u64) -> usize {
    (lin >> 12) as usize & (TLB_ENTRIES - 1)
}

impl Tlb {
    pub fn new() -> Self {
        Tlb {
            cur: Set::new(),
            alt: Set::new(),
            cur_user: false,
            filled: Some(Vec::new()),
            large: Some(Vec::new()),
        }
    }

    fn entry(&mut self, s: Slot) -> &mut Entry {
        let set = if s.user() == self.cur_user {
            &mut self.cur
        } else {
            &mut self.alt
        };
        &mut set.table(s.kind())[s.index()]
    }

    /// Every slot of every array.
    fn all_slots() -> impl Iterator<Item = Slot> {
        [false, true].into_iter().flat_map(|u| {
            KINDS
                .into_iter()
                .flat_map(move |k| (0..TLB_ENTRIES).map(move |i| Slot::new(u, k, i)))
        })
    }

    /// The slots that may hold a valid entry.
    fn candidates(&self) -> Vec<Slot> {
        match &self.filled {
            Some(v) => v.clone(),
            None => Self::all_slots().collect(),
        }
    }

    /// Every valid entry, for the debugger's `tlb` view: user arrays after supervisor
    /// ones, read/write/fetch, by slot.
    pub fn entries(&self) -> Vec<TlbEntry> {
        let mut out = Vec::new();
        for user in [false, true] {
            let set = if user == self.cur_user {
                &self.cur
            } else {
                &self.alt
            };
            for (kind, table) in KINDS.into_iter().zip([&set.read, &set.write, &set.fetch]) {
                out.extend(table.iter().filter(|e| e.valid()).map(|e| TlbEntry {
                    user,
                    kind,
                    lin: e.tag << 12,
                    phys: e.phys & !(PAGE_SIZE - 1),
                    global: e.phys & flag::GLOBAL != 0,
                    large: e.phys & flag::LARGE != 0,
                }));
            }
        }
        out
    }

    /// Switch to the other privilege's arrays.
    pub fn swap_privilege(&mut self) {
        std::mem::swap(&mut self.cur, &mut self.alt);
        self.cur_user = !self.cur_user;
    }

    /// Drop every entry for which `drop` holds; afterwards `filled` lists exactly the
    /// slots still valid.
    fn drop_where(&mut self, drop: impl Fn(&Entry) -> bool) {
        let mut kept = Vec::new();
        // The list may name a slot twice (dropped by INVLPG, then filled again).
        let mut seen = [0u64; (2 << 12) / 64];
        for s in self.candidates() {
            let e = self.entry(s);
            if e.valid() && drop(e) {
                *e = EMPTY;
            }
            let bit = 1 << (s.0 % 64);
            if e.valid() && seen[(s.0 / 64) as usize] & bit == 0 {
                seen[(s.0 / 64) as usize] |= bit;
                kept.push(s);
            }
        }
        self.filled = (kept.len() <= MAX_TRACKED).then_some(kept);
    }

    /// Drop everything, global entries too.
    pub fn flush(&mut self) {
        match self.filled.take() {
            Some(v) => v.into_iter().for_each(|s| *self.entry(s) = EMPTY),
            None => {
                for set in [&mut self.cur, &mut self.alt] {
                    KINDS.into_iter().for_each(|k| set.table(k).fill(EMPTY));
                }
            }
        }
        self.filled = Some(Vec::new());
        self.large = Some(Vec::new());
    }

    /// Drop every entry that is not global (MOV CR3 with CR4.PGE).
    pub fn flush_nonglobal(&mut self) {
        self.drop_where(|e| e.phys & flag::GLOBAL == 0);
    }

    /// INVLPG: drop the page at `lin` in every array, and every piece of a large page if
    /// `lin` may lie in one (dropping more is always allowed).
    pub fn invalidate(&mut self, lin: u64) {
        let (i, tag) = (index(lin), lin >> 12);
        for u in [false, true] {
            for k in KINDS {
                let e = self.entry(Slot::new(u, k, i));
                if e.tag == tag {
                    *e = EMPTY;
                }
            }
        }
        let in_large = match &self.large {
            Some(v) => v.iter().any(|&(page, shift)| lin >> shift == page),
            None => true,
        };
        if in_large {
            self.drop_where(|e| e.phys & flag::LARGE != 0);
            self.large = Some(Vec::new());
        }
    }

    /// Drop write entries for a physical page, so writes to it take the slow path.
    pub fn drop_writes_to(&mut self, phys: u64) {
        let page = phys & !(PAGE_SIZE - 1);
        for t in [&mut self.cur.write, &mut self.alt.write] {
            for e in t
                .iter_mut()
                .filter(|e| e.valid() && e.phys & !(PAGE_SIZE - 1) == page)
            {
                *e = EMPTY;
            }
        }
    }

    /// Enter a translation in the current privilege's array for `kind`, from a page of
    /// 2^`page_shift` bytes.
    pub fn fill(
        &mut self,
        kind: Access,
        lin: u64,
        phys: u64,
        host: *mut u8,
        global: bool,
        page_shift: u32,
    ) {
        let mut flags = if global { flag::GLOBAL } else { 0 };
        if page_shift > 12 {
            flags |= flag::LARGE;
            if let Some(v) = &mut self.large {
                let region = (lin >> page_shift, page_shift);
                if !v.contains(&region) {
                    v.push(region);
                }
                if v.len() > MAX_LARGE {
                    self.large = None;
                }
            }
        }
        let slot = Slot::new(self.cur_user, kind, index(lin));
        let e = &mut self.cur.table(kind)[slot.index()];
        let was_valid = e.valid();
        *e = Entry {
            tag: lin >> 12,
            host,
            phys: (phys & !(PAGE_SIZE - 1)) | flags,
        };
        if let Some(v) = &mut self.filled {
            if !was_valid {
                v.push(slot);
            }
            if v.len() > MAX_TRACKED {
                self.filled = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> *mut u8 {
        std::ptr::NonNull::dangling().as_ptr()
    }

    fn valid(t: &mut Tlb, user: bool, kind: Access, lin: u64) -> bool {
        t.entry(Slot::new(user, kind, index(lin))).tag == lin >> 12
    }

    #[test]
    fn flushes_clear_what_was_filled_at_either_privilege() {
        let mut t = Tlb::new();
        t.fill(Access::Read, 0x5000, 0x7000, host(), false, 12);
        t.fill(Access::Write, 0x6000, 0x8000, host(), true, 12);
        t.swap_privilege();
        t.fill(Access::Fetch, 0x5000, 0x7000, host(), false, 12);
        t.flush_nonglobal();
        assert!(!valid(&mut t, false, Access::Read, 0x5000));
        assert!(valid(&mut t, false, Access::Write, 0x6000));
        assert!(!valid(&mut t, true, Access::Fetch, 0x5000));
        t.flush();
        assert!(!valid(&mut t, false, Access::Write, 0x6000));
    }

    #[test]
    fn too_many_fills_fall_back_to_clearing_everything() {
        let mut t = Tlb::new();
        for p in 0..(MAX_TRACKED as u64 + 10) {
            let kind = KINDS[(p % 3) as usize];
            t.fill(kind, p << 12, p << 12, host(), p % 2 == 0, 12);
            if p % 700 == 0 {
                t.swap_privilege();
            }
        }
        assert!(t.filled.is_none());
        t.flush_nonglobal();
        for s in Tlb::all_slots() {
            let e = *t.entry(s);
            assert!(!e.valid() || e.phys & flag::GLOBAL != 0);
        }
        t.flush();
        assert!(Tlb::all_slots().all(|s| !t.entry(s).valid()));
    }

    #[test]
    fn invlpg_scans_only_inside_a_cached_large_page() {
        let mut t = Tlb::new();
        // Two pieces of the 2-MByte page at 0x20_0000 and a 4-KByte page elsewhere.
        t.fill(Access::Read, 0x20_0000, 0x40_0000, host(), false, 21);
        t.fill(Access::Read, 0x3F_F000, 0x5F_F000, host(), false, 21);
        t.fill(Access::Read, 0x1000, 0x1000, host(), false, 12);
        t.invalidate(0x8000);
        assert!(valid(&mut t, false, Access::Read, 0x3F_F000));
        t.invalidate(0x20_1000);
        assert!(!valid(&mut t, false, Access::Read, 0x20_0000));
        assert!(!valid(&mut t, false, Access::Read, 0x3F_F000));
        assert!(valid(&mut t, false, Access::Read, 0x1000));
    }
}
