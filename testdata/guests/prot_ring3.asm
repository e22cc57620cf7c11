; prot_ring3.asm - ring 3 and back: IRET to an outer ring, an interrupt gate from
; ring 3 (stack switch through the TSS), and the #GP faults ring 3 meets.
;
; Ring 0 loads TR, installs INT 80h and 81h as DPL-3 interrupt gates and #GP as a
; DPL-0 interrupt gate, and IRETs to ring 3 (CS 1Bh, SS 23h, IOPL 0).
;  1. The IRET to an outer ring loaded DS/ES/FS/GS with null: ring 3 passes DS to
;     INT 80h, which prints it (eax=0), its own ESP (TSS ESP0 6800h minus the
;     20-byte frame) and the frame: EIP CS EFLAGS ESP SS of ring 3.  The handlers
;     reload DS themselves: a null DS is #GP(0) on use (QEMU does not check that,
;     trapeze does), and their IRET to ring 3 nulls it again.
;  2. OUT at CPL 3 > IOPL 0 with no I/O bitmap (its base is past the TSS limit):
;     #GP(0).  The handler prints error code, EIP and CS and skips 2 bytes.
;  3. MOV DS with a DPL-0 data selector at CPL 3: #GP(0010).
;  4. INT 0Dh through a DPL-0 gate at CPL 3: #GP(0D*8+2 = 006A), no EXT bit.
;  5. ARPL raises a selector's RPL (ZF=1), then leaves it (ZF=0); INT 80h shows
;     EAX = the selector and EFLAGS.
;  6. INT 81h ends the run after printing its frame.
; The #GP handler prints no EFLAGS: the SDM sets RF in the EFLAGS image of a fault,
; QEMU does not.

%include "prot.inc"
TSS     equ     0x1000

        PROT_START
        mov     dword [TSS+4], 0x6800   ; ESP0
        mov     dword [TSS+8], 0x10     ; SS0
        mov     word [TSS+0x66], 0x68   ; I/O map base past the limit: no bitmap
        mov     ax, 0x28
        ltr     ax
        mov     ebx, 0x80
        mov     eax, int80
        mov     dl, 0xee
        call    gate
        mov     bl, 0x81
        mov     eax, int81
        call    gate
        mov     bl, 13
        mov     eax, gp
        mov     dl, 0x8e
        call    gate
        push    0x23                    ; SS
        push    0x6000                  ; ESP
        push    2                       ; EFLAGS: IOPL 0, IF 0
        push    0x1b                    ; CS
        push    ring3                   ; EIP
        iret

ring3:  mov     eax, ds
        int     0x80
        out     0xe9, al
        mov     ax, 0x10
        mov     ds, ax
        int     0x0d
        mov     ax, 0x1234
        mov     cx, 0x0033
        arpl    ax, cx
        int     0x80
        arpl    ax, cx
        int     0x80
        int     0x81

int80:  pushad
        push    0x10                    ; ring 3 left DS null: the handlers
        pop     ds                      ; reload it (IRET nulls it again)
        call    show
        db      "eax=", 0
        lea     eax, [esp+32]
        call    show
        db      "esp=", 0
        lea     esi, [esp+32]
        mov     ecx, 5
        call    dump
        popad
        iret

gp:     push    0x10
        pop     ds
        mov     esi, esp
        mov     ecx, 3
        call    dump
        add     dword [esp+4], 2
        add     esp, 4
        iret

int81:  push    0x10
        pop     ds
        mov     esi, esp
        mov     ecx, 5
        call    dump
        jmp     exit

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dq      0x00cffa000000ffff      ; 18 code, ring 3
        dq      0x00cff2000000ffff      ; 20 data, ring 3
        dw      0x67, TSS, 0x8900, 0    ; 28 32-bit TSS, available
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
