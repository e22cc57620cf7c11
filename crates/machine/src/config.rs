//! What the user asked for: memory size, the image and how to load it, where the debug
//! console goes. Every bad input becomes a `MachineError`, never a panic.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Smallest and largest guest RAM: real mode needs the first MiB; beyond 1 TiB is not a
/// PC this emulator can back.
pub const MIN_MEMORY: u64 = 1 << 20;
pub const MAX_MEMORY: u64 = 1 << 40;

/// Largest BIOS image: the 16 MiB below 4 GiB that firmware may occupy.
pub const MAX_ROM: usize = 16 << 20;

#[derive(Debug, Error)]
pub enum MachineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path} for the debug console: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is empty")]
    EmptyImage { path: PathBuf },
    #[error("image of {size} bytes at {load:#x} does not fit in {memory} bytes of guest memory")]
    ImageTooLarge { size: u64, load: u64, memory: u64 },
    #[error("load address {0:#x} is not reachable from real mode (must be below 0x100000)")]
    LoadAddress(u64),
    #[error("BIOS image of {size} bytes: must be a multiple of 4 KiB and at most 16 MiB")]
    RomSize { size: usize },
    #[error("{path}: cannot boot as a multiboot kernel: {reason}")]
    Multiboot { path: PathBuf, reason: String },
    #[error("{path}: cannot boot as a Linux kernel: {reason}")]
    Linux { path: PathBuf, reason: String },
    #[error("guest memory: {0}")]
    Memory(#[from] trapeze_mmu::MapError),
    #[error("device wiring: {0}")]
    Ports(#[from] trapeze_devices::PortError),
    #[error("device wiring: {0}")]
    Wiring(String),
}

/// The guest image and how it starts.
#[derive(Clone, Debug)]
pub enum Image {
    /// Raw bytes at `load`, started in real mode at 0000:load with DL = 0x80.
    Flat { data: Vec<u8>, load: u64 },
    /// Firmware mapped to end at 0xFFFFF and at 4 GiB, started at F000:FFF0.
    Bios { data: Vec<u8> },
    /// A multiboot v1 kernel, its modules and command line, started in 32-bit
    /// protected mode as the Multiboot 0.6.96 specification (3.2) says.
    Multiboot(crate::multiboot::MultibootImage),
    /// A Linux bzImage, its initrd and command line, entered in 64-bit mode through the
    /// Linux boot protocol with ACPI tables describing the platform.
    Linux(crate::linux::LinuxImage),
}

impl Image {
    pub fn flat_file(path: &Path, load: u64) -> Result<Self, MachineError> {
        Ok(Image::Flat {
            data: read_image(path)?,
            load,
        })
    }

    pub fn bios_file(path: &Path) -> Result<Self, MachineError> {
        let data = read_image(path)?;
        if data.len() % 4096 != 0 || data.len() > MAX_ROM {
            return Err(MachineError::RomSize { size: data.len() });
        }
        Ok(Image::Bios { data })
    }

    /// Read and validate a multiboot kernel and its modules. `modules` holds
    /// `FILE[,CMDLINE]` arguments; `append` the kernel command line.
    pub fn multiboot_file(
        path: &Path,
        modules: &[String],
        append: Option<&str>,
    ) -> Result<Self, MachineError> {
        let data = read_image(path)?;
        let mut mods = Vec::new();
        for m in modules {
            let (file, args) = match m.split_once(',') {
                Some((f, a)) => (f, Some(a)),
                None => (m.as_str(), None),
            };
            let file = Path::new(file);
            let data = std::fs::read(file).map_err(|source| MachineError::Read {
                path: file.to_owned(),
                source,
            })?;
            // As GRUB and QEMU do: the module string is its file name, then its arguments.
            let string = match args {
                Some(a) if !a.is_empty() => format!("{} {a}", file.display()),
                _ => file.display().to_string(),
            };
            mods.push(crate::multiboot::Module { data, string });
        }
        let cmdline = match append {
            Some(a) => format!("{} {a}", path.display()),
            None => path.display().to_string(),
        };
        crate::multiboot::MultibootImage::parse(path, data, cmdline, mods).map(Image::Multiboot)
    }
}

impl Image {
    /// Read a Linux bzImage and its initrd and check the setup header.
    pub fn linux_file(
        path: &Path,
        initrd: Option<&Path>,
        append: Option<&str>,
    ) -> Result<Self, MachineError> {
        let data = read_image(path)?;
        let initrd = initrd.map(read_image).transpose()?;
        crate::linux::LinuxImage::parse(path, &data, initrd, append.unwrap_or("").to_string())
            .map(Image::Linux)
    }
}

fn read_image(path: &Path) -> Result<Vec<u8>, MachineError> {
    let data = std::fs::read(path).map_err(|source| MachineError::Read {
        path: path.to_owned(),
        source,
    })?;
    if data.is_empty() {
        return Err(MachineError::EmptyImage {
            path: path.to_owned(),
        });
    }
    Ok(data)
}

/// Where the 0xE9 debug console writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
    None,
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stdio" | "stdout" => Ok(Output::Stdout),
            "none" => Ok(Output::None),
            _ => match s.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(Output::File(PathBuf::from(p))),
                _ => Err(format!("'{s}': expected stdio, none or file:PATH")),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub memory: u64,
    pub image: Image,
    pub debugcon: Output,
    /// Where COM1 (0x3F8) output goes.
    pub serial: Output,
    /// With `serial: Stdout`, also take COM1 input from stdin (a terminal in raw mode).
    pub serial_input: bool,
    /// Popek–Goldberg strict mode: every sensitive instruction faults at CPL > 0.
    pub pg_strict: bool,
    /// Follow the host clock instead of virtual time (runs are then not reproducible).
    pub realtime: bool,
}

impl Config {
    /// A machine with `memory` bytes of RAM booting `image`, with no console output or
    /// input, in virtual time: what benchmarks and tests start from.
    pub fn quiet(image: Image, memory: u64) -> Config {
        Config {
            memory,
            image,
            debugcon: Output::None,
            serial: Output::None,
            serial_input: false,
            pg_strict: false,
            realtime: false,
        }
    }
}

/// "256M", "1G", "65536", "0x100000" → bytes. K/M/G/T are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() && !t.starts_with("0x") => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "'{s}': unknown size suffix '{c}' (use K, M, G or T)"
                    ))
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n =
        parse_addr(num).map_err(|_| format!("'{s}' is not a size (e.g. 256M, 1G, 0x100000)"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or(format!("'{s}' is too large"))?;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) || bytes % 4096 != 0 {
        return Err(format!(
            "'{s}': memory must be a multiple of 4 KiB between 1M and 1T"
        ));
    }
    Ok(bytes)
}

/// "0x7c00", "31744" → a number.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    r.map_err(|_| format!("'{s}' is not a number (decimal, or hex with 0x)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2048K"), Ok(2 << 20));
        assert_eq!(parse_size("0x100000"), Ok(1 << 20));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("64K").is_err(), "below the 1 MiB minimum");
        assert!(parse_size("2T").is_err(), "absurd");
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("1000001").is_err(), "not page-sized");
    }

    #[test]
    fn outputs() {
        assert_eq!("none".parse::<Output>(), Ok(Output::None));
        assert_eq!(
            "file:/tmp/x".parse::<Output>(),
            Ok(Output::File("/tmp/x".into()))
        );
        assert!("file:".parse::<Output>().is_err());
        assert!("tcp:1".parse::<Output>().is_err());
    }
}
