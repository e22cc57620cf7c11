; paging_ad.asm - accessed and dirty flags of 32-bit paging (SDM Vol.3 4.8).
;
; All test entries start with A = D = 0. Each line is a whole entry after the
; access named; the A flag is 0x20, D is 0x40.
;   1 read                        PTE gets A
;   2 write                       PTE gets A and D
;   3 read, then write            A after the read; D after the write, although the
;                                 translation was already cached for the read
;   4 the PDE above them          A, never D (it references a table)
;   5 4-MByte page: read, write   A, then A and D in the PDE itself
;   6 A and D cleared by software, INVLPG, read: A again, no D
;   7 write to a read-only page (CR0.WP = 1): the #PF handler prints the PTE,
;     which the faulting walk left without A; after the repair and retry, A and D
;   8 instruction fetch (CALL)    PTE gets A
; trapeze sets no A flag at all in a walk that faults (as Intel parts and Bochs);
; QEMU 7.2 sets A in the upper levels before it finds the fault. Case 7's PDE has
; A set already (case 1), so only the leaf, where both agree, is compared.

        bits    16
        org     0x7c00

%define CODE_SEL 0x08
%define DATA_SEL 0x10
%define PD       0x20000
%define PT       0x21000
%define PTE(p)   (PT + (p) * 4)

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
        mov     eax, 3                  ; P | R/W, A = D = 0
.fill:  stosd
        add     eax, 0x1000
        cmp     edi, PT + 4096
        jb      .fill
        mov     dword [PD], PT | 3
        mov     dword [PD + 4], 0x400083        ; 4 MiB page: PS | R/W | P
        mov     byte [0x44000], 0xc3            ; RET for case 8
        mov     ebx, PTE(0x40)
        and     byte [ebx + 12], ~2             ; 0x43000 read-only

        mov     eax, PD
        mov     cr3, eax
        mov     eax, cr4
        or      al, 0x10                ; CR4.PSE
        mov     cr4, eax
        mov     eax, cr0
        or      eax, 0x80010000         ; CR0.PG | CR0.WP
        mov     cr0, eax

        mov     eax, [0x40000]          ; 1
        mov     ebp, ebx
        call    show
        mov     [0x41000], eax          ; 2
        add     ebp, 4
        call    show
        mov     eax, [0x42000]          ; 3
        add     ebp, 4
        call    show
        mov     [0x42000], eax
        call    show
        mov     ebp, PD                 ; 4
        call    show
        mov     eax, [0x400000]         ; 5
        add     ebp, 4
        call    show
        mov     [0x400004], eax
        call    show
        and     byte [ebx], ~0x60       ; 6
        invlpg  [0x40000]
        mov     eax, [0x40000]
        mov     ebp, ebx
        call    show
        lea     ebp, [ebx + 12]         ; 7
        mov     [0x43000], eax
        call    show
        call    0x44000                 ; 8
        add     ebp, 4
        call    show

        mov     al, 0
        out     0xf4, al

; show: print the entry at [EBP] and a newline (EAX preserved).
show:   push    eax
        mov     eax, [ebp]
        call    hex32p
        call    nl32
        pop     eax
        ret

; #PF handler: print the entry at [EBP] as the faulting walk left it, make the
; page writable, and retry.
pf:     mov     esi, s_pf
        call    puts32
        call    show
        or      byte [ebp], 2
        invlpg  [0x43000]
        add     esp, 4
        iret

%include "lib32.inc"

s_pf:   db      "#PF ", 0

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
        align   8
pf_gate:
        dw      pf, CODE_SEL, 0x8e00, 0

        times   510 - ($ - $$) db 0
        dw      0xaa55
