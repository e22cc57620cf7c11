; rtc.asm - the MC146818 RTC/CMOS: date and time in BCD, binary and 12-hour
; formats, the memory-size bytes, and IRQ8 through the slave 8259 for the
; periodic, update-ended and alarm interrupts.
;
; The RTC starts at 2024-01-01 00:00:00 (trapeze's fixed power-on date; QEMU runs
; with -rtc base=2024-01-01T00:00:00).  Output, one value per line:
;   year month day hour minute      BCD, 24-hour, read with UIP clear
;   year                            binary (DM=1): 0018
;   hour                            12-hour BCD: midnight is 12 AM, 0012
;   CMOS 15h 16h 17h 18h 30h 31h 34h 35h   memory sizes for 16 MiB of RAM
;   periodic: interrupts and register C (rate 6, 1024 Hz): 0008 00C0
;   update-ended: register C 0090
;   alarm two seconds ahead: register C 00B0 (the update ends in the same
;   cycle), then whether the seconds equal the alarm seconds: 0001

        bits    16
        org     0x7c00

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        mov     word [0x28*4], irq8
        mov     [0x28*4+2], ax
        ; 8259 pair: bases 20h/28h, cascade on IRQ2, only IRQ2 and IRQ8 open
        mov     si, pic
        mov     cx, 10
.pic:   lodsw
        mov     dx, ax
        lodsb
        out     dx, al
        loop    .pic
        mov     ax, 0x020b              ; B = 02h: 24-hour, BCD, no interrupts
        call    wr
.uip:   mov     al, 0x0a
        call    rd
        test    al, 0x80
        jnz     .uip
        mov     si, date
        mov     cx, 5
        call    rds
        mov     ax, 0x060b              ; binary
        call    wr
        mov     cl, 1
        call    rds
        mov     ax, 0x000b              ; 12-hour BCD
        call    wr
        mov     cl, 1 + 8
        call    rds
        ; periodic: A = 26h (32.768 kHz, rate 6), B = 42h (PIE)
        mov     ax, 0x260a
        call    wr
        mov     bx, 0x4208
        call    irqs
        ; rate 0: no more PF.  (The datasheet sets PF at the rate even with PIE
        ; clear; QEMU 7.2 does not, so the register C values below avoid it.)
        mov     ax, 0x200a
        call    wr
        ; update-ended: B = 12h (UIE)
        mov     bx, 0x1201
        call    irqs
        ; alarm: seconds now + 2 (BCD), minutes and hours "don't care"
        xor     al, al
        call    rd
        add     al, 2
        daa
        mov     ah, al
        push    ax
        mov     al, 1
        call    wr
        mov     ax, 0xc003
        call    wr
        mov     al, 5
        call    wr
        mov     bx, 0x2201
        call    irqs
        xor     al, al
        call    rd
        pop     bx
        cmp     al, bh
        sete    al
        call    show
        mov     al, 0
        out     0xf4, al
        hlt

; Write AH to CMOS register AL / read register AL into AL.
wr:     out     0x70, al
        mov     al, ah
        out     0x71, al
        ret
rd:     out     0x70, al
        in      al, 0x71
        ret

; Print the registers whose numbers are the CX bytes at SI, one per line.
rds:    push    cx
        lodsb
        call    rd
        call    show
        pop     cx
        loop    rds
        ret

; B = BH, then HLT until BL interrupts came; B = 02h; print the count and C.
irqs:   mov     word [count], 0
        mov     al, 0x0b
        mov     ah, bh
        call    wr
        sti
.h:     hlt
        cmp     [count], bl
        jb      .h
        cli
        mov     ax, 0x020b
        call    wr
        mov     ax, [count]
        call    hex16
        mov     al, ' '
        call    putc
        mov     al, [regc]
show:   mov     ah, 0
        call    hex16
        jmp     nl

irq8:   push    ax
        mov     al, 0x0c                ; reading C acknowledges the interrupt
        call    rd
        mov     [regc], al
        inc     word [count]
        mov     al, 0x20
        out     0xa0, al
        out     0x20, al
        pop     ax
        iret

%define LIB16_NO_PUTS
%include "lib16.inc"

; (port, value) pairs: ICW1-4 and OCW1 for the master, then the slave
pic:    dw 0x20
        db 0x11
        dw 0x21
        db 0x20
        dw 0x21
        db 0x04
        dw 0x21
        db 0x01
        dw 0x21
        db 0xfb
        dw 0xa0
        db 0x11
        dw 0xa1
        db 0x28
        dw 0xa1
        db 0x02
        dw 0xa1
        db 0x01
        dw 0xa1
        db 0xfe
date:   db      9, 8, 7, 4, 2, 9, 4, 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35
count:  dw      0
regc:   db      0

        times 510 - ($ - $$) db 0
        dw      0xaa55
