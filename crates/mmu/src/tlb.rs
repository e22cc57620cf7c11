//! The software TLB (DESIGN.md §4): direct-mapped, one array per access kind, holding
//! the host address of RAM/ROM pages so a hit is a compare and an add.

use crate::phys::PAGE_SIZE;

pub(crate) const TLB_ENTRIES: usize = 1024;
const INVALID: u64 = u64::MAX;

#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// Linear page number (linear address >> 12), or INVALID.
    pub tag: u64,
    /// Host address of the start of the page.
    pub host: *mut u8,
    /// Guest physical address of the start of the page.
    pub phys: u64,
}

const EMPTY: Entry = Entry {
    tag: INVALID,
    host: std::ptr::null_mut(),
    phys: 0,
};

pub(crate) struct Tlb {
    pub read: Box<[Entry; TLB_ENTRIES]>,
    pub write: Box<[Entry; TLB_ENTRIES]>,
    pub fetch: Box<[Entry; TLB_ENTRIES]>,
}

#[inline(always)]
pub(crate) fn index(lin: u64) -> usize {
    (lin >> 12) as usize & (TLB_ENTRIES - 1)
}

impl Tlb {
    pub fn new() -> Self {
        Tlb {
            read: Box::new([EMPTY; TLB_ENTRIES]),
            write: Box::new([EMPTY; TLB_ENTRIES]),
            fetch: Box::new([EMPTY; TLB_ENTRIES]),
        }
    }

    pub fn flush(&mut self) {
        for t in [&mut self.read, &mut self.write, &mut self.fetch] {
            t.fill(EMPTY);
        }
    }

    /// Drop write entries for a physical page, so writes to it take the slow path.
    pub fn drop_writes_to(&mut self, phys: u64) {
        let page = phys & !(PAGE_SIZE - 1);
        for e in self.write.iter_mut().filter(|e| e.tag != INVALID && e.phys == page) {
            *e = EMPTY;
        }
    }

    pub fn fill(table: &mut [Entry; TLB_ENTRIES], lin: u64, phys: u64, host: *mut u8) {
        table[index(lin)] = Entry {
            tag: lin >> 12,
            host,
            phys: phys & !(PAGE_SIZE - 1),
        };
    }
}
