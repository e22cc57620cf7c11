; prot_gp.asm - the segment-load and gate checks and the error codes they raise.
;
; Ring 0, 32-bit.  #TS, #NP, #SS and #GP go to one handler that prints the vector
; and the error code, then resumes BL bytes past the faulting instruction (each
; test loads BL with that instruction's length).  Every test below faults; the
; expected line is "vector error":
;   MOV DS, execute-only code 18h                 0D 0018
;   MOV DS, not-present data 20h                  0B 0020
;   MOV SS, not-present data 20h                  0C 0020  (#SS, not #NP)
;   MOV SS, read-only data 28h                    0D 0028
;   MOV SS, null                                  0D 0000
;   MOV SS, 4Bh: DPL-3 data, RPL 3 at CPL 0       0D 0048
;   MOV DS, 13h: RPL 3 > DPL 0                    0D 0010
;   MOV DS, 50h: past the GDT limit               0D 0050
;   MOV DS, 30h: a TSS (system segment)           0D 0030
;   JMP 10h:0: a data segment                     0D 0010
;   JMP 30h:0: a TSS whose limit is < 67h         0A 0030
;   CALL 43h:0: DPL-0 call gate with RPL 3        0D 0040
;   INT 40h: not-present gate                     0B 0202  (vector*8+2, EXT 0)
;   INT 41h: a call-gate type in the IDT          0D 020A
;   LTR 10h: not a TSS                            0D 0010
;   LLDT 10h: not an LDT                          0D 0010
;   LLDT 0Ch: TI set                              0D 000C
;   IRET to CS 10h (data)                         0D 0010
; (No limit or null-segment access tests here: QEMU does not check those; the
; unit tests do.)

%define LIB32_NO_PUTS
%include "prot.inc"

        PROT_START
        mov     ebx, 10
.h:     lea     eax, [fault + ebx*4 - 40]
        mov     dl, 0x8e
        call    gate
        inc     ebx
        cmp     bl, 14
        jb      .h
        mov     bl, 0x40
        mov     dl, 0x0e                ; an interrupt gate, not present
        call    gate
        inc     ebx
        mov     dl, 0x8c                ; a call gate where an interrupt gate belongs
        call    gate

%macro T 2-3 2                          ; T selector, instruction [, its length]
        mov     ax, %1
        mov     bl, %3
        %2
%endmacro
        T       0x18, {mov ds, ax}
        T       0x20, {mov ds, ax}
        T       0x20, {mov ss, ax}
        T       0x28, {mov ss, ax}
        T       0x00, {mov ss, ax}
        T       0x4b, {mov ss, ax}
        T       0x13, {mov ds, ax}
        T       0x50, {mov ds, ax}
        T       0x30, {mov ds, ax}
        mov     bl, 7
        jmp     0x10:0
        mov     bl, 7
        jmp     0x30:0
        mov     bl, 7
        call    0x43:0
        mov     bl, 2
        int     0x40
        mov     bl, 2
        int     0x41
        T       0x10, {ltr ax}, 3
        T       0x10, {lldt ax}, 3
        T       0x0c, {lldt ax}, 3
        push    2
        push    0x10
        push    0
        mov     bl, 1
        iret
        jmp     exit

; vectors 10-13: push the vector, then the common part
fault:  push    10
        jmp     .c
        push    11
        jmp     .c
        push    12
        jmp     .c
        push    13
.c:     mov     esi, esp
        mov     ecx, 2
        call    dump
        movzx   ebx, bl
        add     [esp+8], ebx
        add     esp, 8
        iret

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dq      0x00cf98000000ffff      ; 18 code, execute-only
        dq      0x00cf12000000ffff      ; 20 data, writable, not present
        dq      0x00cf90000000ffff      ; 28 data, read-only
        dw      0x20, 0x1000, 0x8900, 0 ; 30 32-bit TSS with a too-small limit
        dw      0x0f, 0x1800, 0x8200, 0 ; 38 LDT
        dw      0, 0x08, 0x8c00, 0      ; 40 call gate, DPL 0
        dq      0x00cff2000000ffff      ; 48 data, ring 3
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
