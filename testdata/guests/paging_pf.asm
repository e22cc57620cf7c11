; paging_pf.asm - 32-bit paging with page faults: CR2 and the error code.
;
; Protected mode, ring 0, 32-bit paging (SDM Vol.3 4.3) with CR0.WP and CR4.PSE.
; The #PF handler prints CR2 and the error code, repairs the entry whose address
; the test left in EBP (sets P and R/W), INVLPGs CR2 and returns to retry the
; faulting instruction. Cases:
;   a  read of a not-present page                      err 0 (P=0 W=0 U=0)
;   b  write to a read-only page with WP=1             err 3 (P=1 W=1)
;   c  write to a read-only page with WP=0             no fault (SDM 4.6)
;   d  fetch from a not-present page (CALL into it)    err 0 (I/D only with PAE+NXE)
;   e  4-MByte pages (PSE): an alias of 0x400000 at 0x800000
;   f  read through a not-present 4-MByte PDE          err 0, repaired at the PDE
; Each case ends with a line showing the value read or written after the retry.

        bits    16
        org     0x7c00

%define CODE_SEL 0x08
%define DATA_SEL 0x10
%define PD       0x20000                ; page directory
%define PT       0x21000                ; page table for linear 0..4 MiB
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

; ---- identity-map 0..4 MiB with 4-KByte pages, then the test entries --------
        mov     edi, PT
        mov     eax, 3                  ; P | R/W
.fill:  stosd
        add     eax, 0x1000
        cmp     edi, PT + 4096
        jb      .fill
        mov     dword [PD], PT | 3
        mov     dword [PD + 4], 0x400083        ; 4 MiB page at 4 MiB: PS|R/W|P
        mov     dword [PD + 8], 0x400083        ; alias of it at 8 MiB
        mov     dword [PD + 12], 0x400080       ; PS but not present
        mov     dword [0x40010], 0x11111111
        mov     byte [0x43000], 0xc3            ; RET, fetched through a fault
        mov     ebx, PTE(0x40)
        and     byte [ebx], ~1                  ; a: not present
        and     byte [ebx + 4], ~2              ; b: read-only
        and     byte [ebx + 8], ~2              ; c: read-only
        and     byte [ebx + 12], ~1             ; d: not present

        mov     eax, PD
        mov     cr3, eax
        mov     eax, cr4
        or      al, 0x10                ; CR4.PSE
        mov     cr4, eax
        mov     eax, cr0
        or      eax, 0x80010000         ; CR0.PG | CR0.WP
        mov     cr0, eax

        mov     ebp, ebx
        mov     eax, [0x40010]          ; a
        call    show

        add     ebp, 4
        mov     dword [0x41004], 0x22222222     ; b
        mov     eax, [0x41004]
        call    show

        mov     eax, cr0
        btr     eax, 16                 ; WP = 0: supervisor writes ignore R/W
        mov     cr0, eax
        mov     dword [0x42008], 0x33333333     ; c: no fault
        mov     eax, [0x42008]
        call    show
        mov     eax, cr0
        bts     eax, 16
        mov     cr0, eax

        add     ebp, 8
        call    0x43000                 ; d
        mov     eax, [ebp]
        call    show

        mov     dword [0x800010], 0x44444444    ; e
        mov     eax, [0x400010]
        call    show

        mov     ebp, PD + 12
        mov     eax, [0xc00010]         ; f: reads 0x400010 once repaired
        call    show

        mov     al, 0
        out     0xf4, al

; show: print EAX and a newline.
show:   call    hex32p
        jmp     nl32

; #PF handler (interrupt gate, same privilege): the error code is on top.
pf:     push    eax
        mov     esi, s_cr2
        call    puts32
        mov     eax, cr2
        call    hex32p
        mov     esi, s_err
        call    puts32
        mov     eax, [esp + 4]
        call    hex32p
        call    nl32
        or      byte [ebp], 3       ; P | R/W
        mov     eax, cr2
        invlpg  [eax]
        pop     eax
        add     esp, 4
        iret

%include "lib32.inc"

s_cr2:  db      "#PF cr2=", 0
s_err:  db      " err=", 0

        align   8
gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 0x08: code, flat 4 GiB, 32-bit
        dq      0x00cf92000000ffff      ; 0x10: data, flat 4 GiB
gdt_desc:
        dw      gdt_desc - gdt - 1
        dd      gdt
; The IDT is only vector 14: its base is placed so that gate 14 is pf_gate
; (gates 0-13 would overlap the code above and are never used).
idt_desc:
        dw      15 * 8 - 1
        dd      pf_gate - 14 * 8
        align   8
pf_gate:
        dw      pf, CODE_SEL, 0x8e00, 0  ; 32-bit interrupt gate, DPL 0

        times   510 - ($ - $$) db 0
        dw      0xaa55
