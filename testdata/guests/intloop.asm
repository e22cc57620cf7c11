; intloop.asm - the integer benchmark loop (32-bit protected mode).
;
; Enters 32-bit protected mode exactly as pmode.asm does, then runs a
; register/memory ALU loop exactly N times and prints the final registers and
; the memory dword, then debug-exit 0 (QEMU exit status 1).
;
; The loop body is 9 instructions, executed N times = 90,000,000 instructions
; for N = 10,000,000 (plus ~50 instructions of setup and ~1,000 for printing):
;
;   add  eax, ebx       reg-reg ALU
;   xor  ecx, eax       logic op
;   add  [MEM], eax     read-modify-write memory (MEM is in its own page, away
;                       from the code, so it is never a self-modifying store)
;   sub  edx, ecx
;   shl  ebx, 1         shift: CF = the bit shifted out ...
;   adc  ebx, esi       ... consumed here (flags really flow between instructions)
;   inc  esi
;   dec  edi            loop counter
;   jnz  .loop          taken N-1 times

%define N 10000000              ; iterations

        bits    16
        org     0x7c00

MEM     equ     0x10000         ; the memory operand, 0x10000 = page 16

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        in      al, 0x92        ; fast A20
        or      al, 2
        and     al, 0xfe
        out     0x92, al
        lgdt    [gdt_desc]
        mov     eax, cr0
        or      al, 1           ; CR0.PE
        mov     cr0, eax
        jmp     CODE_SEL:pm32

        bits    32
pm32:   mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     fs, ax
        mov     gs, ax
        mov     ss, ax
        mov     esp, 0x7000

        xor     eax, eax
        mov     ebx, 1
        xor     ecx, ecx
        xor     edx, edx
        xor     esi, esi
        mov     edi, N
        mov     dword [MEM], 0

        align   16              ; (the same alignment for every build of the loop)
.loop:  add     eax, ebx        ; 1
        xor     ecx, eax        ; 2
        add     [MEM], eax      ; 3
        sub     edx, ecx        ; 4
        shl     ebx, 1          ; 5
        adc     ebx, esi        ; 6
        inc     esi             ; 7
        dec     edi             ; 8
        jnz     .loop           ; 9 instructions per iteration

        push    ecx             ; print in the order eax ebx ecx edx esi edi [mem]
        push    edi
        push    esi
        mov     esi, s_head
        call    puts32          ; leaves ESI at s_eax
        call    show
        mov     eax, ebx
        call    show
        pop     ebx             ; esi
        pop     ebp             ; edi
        pop     eax             ; ecx
        call    show
        mov     eax, edx
        call    show
        mov     eax, ebx
        call    show
        mov     eax, ebp
        call    show
        mov     eax, [MEM]
        call    show

        mov     al, 0           ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

; show: print the next label (the zero-terminated string at ESI), EAX in hex
; and a newline; ESI is left at the following label
show:   call    puts32
        call    hex32p
        jmp     nl32

%include "lib32.inc"

gdt:    dq      0
        dw      0xffff, 0x0000  ; flat 4 GiB code: base 0, limit 0xFFFFF pages
        db      0x00, 0x9a, 0xcf, 0x00
        dw      0xffff, 0x0000  ; flat 4 GiB data
        db      0x00, 0x92, 0xcf, 0x00
gdt_end:
CODE_SEL equ    0x08
DATA_SEL equ    0x10
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

%defstr N_STR N
s_head: db "intloop: ", N_STR, " iterations x 9 instructions", 10, 0
s_eax:  db "eax=", 0            ; consecutive: show walks through them
        db "ebx=", 0
        db "ecx=", 0
        db "edx=", 0
        db "esi=", 0
        db "edi=", 0
        db "[mem]=", 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
