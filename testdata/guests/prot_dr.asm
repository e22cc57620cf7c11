; prot_dr.asm - debug-register breakpoints (SDM Vol.3 18.2, 18.3.1).
;
; The #DB handler prints EIP, DR6 and EAX at the exception, resets DR6 and sets RF
; in the EFLAGS image it returns with.
;  1. DR0 = the MOV EAX,5 in a 2-iteration loop, DR7.L0 with R/W0 = 00 (execute):
;     a fault before the instruction each time (EIP = the MOV, EAX not yet 5,
;     DR6.B0).  RF lets the IRET run it without breaking again; RF is cleared
;     once it completes, so the next iteration breaks again.
;  2. DR1 = a dword variable, DR7.L1 with R/W1 = 01 (writes), LEN1 = 11 (4 bytes):
;     a store to it traps after the store (EIP = the next instruction, DR6.B1);
;     a load from it does not.
;  3. R/W1 = 11 (reads and writes): a word load that overlaps the dword traps.
;  4. DR7 = 0: the same load runs undisturbed.

%define LIB32_NO_PUTS
%include "prot.inc"

        PROT_START
        mov     ebx, 1
        mov     eax, db
        mov     dl, 0x8e
        call    gate
        mov     eax, bp1
        mov     dr0, eax
        mov     eax, var
        mov     dr1, eax
        mov     eax, 0x00d00005         ; L0 (execute), L1 (write, 4 bytes)
        mov     dr7, eax
        mov     ecx, 2
bp1:    mov     eax, 5
        loop    bp1
        mov     dword [var], 7
        mov     eax, [var]
        mov     eax, 0x00f00005         ; R/W1 = 11: reads too
        mov     dr7, eax
        mov     ax, [var+2]
        xor     eax, eax
        mov     dr7, eax
        mov     ax, [var+2]
        call    nl32
        jmp     exit

db:     pushad
        push    dword [esp+28]          ; EAX
        mov     eax, dr6
        push    eax
        push    dword [esp+40]          ; EIP
        mov     esi, esp
        mov     ecx, 3
        call    dump
        add     esp, 12
        mov     eax, 0xffff0ff0
        mov     dr6, eax
        or      dword [esp+40], 0x10000 ; RF in the EFLAGS image
        popad
        iret

        align   4
var:    dd      0

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
