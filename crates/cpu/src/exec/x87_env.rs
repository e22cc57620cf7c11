//! x87 control instructions and the state images: FNINIT FNCLEX FLDCW FNSTCW FNSTSW,
//! FNSTENV/FLDENV and FNSAVE/FRSTOR in their four layouts (16/32-bit operand size ×
//! real/protected mode; SDM Vol.1 8.1.10, Figures 8-9 to 8-12), and FXSAVE/FXRSTOR
//! with their REX.W forms (SDM Vol.2A FXSAVE, Tables 3-53 and 3-56).

use iced_x86::Mnemonic;
use trapeze_mmu::Bus;

use crate::cpu::Cpu;
use crate::decode_cache::Entry;
use crate::exec::x87::{f80_bytes, f80_from, read_bytes, write_parts};
use crate::exec::Table;
use crate::fault::Fault;
use crate::fpu::{cw, sw, tag, MXCSR_MASK};
use crate::state::cr4;

pub(crate) fn register(t: &mut Table) {
    use Mnemonic::*;
    t.on(Fninit, |_| Some(fninit));
    t.on(Fnclex, |_| Some(fnclex));
    t.on(Fldcw, |_| Some(fldcw));
    t.on(Fnstcw, |_| Some(fnstcw));
    t.on(Fnstsw, |i| {
        Some(if i.op0_kind() == iced_x86::OpKind::Register {
            fnstsw_ax
        } else {
            fnstsw_mem
        })
    });
    t.on(Fnstenv, |i| Some(env_size(i, fnstenv::<14>, fnstenv::<28>)));
    t.on(Fldenv, |i| Some(env_size(i, fldenv::<14>, fldenv::<28>)));
    t.on(Fnsave, |i| Some(env_size(i, fnsave::<94>, fnsave::<108>)));
    t.on(Frstor, |i| Some(env_size(i, frstor::<94>, frstor::<108>)));
    t.on(Fxsave, |_| Some(fxsave::<false>));
    t.on(Fxsave64, |_| Some(fxsave::<true>));
    t.on(Fxrstor, |_| Some(fxrstor::<false>));
    t.on(Fxrstor64, |_| Some(fxrstor::<true>));
}

/// The 14-byte layouts with a 16-bit operand size, the 28-byte ones otherwise.
fn env_size(
    i: &iced_x86::Instruction,
    small: crate::exec::Handler,
    big: crate::exec::Handler,
) -> crate::exec::Handler {
    match i.memory_size() {
        iced_x86::MemorySize::FpuEnv14 | iced_x86::MemorySize::FpuState94 => small,
        _ => big,
    }
}

fn mem_at(cpu: &Cpu, e: &Entry) -> (usize, u64) {
    (e.mem.seg as usize, cpu.ea(&e.mem))
}

/// FNINIT (SDM Vol.2A FINIT/FNINIT): CW 037Fh, all tags empty, the rest 0.
fn init(cpu: &mut Cpu) {
    let x = &mut cpu.x87;
    x.cw = cw::INIT;
    x.sw = 0;
    x.tag = 0xFFFF;
    x.fop = 0;
    x.fip = 0;
    x.fcs = 0;
    x.fdp = 0;
    x.fds = 0;
}

fn fninit(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    init(cpu);
    Ok(())
}

/// FNCLEX: the exception flags, SF, ES and B.
fn fnclex(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    cpu.x87.sw &= !(0x3F | sw::SF | sw::ES | sw::B);
    Ok(())
}

fn set_cw(cpu: &mut Cpu, v: u16) {
    cpu.x87.cw = (v & cw::WRITABLE) | cw::FIXED1;
    cpu.fpu_update_summary();
}

/// FLDCW: unmasking a pending exception sets ES; #MF follows at the next waiting
/// instruction (SDM Vol.2A FLDCW).
fn fldcw(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    cpu.fpu_pending()?;
    let (seg, off) = mem_at(cpu, e);
    let v = cpu.read_mem::<u16>(bus, seg, off)?;
    set_cw(cpu, v);
    Ok(())
}

fn fnstcw(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    let (seg, off) = mem_at(cpu, e);
    cpu.write_mem::<u16>(bus, seg, off, cpu.x87.cw)
}

fn fnstsw_mem(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    let (seg, off) = mem_at(cpu, e);
    cpu.write_mem::<u16>(bus, seg, off, cpu.x87.sw)
}

fn fnstsw_ax(cpu: &mut Cpu, _: &mut dyn Bus, _: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    cpu.set_gpr::<u16>(0, cpu.x87.sw);
    Ok(())
}

/// Real-address and virtual-8086 mode use the real-mode layouts, with 20-bit linear
/// instruction and operand pointers (SDM Vol.1 8.1.10).
fn real_layout(cpu: &Cpu) -> bool {
    !cpu.protected() || cpu.v86()
}

/// The environment image (the first `N` of 14 or 28 bytes).
fn env_image<const N: usize>(cpu: &Cpu) -> [u8; 28] {
    let x = &cpu.x87;
    let tw = cpu.full_tag_word();
    let mut b = [0u8; 28];
    let lin = |sel: u16, off: u64| ((sel as u32) << 4).wrapping_add(off as u32);
    let fop = x.fop & 0x7FF;
    if N == 14 {
        let words: [u16; 7] = if real_layout(cpu) {
            let (ip, dp) = (lin(x.fcs, x.fip), lin(x.fds, x.fdp));
            [
                x.cw,
                x.sw,
                tw,
                ip as u16,
                ((ip >> 16) as u16 & 0xF) << 12 | fop,
                dp as u16,
                ((dp >> 16) as u16 & 0xF) << 12,
            ]
        } else {
            [x.cw, x.sw, tw, x.fip as u16, x.fcs, x.fdp as u16, x.fds]
        };
        for (k, w) in words.iter().enumerate() {
            b[2 * k..2 * k + 2].copy_from_slice(&w.to_le_bytes());
        }
    } else {
        // The reserved upper halves read as FFFFh, as stored by Intel processors.
        let hi = 0xFFFF_0000u32;
        let dwords: [u32; 7] = if real_layout(cpu) {
            let (ip, dp) = (lin(x.fcs, x.fip), lin(x.fds, x.fdp));
            [
                hi | x.cw as u32,
                hi | x.sw as u32,
                hi | tw as u32,
                hi | (ip & 0xFFFF),
                (ip >> 16 & 0xFFFF) << 12 | fop as u32,
                hi | (dp & 0xFFFF),
                (dp >> 16 & 0xFFFF) << 12,
            ]
        } else {
            [
                hi | x.cw as u32,
                hi | x.sw as u32,
                hi | tw as u32,
                x.fip as u32,
                (fop as u32) << 16 | x.fcs as u32,
                x.fdp as u32,
                hi | x.fds as u32,
            ]
        };
        for (k, d) in dwords.iter().enumerate() {
            b[4 * k..4 * k + 4].copy_from_slice(&d.to_le_bytes());
        }
    }
    b
}

/// Load an environment image of `N` (14 or 28) bytes. The tag word decides only which
/// registers are empty: the other tags follow the register contents.
fn load_env<const N: usize>(cpu: &mut Cpu, b: &[u8]) {
    let w = |k: usize| u16::from_le_bytes([b[k], b[k + 1]]);
    let d = |k: usize| u32::from_le_bytes(b[k..k + 4].try_into().expect("4 bytes"));
    let real = real_layout(cpu);
    let x = &mut cpu.x87;
    let tw;
    if N == 14 {
        x.cw = w(0);
        x.sw = w(2);
        tw = w(4);
        if real {
            x.fip = (w(6) as u64) | ((w(8) as u64 >> 12) << 16);
            x.fop = w(8) & 0x7FF;
            x.fcs = 0;
            x.fdp = (w(10) as u64) | ((w(12) as u64 >> 12) << 16);
            x.fds = 0;
        } else {
            (x.fip, x.fcs, x.fdp, x.fds) = (w(6) as u64, w(8), w(10) as u64, w(12));
        }
    } else {
        x.cw = w(0);
        x.sw = w(4);
        tw = w(8);
        if real {
            x.fip = (d(12) & 0xFFFF) as u64 | ((d(16) >> 12) as u64 & 0xFFFF) << 16;
            x.fop = d(16) as u16 & 0x7FF;
            x.fcs = 0;
            x.fdp = (d(20) & 0xFFFF) as u64 | ((d(24) >> 12) as u64 & 0xFFFF) << 16;
            x.fds = 0;
        } else {
            x.fip = d(12) as u64;
            x.fcs = w(16);
            x.fop = w(18) & 0x7FF;
            x.fdp = d(20) as u64;
            x.fds = w(24);
        }
    }
    x.cw = (x.cw & cw::WRITABLE) | cw::FIXED1;
    for r in 0..8 {
        let t = if (tw >> (2 * r)) & 3 == tag::EMPTY {
            tag::EMPTY
        } else {
            cpu.x87.regs[r].tag()
        };
        cpu.set_phys_tag(r, t);
    }
    cpu.fpu_update_summary();
}

/// FNSTENV: store the environment, then mask all exceptions, which clears ES (SDM
/// Vol.2A FSTENV).
fn fnstenv<const N: usize>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    let img = env_image::<N>(cpu);
    let (seg, off) = mem_at(cpu, e);
    write_parts(cpu, bus, seg, off, &[(0, &img[..N])])?;
    cpu.x87.cw |= cw::MASKS;
    cpu.fpu_update_summary();
    Ok(())
}

fn fldenv<const N: usize>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    cpu.fpu_pending()?;
    let (seg, off) = mem_at(cpu, e);
    let b = read_bytes::<N>(cpu, bus, seg, off)?;
    load_env::<N>(cpu, &b);
    Ok(())
}

/// FNSAVE: the environment and ST(0)..ST(7), then FNINIT.
fn fnsave<const N: usize>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    let env = N - 80;
    let img = if env == 14 {
        env_image::<14>(cpu)
    } else {
        env_image::<28>(cpu)
    };
    let mut regs = [0u8; 80];
    for i in 0..8 {
        regs[10 * i..10 * i + 10].copy_from_slice(&f80_bytes(cpu.st(i)));
    }
    let (seg, off) = mem_at(cpu, e);
    write_parts(cpu, bus, seg, off, &[(0, &img[..env]), (env, &regs)])?;
    init(cpu);
    Ok(())
}

fn frstor<const N: usize>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    cpu.x87_available()?;
    cpu.fpu_pending()?;
    let (seg, off) = mem_at(cpu, e);
    let b = read_bytes::<N>(cpu, bus, seg, off)?;
    let env = N - 80;
    // TOP comes from the image's status word: load it first so that ST(i) is right.
    let sw_at = if env == 14 { 2 } else { 4 };
    cpu.x87.sw = u16::from_le_bytes([b[sw_at], b[sw_at + 1]]);
    for i in 0..8 {
        let r = cpu.st_phys(i);
        cpu.x87.regs[r] = f80_from(&b[env + 10 * i..env + 10 * i + 10]);
    }
    if env == 14 {
        load_env::<14>(cpu, &b);
    } else {
        load_env::<28>(cpu, &b);
    }
    Ok(())
}

/// FXSAVE/FXRSTOR checks: #NM for CR0.EM/TS, #GP(0) for a memory operand that is not
/// 16-byte aligned.
fn fx_operand(cpu: &mut Cpu, e: &Entry) -> Result<(usize, u64), Fault> {
    cpu.x87_available()?;
    let (seg, off) = mem_at(cpu, e);
    if cpu.linear(seg, off, 512)? & 15 != 0 {
        return Err(Fault::gp(0));
    }
    Ok((seg, off))
}

/// XMM registers in the image: 16 in 64-bit mode, 8 otherwise.
fn xmm_count(cpu: &Cpu) -> usize {
    if cpu.long64() {
        16
    } else {
        8
    }
}

/// FXSAVE (`W`: REX.W, 64-bit FIP/FDP without selectors). With CR4.OSFXSR clear,
/// MXCSR and the XMM registers are not saved (the implementation-dependent case of
/// SDM Vol.2A FXSAVE, as Bochs does it).
fn fxsave<const W: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (seg, off) = fx_operand(cpu, e)?;
    let x = &cpu.x87;
    let mut head = [0u8; 24];
    head[0..2].copy_from_slice(&x.cw.to_le_bytes());
    head[2..4].copy_from_slice(&x.sw.to_le_bytes());
    head[4] = cpu.abridged_tag();
    head[6..8].copy_from_slice(&(x.fop & 0x7FF).to_le_bytes());
    if W {
        head[8..16].copy_from_slice(&x.fip.to_le_bytes());
        head[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        head[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        head[12..14].copy_from_slice(&x.fcs.to_le_bytes());
        head[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        head[20..22].copy_from_slice(&x.fds.to_le_bytes());
    }
    let mut regs = [0u8; 128];
    for i in 0..8 {
        regs[16 * i..16 * i + 10].copy_from_slice(&f80_bytes(cpu.st(i)));
    }
    let mut sse = [0u8; 8 + 256];
    sse[0..4].copy_from_slice(&cpu.sse.mxcsr.to_le_bytes());
    sse[4..8].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    let n = xmm_count(cpu);
    for j in 0..n {
        sse[8 + 16 * j..24 + 16 * j].copy_from_slice(&cpu.sse.xmm[j].to_le_bytes());
    }
    if cpu.cr4 & cr4::OSFXSR != 0 {
        write_parts(
            cpu,
            bus,
            seg,
            off,
            &[
                (0, &head),
                (24, &sse[..8]),
                (32, &regs),
                (160, &sse[8..8 + 16 * n]),
            ],
        )
    } else {
        write_parts(cpu, bus, seg, off, &[(0, &head), (32, &regs)])
    }
}

/// FXRSTOR: #GP(0) for MXCSR bits outside MXCSR_MASK (when CR4.OSFXSR is set).
fn fxrstor<const W: bool>(cpu: &mut Cpu, bus: &mut dyn Bus, e: &Entry) -> Result<(), Fault> {
    let (seg, off) = fx_operand(cpu, e)?;
    let b = read_bytes::<416>(cpu, bus, seg, off)?;
    let w = |k: usize| u16::from_le_bytes([b[k], b[k + 1]]);
    let d = |k: usize| u32::from_le_bytes(b[k..k + 4].try_into().expect("4 bytes"));
    let q = |k: usize| u64::from_le_bytes(b[k..k + 8].try_into().expect("8 bytes"));
    let osfxsr = cpu.cr4 & cr4::OSFXSR != 0;
    let mxcsr = d(24);
    if osfxsr && mxcsr & !MXCSR_MASK != 0 {
        return Err(Fault::gp(0));
    }
    let x = &mut cpu.x87;
    x.cw = (w(0) & cw::WRITABLE) | cw::FIXED1;
    x.sw = w(2);
    x.fop = w(6) & 0x7FF;
    if W {
        (x.fip, x.fdp) = (q(8), q(16));
    } else {
        (x.fip, x.fcs, x.fdp, x.fds) = (d(8) as u64, w(12), d(16) as u64, w(20));
    }
    for i in 0..8 {
        let r = cpu.st_phys(i);
        cpu.x87.regs[r] = f80_from(&b[32 + 16 * i..42 + 16 * i]);
    }
    cpu.set_abridged_tag(b[4]);
    cpu.fpu_update_summary();
    if osfxsr {
        cpu.sse.mxcsr = mxcsr;
        for j in 0..xmm_count(cpu) {
            let k = 160 + 16 * j;
            cpu.sse.xmm[j] = u128::from_le_bytes(b[k..k + 16].try_into().expect("16 bytes"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::fault::vector;
    use crate::fpu::F80;
    use crate::state::{cr0, cr4};
    use crate::testutil::{exec, raised, read, read16, real_mode};

    /// The 16-bit real-mode environment (SDM Vol.1 Figure 8-11): FIP and FDP as 20-bit
    /// linear addresses, FOP beside FIP[19:16]; full tags recomputed from the contents.
    #[test]
    fn fnstenv_real_mode_16_bit_layout() {
        let mut cpu = real_mode(&[]);
        cpu.seg[crate::sreg::CS].selector = 0x1234;
        exec(&mut cpu, &[0xDB, 0xE3]);
        exec(&mut cpu, &[0xD9, 0xEE]); // FLDZ: R7 zero
        exec(&mut cpu, &[0xD9, 0xE8]); // FLD1: R6 valid
        exec(&mut cpu, &[0xD9, 0x36, 0x00, 0x20]); // FNSTENV [2000h]
        let words: Vec<u16> = (0..7).map(|k| read16(&cpu, 0x2000 + 2 * k)).collect();
        let ip = (0x1234u32 << 4) + 0x1000;
        assert_eq!(
            words,
            [
                0x037F,
                0x3000,
                0x4FFF,
                ip as u16,
                ((ip >> 16) as u16) << 12 | 0x1E8,
                0,
                0
            ]
        );
        assert_eq!(cpu.x87.cw, 0x037F, "masks already all set");
    }

    #[test]
    fn fnsave_frstor_round_trip_and_fnsave_reinitializes() {
        let mut cpu = real_mode(&[]);
        exec(&mut cpu, &[0xDB, 0xE3]);
        exec(&mut cpu, &[0xD9, 0xEB]); // FLDPI
        exec(&mut cpu, &[0xD9, 0xE8]); // FLD1
        let (regs, sw, tag) = (cpu.x87.regs, cpu.x87.sw, cpu.full_tag_word());
        exec(&mut cpu, &[0x66, 0xDD, 0x36, 0x00, 0x30]); // FNSAVE [3000h], 108 bytes
        assert_eq!((cpu.x87.cw, cpu.x87.tag), (0x037F, 0xFFFF));
        let st0: [u8; 10] = read(&cpu, 0x3000 + 28);
        assert_eq!(
            st0[8..],
            [0xFF, 0x3F],
            "ST(0) = 1.0 after the 28-byte header"
        );
        exec(&mut cpu, &[0x66, 0xDD, 0x26, 0x00, 0x30]); // FRSTOR
        assert_eq!(
            (cpu.x87.regs, cpu.x87.sw, cpu.full_tag_word()),
            (regs, sw, tag)
        );
        assert_eq!(
            cpu.st(1).signif,
            0xC90F_DAA2_2168_C235,
            "FLDPI rounded to nearest"
        );
    }

    #[test]
    fn fxsave_fxrstor_checks_and_image() {
        let mut cpu = real_mode(&[]);
        cpu.cr4 |= cr4::OSFXSR;
        exec(&mut cpu, &[0xDB, 0xE3]);
        exec(&mut cpu, &[0xD9, 0xE8]);
        cpu.sse.xmm[3] = 0x1111_2222_3333_4444_5555_6666_7777_8888;
        // FXSAVE [2008h]: not 16-byte aligned.
        assert!(raised(
            exec(&mut cpu, &[0x0F, 0xAE, 0x06, 0x08, 0x20]),
            vector::GP
        ));
        cpu.cr0 |= cr0::TS;
        assert!(raised(
            exec(&mut cpu, &[0x0F, 0xAE, 0x06, 0x00, 0x20]),
            vector::NM
        ));
        cpu.cr0 &= !cr0::TS;
        assert!(exec(&mut cpu, &[0x0F, 0xAE, 0x06, 0x00, 0x20]).is_empty());
        assert_eq!(read16(&cpu, 0x2000), 0x037F);
        assert_eq!(read::<1>(&cpu, 0x2004), [0x80], "abridged tag: R7 in use");
        assert_eq!(read::<4>(&cpu, 0x2018), 0x1F80u32.to_le_bytes());
        assert_eq!(read::<4>(&cpu, 0x201C), 0xFFFFu32.to_le_bytes());
        assert_eq!(read::<2>(&cpu, 0x2028), [0xFF, 0x3F], "ST(0) = 1.0");
        assert_eq!(read::<16>(&cpu, 0x20D0), cpu.sse.xmm[3].to_le_bytes());
        // FXRSTOR restores it; a reserved MXCSR bit is #GP(0).
        cpu.x87.regs = [F80::ZERO; 8];
        cpu.sse.xmm[3] = 0;
        assert!(exec(&mut cpu, &[0x0F, 0xAE, 0x0E, 0x00, 0x20]).is_empty());
        assert_eq!(
            (cpu.st(0), cpu.sse.xmm[3] >> 64),
            (F80::ONE, 0x1111_2222_3333_4444)
        );
        cpu.write_phys(0x201A, &[0x01]).unwrap();
        assert!(raised(
            exec(&mut cpu, &[0x0F, 0xAE, 0x0E, 0x00, 0x20]),
            vector::GP
        ));
        // CR4.OSFXSR clear: the XMM area is left alone.
        cpu.cr4 &= !cr4::OSFXSR;
        cpu.write_phys(0x2400, &[0xAA; 512]).unwrap();
        assert!(exec(&mut cpu, &[0x0F, 0xAE, 0x06, 0x00, 0x24]).is_empty());
        assert_eq!(read::<16>(&cpu, 0x24A0), [0xAA; 16]);
        assert_eq!(read::<4>(&cpu, 0x2418), [0xAA; 4]);
    }
}
