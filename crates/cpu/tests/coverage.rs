//! "Every general-purpose integer instruction" (issue 2) and every x87, MMX, SSE and
//! SSE2 instruction (issue 5), checked against iced-x86's own tables rather than a list
//! of ours: every 1- and 2-byte opcode with a spread of prefixes and ModRM bytes is
//! decoded in 16-, 32- and 64-bit mode, and each instruction iced assigns to one of the
//! listed CPUID features must have a trapeze handler. The x87 of the 8087/287/387 and
//! P6 (FCMOVcc, FCOMI: iced's FPU + CMOV) and FXSAVE/FXRSTOR are probed over every
//! ModRM byte of D8-DF and 0F AE /0 /1.

use std::collections::BTreeSet;

use iced_x86::{CpuidFeature, Decoder, DecoderOptions};
use trapeze_cpu::exec::implemented;

/// CPUID features whose instructions are general-purpose integer instructions.
const INTEGER: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL486,
    CpuidFeature::CMOV,
    CpuidFeature::CX8,
    CpuidFeature::CMPXCHG16B,
    CpuidFeature::X64,
];

/// The x87 FPU and FXSAVE/FXRSTOR; FCMOVcc and FCOMI are FPU + CMOV in iced.
const X87: &[CpuidFeature] = &[
    CpuidFeature::FPU,
    CpuidFeature::FPU287,
    CpuidFeature::FPU387,
    CpuidFeature::FXSR,
    CpuidFeature::CMOV,
];

/// CPUID features of the x86-64 SIMD baseline (iced files the SSE integer extensions
/// of MMX registers, PAVGB..MOVNTQ, under SSE).
const SIMD: &[CpuidFeature] = &[
    CpuidFeature::MMX,
    CpuidFeature::SSE,
    CpuidFeature::SSE2,
    CpuidFeature::CLFSH,
];

#[test]
fn every_integer_instruction_has_a_handler() {
    let (seen, missing) = probe(INTEGER);
    assert!(
        seen > 10_000,
        "the probe decoded too few instructions: {seen}"
    );
    assert!(
        missing.is_empty(),
        "{} integer instruction forms without a handler: {missing:?}",
        missing.len()
    );
}

#[test]
fn every_mmx_sse_sse2_instruction_has_a_handler() {
    let (seen, missing) = probe(SIMD);
    assert!(
        seen > 5_000,
        "the probe decoded too few instructions: {seen}"
    );
    assert!(
        missing.is_empty(),
        "{} MMX/SSE/SSE2 instruction forms without a handler: {missing:?}",
        missing.len()
    );
}

#[test]
fn every_x87_instruction_has_a_handler() {
    let mut missing = BTreeSet::new();
    let mut seen = 0usize;
    for bits in [16u32, 32, 64] {
        for pre in [&[][..], &[0x66]] {
            let mut forms: Vec<Vec<u8>> = (0xD8..=0xDFu8)
                .flat_map(|op| (0..=255u8).map(move |m| vec![op, m]))
                .collect();
            forms.extend([0x00u8, 0x08].map(|m| vec![0x0F, 0xAE, m]));
            if bits == 64 {
                forms.extend([0x00u8, 0x08].map(|m| vec![0x48, 0x0F, 0xAE, m]));
            }
            for form in forms {
                let mut bytes = pre.to_vec();
                bytes.extend_from_slice(&form);
                bytes.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
                let Some(insn) = decode(bits, &bytes, X87) else {
                    continue;
                };
                seen += 1;
                if !implemented(&insn) {
                    missing.insert(format!("{:?}", insn.code()));
                }
            }
        }
    }
    assert!(
        seen > 3000,
        "the probe decoded too few instructions: {seen}"
    );
    assert!(
        missing.is_empty(),
        "{} x87 instruction forms without a handler: {missing:?}",
        missing.len()
    );
}

/// Decode `bytes` in `bits`-bit mode; None unless valid and every CPUID feature it
/// needs is in `features`.
fn decode(bits: u32, bytes: &[u8], features: &[CpuidFeature]) -> Option<iced_x86::Instruction> {
    let insn = Decoder::with_ip(bits, bytes, 0x1000, DecoderOptions::NONE).decode();
    (!insn.is_invalid() && insn.cpuid_features().iter().all(|f| features.contains(f)))
        .then_some(insn)
}

/// Decodes the probe set; returns how many instructions of `features` it found and the
/// codes of those without a handler.
fn probe(features: &[CpuidFeature]) -> (usize, BTreeSet<String>) {
    let prefixes: &[&[u8]] = &[
        &[],
        &[0x66],
        &[0x67],
        &[0x48],
        &[0x66, 0x48],
        &[0xF3],
        &[0xF2],
        &[0x40],
    ];
    let modrms = [
        0x00u8, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0xC0, 0xC8, 0xD0, 0xD8, 0xE0, 0xE8, 0xF0,
        0xF8, 0x04, 0x45, 0x84,
    ];
    let mut missing = BTreeSet::new();
    let mut seen = 0usize;
    for bits in [16u32, 32, 64] {
        for pre in prefixes {
            if bits != 64 && pre.iter().any(|b| b & 0xF0 == 0x40) {
                continue; // REX is INC/DEC outside 64-bit mode
            }
            for two_byte in [false, true] {
                for op in 0..=255u8 {
                    for &modrm in &modrms {
                        let mut bytes = pre.to_vec();
                        if two_byte {
                            bytes.push(0x0F);
                        }
                        bytes.extend_from_slice(&[
                            op, modrm, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                        ]);
                        let Some(insn) = decode(bits, &bytes, features) else {
                            continue;
                        };
                        seen += 1;
                        if !implemented(&insn) {
                            missing.insert(format!("{:?}", insn.code()));
                        }
                    }
                }
            }
        }
    }
    (seen, missing)
}
