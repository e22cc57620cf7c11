//! Helpers shared by the debugger tests: guest paths and NASM listings.
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/guests")
}

/// A guest's NASM listing as (linear address, source text) per instruction line:
/// addresses come from the assembler, not from trapeze. None (with a loud message)
/// if nasm is missing; CI installs it.
pub struct Listing {
    lines: Vec<(u64, String)>,
}

impl Listing {
    pub fn of(name: &str, org: u64) -> Option<Listing> {
        let dir = guests_dir();
        let tmp = std::env::temp_dir().join(format!("trapeze-lst-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let lst = tmp.join(format!("{name}.lst"));
        let status = Command::new("nasm")
            .current_dir(&dir)
            .args(["-f", "bin", "-o"])
            .arg(tmp.join(format!("{name}.bin")))
            .arg("-l")
            .arg(&lst)
            .arg(format!("{name}.asm"))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("\n*** SKIPPED: nasm is not installed; it gives the addresses this test checks (apt-get install nasm) ***\n");
            return None;
        }
        let text = std::fs::read_to_string(&lst).unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        // "    36 0000002A 66B81000                pm32:   mov ax, DATA_SEL": line
        // number, offset, bytes, then the source from column 40.
        let lines = text
            .lines()
            .filter_map(|l| {
                let off = u64::from_str_radix(l.get(7..15)?, 16).ok()?;
                let src = l.get(40..)?.trim();
                (!src.is_empty()).then(|| (org + off, src.to_string()))
            })
            .collect();
        Some(Listing { lines })
    }

    /// The address of the first instruction line whose source contains `needle`.
    pub fn addr(&self, needle: &str) -> u64 {
        self.index(needle).map(|i| self.lines[i].0).unwrap()
    }

    /// The address of the instruction line after the one containing `needle`.
    pub fn after(&self, needle: &str) -> u64 {
        let i = self.index(needle).unwrap();
        self.lines[i + 1..]
            .iter()
            .find(|(a, _)| *a != self.lines[i].0)
            .unwrap()
            .0
    }

    fn index(&self, needle: &str) -> Option<usize> {
        let i = self.lines.iter().position(|(_, s)| s.contains(needle));
        assert!(i.is_some(), "'{needle}' not in the listing");
        i
    }
}

/// A line of QEMU's reference output: the value after "name=".
pub fn expected_value(guest: &str, name: &str) -> String {
    let text = std::fs::read_to_string(guests_dir().join(format!("{guest}.expected"))).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name}= not in {guest}.expected"))
        .to_string()
}
