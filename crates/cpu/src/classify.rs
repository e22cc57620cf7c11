//! The Popek–Goldberg classification of every instruction (DESIGN.md §3).
//!
//! Popek and Goldberg (1974): an instruction is *privileged* if it traps when run
//! outside supervisor mode; *control-sensitive* if it changes the configuration of the
//! machine's resources; *behaviour-sensitive* if its result depends on that
//! configuration (mode, privilege level, location). Theorem 1: a machine can be
//! virtualized by trap-and-emulate if every sensitive instruction is privileged. The
//! x86 fails it: the *critical* instructions are sensitive but do not trap (Robin and
//! Irvine, USENIX Security 2000).
//!
//! One table below gives each instruction its class; the decoder consults it to make
//! privileged instructions fault at CPL > 0 (and, in strict mode, every sensitive one),
//! the statistics count by it, and `trapeze classify` prints it.

use std::sync::OnceLock;

use iced_x86::{Code, Mnemonic};

/// Class bits of one instruction form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class {
    /// #GP(0) when executed at CPL > 0.
    pub privileged: bool,
    /// #GP(0) when executed at CPL > IOPL (and, for port I/O, not allowed by the TSS
    /// I/O bitmap): traps in a deprivileged guest whose monitor keeps IOPL at 0.
    pub iopl_sensitive: bool,
    pub control_sensitive: bool,
    pub behavior_sensitive: bool,
    /// #UD in virtual-8086 mode, which the SDM checks before the privilege level
    /// (LLDT, LTR): there the handler decides, not the CPL.
    pub ud_in_v86: bool,
    pub reason: &'static str,
}

impl Class {
    pub fn sensitive(&self) -> bool {
        self.control_sensitive || self.behavior_sensitive
    }

    /// Sensitive, yet runs without trapping in a deprivileged guest (IOPL 0): the
    /// instructions that break Theorem 1.
    pub fn critical(&self) -> bool {
        self.sensitive() && !self.privileged && !self.iopl_sensitive
    }

    /// Index into the statistics by class: 0 privileged, 1 critical, 2 other sensitive.
    pub fn stat_index(&self) -> Option<usize> {
        if self.privileged {
            Some(0)
        } else if self.critical() {
            Some(1)
        } else if self.sensitive() {
            Some(2)
        } else {
            None
        }
    }

    pub const STAT_NAMES: [&'static str; 3] = ["privileged", "critical", "iopl-sensitive"];
}

const P: u8 = 1;
const IO: u8 = 2;
const C: u8 = 4;
const B: u8 = 8;
const V86_UD: u8 = 16;

enum Key {
    Mn(&'static [Mnemonic]),
    Codes(&'static [Code]),
}

struct Row(Key, u8, &'static str);

use Mnemonic as M;

/// Every sensitive or privileged instruction; anything not listed is innocuous.
/// `Codes` rows come before `Mn` rows for the same mnemonic (MOV, PUSH, POP, JMP, CALL).
const TABLE: &[Row] = &[
    Row(
        Key::Codes(&[Code::Mov_cr_r32, Code::Mov_cr_r64]),
        P | C,
        "writes a control register (mode, paging)",
    ),
    Row(
        Key::Codes(&[Code::Mov_r32_cr, Code::Mov_r64_cr]),
        P | B,
        "reads a control register",
    ),
    Row(
        Key::Codes(&[Code::Mov_dr_r32, Code::Mov_dr_r64]),
        P | C,
        "writes a debug register",
    ),
    Row(
        Key::Codes(&[Code::Mov_r32_dr, Code::Mov_r64_dr]),
        P | B,
        "reads a debug register",
    ),
    Row(
        Key::Codes(&[
            Code::Mov_Sreg_rm16,
            Code::Mov_Sreg_r32m16,
            Code::Mov_Sreg_r64m16,
        ]),
        C | B,
        "loads a segment descriptor; its checks depend on CPL",
    ),
    Row(
        Key::Codes(&[
            Code::Mov_rm16_Sreg,
            Code::Mov_r32m16_Sreg,
            Code::Mov_r64m16_Sreg,
        ]),
        B,
        "stores a selector, whose RPL reveals the CPL",
    ),
    Row(
        Key::Codes(&[
            Code::Pushw_ES,
            Code::Pushd_ES,
            Code::Pushw_CS,
            Code::Pushd_CS,
            Code::Pushw_SS,
            Code::Pushd_SS,
            Code::Pushw_DS,
            Code::Pushd_DS,
            Code::Pushw_FS,
            Code::Pushd_FS,
            Code::Pushq_FS,
            Code::Pushw_GS,
            Code::Pushd_GS,
            Code::Pushq_GS,
        ]),
        B,
        "pushes a selector, whose RPL reveals the CPL",
    ),
    Row(
        Key::Codes(&[
            Code::Popw_ES,
            Code::Popd_ES,
            Code::Popw_SS,
            Code::Popd_SS,
            Code::Popw_DS,
            Code::Popd_DS,
            Code::Popw_FS,
            Code::Popd_FS,
            Code::Popq_FS,
            Code::Popw_GS,
            Code::Popd_GS,
            Code::Popq_GS,
        ]),
        C | B,
        "loads a segment descriptor; its checks depend on CPL",
    ),
    Row(
        Key::Codes(&[
            Code::Jmp_ptr1616,
            Code::Jmp_ptr1632,
            Code::Jmp_m1616,
            Code::Jmp_m1632,
            Code::Jmp_m1664,
            Code::Call_ptr1616,
            Code::Call_ptr1632,
            Code::Call_m1616,
            Code::Call_m1632,
            Code::Call_m1664,
        ]),
        C | B,
        "far transfer: loads CS, through gates and TSSs, with CPL-dependent checks",
    ),
    Row(
        Key::Mn(&[M::Retf]),
        C | B,
        "far return: loads CS and may change privilege level",
    ),
    Row(
        Key::Mn(&[M::Int, M::Int3, M::Into, M::Int1]),
        C | B,
        "enters a handler through the IDT: gates, privilege checks, stack switch",
    ),
    Row(
        Key::Mn(&[M::Iret, M::Iretd, M::Iretq]),
        C | B,
        "restores CS and FLAGS (IF, IOPL) according to CPL",
    ),
    Row(
        Key::Mn(&[M::Popf, M::Popfd, M::Popfq]),
        C | B,
        "loads FLAGS: IF and IOPL change at CPL 0, are silently kept elsewhere",
    ),
    Row(
        Key::Mn(&[M::Pushf, M::Pushfd, M::Pushfq]),
        B,
        "pushes FLAGS, showing the real IF and IOPL",
    ),
    Row(
        Key::Mn(&[M::Sgdt, M::Sidt]),
        B,
        "stores GDTR/IDTR: shows where the monitor put the real tables",
    ),
    Row(
        Key::Mn(&[M::Sldt, M::Str]),
        B,
        "stores LDTR/TR selectors of the real machine",
    ),
    Row(Key::Mn(&[M::Smsw]), B, "stores CR0's low bits (PE, TS...)"),
    Row(
        Key::Mn(&[M::Lar, M::Lsl, M::Verr, M::Verw]),
        B,
        "answers depend on CPL against the descriptor's DPL",
    ),
    Row(
        Key::Mn(&[M::Lds, M::Les, M::Lfs, M::Lgs, M::Lss]),
        C | B,
        "loads a segment descriptor; its checks depend on CPL",
    ),
    Row(
        Key::Mn(&[M::Syscall, M::Sysenter]),
        C,
        "enters CPL 0 at an address from MSRs",
    ),
    Row(
        Key::Mn(&[M::Sysret, M::Sysretq, M::Sysexit, M::Sysexitq]),
        P | C,
        "returns to user mode",
    ),
    Row(Key::Mn(&[M::Hlt]), P | C, "stops the processor"),
    Row(
        Key::Mn(&[M::Lgdt, M::Lidt]),
        P | C,
        "loads a descriptor-table register",
    ),
    Row(
        Key::Mn(&[M::Lldt, M::Ltr]),
        P | C | V86_UD,
        "loads a descriptor-table register",
    ),
    Row(Key::Mn(&[M::Lmsw, M::Clts]), P | C, "writes CR0"),
    Row(
        Key::Mn(&[M::Invd, M::Wbinvd, M::Invlpg, M::Invpcid]),
        P | C,
        "cache or TLB control",
    ),
    Row(
        Key::Mn(&[M::Rdmsr]),
        P | B,
        "reads a model-specific register",
    ),
    Row(
        Key::Mn(&[M::Wrmsr]),
        P | C,
        "writes a model-specific register",
    ),
    Row(
        Key::Mn(&[M::Swapgs]),
        P | C,
        "exchanges GS.base with KERNEL_GS_BASE",
    ),
    Row(
        Key::Mn(&[M::Rdpmc]),
        P | B,
        "reads a performance counter (CPL 0 unless CR4.PCE)",
    ),
    Row(Key::Mn(&[M::Xsetbv]), P | C, "writes XCR0"),
    Row(
        Key::Mn(&[M::Clac, M::Stac]),
        P | C,
        "changes EFLAGS.AC for SMAP",
    ),
    Row(
        Key::Mn(&[M::Cli, M::Sti]),
        IO | C,
        "changes IF: #GP at CPL > IOPL",
    ),
    Row(
        Key::Mn(&[
            M::In,
            M::Out,
            M::Insb,
            M::Insw,
            M::Insd,
            M::Outsb,
            M::Outsw,
            M::Outsd,
        ]),
        IO | C | B,
        "device access: #GP at CPL > IOPL unless the TSS I/O bitmap allows the port",
    ),
    Row(
        Key::Mn(&[M::Rdtsc, M::Rdtscp]),
        B,
        "reads the time-stamp counter (CPL 0 only with CR4.TSD)",
    ),
    Row(
        Key::Mn(&[
            M::Vmrun,
            M::Vmload,
            M::Vmsave,
            M::Vmmcall,
            M::Stgi,
            M::Clgi,
            M::Skinit,
            M::Invlpga,
        ]),
        P | C,
        "SVM: runs or manages a guest",
    ),
];

fn class_of(row: &Row) -> Class {
    let Row(_, bits, reason) = *row;
    Class {
        privileged: bits & P != 0,
        iopl_sensitive: bits & IO != 0,
        control_sensitive: bits & C != 0,
        behavior_sensitive: bits & B != 0,
        ud_in_v86: bits & V86_UD != 0,
        reason,
    }
}

/// The class of every `Code`, built once from `TABLE`.
fn classes() -> &'static [Class] {
    static CLASSES: OnceLock<Vec<Class>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        Code::values()
            .map(|code| {
                let by_code = TABLE
                    .iter()
                    .find(|r| matches!(r.0, Key::Codes(cs) if cs.contains(&code)));
                let by_mn = || {
                    TABLE
                        .iter()
                        .find(|r| matches!(r.0, Key::Mn(ms) if ms.contains(&code.mnemonic())))
                };
                by_code.or_else(by_mn).map_or(
                    Class {
                        reason: "neither reads nor changes machine configuration",
                        ..Class::default()
                    },
                    class_of,
                )
            })
            .collect()
    })
}

/// The Popek–Goldberg class of an instruction form.
pub fn classify(code: Code) -> Class {
    classes()[code as usize]
}

/// The Robin–Irvine list of x86 instructions that are sensitive but unprivileged.
pub const ROBIN_IRVINE: &[Mnemonic] = &[
    M::Sgdt,
    M::Sidt,
    M::Sldt,
    M::Smsw,
    M::Str,
    M::Pushf,
    M::Pushfd,
    M::Popf,
    M::Popfd,
    M::Lar,
    M::Lsl,
    M::Verr,
    M::Verw,
    M::Push,
    M::Pop,
    M::Mov,
    M::Call,
    M::Jmp,
    M::Retf,
    M::Int,
    M::Iret,
    M::Iretd,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The x87 and FXSAVE/FXRSTOR work on the FPU's own state: no form is in the
    /// table, so all are innocuous (WAIT, an 8086 instruction, is too).
    #[test]
    fn x87_instructions_are_innocuous() {
        use iced_x86::CpuidFeature as F;
        let x87 = [F::FPU, F::FPU287, F::FPU387, F::FXSR];
        let codes: Vec<Code> = Code::values()
            .filter(|c| c.cpuid_features().iter().any(|f| x87.contains(f)))
            .collect();
        assert!(codes.len() > 150, "{} x87 forms", codes.len());
        for c in codes.into_iter().chain([Code::Wait]) {
            assert!(!classify(c).sensitive() && !classify(c).privileged, "{c:?}");
        }
    }

    #[test]
    fn robin_irvine_instructions_are_critical() {
        // Each named instruction has at least one critical form (PUSH/POP/MOV: the
        // segment-register forms; CALL/JMP: the far forms).
        for m in ROBIN_IRVINE {
            assert!(
                Code::values().any(|c| c.mnemonic() == *m && classify(c).critical()),
                "{m:?} has no critical form"
            );
        }
        assert!(classify(Code::Mov_rm16_Sreg).critical());
        assert!(!classify(Code::Mov_r32_rm32).sensitive());
        assert!(!classify(Code::Push_r64).sensitive());
        assert!(classify(Code::Jmp_m1632).critical() && !classify(Code::Jmp_rel32_32).sensitive());
    }

    #[test]
    fn every_critical_instruction_is_accounted_for() {
        // Beyond Robin and Irvine's list, the critical set holds only the other forms of
        // what they name (INT3/INTO/INT1, IRETQ, POPFQ/PUSHFQ, LDS.., RETF) and the
        // fast system calls, which post-date their paper.
        let extra = [
            M::Int3,
            M::Into,
            M::Int1,
            M::Iretq,
            M::Popfq,
            M::Pushfq,
            M::Lds,
            M::Les,
            M::Lfs,
            M::Lgs,
            M::Lss,
            M::Syscall,
            M::Sysenter,
            M::Rdtsc,
            M::Rdtscp,
        ];
        for c in Code::values().filter(|c| classify(*c).critical()) {
            let m = c.mnemonic();
            assert!(
                ROBIN_IRVINE.contains(&m) || extra.contains(&m),
                "{c:?} is critical but unexplained"
            );
        }
    }

    #[test]
    fn privileged_instructions_are_privileged() {
        for c in [
            Code::Hlt,
            Code::Lgdt_m1632,
            Code::Mov_cr_r32,
            Code::Wrmsr,
            Code::Invlpg_m,
            Code::Lidt_m1632,
            Code::Clts,
        ] {
            let k = classify(c);
            assert!(k.privileged && k.sensitive() && !k.critical(), "{c:?}");
        }
        assert!(!classify(Code::Add_rm32_r32).sensitive());
        assert!(classify(Code::Cli).iopl_sensitive && !classify(Code::Cli).critical());
    }
}
