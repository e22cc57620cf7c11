//! `trace on FILE`: one line per retired instruction with its linear address, bytes,
//! disassembly and the registers it changed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use iced_x86::Instruction;

use super::command::Syntax;
use super::view::{disas_one, Snapshot};

pub struct Trace {
    out: BufWriter<File>,
}

impl Trace {
    pub fn create(path: &Path) -> std::io::Result<Trace> {
        Ok(Trace {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Log one step: the instruction at `lin`, and what changed. `event` names an
    /// exception or interrupt delivered during the step.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        lin: u64,
        insn: &Instruction,
        bytes: &[u8],
        syntax: Syntax,
        before: &Snapshot,
        after: &Snapshot,
        event: Option<&str>,
    ) -> std::io::Result<()> {
        write!(self.out, "{lin:016x}  {}", disas_one(insn, bytes, syntax))?;
        let changes = before.changes(after);
        if !changes.is_empty() {
            write!(self.out, "  ; {changes}")?;
        }
        if let Some(e) = event {
            write!(self.out, "  ; {e}")?;
        }
        writeln!(self.out)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
