; triple.asm - a triple fault.
;
; Prints "before fault", enters 32-bit protected mode (as pmode.asm), loads an
; IDT with limit 0 and executes INT3.  Vector 3's gate lies beyond the IDT limit,
; so the CPU raises #GP; #GP's gate (vector 13) is beyond the limit too, which
; makes it a double fault; #DF's gate (vector 8) is beyond the limit as well:
; triple fault, i.e. shutdown.  A PC resets on shutdown; QEMU with -no-reboot
; exits instead (status 0), and trapeze reports the shutdown.
;
; Expected output: "before fault\n" and nothing else.  If the CPU somehow goes
; on after INT3 it prints "after fault" and debug-exits with 1 (status 3).

        bits    16
        org     0x7c00

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000

        mov     si, s_before
        call    puts

        in      al, 0x92        ; fast A20
        or      al, 2
        and     al, 0xfe
        out     0x92, al
        lgdt    [gdt_desc]
        mov     eax, cr0
        or      al, 1           ; CR0.PE
        mov     cr0, eax
        jmp     CODE_SEL:pm32

        bits    32
pm32:   mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x7000

        lidt    [idt_desc]      ; base 0, limit 0: no gate is reachable
        int3                    ; #BP -> #GP -> #DF -> shutdown

        mov     esi, s_after    ; not reached
.put:   lodsb
        test    al, al
        jz      .exit
        out     0xe9, al
        jmp     .put
.exit:  mov     al, 1           ; isa-debug-exit: status 3 = failure
        out     0xf4, al
.stop:  hlt
        jmp     .stop

        bits    16
%include "lib16.inc"

gdt:    dq      0
        dw      0xffff, 0x0000  ; flat 4 GiB code, 32-bit
        db      0x00, 0x9a, 0xcf, 0x00
        dw      0xffff, 0x0000  ; flat 4 GiB data
        db      0x00, 0x92, 0xcf, 0x00
gdt_end:
CODE_SEL equ    0x08
DATA_SEL equ    0x10
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt
idt_desc:
        dw      0               ; limit 0
        dd      0               ; base 0

s_before: db "before fault", 10, 0
s_after:  db "after fault", 10, 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
