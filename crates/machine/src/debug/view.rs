//! The debugger's views of the machine: registers, descriptor tables, the TLB, page
//! walks, memory and disassembly. Every view reads without side effects.

use std::fmt::Write;

use iced_x86::{Formatter, Instruction, IntelFormatter, NasmFormatter};
use trapeze_cpu::{attr, cr0, cr4, dump::flag_names, efer, gpr, sreg, Cpu, Segment};
use trapeze_mmu::paging::{pte, Mode};
use trapeze_mmu::Access;

use super::command::Syntax;
use crate::platform::Platform;

/// Bit names of a register, lowest first.
type Bits = &'static [(u64, &'static str)];

const CR0_BITS: Bits = &[
    (cr0::PE, "PE"),
    (cr0::MP, "MP"),
    (cr0::EM, "EM"),
    (cr0::TS, "TS"),
    (cr0::ET, "ET"),
    (cr0::NE, "NE"),
    (cr0::WP, "WP"),
    (cr0::AM, "AM"),
    (cr0::NW, "NW"),
    (cr0::CD, "CD"),
    (cr0::PG, "PG"),
];
const CR4_BITS: Bits = &[
    (1 << 0, "VME"),
    (1 << 1, "PVI"),
    (cr4::TSD, "TSD"),
    (1 << 3, "DE"),
    (cr4::PSE, "PSE"),
    (cr4::PAE, "PAE"),
    (1 << 6, "MCE"),
    (cr4::PGE, "PGE"),
    (1 << 8, "PCE"),
    (cr4::OSFXSR, "OSFXSR"),
    (cr4::OSXMMEXCPT, "OSXMMEXCPT"),
];
const EFER_BITS: Bits = &[
    (efer::SCE, "SCE"),
    (efer::LME, "LME"),
    (efer::LMA, "LMA"),
    (efer::NXE, "NXE"),
];
/// Paging-structure entry bits (SDM Vol.3 Tables 4-4 to 4-20).
const PTE_BITS: Bits = &[
    (pte::P, "P"),
    (pte::RW, "RW"),
    (pte::US, "US"),
    (pte::PWT, "PWT"),
    (pte::PCD, "PCD"),
    (pte::A, "A"),
    (pte::D, "D"),
    (pte::PS, "PS"),
    (pte::G, "G"),
    (pte::XD, "XD"),
];

fn bit_names(v: u64, bits: Bits) -> String {
    let names: Vec<&str> = bits
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join(" ")
}

/// The hidden attributes of a segment register in words.
fn seg_attr(s: &Segment) -> String {
    let a = s.attr;
    if a & attr::P == 0 {
        return "not present".into();
    }
    let kind = if a & attr::S == 0 {
        format!("system type {}", a & 0xF)
    } else if a & attr::CODE != 0 {
        format!(
            "code{}{}",
            if a & attr::RW != 0 { " r" } else { "" },
            if a & attr::DC != 0 { " conforming" } else { "" }
        )
    } else {
        format!(
            "data{}{}",
            if a & attr::RW != 0 { " w" } else { "" },
            if a & attr::DC != 0 { " down" } else { "" }
        )
    };
    let size = if a & attr::L != 0 {
        "64-bit"
    } else if a & attr::DB != 0 {
        "32-bit"
    } else {
        "16-bit"
    };
    format!(
        "{kind} dpl={} {size}{}",
        s.dpl(),
        if a & attr::G != 0 { " G" } else { "" }
    )
}

fn seg_line(name: &str, s: &Segment) -> String {
    format!(
        "{name:<4}={:04x} base={:016x} limit={:08x} attr={:04x} [{}]\n",
        s.selector,
        s.base,
        s.limit,
        s.attr,
        seg_attr(s)
    )
}

/// `regs`.
pub fn regs(cpu: &Cpu) -> String {
    let mut s = String::new();
    for (names, vals) in gpr::NAMES.chunks(4).zip(cpu.gpr.chunks(4)) {
        let line: Vec<String> = names
            .iter()
            .zip(vals)
            .map(|(n, v)| format!("{n:<3}={v:016x}"))
            .collect();
        let _ = writeln!(s, "{}", line.join(" "));
    }
    let f = cpu.rflags();
    let _ = writeln!(
        s,
        "rip={:016x} rflags={:08x} [{}]",
        cpu.rip,
        f,
        flag_names(f)
    );
    for (i, n) in sreg::NAMES.iter().enumerate() {
        s += &seg_line(n, &cpu.seg[i]);
    }
    s += &seg_line("ldtr", &cpu.ldtr);
    s += &seg_line("tr", &cpu.tr);
    let _ = writeln!(
        s,
        "gdtr base={:016x} limit={:04x}  idtr base={:016x} limit={:04x}",
        cpu.gdtr.base, cpu.gdtr.limit, cpu.idtr.base, cpu.idtr.limit
    );
    let _ = writeln!(
        s,
        "cr0={:08x} [{}] cr2={:016x} cr3={:016x}",
        cpu.cr0,
        bit_names(cpu.cr0, CR0_BITS),
        cpu.cr2,
        cpu.cr3
    );
    let _ = writeln!(
        s,
        "cr4={:08x} [{}] efer={:x} [{}]",
        cpu.cr4,
        bit_names(cpu.cr4, CR4_BITS),
        cpu.efer,
        bit_names(cpu.efer, EFER_BITS)
    );
    let _ = writeln!(
        s,
        "cpl={} mode={} paging={} icount={}",
        cpu.cpl(),
        cpu.mode_name(),
        paging_name(cpu.mmu.paging().mode),
        cpu.icount
    );
    s
}

pub fn paging_name(m: Mode) -> &'static str {
    match m {
        Mode::Off => "off",
        Mode::Bits32 => "32-bit",
        Mode::Pae => "PAE",
        Mode::Level4 => "4-level",
    }
}

/// The registers whose changes each stop reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    vals: Vec<(&'static str, u64)>,
}

impl Snapshot {
    pub fn of(cpu: &Cpu) -> Self {
        let mut vals: Vec<(&'static str, u64)> = gpr::NAMES.iter().copied().zip(cpu.gpr).collect();
        vals.push(("rflags", cpu.rflags()));
        for (i, n) in sreg::NAMES.iter().enumerate() {
            vals.push((n, cpu.seg[i].selector as u64));
        }
        vals.extend([
            ("cr0", cpu.cr0),
            ("cr2", cpu.cr2),
            ("cr3", cpu.cr3),
            ("cr4", cpu.cr4),
            ("efer", cpu.efer),
        ]);
        Snapshot { vals }
    }

    /// "rax=0000000000000005 rflags=00000046" for the registers that differ.
    pub fn changes(&self, now: &Snapshot) -> String {
        let v: Vec<String> = self
            .vals
            .iter()
            .zip(&now.vals)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(_, (n, v))| format!("{n}={v:x}"))
            .collect();
        v.join(" ")
    }
}

/// Register names `set` and breakpoint conditions know: the GPRs at every width,
/// RIP and RFLAGS.
pub fn reg_value(cpu: &Cpu, name: &str) -> Option<u64> {
    match name {
        "rip" => Some(cpu.rip),
        "eip" => Some(cpu.rip & 0xFFFF_FFFF),
        "ip" => Some(cpu.rip & 0xFFFF),
        "rflags" | "eflags" | "flags" => Some(cpu.rflags()),
        _ => {
            let r = gpr_register(name)?;
            Some(cpu.reg::<u64>(r) & (u64::MAX >> (64 - r.size() * 8)))
        }
    }
}

fn gpr_register(name: &str) -> Option<iced_x86::Register> {
    iced_x86::Register::values().find(|r| r.is_gpr() && format!("{r:?}").eq_ignore_ascii_case(name))
}

/// `set REG VALUE`.
pub fn set_reg(cpu: &mut Cpu, name: &str, v: u64) -> Result<(), String> {
    match name {
        "rip" | "eip" | "ip" => cpu.rip = v,
        "rflags" | "eflags" | "flags" => cpu.set_rflags(v),
        _ => {
            let r = gpr_register(name).ok_or_else(|| format!("unknown register '{name}'"))?;
            match r.size() {
                1 => cpu.set_reg::<u8>(r, v as u8),
                2 => cpu.set_reg::<u16>(r, v as u16),
                4 => cpu.set_reg::<u32>(r, v as u32),
                _ => cpu.set_reg::<u64>(r, v),
            }
        }
    }
    Ok(())
}

/// An x87 register's value as an f64 (rounded; for display).
fn f80_value(signif: u64, sign_exp: u16) -> f64 {
    let sign = if sign_exp & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (sign_exp & 0x7FFF) as i32;
    if exp == 0x7FFF {
        return if signif << 1 == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    sign * (signif as f64) * 2f64.powi(exp - 16383 - 63)
}

/// `fpu`.
pub fn fpu(cpu: &Cpu) -> String {
    let x = &cpu.x87;
    let top = (x.sw >> 11) & 7;
    let mut s = format!(
        "fcw={:04x} fsw={:04x} (top={top}) ftw={:04x} fop={:04x} fip={:x} fdp={:x}\n",
        x.cw, x.sw, x.tag, x.fop, x.fip, x.fdp
    );
    for i in 0..8u16 {
        let r = (top + i) as usize & 7;
        let reg = x.regs[r];
        let tag = ["valid", "zero", "special", "empty"][(x.tag >> (2 * r) & 3) as usize];
        let _ = writeln!(
            s,
            "st{i}=r{r} {:04x}:{:016x} {:<7} {}",
            reg.sign_exp,
            reg.signif,
            tag,
            f80_value(reg.signif, reg.sign_exp)
        );
    }
    s
}

/// `sse`.
pub fn sse(cpu: &Cpu) -> String {
    let mut s = format!("mxcsr={:08x}\n", cpu.sse.mxcsr);
    for (i, v) in cpu.sse.xmm.iter().enumerate() {
        let _ = writeln!(s, "xmm{i:<2}={v:032x}");
    }
    s
}

/// `msr N`.
pub fn msr(cpu: &Cpu, index: u32) -> String {
    match cpu.rdmsr(index) {
        Ok(v) => format!("msr {index:#x} = {v:#018x}\n"),
        Err(_) => format!("msr {index:#x}: not implemented (RDMSR would #GP)\n"),
    }
}

/// A descriptor (8 bytes; system descriptors in IA-32e mode are 16) in words (SDM
/// Vol.3 3.4.5, 3.5, 6.11).
fn descriptor(d: u64, hi: u64, long: bool) -> String {
    let acc = (d >> 40) & 0xFF;
    let p = acc & 0x80 != 0;
    let dpl = (acc >> 5) & 3;
    let s = acc & 0x10 != 0;
    let ty = acc & 0xF;
    if !p && d == 0 {
        return "null".into();
    }
    let base = ((d >> 16) & 0xFF_FFFF) | ((d >> 56) << 24);
    let mut limit = (d & 0xFFFF) | ((d >> 32) & 0xF_0000);
    if d & (1 << 55) != 0 {
        limit = (limit << 12) | 0xFFF;
    }
    let present = if p { "P" } else { "not present" };
    if s {
        let kind = if ty & 8 != 0 { "code" } else { "data" };
        let bits = if d & (1 << 53) != 0 {
            "64-bit"
        } else if d & (1 << 54) != 0 {
            "32-bit"
        } else {
            "16-bit"
        };
        return format!(
            "{kind} type={ty:x} base={base:08x} limit={limit:08x} dpl={dpl} {bits} {present}"
        );
    }
    let gate = matches!(ty, 4 | 5 | 6 | 7 | 12 | 14 | 15);
    let name = SYSTEM_TYPES[ty as usize];
    if gate {
        let sel = (d >> 16) & 0xFFFF;
        let mut off = (d & 0xFFFF) | ((d >> 48) << 16);
        if long {
            off |= (hi & 0xFFFF_FFFF) << 32;
        }
        return format!("{name} {sel:04x}:{off:x} dpl={dpl} {present}");
    }
    let base = if long {
        base | (hi & 0xFFFF_FFFF) << 32
    } else {
        base
    };
    format!("{name} base={base:x} limit={limit:08x} dpl={dpl} {present}")
}

/// System descriptor types (SDM Vol.3 Table 3-2; IA-32e names where they differ
/// are the same slots).
const SYSTEM_TYPES: [&str; 16] = [
    "reserved",
    "tss16-avail",
    "ldt",
    "tss16-busy",
    "call-gate16",
    "task-gate",
    "int-gate16",
    "trap-gate16",
    "reserved",
    "tss-avail",
    "reserved",
    "tss-busy",
    "call-gate",
    "reserved",
    "int-gate",
    "trap-gate",
];

fn peek_u64(cpu: &Cpu, lin: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    cpu.peek(lin, &mut b).ok().map(|_| u64::from_le_bytes(b))
}

/// `gdt`.
pub fn gdt(cpu: &Cpu) -> String {
    let long = cpu.efer & efer::LMA != 0;
    let mut s = format!("gdt base={:x} limit={:x}\n", cpu.gdtr.base, cpu.gdtr.limit);
    let mut off = 0u64;
    while off + 7 <= cpu.gdtr.limit as u64 {
        let Some(d) = peek_u64(cpu, cpu.gdtr.base + off) else {
            let _ = writeln!(s, "{off:04x}: unreadable");
            break;
        };
        let system = d & (1 << 44) == 0 && d & (1 << 47) != 0;
        let hi = if long && system {
            peek_u64(cpu, cpu.gdtr.base + off + 8).unwrap_or(0)
        } else {
            0
        };
        let _ = writeln!(s, "{off:04x}: {d:016x} {}", descriptor(d, hi, long));
        off += if long && system { 16 } else { 8 };
    }
    s
}

/// `idt`: the real-mode IVT, or the present gates of the IDT.
pub fn idt(cpu: &Cpu) -> String {
    let mut s = format!("idt base={:x} limit={:x}\n", cpu.idtr.base, cpu.idtr.limit);
    if !cpu.protected() {
        for v in 0..=(cpu.idtr.limit as u64 / 4).min(255) {
            let mut b = [0u8; 4];
            if cpu.peek(cpu.idtr.base + v * 4, &mut b).is_err() {
                break;
            }
            let _ = writeln!(
                s,
                "{v:02x}: {:04x}:{:04x}",
                u16::from_le_bytes([b[2], b[3]]),
                u16::from_le_bytes([b[0], b[1]])
            );
        }
        return s;
    }
    let long = cpu.efer & efer::LMA != 0;
    let size = if long { 16 } else { 8 };
    for v in 0..=(cpu.idtr.limit as u64 / size).min(255) {
        let at = cpu.idtr.base + v * size;
        let (Some(d), hi) = (peek_u64(cpu, at), peek_u64(cpu, at + 8)) else {
            break;
        };
        if d & (1 << 47) != 0 {
            let _ = writeln!(s, "{v:02x}: {}", descriptor(d, hi.unwrap_or(0), long));
        }
    }
    s
}

/// `tlb`.
pub fn tlb(cpu: &Cpu) -> String {
    let entries = cpu.mmu.tlb_entries();
    let mut s = format!("{} entries\n", entries.len());
    for e in entries {
        let kind = match e.kind {
            Access::Read => "read",
            Access::Write => "write",
            Access::Fetch => "fetch",
        };
        let _ = writeln!(
            s,
            "{:016x} -> {:010x} {} {kind}{}{}",
            e.lin,
            e.phys,
            if e.user { "user" } else { "supervisor" },
            if e.global { " global" } else { "" },
            if e.large { " large-page" } else { "" }
        );
    }
    s
}

/// `translate ADDR`: the walk step by step.
pub fn translate(cpu: &Cpu, lin: u64) -> String {
    let paging = cpu.mmu.paging();
    let mut s = format!(
        "linear {lin:#x}, paging {}, cr3={:x}\n",
        paging_name(paging.mode),
        cpu.cr3
    );
    let (steps, result) = cpu.mmu.inspect(lin);
    if let Some(e) = steps.pdpte {
        let _ = writeln!(
            s,
            "  pdpte[{}] = {e:016x} [{}]",
            (lin >> 30) & 3,
            bit_names(e, PTE_BITS)
        );
    }
    for st in steps.entries() {
        let level = match (paging.mode, st.shift) {
            (_, 39) => "pml4e",
            (_, 30) => "pdpte",
            (_, 21 | 22) => "pde",
            _ => "pte",
        };
        let bits = if paging.mode == Mode::Bits32 { 10 } else { 9 };
        let _ = writeln!(
            s,
            "  {level}[{}] at {:#x} = {:0w$x} [{}]",
            (lin >> st.shift) & ((1 << bits) - 1),
            st.addr,
            st.entry,
            bit_names(st.entry, PTE_BITS),
            w = if paging.mode == Mode::Bits32 { 8 } else { 16 }
        );
    }
    match result {
        Ok(w) => {
            let _ = writeln!(
                s,
                "  -> physical {:#x} ({} KiB page{})",
                w.phys,
                (1u64 << w.page_shift) >> 10,
                if w.global { ", global" } else { "" }
            );
        }
        Err(trapeze_mmu::MemFault::Page { error_code, .. }) => {
            let _ = writeln!(s, "  -> #PF (error code {error_code:#x})");
        }
    }
    s
}

/// `x`: a hex dump with the address of each line.
pub fn hexdump(start: u64, bytes: &[u8], physical: bool) -> String {
    let mut s = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7F).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "{}{:016x}: {:<47}  {text}",
            if physical { "p:" } else { "" },
            start + 16 * i as u64,
            hex.join(" ")
        );
    }
    s
}

/// Disassemble one instruction: "bytes  text".
pub fn disas_one(insn: &Instruction, bytes: &[u8], syntax: Syntax) -> String {
    let mut text = String::new();
    match syntax {
        Syntax::Intel => IntelFormatter::new().format(insn, &mut text),
        Syntax::Nasm => NasmFormatter::new().format(insn, &mut text),
    }
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:<29} {text}", hex.join(" "))
}

/// The instruction at linear `lin` (with IP `ip`) as a line: "lin  bytes  text".
pub fn disas_at(cpu: &Cpu, lin: u64, ip: u64, syntax: Syntax) -> (String, usize) {
    let insn = cpu.decode_at(lin, ip);
    let mut bytes = vec![0u8; insn.len()];
    let _ = cpu.peek(lin, &mut bytes);
    let line = if insn.is_invalid() {
        format!("{lin:016x}  (bad or unreadable)")
    } else {
        format!("{lin:016x}  {}", disas_one(&insn, &bytes, syntax))
    };
    (line, insn.len().max(1))
}

/// `info devices`: the port and MMIO maps.
pub fn devices(p: &Platform) -> String {
    let mut s = String::from("I/O ports:\n");
    for (name, base, last) in p.ports.ranges() {
        let _ = writeln!(s, "  {base:04x}-{last:04x} {name}");
    }
    s += "MMIO:\n";
    for (name, base, last) in p.mmio.ranges() {
        let _ = writeln!(s, "  {base:08x}-{last:08x} {name}");
    }
    if let Some(f) = p.mmio.fallback_name() {
        let _ = writeln!(s, "  (unclaimed) {f}");
    }
    s
}
