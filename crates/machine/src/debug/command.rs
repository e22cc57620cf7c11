//! The debugger's command language: one command per line, parsed into `Command`.
//!
//! Numbers are decimal or hex with `0x`. An address is linear (`0x7c00`), physical
//! (`p:0x7c00`), or segment:offset (`0x07c0:0x0000`, `cs:0x10`).

use std::path::PathBuf;

use trapeze_cpu::sreg;

use crate::config::parse_addr;

/// An address as the user wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    Linear(u64),
    Physical(u64),
    /// A segment register's hidden base, or a selector (real mode: selector * 16;
    /// protected mode: the base of its GDT/LDT descriptor), plus an offset.
    SegOff(Seg, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg {
    Reg(usize),
    Selector(u16),
}

/// A breakpoint condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    Cpl(u8),
    /// A register (by `set` name) equals a value.
    Reg(String, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Read,
    Write,
    Access,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Catch {
    Exception(u8),
    Port(u16),
    /// A VMM exit reason as `stats` names it (hlt, device-stop, shutdown, slice-end).
    Exit(String),
    Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Intel,
    Nasm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Step(u64),
    Next,
    Continue,
    Until(Addr),
    Break(Addr, Option<Cond>),
    Watch(WatchKind, Addr, u64),
    Catch(Catch),
    Delete(u32),
    InfoBreakpoints,
    InfoDevices,
    Regs,
    Fpu,
    Sse,
    Msr(u32),
    Gdt,
    Idt,
    Tlb,
    Translate(u64),
    Examine(Addr, u64),
    Disas(Option<Addr>, u64),
    Set(String, u64),
    Write(Addr, Vec<u8>),
    TraceOn(PathBuf),
    TraceOff,
    Stats,
    Syntax(Syntax),
    Help,
    Quit,
}

/// The help text: one line per command.
pub const HELP: &str = "\
step [N]                 run N instructions (default 1)
next                     step over CALL and REP string instructions
continue                 run until a breakpoint, watchpoint, catch, the end or Ctrl-C
until ADDR               run until CS:RIP reaches ADDR
break ADDR [if COND]     breakpoint; COND is cpl==N or REG==VALUE
watch|rwatch|awatch ADDR [LEN]   stop after a write|read|access of LEN bytes (default 1)
catch exception N | io PORT | exit REASON | mode
delete N                 remove breakpoint/watchpoint/catch N
info breakpoints|devices
regs | fpu | sse | msr N | gdt | idt | tlb
translate ADDR           the page walk of a linear address
x ADDR [N]               N bytes (default 64) of memory
disas [ADDR] [N]         N instructions (default 8) at ADDR (default CS:RIP)
set REG VALUE            write a register (rax..r15, eax.., ax.., rip, rflags)
write ADDR BYTES..       write bytes (hex) to memory
trace on FILE | trace off   one line per retired instruction
syntax intel|nasm        disassembly syntax
stats | help | quit
ADDR: 0x7c00 (linear), p:0x7c00 (physical), 0x07c0:0x0 or cs:0x10 (segment:offset)
";

pub fn number(s: &str) -> Result<u64, String> {
    parse_addr(s)
}

pub fn parse_address(s: &str) -> Result<Addr, String> {
    if let Some(p) = s.strip_prefix("p:") {
        return Ok(Addr::Physical(number(p)?));
    }
    if let Some((seg, off)) = s.split_once(':') {
        let seg = match sreg::NAMES.iter().position(|n| n.eq_ignore_ascii_case(seg)) {
            Some(r) => Seg::Reg(r),
            None => Seg::Selector(
                u16::try_from(number(seg)?).map_err(|_| format!("'{seg}' is not a selector"))?,
            ),
        };
        return Ok(Addr::SegOff(seg, number(off)?));
    }
    Ok(Addr::Linear(number(s)?))
}

fn parse_cond(s: &str) -> Result<Cond, String> {
    let (lhs, rhs) = s
        .split_once("==")
        .ok_or_else(|| format!("condition '{s}': expected cpl==N or REG==VALUE"))?;
    let (lhs, rhs) = (lhs.trim().to_ascii_lowercase(), rhs.trim());
    if lhs == "cpl" {
        let n = number(rhs)?;
        return u8::try_from(n)
            .ok()
            .filter(|&n| n < 4)
            .map(Cond::Cpl)
            .ok_or_else(|| format!("CPL {n} is not 0..3"));
    }
    Ok(Cond::Reg(lhs, number(rhs)?))
}

fn arg<'a>(words: &[&'a str], i: usize, what: &str) -> Result<&'a str, String> {
    words
        .get(i)
        .copied()
        .ok_or_else(|| format!("missing {what}"))
}

fn opt_number(words: &[&str], i: usize, default: u64) -> Result<u64, String> {
    words.get(i).map_or(Ok(default), |w| number(w))
}

/// Parse one line; `Ok(None)` for a blank line or a comment (`#`).
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(&cmd) = words.first() else {
        return Ok(None);
    };
    let c = match cmd {
        "s" | "step" | "stepi" | "si" => Command::Step(opt_number(&words, 1, 1)?),
        "n" | "next" => Command::Next,
        "c" | "continue" => Command::Continue,
        "until" => Command::Until(parse_address(arg(&words, 1, "address")?)?),
        "b" | "break" => {
            let addr = parse_address(arg(&words, 1, "address")?)?;
            let cond = match words.get(2) {
                None => None,
                Some(&"if") => Some(parse_cond(&words[3..].join(""))?),
                Some(w) => return Err(format!("expected 'if', found '{w}'")),
            };
            Command::Break(addr, cond)
        }
        "watch" | "rwatch" | "awatch" => {
            let kind = match cmd {
                "watch" => WatchKind::Write,
                "rwatch" => WatchKind::Read,
                _ => WatchKind::Access,
            };
            let len = opt_number(&words, 2, 1)?;
            if len == 0 {
                return Err("a watched range needs at least one byte".into());
            }
            Command::Watch(kind, parse_address(arg(&words, 1, "address")?)?, len)
        }
        "catch" => Command::Catch(match arg(&words, 1, "what to catch")? {
            "exception" => {
                let v = number(arg(&words, 2, "vector")?)?;
                Catch::Exception(u8::try_from(v).map_err(|_| format!("vector {v} > 255"))?)
            }
            "io" => {
                let p = number(arg(&words, 2, "port")?)?;
                Catch::Port(u16::try_from(p).map_err(|_| format!("port {p} > 0xffff"))?)
            }
            "exit" => Catch::Exit(arg(&words, 2, "exit reason")?.to_string()),
            "mode" => Catch::Mode,
            w => return Err(format!("catch {w}: expected exception, io, exit or mode")),
        }),
        "d" | "delete" => Command::Delete(
            u32::try_from(number(arg(&words, 1, "number")?)?).map_err(|e| e.to_string())?,
        ),
        "info" => match arg(&words, 1, "breakpoints or devices")? {
            "b" | "breakpoints" => Command::InfoBreakpoints,
            "devices" => Command::InfoDevices,
            w => return Err(format!("info {w}: expected breakpoints or devices")),
        },
        "regs" | "r" => Command::Regs,
        "fpu" => Command::Fpu,
        "sse" => Command::Sse,
        "msr" => Command::Msr(
            u32::try_from(number(arg(&words, 1, "MSR index")?)?).map_err(|e| e.to_string())?,
        ),
        "gdt" => Command::Gdt,
        "idt" => Command::Idt,
        "tlb" => Command::Tlb,
        "translate" => Command::Translate(number(arg(&words, 1, "linear address")?)?),
        "x" => Command::Examine(
            parse_address(arg(&words, 1, "address")?)?,
            opt_number(&words, 2, 64)?,
        ),
        "disas" | "u" => Command::Disas(
            words.get(1).map(|w| parse_address(w)).transpose()?,
            opt_number(&words, 2, 8)?,
        ),
        "set" => Command::Set(
            arg(&words, 1, "register")?.to_ascii_lowercase(),
            number(arg(&words, 2, "value")?)?,
        ),
        "write" => {
            let addr = parse_address(arg(&words, 1, "address")?)?;
            let bytes = words[2..]
                .iter()
                .map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "bytes are hex, e.g. 'write 0x7e00 90 90 cc'".to_string())?;
            if bytes.is_empty() {
                return Err("missing bytes".into());
            }
            Command::Write(addr, bytes)
        }
        "trace" => match arg(&words, 1, "on FILE or off")? {
            "on" => Command::TraceOn(PathBuf::from(arg(&words, 2, "file")?)),
            "off" => Command::TraceOff,
            w => return Err(format!("trace {w}: expected on FILE or off")),
        },
        "syntax" => Command::Syntax(match arg(&words, 1, "intel or nasm")? {
            "intel" => Syntax::Intel,
            "nasm" => Syntax::Nasm,
            w => return Err(format!("syntax {w}: expected intel or nasm")),
        }),
        "stats" => Command::Stats,
        "help" | "h" | "?" => Command::Help,
        "q" | "quit" | "exit" => Command::Quit,
        w => return Err(format!("unknown command '{w}' (try help)")),
    };
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0x7c00"), Ok(Addr::Linear(0x7c00)));
        assert_eq!(parse_address("p:4096"), Ok(Addr::Physical(4096)));
        assert_eq!(
            parse_address("cs:0x10"),
            Ok(Addr::SegOff(Seg::Reg(sreg::CS), 0x10))
        );
        assert_eq!(
            parse_address("0x07c0:0x5"),
            Ok(Addr::SegOff(Seg::Selector(0x7c0), 5))
        );
        assert!(parse_address("0x10000:0").is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(parse("  # comment"), Ok(None));
        assert_eq!(parse("step 5"), Ok(Some(Command::Step(5))));
        assert_eq!(
            parse("break 0x100 if cpl == 3"),
            Ok(Some(Command::Break(
                Addr::Linear(0x100),
                Some(Cond::Cpl(3))
            )))
        );
        assert_eq!(
            parse("break 0x100 if eax==0x2a"),
            Ok(Some(Command::Break(
                Addr::Linear(0x100),
                Some(Cond::Reg("eax".into(), 42))
            )))
        );
        assert_eq!(
            parse("awatch p:0x500 4"),
            Ok(Some(Command::Watch(
                WatchKind::Access,
                Addr::Physical(0x500),
                4
            )))
        );
        assert_eq!(
            parse("write 0x10 90 cc"),
            Ok(Some(Command::Write(Addr::Linear(0x10), vec![0x90, 0xcc])))
        );
        assert!(parse("break 0x100 if cpl==4").is_err());
        assert!(parse("frobnicate").is_err());
    }
}
