; paging_nx.asm - PAE paging with execute-disable: I/D and RSVD in #PF error codes.
;
; Protected mode, ring 0, PAE paging (SDM Vol.3 4.4) with EFER.NXE, 4-KByte pages
; below 2 MiB and a 2-MByte page above. The #PF handler prints CR2 and the error
; code, stores EDX:EBX into the 8-byte entry at EBP (the test's repair), INVLPGs CR2
; and retries. Cases:
;   a  fetch (CALL) from an XD page                   err 11 (P, I/D)
;   b  read from an XD page: no fault; its PTE, with A set, is printed
;   c  fetch from a not-present page                  err 10 (I/D: PAE and NXE)
;   d  read, then write, of a PTE with reserved bit 45 (MAXPHYADDR is 40)
;                                                     err 09 / 0B (P, RSVD, W)
;   e  a 2-MByte PDE with reserved bit 13             err 09
;   f  NXE off: XD is a reserved bit, even on fetch   err 09 (no I/D without NXE)
;
; SDM 4.7: "bit 3 of the error code [RSVD] can be set only if bit 0 [P] is also
; set". QEMU 7.2 TCG (the reference) clears P in reserved-bit faults, so the
; handler prints the error code with P masked out when RSVD is set: 08 / 0A. The
; P bit of those faults is checked by the trapeze-mmu unit tests instead.

        bits    16
        org     0x7c00

%define CODE_SEL 0x08
%define DATA_SEL 0x10
%define PDPT     0x20000
%define PD       0x21000
%define PT       0x22000                ; 4 KiB pages for linear 0..2 MiB
%define PTE(p)   (PT + (p) * 8)
%define XD       0x80000000             ; bit 63, in the entry's high dword

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        in      al, 0x92
        or      al, 2
        and     al, 0xfe
        out     0x92, al
        lgdt    [gdt_desc]
        lidt    [idt_desc]
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     CODE_SEL:pm32

        bits    32
pm32:   mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x7000

        mov     edi, PT
        mov     eax, 3
        xor     ecx, ecx
.fill:  stosd                           ; low dword: frame | R/W | P
        mov     [edi], ecx              ; high dword
        add     edi, 4
        add     eax, 0x1000
        cmp     edi, PT + 4096
        jb      .fill
        mov     dword [PDPT], PD | 1    ; PDPTEs hold only P (R/W, U/S reserved)
        mov     dword [PD], PT | 3
        mov     dword [PD + 8], 0x200083 | 0x2000      ; e: 2 MiB page, bit 13 set
        mov     ebx, PTE(0x40)
        mov     al, 0xc3                        ; RET
        mov     [0x40000], al
        mov     [0x42000], al
        mov     [0x44000], al
        mov     eax, XD
        mov     [ebx + 4], eax                  ; a
        mov     [ebx + 8 + 4], eax              ; b
        and     byte [ebx + 16], ~1             ; c
        mov     byte [ebx + 24 + 5], 0x20       ; d: bit 45
        mov     [ebx + 32 + 4], eax             ; f

        mov     eax, PDPT
        mov     cr3, eax
        mov     eax, cr4
        or      al, 0x20                ; CR4.PAE
        mov     cr4, eax
        mov     ecx, 0xc0000080         ; EFER
        rdmsr
        or      ah, 0x08                ; NXE
        wrmsr
        mov     eax, cr0
        or      eax, 0x80010000         ; CR0.PG | CR0.WP
        mov     cr0, eax

        xor     edx, edx
        mov     ebp, ebx                ; a
        mov     ebx, 0x40003
        call    0x40000
        add     ebp, 8                  ; b
        mov     eax, [0x41000]
        call    show
        add     ebp, 8                  ; c
        mov     ebx, 0x42003
        call    0x42000
        add     ebp, 8                  ; d
        mov     ebx, 0x43003
        mov     eax, [0x43000]
        mov     dword [ebp + 4], 0x2000
        invlpg  [0x43000]
        mov     [0x43000], eax
        mov     ebp, PD + 8             ; e
        mov     ebx, 0x200083
        mov     eax, [0x200000]
        mov     ecx, 0xc0000080         ; f
        rdmsr
        and     ah, ~0x08
        wrmsr                           ; EDX = EFER[63:32] = 0: the repair's high dword
        mov     ebp, PTE(0x44)
        mov     ebx, 0x44003
        call    0x44000
        call    show

        mov     al, 0
        out     0xf4, al

; show: print the 8-byte entry at [EBP] and a newline.
show:   mov     eax, [ebp + 4]
        call    hex32p
        mov     eax, [ebp]
        call    hex32p
        jmp     nl32

; #PF handler: print CR2 and the error code, install EDX:EBX at [EBP], retry.
pf:     mov     esi, s_cr2
        call    puts32
        mov     eax, cr2
        call    hex32p
        mov     esi, s_err
        call    puts32
        pop     eax
        test    al, 8                   ; RSVD: leave P out (see above)
        jz      .p
        and     al, ~1
.p:     call    hex32p
        call    nl32
        mov     [ebp], ebx
        mov     [ebp + 4], edx
        mov     eax, cr2
        invlpg  [eax]
        iret

%include "lib32.inc"

s_cr2:  db      "cr2=", 0
s_err:  db      " err=", 0

        align   8
gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 0x08: code, flat 4 GiB, 32-bit
        dq      0x00cf92000000ffff      ; 0x10: data, flat 4 GiB
gdt_desc:
        dw      gdt_desc - gdt - 1
        dd      gdt
; Only vector 14 is used: gate 14 is pf_gate (see paging_pf.asm).
idt_desc:
        dw      15 * 8 - 1
        dd      pf_gate - 14 * 8
pf_gate:
        dw      pf, CODE_SEL, 0x8e00, 0

        times   510 - ($ - $$) db 0
        dw      0xaa55
