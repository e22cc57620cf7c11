//! Linear memory access for the CPU: TLB fast path, translation and MMIO slow path.
//!
//! # Privilege of an access
//!
//! Paging checks U/S against who makes the access (SDM Vol.3 4.6): accesses at CPL 3
//! are user-mode accesses, everything else is supervisor-mode, and so are the
//! *implicit* accesses the processor makes to system structures whatever the CPL
//! (GDT/LDT descriptor loads, the IDT, the TSS, and the stack pushes of an interrupt
//! delivered from CPL 3 to an inner ring).
//!
//! - The MMU holds the privilege of explicit accesses, `user`, which the CPU keeps
//!   equal to CPL == 3 through [`Mmu::set_user`] (`Cpu` re-syncs it at every block and
//!   wherever a handler changes CPL). [`Mmu::read`], [`Mmu::write`], [`Mmu::rmw_ptr`],
//!   [`Mmu::probe_write`] and [`Mmu::fetch_phys`] use it.
//! - [`Mmu::read_sys`], [`Mmu::write_sys`] and [`Mmu::probe_write_sys`] are the
//!   implicit supervisor accesses: same paths, supervisor rights, U/S = 0 in a #PF
//!   error code, whatever `user` says.
//!
//! The TLB keeps separate arrays per privilege (see `tlb.rs`), so a privilege change
//! costs a pointer swap and the hit path does not depend on it.

use crate::bus::{Bus, BusFlow};
use crate::paging::{BadPdpte, Mode, Paging, Unit};
use crate::phys::{PhysMem, PAGE_SIZE};
use crate::tlb::{self, Tlb};

/// The kind of a linear access, as the paging unit sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// A fault raised by translation. The CPU turns it into an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFault {
    /// #PF with the faulting linear address (for CR2) and the error code.
    Page { addr: u64, error_code: u32 },
}

/// Events the CPU must look at after the instruction that caused them.
pub mod event {
    /// A write hit a page that holds decoded code (see `Mmu::take_written_code`).
    pub const CODE_WRITTEN: u8 = 1;
    /// A device asked to end the run.
    pub const BUS_STOP: u8 = 2;
}

/// Scalars the MMU moves: u8, u16, u32, u64, little-endian like the guest.
pub trait Pod: Copy {
    const BYTES: usize;
    fn from_u64(v: u64) -> Self;
    fn to_u64(self) -> u64;
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        impl Pod for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn from_u64(v: u64) -> Self { v as $t }
            #[inline(always)]
            fn to_u64(self) -> u64 { self as u64 }
        }
    )*};
}
pod!(u8, u16, u32, u64);

pub struct Mmu {
    pub phys: PhysMem,
    tlb: Tlb,
    /// Physical address mask: bit 20 is cleared while the A20 gate is closed.
    pub(crate) a20_mask: u64,
    /// `event::*` bits raised since the CPU last looked.
    pub events: u8,
    written_code: Vec<u64>,
    /// The paging mode, CR3 and the PAE PDPTE registers.
    pub(crate) unit: Unit,
    /// Explicit accesses are user-mode accesses (CPL 3).
    pub(crate) user: bool,
}

// SAFETY: the raw pointers in the TLB point into `phys`, which the Mmu owns; moving the
// Mmu to another thread moves the mappings with it.
unsafe impl Send for Mmu {}

impl Mmu {
    pub fn new(phys: PhysMem) -> Self {
        Mmu {
            phys,
            tlb: Tlb::new(),
            a20_mask: u64::MAX,
            events: 0,
            written_code: Vec::new(),
            unit: Unit::default(),
            user: false,
        }
    }

    /// Open or close the A20 gate (port 0x92, i8042 output port).
    pub fn set_a20(&mut self, enabled: bool) {
        let mask = if enabled { u64::MAX } else { !(1 << 20) };
        if mask != self.a20_mask {
            self.a20_mask = mask;
            self.tlb.flush();
        }
    }

    pub fn a20_enabled(&self) -> bool {
        self.a20_mask == u64::MAX
    }

    /// Forget every translation, global ones too.
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// The TLB's valid entries (debugger).
    pub fn tlb_entries(&self) -> Vec<crate::TlbEntry> {
        self.tlb.entries()
    }

    /// Copy `out.len()` bytes at linear address `lin` through the current page tables
    /// as a supervisor read would, with no side effect (debugger, gdb stub). Fails at
    /// the first byte that does not translate or is not RAM/ROM; devices are never read.
    pub fn peek(&self, lin: u64, out: &mut [u8]) -> Result<(), u64> {
        let mut done = 0;
        while done < out.len() {
            let at = lin.wrapping_add(done as u64);
            let phys = self.inspect(at).1.map_err(|_| at)?.phys;
            let n = (PAGE_SIZE - (at & (PAGE_SIZE - 1))).min((out.len() - done) as u64) as usize;
            self.phys
                .read_bytes(phys, &mut out[done..done + n])
                .map_err(|_| at)?;
            done += n;
        }
        Ok(())
    }

    // ---- the paging unit's registers ----------------------------------------------

    /// The paging mode and options now in force.
    pub fn paging(&self) -> Paging {
        self.unit.cfg
    }

    /// CR0, CR4 or EFER changed. If the paging configuration changed, every translation
    /// is dropped, global ones too (SDM Vol.3 4.10.4.1 lists CR0.PG and CR4.PGE/PAE/PSE;
    /// WP and NXE change what the TLB's entries allow, so they flush as well), and with
    /// PAE paging the PDPTE registers are loaded from `cr3` (SDM Vol.3 4.4.1). On
    /// `BadPdpte` nothing changes and the CPU raises #GP(0).
    pub fn set_paging(&mut self, cfg: Paging, cr3: u64) -> Result<(), BadPdpte> {
        if cfg == self.unit.cfg {
            return Ok(());
        }
        if cfg.mode == Mode::Pae {
            self.unit.pdpte = self.load_pdptes(cr3)?;
        }
        self.unit.cfg = cfg;
        self.unit.cr3 = cr3;
        self.tlb.flush();
        Ok(())
    }

    /// MOV CR3: the new table root; translations are dropped except global ones (SDM
    /// Vol.3 4.10.4.1), and with PAE paging the PDPTE registers are reloaded.
    pub fn set_cr3(&mut self, cr3: u64) -> Result<(), BadPdpte> {
        if self.unit.cfg.mode == Mode::Pae {
            self.unit.pdpte = self.load_pdptes(cr3)?;
        }
        self.unit.cr3 = cr3;
        if self.unit.cfg.pge {
            self.tlb.flush_nonglobal();
        } else {
            self.tlb.flush();
        }
        Ok(())
    }

    /// INVLPG: drop the translation of the page holding `lin`, global or not.
    pub fn invlpg(&mut self, lin: u64) {
        self.tlb.invalidate(lin);
    }

    /// Set the privilege of explicit accesses: user (CPL 3) or supervisor.
    #[inline(always)]
    pub fn set_user(&mut self, user: bool) {
        if user != self.user {
            self.user = user;
            self.tlb.swap_privilege();
        }
    }

    pub fn user(&self) -> bool {
        self.user
    }

    /// Run `f` with supervisor rights (implicit accesses), then restore the privilege.
    fn as_supervisor<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let user = self.user;
        self.set_user(false);
        let r = f(self);
        self.set_user(user);
        r
    }

    // ---- linear accesses ----------------------------------------------------------

    /// Linear to physical for one access at the current privilege, with the side
    /// effects of a real access: accessed/dirty flags, and a TLB fill for RAM and ROM
    /// pages (write entries only for writable RAM that holds no decoded code).
    pub fn translate(&mut self, lin: u64, access: Access) -> Result<u64, MemFault> {
        let w = self.walk(lin, access)?;
        if let Some(hp) = self.phys.host_page(w.phys) {
            if access != Access::Write || (hp.writable && !self.phys.is_code_page(w.phys)) {
                self.tlb
                    .fill(access, lin, w.phys, hp.ptr, w.global, w.page_shift);
            }
        }
        Ok(w.phys)
    }

    #[inline(always)]
    pub fn read<T: Pod>(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<T, MemFault> {
        let off = (lin & (PAGE_SIZE - 1)) as usize;
        let e = &self.tlb.cur.read[tlb::index(lin)];
        if e.tag == lin >> 12 && off <= PAGE_SIZE as usize - T::BYTES {
            // SAFETY: a TLB hit holds a live host page; off + size stays inside it.
            return Ok(unsafe { std::ptr::read_unaligned(e.host.add(off) as *const T) });
        }
        self.read_slow(bus, lin, T::BYTES).map(T::from_u64)
    }

    #[inline(always)]
    pub fn write<T: Pod>(&mut self, bus: &mut dyn Bus, lin: u64, v: T) -> Result<(), MemFault> {
        let off = (lin & (PAGE_SIZE - 1)) as usize;
        let e = &self.tlb.cur.write[tlb::index(lin)];
        if e.tag == lin >> 12 && off <= PAGE_SIZE as usize - T::BYTES {
            // SAFETY: write entries exist only for RAM pages without decoded code.
            unsafe { std::ptr::write_unaligned(e.host.add(off) as *mut T, v) };
            return Ok(());
        }
        self.write_slow(bus, lin, T::BYTES, v.to_u64())
    }

    /// The host address of `size` bytes at `lin` if a write-TLB entry covers them: a
    /// read-modify-write through it needs no further checks (write entries exist only
    /// for writable RAM without decoded code, and a page writable at a privilege is
    /// readable at it).
    #[inline(always)]
    pub fn rmw_ptr(&self, lin: u64, size: usize) -> Option<*mut u8> {
        let off = (lin & (PAGE_SIZE - 1)) as usize;
        let e = &self.tlb.cur.write[tlb::index(lin)];
        // SAFETY (for callers): the entry points at a live host page; off + size fits.
        (e.tag == lin >> 12 && off <= PAGE_SIZE as usize - size).then(|| unsafe { e.host.add(off) })
    }

    /// Check that a write of `size` bytes at `lin` would not fault, without writing.
    /// Instructions that store several values use it to stay precise.
    pub fn probe_write(&mut self, lin: u64, size: usize) -> Result<(), MemFault> {
        self.translate(lin, Access::Write)?;
        let last = lin.wrapping_add(size as u64 - 1);
        if (last ^ lin) >> 12 != 0 {
            self.translate(last, Access::Write)?;
        }
        Ok(())
    }

    /// The physical address of an instruction byte: U/S and XD are checked for a fetch
    /// (a #PF has I/D set where the SDM says so).
    #[inline(always)]
    pub fn fetch_phys(&mut self, lin: u64) -> Result<u64, MemFault> {
        let e = &self.tlb.cur.fetch[tlb::index(lin)];
        if e.tag == lin >> 12 {
            return Ok((e.phys & !(PAGE_SIZE - 1)) | (lin & (PAGE_SIZE - 1)));
        }
        self.translate(lin, Access::Fetch)
    }

    /// An implicit supervisor-mode read (descriptor tables, IDT, TSS; SDM Vol.3 4.6).
    pub fn read_sys<T: Pod>(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<T, MemFault> {
        self.as_supervisor(|m| m.read(bus, lin))
    }

    /// An implicit supervisor-mode write (accessed bits of descriptors, TSS, and the
    /// interrupt-frame pushes of a delivery from CPL 3).
    pub fn write_sys<T: Pod>(&mut self, bus: &mut dyn Bus, lin: u64, v: T) -> Result<(), MemFault> {
        self.as_supervisor(|m| m.write(bus, lin, v))
    }

    /// `probe_write` with supervisor rights.
    pub fn probe_write_sys(&mut self, lin: u64, size: usize) -> Result<(), MemFault> {
        self.as_supervisor(|m| m.probe_write(lin, size))
    }

    /// Act on what a device asked for after an access.
    pub fn bus_flow(&mut self, f: BusFlow) {
        match f {
            BusFlow::Continue => {}
            BusFlow::Stop => self.events |= event::BUS_STOP,
            BusFlow::A20(on) => self.set_a20(on),
        }
    }

    /// Note that the decode cache now holds code from this physical page: writes to it
    /// must take the slow path so the cache can drop what they overwrite.
    pub fn mark_code_page(&mut self, phys: u64) {
        if !self.phys.is_code_page(phys) {
            self.phys.set_code_page(phys, true);
            self.tlb.drop_writes_to(phys);
        }
    }

    /// The code pages written since the last call; their marks are cleared.
    pub fn take_written_code(&mut self) -> Vec<u64> {
        self.events &= !event::CODE_WRITTEN;
        std::mem::take(&mut self.written_code)
    }

    #[cold]
    fn read_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: usize) -> Result<u64, MemFault> {
        let last = lin.wrapping_add(size as u64 - 1);
        if (last ^ lin) >> 12 != 0 {
            // Crosses a page: translate both halves before reading either.
            let p0 = self.translate(lin, Access::Read)?;
            let p1 = self.translate(last & !(PAGE_SIZE - 1), Access::Read)?;
            let mut v = 0u64;
            for i in 0..size as u64 {
                let a = lin.wrapping_add(i);
                let p = if (a ^ lin) >> 12 == 0 {
                    p0 + i
                } else {
                    p1 + (a & (PAGE_SIZE - 1))
                };
                v |= self.phys_read(bus, p, 1) << (8 * i);
            }
            return Ok(v);
        }
        let phys = self.translate(lin, Access::Read)?;
        Ok(self.phys_read(bus, phys, size))
    }

    #[cold]
    fn write_slow(
        &mut self,
        bus: &mut dyn Bus,
        lin: u64,
        size: usize,
        v: u64,
    ) -> Result<(), MemFault> {
        let last = lin.wrapping_add(size as u64 - 1);
        if (last ^ lin) >> 12 != 0 {
            let p0 = self.translate(lin, Access::Write)?;
            let p1 = self.translate(last & !(PAGE_SIZE - 1), Access::Write)?;
            for i in 0..size as u64 {
                let a = lin.wrapping_add(i);
                let p = if (a ^ lin) >> 12 == 0 {
                    p0 + i
                } else {
                    p1 + (a & (PAGE_SIZE - 1))
                };
                self.phys_write(bus, p, 1, v >> (8 * i));
            }
            return Ok(());
        }
        let phys = self.translate(lin, Access::Write)?;
        self.phys_write(bus, phys, size, v);
        Ok(())
    }

    // ---- physical accesses --------------------------------------------------------

    /// A physical read of 1..=8 bytes that does not cross a region boundary.
    pub fn phys_read(&mut self, bus: &mut dyn Bus, phys: u64, size: usize) -> u64 {
        match self.phys.byte_ptr(phys) {
            Some((ptr, _)) if self.phys.byte_ptr(phys + size as u64 - 1).is_some() => {
                let mut b = [0u8; 8];
                // SAFETY: both ends of the range are in mapped memory of one page.
                unsafe { std::ptr::copy_nonoverlapping(ptr, b.as_mut_ptr(), size) };
                u64::from_le_bytes(b)
            }
            _ => bus.mmio_read(phys, size as u8),
        }
    }

    /// A physical write of 1..=8 bytes. Writes to ROM are dropped; writes to pages
    /// holding decoded code are recorded for the decode cache.
    pub fn phys_write(&mut self, bus: &mut dyn Bus, phys: u64, size: usize, v: u64) {
        if !self.ram_write(phys, size, v) {
            let flow = bus.mmio_write(phys, size as u8, v);
            self.bus_flow(flow);
        }
    }

    /// The RAM/ROM part of `phys_write`: false if `phys` is MMIO.
    pub(crate) fn ram_write(&mut self, phys: u64, size: usize, v: u64) -> bool {
        match self.phys.byte_ptr(phys) {
            Some((ptr, writable)) if self.phys.byte_ptr(phys + size as u64 - 1).is_some() => {
                if !writable {
                    return true;
                }
                let b = v.to_le_bytes();
                // SAFETY: both ends of the range are in mapped RAM of one page.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), ptr, size) };
                if self.phys.is_code_page(phys) {
                    let page = phys & !(PAGE_SIZE - 1);
                    self.phys.set_code_page(page, false);
                    self.written_code.push(page);
                    self.events |= event::CODE_WRITTEN;
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NullBus;

    fn mmu() -> Mmu {
        let mut p = PhysMem::new();
        p.add_ram(0, 0x20_0000).unwrap();
        Mmu::new(p)
    }

    #[test]
    fn read_write_through_tlb_and_across_pages() {
        let mut m = mmu();
        let bus = &mut NullBus;
        m.write::<u32>(bus, 0x1000, 0xDEADBEEF).unwrap();
        assert_eq!(m.read::<u32>(bus, 0x1000).unwrap(), 0xDEADBEEF);
        m.write::<u64>(bus, 0x1FFD, 0x1122334455667788).unwrap();
        assert_eq!(m.read::<u64>(bus, 0x1FFD).unwrap(), 0x1122334455667788);
        assert_eq!(m.read::<u8>(bus, 0x2000).unwrap(), 0x55);
    }

    #[test]
    fn a20_gate_wraps_bit_20() {
        let mut m = mmu();
        let bus = &mut NullBus;
        m.write::<u8>(bus, 0x10_0010, 0x5A).unwrap();
        m.set_a20(false);
        m.write::<u8>(bus, 0x10_0000, 0x77).unwrap();
        assert_eq!(m.read::<u8>(bus, 0x0).unwrap(), 0x77);
        m.set_a20(true);
        assert_eq!(m.read::<u8>(bus, 0x10_0010).unwrap(), 0x5A);
    }

    #[test]
    fn unmapped_space_is_mmio() {
        let mut m = mmu();
        assert_eq!(
            m.read::<u32>(&mut NullBus, 0xFEE0_0000).unwrap(),
            0xFFFF_FFFF
        );
    }

    #[test]
    fn writes_to_code_pages_are_reported_even_after_a_tlb_fill() {
        let mut m = mmu();
        let bus = &mut NullBus;
        m.write::<u8>(bus, 0x7C00, 1).unwrap(); // fills the write TLB
        m.mark_code_page(0x7C00);
        m.write::<u8>(bus, 0x7C10, 2).unwrap();
        assert_eq!(m.events & event::CODE_WRITTEN, event::CODE_WRITTEN);
        assert_eq!(m.take_written_code(), vec![0x7000]);
        assert_eq!(m.events, 0);
    }
}
