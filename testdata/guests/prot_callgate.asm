; prot_callgate.asm - call gates: a stack switch with parameter copy, RET to an
; outer ring, 16-bit gates, conforming code, JMP through a gate, and the TSS I/O
; permission bitmap.
;
; The TSS has an I/O bitmap that allows port E9h only, so ring 3 (IOPL 0) prints
; with OUT E9h itself.  Ring 0 IRETs to ring 3, which then:
;  `state` prints a line "ESP CS SS DS ES" (ESP as the caller had it).
;  a. pushes 3 dwords and calls gate 33h (32-bit, DPL 3, 3 parameters) to ring 0:
;     the handler prints its state (ESP = TSS ESP0 6800h minus 7 dwords, minus
;     the return address of its own CALL) and the new stack: EIP CS p3 p2 p1 ESP SS,
;     the parameters copied in the caller's order.  It loads ES with a ring-0
;     selector and returns with RETF 12.
;  b. back in ring 3: ESP is 6000h again (12 bytes released on each stack), ES was
;     nulled by the return to the outer ring (DPL 0 < CPL 3), DS (DPL 3) kept.
;  c. pushes 2 words and calls gate 3Bh (16-bit, 2 parameters): six 16-bit slots
;     IP CS p2 p1 SP SS; back with a 16-bit RETF 4.
;  d. calls a conforming ring-0 segment directly: no privilege change, CS.RPL
;     is the CPL (3), the same stack.  (Not through a call gate: QEMU 7.2 then
;     sets CPL to the segment's DPL, where the SDM keeps it; a unit test covers
;     that path.)
;  e. jumps through gate 4Bh to ring-3 code, where an OUT to port 80h (not in the
;     bitmap) is #GP(0); the handler prints error code, EIP, CS and ends the run.

%define LIB32_NO_PUTS
%include "prot.inc"
TSS     equ     0x1000

        PROT_START
        mov     dword [TSS+4], 0x6800   ; ESP0
        mov     dword [TSS+8], 0x10     ; SS0
        mov     word [TSS+0x66], 0x68   ; I/O bitmap right after the TSS
        mov     edi, TSS+0x68
        mov     ecx, 33
        mov     al, 0xff
        rep stosb
        and     byte [TSS+0x68+0xe9/8], ~(1 << (0xe9 & 7))
        mov     ax, 0x28
        ltr     ax
        mov     ebx, 13
        mov     eax, gp
        mov     dl, 0x8e
        call    gate
        push    0x23
        push    0x6000
        push    2
        push    0x1b
        push    ring3
        iret

ring3:  mov     eax, 0x23
        mov     ds, eax
        call    state
        push    1
        push    2
        push    3
        call    0x33:0
        call    state
        push    word 4
        push    word 5
        call    0x3b:0
        call    state
        call    0x40:conf
        jmp     0x4b:0

; print ESP (the caller's) CS SS DS ES
state:  push    es
        push    ds
        push    ss
        push    cs
        lea     eax, [esp+20]
        push    eax
        mov     esi, esp
        mov     cl, 5                   ; ECX is 0 after every REP and dump
        call    dump
        add     esp, 20
        ret

; a: ring 0 through the 32-bit gate
g32:    call    state
        mov     esi, esp
        mov     cl, 7
        call    dump
        push    0x10
        pop     es
        retf    12

; c: ring 0 through the 16-bit gate: six 16-bit slots
g16:    mov     esi, esp
        mov     cl, 3
        call    dump
        o16 retf 4

; d: conforming ring-0 code at CPL 3
conf:   call    state
        retf

; e: JMP through a gate, then an OUT the bitmap forbids
jmpd:   call    state
        out     0x80, al

gp:     push    0x10
        pop     ds
        mov     esi, esp
        mov     cl, 3
        call    dump
        jmp     exit

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dq      0x00cffa000000ffff      ; 18 code, ring 3
        dq      0x00cff2000000ffff      ; 20 data, ring 3
        dw      0x88, TSS, 0x8900, 0    ; 28 32-bit TSS with a 33-byte I/O bitmap
        dw      g32, 0x08, 0xec03, 0    ; 30 32-bit call gate, DPL 3, 3 parameters
        dw      g16, 0x08, 0xe402, 0    ; 38 16-bit call gate, DPL 3, 2 parameters
        dq      0x00cf9e000000ffff      ; 40 conforming code, ring 0
        dw      jmpd, 0x1b, 0xec00, 0   ; 48 gate to ring-3 code
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
