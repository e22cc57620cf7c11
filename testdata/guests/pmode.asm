; pmode.asm - enter 32-bit protected mode the way boot sectors do, then run
; 32-bit arithmetic and touch memory above 1 MiB.
;
; Tests: fast A20 (port 0x92), LGDT, CR0.PE, far JMP into a 32-bit code segment,
; loading DS/ES/FS/GS/SS with a flat data selector, 32-bit addressing above
; 1 MiB (checks the A20 line really is on: 0x100500 must not alias 0x000500),
; a 64 KiB pattern at 0x200000 crossing 16 pages, an unaligned dword load that
; straddles a page boundary, and MUL/DIV/IMUL/IDIV/SHLD/BSR/BSWAP on 32 bits.
;
; Output: one "name=XXXXXXXX" line per result on port 0xE9, then debug-exit 0
; (QEMU exit status 1).

        bits    16
        org     0x7c00

start:  cli                     ; no interrupts at all: we never load an IDT
        cld
        jmp     0x0000:.cs0     ; make CS=0 even if a loader used 07C0:0000
.cs0:   xor     ax, ax
        mov     ds, ax          ; LGDT below addresses gdt_desc through DS
        mov     ss, ax
        mov     sp, 0x7000

        in      al, 0x92        ; "fast A20": System Control Port A
        or      al, 2           ; bit 1 = A20 enable
        and     al, 0xfe        ; bit 0 = fast reset: never set it
        out     0x92, al

        lgdt    [gdt_desc]
        mov     eax, cr0
        or      al, 1           ; CR0.PE
        mov     cr0, eax
        jmp     CODE_SEL:pm32   ; far JMP loads CS from the GDT: now 32-bit code

        bits    32
pm32:   mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     fs, ax
        mov     gs, ax
        mov     ss, ax
        mov     esp, 0x7000     ; flat stack, below the code page

        mov     esi, s_banner
        call    puts32
        xor     eax, eax
        mov     ax, cs          ; selectors as the CPU now holds them
        shl     eax, 16
        mov     ax, ss
        call    show
        db      "cs:ss=", 0

; ---- A20: 0x100500 and 0x000500 are different bytes ------------------------
        mov     dword [0x100500], 0x11111111
        mov     dword [0x000500], 0x22222222
        mov     eax, [0x100500] ; 0x22222222 here would mean A20 is masked
        call    show
        db      "[100500]=", 0

; ---- 64 KiB LCG pattern at 0x200000, then checksum it -----------------------
        mov     edi, 0x200000
        mov     ecx, 0x4000     ; 16384 dwords = 64 KiB = 16 pages
        mov     eax, 1
.fill:  mov     [edi], eax
        imul    eax, eax, 1664525   ; x = x * 1664525 + 1013904223 (mod 2^32)
        add     eax, 1013904223
        add     edi, 4
        dec     ecx
        jnz     .fill

        mov     esi, 0x200000
        xor     ebx, ebx        ; plain sum
        xor     edx, edx        ; rotate-xor hash (order sensitive)
.sum:   mov     eax, [esi]
        add     ebx, eax
        rol     edx, 5
        xor     edx, eax
        add     esi, 4
        cmp     esi, 0x210000
        jb      .sum
        mov     eax, ebx
        call    pair
        db      "hash:sum=", 0
        mov     eax, [0x200ffe] ; unaligned, straddles the 0x201000 page boundary
        call    show
        db      "[200FFE]=", 0

; ---- 32-bit multiply / divide / bit operations -----------------------------
        mov     eax, 0xdeadbeef
        mov     ebx, 0xcafebabe
        mul     ebx             ; EDX:EAX = unsigned 64-bit product
        call    pair
        db      "mul=", 0
        mov     ebx, 0xfffffff1 ; > EDX, so the quotient fits in 32 bits
        div     ebx             ; EAX = quotient, EDX = remainder
        call    pair
        db      "div(r:q)=", 0

        mov     eax, -123456789
        mov     ebx, 9876
        imul    ebx             ; signed 64-bit product (negative)
        call    pair
        db      "imul=", 0
        mov     ebx, -1000
        idiv    ebx             ; signed quotient (positive); the remainder has the dividend's sign
        call    pair
        db      "idiv(r:q)=", 0

        mov     eax, 0x12345678
        mov     edx, 0x9abcdef0
        shld    eax, edx, 12    ; shift 12 bits of EDX in from the right
        bswap   eax             ; 486+: byte reverse
        bsr     ecx, eax        ; index of the highest set bit
        shl     ecx, 24
        xor     eax, ecx
        call    show
        db      "shld/bswap/bsr=", 0

        mov     al, 0           ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

; show: print the zero-terminated label that follows the CALL instruction, then
; EAX in hex and a newline; return to the byte after the label.  Clobbers ESI.
; pair: the same, but prints EDX then EAX (a 64-bit value, or remainder:quotient)
pair:   pop     esi
        call    puts32
        xchg    eax, edx
        call    hex32p
        xchg    eax, edx
        jmp     show.val
show:   pop     esi             ; ESI = the label after the CALL
        call    puts32          ; ESI now points just past its terminating zero
.val:   push    esi             ; ... which is where we return to
        call    hex32p
        jmp     nl32

%include "lib32.inc"

; ---- GDT: null, flat 4 GiB code (32-bit, ring 0), flat 4 GiB data -----------
gdt:    dq      0
        dw      0xffff, 0x0000  ; limit 15:0, base 15:0
        db      0x00, 0x9a      ; base 23:16, P=1 DPL=0 S=1 type=code, execute/read
        db      0xcf, 0x00      ; G=1 (4 KiB units) D=1 (32-bit), limit 19:16=F; base 31:24
        dw      0xffff, 0x0000
        db      0x00, 0x92      ; type=data, read/write
        db      0xcf, 0x00
gdt_end:
CODE_SEL equ    0x08
DATA_SEL equ    0x10
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

s_banner: db "pmode: 32-bit protected mode", 10, 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
