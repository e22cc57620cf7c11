//! `trapeze run --multiboot`: the multiboot test kernel must print what it printed
//! under QEMU 7.2's multiboot loader (testdata/guests/mb_kernel.expected), and
//! malformed kernels must be one-line errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/guests")
}

fn trapeze() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trapeze"))
}

#[test]
fn multiboot_kernel_matches_qemu() {
    let dir = guests_dir();
    // Relative names, as qemu-expected.sh passes them: they appear in the strings.
    let out = trapeze()
        .current_dir(&dir)
        .args(["run", "--multiboot", "mb_kernel.bin", "--memory", "16M"])
        .args(["--append", "root=/dev/x quiet"])
        .args(["--module", "mb_mod1.txt,arg one", "--module", "mb_mod2.dat"])
        .args(["--max-instructions", "10000000"])
        .output()
        .unwrap();
    let want = std::fs::read(dir.join("mb_kernel.expected")).unwrap();
    let status: i32 = std::fs::read_to_string(dir.join("mb_kernel.status"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(status));
}

/// An a.out-kludge header at offset 0: magic, flags, checksum, then header_addr,
/// load_addr, load_end_addr, bss_end_addr, entry_addr.
fn kludge(flags: u32, checksum_delta: u32, load: u32, entry: u32) -> Vec<u8> {
    let magic = 0x1BAD_B002u32;
    let sum = 0u32
        .wrapping_sub(magic)
        .wrapping_sub(flags)
        .wrapping_add(checksum_delta);
    let mut d = Vec::new();
    for f in [magic, flags, sum, load, load, 0, 0, entry] {
        d.extend_from_slice(&f.to_le_bytes());
    }
    d.extend_from_slice(&[0xF4; 32]);
    d
}

/// A minimal ELF header (class, machine) followed by a multiboot header without
/// the a.out kludge.
fn elf(class: u8, machine: u16) -> Vec<u8> {
    let mut d = vec![0u8; 52];
    d[..7].copy_from_slice(&[0x7F, b'E', b'L', b'F', class, 1, 1]);
    d[16..18].copy_from_slice(&2u16.to_le_bytes());
    d[18..20].copy_from_slice(&machine.to_le_bytes());
    d.extend_from_slice(&kludge(0, 0, 0, 0)[..12]);
    d
}

#[test]
fn malformed_multiboot_kernels_are_clear_errors() {
    let tmp = std::env::temp_dir();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("noheader", vec![0x90; 9000], "no multiboot header"),
        (
            "checksum",
            kludge(1 << 16, 1, 0x10_0000, 0x10_0000),
            "checksum",
        ),
        (
            "flags",
            kludge(1 << 16 | 1 << 7, 0, 0x10_0000, 0x10_0000),
            "unsupported required header flags",
        ),
        (
            "outside",
            kludge(1 << 16, 0, 0x4000_0000, 0x4000_0000),
            "outside",
        ),
        ("elf64", elf(2, 62), "not 32-bit"),
        ("arm", elf(1, 40), "not x86"),
        ("neither", kludge(0, 0, 0, 0), "neither an ELF"),
    ];
    for (name, data, want) in cases {
        let path = tmp.join(format!("trapeze-mb-{name}-{}.bin", std::process::id()));
        std::fs::write(&path, data).unwrap();
        let out = trapeze()
            .args(["run", "--memory", "16M", "--multiboot"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name} panicked:\n{err}");
        assert_eq!(err.lines().count(), 1, "{name}: not one line:\n{err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
    }
}

#[test]
fn multiboot_flag_conflicts_and_missing_module() {
    let dir = guests_dir();
    let k = dir.join("mb_kernel.bin");
    for args in [
        vec![
            "--multiboot".into(),
            k.display().to_string(),
            "--flat".into(),
            k.display().to_string(),
        ],
        vec![
            "--multiboot".into(),
            k.display().to_string(),
            "--bios".into(),
            k.display().to_string(),
        ],
        vec!["--module".into(), k.display().to_string()],
        vec!["--append".into(), "x".into()],
        vec![
            "--multiboot".into(),
            k.display().to_string(),
            "--module".into(),
            "/nonexistent/module".into(),
        ],
    ] {
        let out = trapeze().arg("run").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }
}
