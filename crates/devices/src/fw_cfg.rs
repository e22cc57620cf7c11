//! QEMU's firmware configuration device (docs/specs/fw_cfg.rst): a 16-bit selector at
//! 0x510, a byte-wide data port at 0x511 and the DMA interface at 0x514–0x51B, so
//! firmware and test kernels written for QEMU find the signature, the interface ID,
//! the RAM size, the CPU counts and the file directory where they expect them.
//!
//! Items are read-only to the guest (data port writes are ignored, as in QEMU since 2.4;
//! DMA writes fail with the error bit). DMA needs guest memory, which the machine
//! supplies; without it the ID does not advertise DMA.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

use crate::bus::{ones, Device, IoAccess};
use crate::clock::Nanos;
use crate::dma::GuestMemory;
use crate::mmio_bus::read_le;
use crate::port_bus::PortDevice;

/// Selector (16-bit writes at offset 0) and data (byte reads at offset 1).
pub const PORT: u16 = 0x510;
pub const PORTS: u16 = 2;
/// The DMA address register, 64-bit big-endian: writing its low half (0x518) starts
/// the transfer.
pub const DMA_PORT: u16 = 0x514;
pub const DMA_PORTS: u16 = 8;

/// Selector keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h).
pub const FW_CFG_SIGNATURE: u16 = 0x00;
pub const FW_CFG_ID: u16 = 0x01;
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
pub const FW_CFG_NB_CPUS: u16 = 0x05;
pub const FW_CFG_MAX_CPUS: u16 = 0x0F;
pub const FW_CFG_FILE_DIR: u16 = 0x19;
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// x86: ISA IRQ0 is routed to IOAPIC pin 2 (SeaBIOS builds the MADT override from it).
pub const FW_CFG_IRQ0_OVERRIDE: u16 = 0x8002;
/// Selector bit 14 asks for writing; items are looked up without it.
const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;

const SIGNATURE: &[u8] = b"QEMU";
const ID_TRADITIONAL: u32 = 1 << 0;
const ID_DMA: u32 = 1 << 1;
/// What reading the DMA address register returns.
const DMA_SIGNATURE: &[u8] = b"QEMU CFG";
/// File names include their NUL.
const MAX_FILE_PATH: usize = 56;
/// QEMU's default number of file slots.
const FILE_SLOTS: usize = 0x20;

/// FWCfgDmaAccess control bits.
const DMA_CTL_ERROR: u32 = 1 << 0;
const DMA_CTL_READ: u32 = 1 << 1;
const DMA_CTL_SKIP: u32 = 1 << 2;
const DMA_CTL_SELECT: u32 = 1 << 3;
const DMA_CTL_WRITE: u32 = 1 << 4;
const DMA_CTL_SELECT_SHIFT: u32 = 16;
/// FWCfgDmaAccess: control (BE32), length (BE32), address (BE64).
const DMA_ACCESS_LEN: usize = 16;
/// Guest memory is filled in pieces no larger than this.
const DMA_CHUNK: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name {0:?} is empty or longer than {max} bytes", max = MAX_FILE_PATH - 1)]
    BadName(String),
    #[error("fw_cfg file {0:?} already exists")]
    Duplicate(String),
    #[error("fw_cfg has no room for more than {FILE_SLOTS} files")]
    Full,
}

pub struct FwCfg {
    items: BTreeMap<u16, Arc<[u8]>>,
    /// Sorted by name, as QEMU keeps them; file i has selector FW_CFG_FILE_FIRST + i.
    files: Vec<(String, Arc<[u8]>)>,
    selected: Arc<[u8]>,
    offset: usize,
    dma_address: u64,
    memory: Option<Box<dyn GuestMemory>>,
}

impl FwCfg {
    /// `memory` enables the DMA interface.
    pub fn new(ram_size: u64, cpus: u16, memory: Option<Box<dyn GuestMemory>>) -> Self {
        let id = ID_TRADITIONAL | if memory.is_some() { ID_DMA } else { 0 };
        let items: [(u16, &[u8]); 6] = [
            (FW_CFG_SIGNATURE, SIGNATURE),
            (FW_CFG_ID, &id.to_le_bytes()),
            (FW_CFG_RAM_SIZE, &ram_size.to_le_bytes()),
            (FW_CFG_NB_CPUS, &cpus.to_le_bytes()),
            (FW_CFG_MAX_CPUS, &cpus.to_le_bytes()),
            (FW_CFG_IRQ0_OVERRIDE, &1u32.to_le_bytes()),
        ];
        let mut fw = FwCfg {
            items: items.iter().map(|(k, v)| (*k, Arc::from(*v))).collect(),
            files: Vec::new(),
            selected: Arc::from(&[][..]),
            offset: 0,
            dma_address: 0,
            memory,
        };
        fw.select(FW_CFG_SIGNATURE);
        fw
    }

    /// Publish `data` as file `name` (e.g. "etc/e820") in the directory.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() >= MAX_FILE_PATH || name.contains('\0') {
            return Err(FwCfgError::BadName(name.into()));
        }
        let at = match self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(_) => return Err(FwCfgError::Duplicate(name.into())),
            Err(at) => at,
        };
        if self.files.len() >= FILE_SLOTS {
            return Err(FwCfgError::Full);
        }
        self.files.insert(at, (name.into(), Arc::from(data)));
        Ok(())
    }

    fn directory(&self) -> Vec<u8> {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (i, (name, data)) in self.files.iter().enumerate() {
            dir.extend((data.len() as u32).to_be_bytes());
            dir.extend((FW_CFG_FILE_FIRST + i as u16).to_be_bytes());
            dir.extend([0, 0]);
            let mut path = [0u8; MAX_FILE_PATH];
            path[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend(path);
        }
        dir
    }

    fn select(&mut self, key: u16) {
        let key = key & !FW_CFG_WRITE_CHANNEL;
        self.offset = 0;
        self.selected = if key == FW_CFG_FILE_DIR {
            Arc::from(self.directory())
        } else if let Some(i) = key
            .checked_sub(FW_CFG_FILE_FIRST)
            .filter(|&i| (i as usize) < self.files.len())
        {
            self.files[i as usize].1.clone()
        } else {
            self.items
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Arc::from(&[][..]))
        };
    }

    /// The next data byte; past the end of the item, zeros.
    fn read_data(&mut self) -> u8 {
        let b = self.selected.get(self.offset).copied().unwrap_or(0);
        if self.offset < self.selected.len() {
            self.offset += 1;
        }
        b
    }

    /// Run the FWCfgDmaAccess at `addr`, then write its control word back: 0 when
    /// done, the error bit if anything failed.
    fn dma_transfer(&mut self, addr: u64) {
        let Some(mut memory) = self.memory.take() else {
            return;
        };
        let mut access = [0u8; DMA_ACCESS_LEN];
        let control = match memory.read(addr, &mut access) {
            Ok(()) => self.dma_run(memory.as_mut(), &access),
            Err(_) => DMA_CTL_ERROR,
        };
        // Nowhere to report a failure to write the result.
        let _ = memory.write(addr, &control.to_be_bytes());
        self.memory = Some(memory);
    }

    fn dma_run(&mut self, memory: &mut dyn GuestMemory, access: &[u8; DMA_ACCESS_LEN]) -> u32 {
        let word =
            |i: usize| u32::from_be_bytes([access[i], access[i + 1], access[i + 2], access[i + 3]]);
        let (control, mut length) = (word(0), word(4) as u64);
        let mut address = (word(8) as u64) << 32 | word(12) as u64;
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> DMA_CTL_SELECT_SHIFT) as u16);
        }
        let (read, write) = if control & DMA_CTL_READ != 0 {
            (true, false)
        } else if control & DMA_CTL_WRITE != 0 {
            (false, true)
        } else if control & DMA_CTL_SKIP != 0 {
            (false, false)
        } else {
            return 0;
        };
        if write && length > 0 {
            return DMA_CTL_ERROR;
        }
        let zeros = [0u8; DMA_CHUNK];
        while length > 0 {
            let available = self.selected.len().saturating_sub(self.offset);
            let n = (length as usize).min(if available > 0 { available } else { DMA_CHUNK });
            if read {
                let data = if available > 0 {
                    &self.selected[self.offset..self.offset + n]
                } else {
                    &zeros[..n]
                };
                if memory.write(address, data).is_err() {
                    return DMA_CTL_ERROR;
                }
            }
            if available > 0 {
                self.offset += n;
            }
            address = address.wrapping_add(n as u64);
            length -= n as u64;
        }
        0
    }
}

impl Device for FwCfg {
    fn name(&self) -> &'static str {
        "fw_cfg"
    }
}

impl PortDevice for FwCfg {
    fn read(&mut self, base: u16, offset: u16, size: u8, _now: Nanos) -> u32 {
        match (base, size) {
            (PORT, 1) => self.read_data() as u32,
            (DMA_PORT, _) => read_le(DMA_SIGNATURE, offset as u64, size) as u32,
            _ => ones(size) as u32,
        }
    }

    fn write(&mut self, base: u16, offset: u16, size: u8, value: u32, _now: Nanos) -> IoAccess {
        match (base, offset, size) {
            (PORT, 0, 2) => self.select(value as u16),
            // The register is big-endian: the guest writes byte-swapped halves.
            (DMA_PORT, 0, 4) => self.dma_address = (value.swap_bytes() as u64) << 32,
            (DMA_PORT, 4, 4) => {
                let addr = self.dma_address | value.swap_bytes() as u64;
                self.dma_address = 0;
                self.dma_transfer(addr);
            }
            _ => {}
        }
        IoAccess::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::GuestMemoryError;
    use std::sync::Mutex;

    /// Guest RAM at 0..len, shared with the test.
    #[derive(Clone)]
    struct Ram(Arc<Mutex<Vec<u8>>>);

    impl Ram {
        fn new(len: usize) -> Ram {
            Ram(Arc::new(Mutex::new(vec![0xEE; len])))
        }

        fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, GuestMemoryError> {
            let ram_len = self.0.lock().unwrap().len();
            let bad = GuestMemoryError {
                addr,
                len: len as u64,
            };
            let start = usize::try_from(addr).map_err(|_| bad.clone())?;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= ram_len)
                .ok_or(bad)?;
            Ok(start..end)
        }

        fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
            self.0.lock().unwrap()[addr as usize..addr as usize + len].to_vec()
        }
    }

    impl GuestMemory for Ram {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
            let r = self.range(addr, buf.len())?;
            buf.copy_from_slice(&self.0.lock().unwrap()[r]);
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
            let r = self.range(addr, data.len())?;
            self.0.lock().unwrap()[r].copy_from_slice(data);
            Ok(())
        }
    }

    fn select(fw: &mut FwCfg, key: u16) {
        fw.write(PORT, 0, 2, key as u32, Nanos::ZERO);
    }

    fn read(fw: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| fw.read(PORT, 1, 1, Nanos::ZERO) as u8)
            .collect()
    }

    #[test]
    fn signature_id_and_machine_items() {
        let mut fw = FwCfg::new(512 << 20, 2, None);
        select(&mut fw, FW_CFG_SIGNATURE);
        assert_eq!(read(&mut fw, 4), b"QEMU");
        assert_eq!(read(&mut fw, 2), [0, 0], "past the end: zeros");
        select(&mut fw, FW_CFG_ID);
        assert_eq!(read(&mut fw, 4), [1, 0, 0, 0], "traditional interface only");
        select(&mut fw, FW_CFG_RAM_SIZE);
        assert_eq!(
            u64::from_le_bytes(read(&mut fw, 8).try_into().unwrap()),
            512 << 20
        );
        select(&mut fw, FW_CFG_NB_CPUS);
        assert_eq!(read(&mut fw, 2), [2, 0]);
        select(&mut fw, FW_CFG_MAX_CPUS | FW_CFG_WRITE_CHANNEL);
        assert_eq!(read(&mut fw, 2), [2, 0]);
        select(&mut fw, FW_CFG_IRQ0_OVERRIDE);
        assert_eq!(read(&mut fw, 4), [1, 0, 0, 0]);
        select(&mut fw, 0x1234);
        assert_eq!(read(&mut fw, 1), [0], "unknown keys are empty");
        // The data port ignores writes; odd sizes read as ones.
        fw.write(PORT, 1, 1, 0x55, Nanos::ZERO);
        assert_eq!(fw.read(PORT, 0, 2, Nanos::ZERO), 0xFFFF);
    }

    #[test]
    fn file_directory_is_sorted_and_big_endian() {
        let mut fw = FwCfg::new(0, 1, None);
        fw.add_file("etc/e820", vec![1; 40]).unwrap();
        fw.add_file("bootorder", b"/rom@genroms/x\0".to_vec())
            .unwrap();
        assert_eq!(
            fw.add_file("etc/e820", vec![]),
            Err(FwCfgError::Duplicate("etc/e820".into()))
        );
        assert!(matches!(
            fw.add_file(&"x".repeat(56), vec![]),
            Err(FwCfgError::BadName(_))
        ));
        assert!(matches!(
            fw.add_file("", vec![]),
            Err(FwCfgError::BadName(_))
        ));
        select(&mut fw, FW_CFG_FILE_DIR);
        let dir = read(&mut fw, 4 + 2 * 64);
        assert_eq!(dir[..4], [0, 0, 0, 2]);
        let entry = |i: usize| &dir[4 + 64 * i..4 + 64 * (i + 1)];
        assert_eq!(entry(0)[..8], [0, 0, 0, 15, 0, 0x20, 0, 0]);
        assert_eq!(&entry(0)[8..17], b"bootorder");
        assert_eq!(entry(1)[..8], [0, 0, 0, 40, 0, 0x21, 0, 0]);
        assert_eq!(&entry(1)[8..17], b"etc/e820\0");
        select(&mut fw, 0x21);
        assert_eq!(read(&mut fw, 2), [1, 1]);
        for i in 0..FILE_SLOTS - 2 {
            fw.add_file(&format!("f{i:02}"), vec![]).unwrap();
        }
        assert_eq!(fw.add_file("one-too-many", vec![]), Err(FwCfgError::Full));
    }

    fn dma(fw: &mut FwCfg, addr: u64) {
        fw.write(
            DMA_PORT,
            0,
            4,
            ((addr >> 32) as u32).swap_bytes(),
            Nanos::ZERO,
        );
        fw.write(DMA_PORT, 4, 4, (addr as u32).swap_bytes(), Nanos::ZERO);
    }

    fn access(ram: &mut Ram, at: u64, control: u32, length: u32, address: u64) {
        let mut a = control.to_be_bytes().to_vec();
        a.extend(length.to_be_bytes());
        a.extend(address.to_be_bytes());
        ram.write(at, &a).unwrap();
    }

    #[test]
    fn dma_select_read_skip_and_errors() {
        let mut ram = Ram::new(0x2000);
        let mut fw = FwCfg::new(1 << 30, 1, Some(Box::new(ram.clone())));
        assert_eq!(fw.read(DMA_PORT, 0, 4, Nanos::ZERO).to_le_bytes(), *b"QEMU");
        assert_eq!(fw.read(DMA_PORT, 4, 4, Nanos::ZERO).to_le_bytes(), *b" CFG");
        select(&mut fw, FW_CFG_ID);
        assert_eq!(read(&mut fw, 1), [3], "traditional and DMA");
        fw.add_file("etc/table", (0..=9).collect()).unwrap();
        // Select the file, skip 2 bytes, read 4, then read 6 more: 4 data, 2 zeros.
        access(
            &mut ram,
            0x100,
            0x20 << 16 | DMA_CTL_SELECT | DMA_CTL_SKIP,
            2,
            0,
        );
        dma(&mut fw, 0x100);
        assert_eq!(ram.bytes(0x100, 4), [0; 4], "control 0: done");
        access(&mut ram, 0x100, DMA_CTL_READ, 4, 0x1000);
        dma(&mut fw, 0x100);
        assert_eq!(ram.bytes(0x1000, 4), [2, 3, 4, 5]);
        access(&mut ram, 0x100, DMA_CTL_READ, 6, 0x1000);
        dma(&mut fw, 0x100);
        assert_eq!(ram.bytes(0x1000, 7), [6, 7, 8, 9, 0, 0, 0xEE]);
        // Writes are refused, as are reads into memory that is not there.
        access(&mut ram, 0x100, DMA_CTL_WRITE, 1, 0x1000);
        dma(&mut fw, 0x100);
        assert_eq!(ram.bytes(0x100, 4), [0, 0, 0, 1]);
        access(&mut ram, 0x100, DMA_CTL_READ | DMA_CTL_SELECT, 8, 0x1FFC);
        dma(&mut fw, 0x100);
        assert_eq!(ram.bytes(0x100, 4), [0, 0, 0, 1]);
        // An access structure outside RAM does nothing at all.
        dma(&mut fw, 1 << 40);
        access(&mut ram, 0x100, DMA_CTL_READ, u32::MAX, 0x1000);
        dma(&mut fw, 0x100);
        assert_eq!(
            ram.bytes(0x100, 4),
            [0, 0, 0, 1],
            "a 4 GiB zero fill runs off the end of RAM"
        );
    }
}
