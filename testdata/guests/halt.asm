; halt.asm - a guest that stops with CLI; HLT.
;
; Prints "halting" and halts with interrupts disabled, without using the
; debug-exit port.  Nothing can wake the CPU (no NMI source is programmed), so
; this is the end of the run: trapeze reports a halted CPU and exits 0.
; QEMU just sits there (that is the reference behaviour: nothing more is
; printed); qemu-expected.sh stops it with a short timeout.

        bits    16
        org     0x7c00

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000

        mov     si, s_halt
        call    puts
        cli
.stop:  hlt                     ; IF=0: sleep forever
        jmp     .stop           ; (only an NMI or SMI could get here)

%include "lib16.inc"

s_halt: db "halting", 10, 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
