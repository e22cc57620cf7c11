; pit_irq.asm - PIT interrupts through the 8259 PIC, taken with HLT.
;
; Programs the master PIC (ICW1-4: edge, cascade, vector base 0x20, 8086 mode)
; with only IRQ0 unmasked, the slave fully masked, and PIT channel 0 in mode 2
; (rate generator) with divisor 1193 (about 1 kHz). It installs a real-mode
; handler for vector 0x20 that counts ticks and sends a non-specific EOI, then
; STIs and HLTs until 10 ticks have arrived. It prints the tick count, then
; masks IRQ0 and checks that the PIC's ISR is clear (OCW3 read ISR), and exits.
;
; Under trapeze the clock is virtual: every HLT skips ahead to the next PIT
; deadline, and the whole run takes the same number of instructions each time.

        bits    16
        org     0x7c00

N       equ     10

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 0x7000
        mov     word [ticks], 0
        ; IVT entry 0x20 -> tick
        mov     word [0x20*4], tick
        mov     word [0x20*4+2], 0
        ; master PIC: ICW1 edge+ICW4, ICW2 base 0x20, ICW3 slave on IRQ2, ICW4 8086
        mov     al, 0x11
        out     0x20, al
        mov     al, 0x20
        out     0x21, al
        mov     al, 0x04
        out     0x21, al
        mov     al, 0x01
        out     0x21, al
        mov     al, 0xfe        ; OCW1: only IRQ0
        out     0x21, al
        ; slave PIC: base 0x28, cascade identity 2, all masked
        mov     al, 0x11
        out     0xa0, al
        mov     al, 0x28
        out     0xa1, al
        mov     al, 0x02
        out     0xa1, al
        mov     al, 0x01
        out     0xa1, al
        mov     al, 0xff
        out     0xa1, al
        ; PIT channel 0, lo/hi, mode 2, binary; divisor 1193
        mov     al, 0x34
        out     0x43, al
        mov     ax, 1193
        out     0x40, al
        mov     al, ah
        out     0x40, al
        sti
.wait:  hlt
        cmp     word [ticks], N
        jb      .wait
        cli
        mov     si, msg
        call    puts
        mov     ax, [ticks]
        call    hex16
        call    nl
        mov     al, 0xff        ; mask everything
        out     0x21, al
        mov     al, 0x0b        ; OCW3: read ISR
        out     0x20, al
        in      al, 0x20
        mov     ah, 0
        mov     si, isrmsg
        call    puts
        call    hex16
        call    nl
        mov     al, 0
        out     0xf4, al
        hlt

tick:   push    ax
        inc     word [ticks]
        mov     al, 0x20        ; non-specific EOI
        out     0x20, al
        pop     ax
        iret

%include "lib16.inc"

msg:    db      "ticks=", 0
isrmsg: db      "isr=", 0
ticks:  dw      0

        times 510 - ($ - $$) db 0
        dw      0xaa55
