; paging_global.asm - TLB invalidation: MOV CR3, INVLPG, CR4.PGE (SDM Vol.3 4.10.4).
;
; 32-bit paging with CR4.PGE. Linear G = 0x50000 is a global page, N = 0x51000 is
; not; both map physical 0x60000 (dword AAAAAAAA). After both are read (so both
; are cached), their PTEs are pointed at 0x61000 (BBBBBBBB) without telling the
; TLB. Then, one line each:
;   1  N after MOV CR3: must see BBBBBBBB (non-global translations are flushed)
;   2  G after INVLPG G: must see BBBBBBBB (INVLPG flushes global ones too)
;   3  G after its PTE goes back to 0x60000, MOV CR3, and CR4.PGE cleared and set
;      again: must see AAAAAAAA (changing PGE flushes everything)
;   4  N after its PTE is made not-present and INVLPG N: the #PF handler prints
;      CR2 and the error code, restores the PTE and retries: BBBBBBBB
; Whether G keeps its stale translation across MOV CR3 is left to the processor
; (SDM 4.10.2.4: it "may" be retained), and QEMU 7.2 flushes it, so this guest does
; not look; trapeze keeps it, which the trapeze-mmu unit tests check.

        bits    16
        org     0x7c00

%define CODE_SEL 0x08
%define DATA_SEL 0x10
%define PD       0x20000
%define PT       0x21000
%define PTE(p)   (PT + (p) * 4)
%define G        0x50000
%define N        0x51000

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
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
.fill:  stosd
        add     eax, 0x1000
        cmp     edi, PT + 4096
        jb      .fill
        mov     dword [PD], PT | 3
        mov     dword [0x60000], 0xaaaaaaaa
        mov     dword [0x61000], 0xbbbbbbbb
        mov     ebx, PTE(G >> 12)
        mov     dword [ebx], 0x60000 | 0x103    ; G | R/W | P
        mov     dword [ebx + 4], 0x60003        ; R/W | P

        mov     eax, PD
        mov     cr3, eax
        mov     eax, cr4
        or      al, 0x80                ; CR4.PGE
        mov     cr4, eax
        mov     eax, cr0
        or      eax, 0x80000000
        mov     cr0, eax

        mov     eax, [G]                ; cache both translations
        mov     eax, [N]
        mov     dword [ebx], 0x61000 | 0x103
        mov     dword [ebx + 4], 0x61003

        mov     eax, cr3                ; 1
        mov     cr3, eax
        mov     eax, [N]
        call    show
        invlpg  [G]                     ; 2
        mov     eax, [G]
        call    show
        mov     dword [ebx], 0x60000 | 0x103    ; 3
        mov     eax, cr3
        mov     cr3, eax
        mov     eax, cr4
        xor     al, 0x80
        mov     cr4, eax
        xor     al, 0x80
        mov     cr4, eax
        mov     eax, [G]
        call    show
        and     byte [ebx + 4], ~1      ; 4
        invlpg  [N]
        mov     eax, [N]
        call    show

        mov     al, 0
        out     0xf4, al

show:   call    hex32p
        jmp     nl32

; #PF handler: print CR2 and the error code, make N present again, retry.
pf:     mov     esi, s_cr2
        call    puts32
        mov     eax, cr2
        call    hex32p
        mov     esi, s_err
        call    puts32
        pop     eax
        call    show
        or      byte [ebx + 4], 1
        iret

%include "lib32.inc"

s_cr2:  db      "#PF cr2=", 0
s_err:  db      " err=", 0

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
