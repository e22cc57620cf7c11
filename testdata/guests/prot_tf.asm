; prot_tf.asm - single-step: the #DB trap that follows each instruction run with
; EFLAGS.TF set (SDM Vol.3 18.3.1.4), and where it does not come.
;
; The #DB handler (an interrupt gate: TF is clear while it runs, its IRET sets TF
; again) prints the EIP it returns to.  With TF set by a POPF:
;   - no trap after that POPF (TF was clear when it began);
;   - a trap after NOP and after MOV EAX,1;
;   - none after INT 40h (the event clears TF, its handler runs untraced) and none
;     after the handler's IRET (TF was clear when the IRET began);
;   - a trap after ADD;
;   - none after MOV SS: it holds the trap back until the NOP after it is done;
;   - traps after PUSHFD, AND and after the POPF that clears TF.
; Then INT3 (a trap through a DPL-0 gate: EIP after it) and the trap count and DR6
; (BS, bit 14, set by the single-steps).

%define LIB32_NO_PUTS
%include "prot.inc"

        PROT_START
        mov     ebx, 1
        mov     eax, db
        mov     dl, 0x8e
        call    gate
        mov     bl, 3
        mov     eax, db
        call    gate
        mov     bl, 0x40
        mov     eax, i40
        call    gate
        mov     ecx, 0x10
        pushfd
        or      dword [esp], 0x100
        popfd
        nop
        mov     eax, 1
        int     0x40
        add     eax, eax
        mov     ss, cx
        nop
        pushfd
        and     dword [esp], ~0x100
        popfd
        int3
        call    nl32
        mov     esi, count
        mov     cl, 1
        call    dump
        mov     eax, dr6
        push    eax
        mov     esi, esp
        mov     cl, 1
        call    dump
        jmp     exit

db:     pushad
        inc     dword [count]
        mov     eax, [esp+32]
        call    hex32p
        mov     al, ' '
        out     0xe9, al
        popad
        iret

i40:    nop
        iret

count:  dd      0

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
