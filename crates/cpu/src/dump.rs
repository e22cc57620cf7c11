//! A readable dump of the architectural state (triple-fault reports, the debugger).

use std::fmt::Write;

use crate::cpu::Cpu;
use crate::flags::rf;
use crate::state::{gpr, sreg};

/// RFLAGS bits by name, lowest first.
const FLAG_NAMES: &[(u64, &str)] = &[
    (rf::CF, "CF"),
    (rf::PF, "PF"),
    (rf::AF, "AF"),
    (rf::ZF, "ZF"),
    (rf::SF, "SF"),
    (rf::TF, "TF"),
    (rf::IF, "IF"),
    (rf::DF, "DF"),
    (rf::OF, "OF"),
    (rf::NT, "NT"),
    (rf::RF, "RF"),
    (rf::VM, "VM"),
    (rf::AC, "AC"),
    (rf::VIF, "VIF"),
    (rf::VIP, "VIP"),
    (rf::ID, "ID"),
];

/// "CF ZF IF IOPL=0": the set flags of an RFLAGS value.
pub fn flag_names(f: u64) -> String {
    let mut s: Vec<String> = FLAG_NAMES
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    s.push(format!("IOPL={}", (f & rf::IOPL) >> 12));
    s.join(" ")
}

impl Cpu {
    /// Multi-line register dump.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for row in gpr::NAMES.chunks(4).zip(self.gpr.chunks(4)) {
            let line: Vec<String> = row
                .0
                .iter()
                .zip(row.1)
                .map(|(n, v)| format!("{n:>3}={v:016x}"))
                .collect();
            let _ = writeln!(s, "{}", line.join(" "));
        }
        let f = self.rflags();
        let _ = writeln!(
            s,
            "rip={:016x} rflags={:08x} [{}]",
            self.rip,
            f,
            flag_names(f)
        );
        for (i, name) in sreg::NAMES.iter().enumerate() {
            let g = &self.seg[i];
            let _ = writeln!(
                s,
                "{name}={:04x} base={:016x} limit={:08x} attr={:04x}",
                g.selector, g.base, g.limit, g.attr
            );
        }
        let _ = writeln!(
            s,
            "cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}",
            self.cr0, self.cr2, self.cr3, self.cr4, self.efer
        );
        let _ = writeln!(
            s,
            "gdtr={:x}/{:x} idtr={:x}/{:x} cpl={} mode={}-bit a20={} icount={}",
            self.gdtr.base,
            self.gdtr.limit,
            self.idtr.base,
            self.idtr.limit,
            self.cpl(),
            self.code_bits(),
            if self.mmu.a20_enabled() { "on" } else { "off" },
            self.icount
        );
        s
    }
}
