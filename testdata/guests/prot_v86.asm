; prot_v86.asm - a virtual-8086 monitor.
;
; Ring 0 enters virtual-8086 mode with an IRETD whose EFLAGS image has VM=1 and
; IOPL 0 (V86 segments 0000 CS/SS, 1111 DS, 2222 ES, 3333 FS, 4444 GS).  The TSS
; I/O bitmap allows port E9h only.  The V86 code then:
;  - prints "V" with OUT E9h: allowed by the bitmap (V86 I/O ignores IOPL);
;  - runs CLI, PUSHF, INT 21h (IOPL-sensitive at IOPL < 3), OUT 80h (not in the
;    bitmap) and HLT (privileged): each is #GP(0) to the monitor, which prints
;    error code, EIP and CS of the V86 code and skips the instruction (INT and OUT
;    are 2 bytes).  At the HLT the monitor also raises the V86 IOPL to 3;
;  - with IOPL 3, PUSHF/POPF and CLI/STI run without trapping, and INT 30h goes
;    through the IDT (a DPL-3 interrupt gate) to ring 0.  That handler prints
;    FS:GS and DS:ES as it sees them (all null: the processor cleared them), the
;    FLAGS the V86 code pushed (IOPL 3), and the frame: EIP CS EFLAGS ESP SS ES DS
;    FS GS, with VM set in EFLAGS and the V86 segments pushed.
; The monitor prints no EFLAGS of a fault (the SDM sets RF there, QEMU does not).

%define LIB32_NO_PUTS
%include "prot.inc"
TSS     equ     0x1000

        PROT_START
        mov     dword [TSS+4], 0x6800
        mov     dword [TSS+8], 0x10
        mov     word [TSS+0x66], 0x68
        mov     edi, TSS+0x68
        mov     ecx, 33
        mov     al, 0xff
        rep stosb
        and     byte [TSS+0x68+0xe9/8], ~(1 << (0xe9 & 7))
        mov     ax, 0x18
        ltr     ax
        mov     ebx, 13
        mov     eax, gp
        mov     dl, 0x8e
        call    gate
        mov     bl, 0x30
        mov     eax, int30
        mov     dl, 0xee
        call    gate
        push    0x4444                  ; GS
        push    0x3333                  ; FS
        push    0x1111                  ; DS
        push    0x2222                  ; ES
        push    0                       ; SS
        push    0x5000                  ; ESP
        push    0x20002                 ; EFLAGS: VM, IOPL 0
        push    0                       ; CS
        push    v86                     ; EIP
        iret

; The monitor: #GP from V86 code.  Frame: error EIP CS EFLAGS ESP SS ES DS FS GS.
gp:     push    0x10
        pop     ds
        mov     esi, esp
        mov     cl, 3
        call    dump
        movzx   eax, word [esp+8]       ; CS * 16 + IP: the instruction
        shl     eax, 4
        add     eax, [esp+4]
        mov     al, [eax]
        mov     ecx, 1
        cmp     al, 0xcd                ; INT n
        je      .two
        cmp     al, 0xe6                ; OUT imm8, AL
        jne     .hlt
.two:   inc     ecx
.hlt:   cmp     al, 0xf4
        jne     .skip
        or      dword [esp+12], 0x3000  ; IOPL 3 from here on
.skip:  add     [esp+4], ecx
        add     esp, 4
        iret

int30:  push    eax
        mov     eax, ds
        shl     eax, 16
        mov     ax, es
        push    eax
        mov     eax, fs
        shl     eax, 16
        mov     ax, gs
        push    eax
        push    0x10
        pop     ds
        mov     esi, esp
        mov     ecx, 12
        call    dump
        jmp     exit

        bits    16
v86:    mov     al, 'V'
        out     0xe9, al
        mov     al, 10
        out     0xe9, al
        cli
        pushf
        int     0x21
        out     0x80, al
        hlt
        pushf
        pop     ax
        cli
        sti
        push    ax
        popf
        int     0x30
        bits    32

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dw      0x88, TSS, 0x8900, 0    ; 18 32-bit TSS with a 33-byte I/O bitmap
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
