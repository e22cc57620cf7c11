; serial_echo.asm - COM1 receive interrupts: echo serial input on the debug console.
;
; The 16550A at 3F8h runs at 115200 8N1 with its FIFOs off (the guest never
; writes FCR, so no byte that arrived before it started is cleared), OUT2 set
; (which gates IRQ4 on a PC) and only the received-data interrupt enabled.
; IRQ4 comes through the master 8259 (vector 24h); the handler reads IIR, then
; every byte while LSR.DR is set, and EOIs.  The main loop HLTs and echoes each
; byte upper-cased to port E9h until it sees '.', then prints the IIR value the
; handler saw first (0004: received data available) and exits.
;
; Input: serial_echo.input on stdin (trapeze: the file as stdin; QEMU: -serial
; stdio with the same file as stdin).

        bits    16
        org     0x7c00

COM1    equ     0x3f8

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        mov     word [0x24*4], irq4
        mov     [0x24*4+2], ax
        mov     si, init
        mov     cx, (init_end - init) / 3
.out:   lodsw
        mov     dx, ax
        lodsb
        out     dx, al
        loop    .out
        xor     bx, bx                  ; BX: next byte to echo
        sti
.wait:  hlt
.next:  cmp     bx, [head]
        je      .wait
        mov     al, [buf+bx]
        inc     bx
        cmp     al, '.'
        je      .done
        cmp     al, 'a'
        jb      .put
        cmp     al, 'z'
        ja      .put
        sub     al, 'a' - 'A'
.put:   out     0xe9, al
        jmp     .next
.done:  cli
        call    nl
        mov     ax, [iir]
        call    hex16
        call    nl
        mov     al, 0
        out     0xf4, al
        hlt

irq4:   push    ax
        push    dx
        push    bx
        mov     dx, COM1 + 2
        in      al, dx                  ; IIR
        cmp     byte [iir], 0
        jne     .lsr
        mov     [iir], al
.lsr:   mov     dx, COM1 + 5
        in      al, dx
        test    al, 1                   ; LSR.DR
        jz      .eoi
        mov     dx, COM1
        in      al, dx
        mov     bx, [head]
        mov     [buf+bx], al
        inc     byte [head]             ; a 256-byte ring
        jmp     .lsr
.eoi:   mov     al, 0x20
        out     0x20, al
        pop     bx
        pop     dx
        pop     ax
        iret

%define LIB16_NO_PUTS
%include "lib16.inc"

; (port, value): the 8259 pair (bases 20h/28h, only IRQ4 open), then COM1:
; divisor latch 1 (115200), 8N1, DTR RTS OUT2, IER = received data.
init:   dw 0x20
        db 0x11
        dw 0x21
        db 0x20
        dw 0x21
        db 0x04
        dw 0x21
        db 0x01
        dw 0x21
        db 0xef
        dw 0xa0
        db 0x11
        dw 0xa1
        db 0x28
        dw 0xa1
        db 0x02
        dw 0xa1
        db 0x01
        dw 0xa1
        db 0xff
        dw COM1 + 3
        db 0x80
        dw COM1
        db 0x01
        dw COM1 + 1
        db 0x00
        dw COM1 + 3
        db 0x03
        dw COM1 + 4
        db 0x0b
        dw COM1 + 1
        db 0x01
init_end:
head:   dw      0
iir:    dw      0

        times 510 - ($ - $$) db 0
        dw      0xaa55

buf     equ     0x6000
