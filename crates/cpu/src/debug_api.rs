//! What a debugger needs to look at the CPU without disturbing it: memory through the
//! current page tables with no side effect, the instruction at CS:RIP, the memory it
//! is about to touch, and the name of the mode.

use iced_x86::{Decoder, DecoderOptions, Instruction, InstructionInfoFactory, OpAccess};

use crate::cpu::Cpu;
use crate::state::{efer, sreg};

/// One memory operand of an instruction, as a linear range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemAccess {
    pub lin: u64,
    pub len: u64,
    pub read: bool,
    pub write: bool,
}

impl Cpu {
    /// The linear address of CS:RIP.
    pub fn pc_linear(&self) -> u64 {
        let lin = self.seg[sreg::CS].base.wrapping_add(self.rip);
        if self.long64() {
            lin
        } else {
            lin & 0xFFFF_FFFF
        }
    }

    /// Read linear memory as a supervisor read would, with no side effect (see
    /// `Mmu::peek`); `Err` holds the first address that cannot be read.
    pub fn peek(&self, lin: u64, out: &mut [u8]) -> Result<(), u64> {
        self.mmu.peek(lin, out)
    }

    /// Decode the instruction at linear address `lin` with the current code size.
    /// Bytes that cannot be read end the buffer (the result is then invalid).
    pub fn decode_at(&self, lin: u64, ip: u64) -> Instruction {
        let mut bytes = [0u8; 15];
        let mut n = bytes.len();
        if self.peek(lin, &mut bytes).is_err() {
            // The instruction may end before the bytes that cannot be read.
            n = 0;
            while n < bytes.len() && self.peek(lin + n as u64, &mut bytes[n..n + 1]).is_ok() {
                n += 1;
            }
        }
        Decoder::with_ip(self.code_bits(), &bytes[..n], ip, DecoderOptions::NONE).decode()
    }

    /// The instruction at CS:RIP.
    pub fn next_instruction(&self) -> Instruction {
        self.decode_at(self.pc_linear(), self.rip)
    }

    /// The explicit memory operands `insn` accesses with the current registers (for
    /// watchpoints; a REP string instruction reports its next iteration).
    pub fn memory_accesses(&self, insn: &Instruction) -> Vec<MemAccess> {
        let mut factory = InstructionInfoFactory::new();
        factory
            .info(insn)
            .used_memory()
            .iter()
            .filter_map(|m| {
                let (read, write) = match m.access() {
                    OpAccess::Read | OpAccess::CondRead => (true, false),
                    OpAccess::Write | OpAccess::CondWrite => (false, true),
                    OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                    _ => return None,
                };
                let lin = m.try_virtual_address(0, |r, _, _| Some(self.register_for_address(r)))?;
                Some(MemAccess {
                    lin,
                    len: m.memory_size().size() as u64,
                    read,
                    write,
                })
            })
            .collect()
    }

    /// The operating mode by the SDM's names: real, virtual-8086, protected (16/32-bit
    /// code), compatibility, 64-bit.
    pub fn mode_name(&self) -> &'static str {
        if !self.protected() {
            "real"
        } else if self.v86() {
            "virtual-8086"
        } else if self.long64() {
            "64-bit"
        } else if self.efer & efer::LMA != 0 {
            "compatibility"
        } else if self.code_bits() == 32 {
            "protected 32-bit"
        } else {
            "protected 16-bit"
        }
    }
}
