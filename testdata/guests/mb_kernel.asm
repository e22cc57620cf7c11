; mb_kernel.asm - a multiboot v1 kernel (flat binary, a.out-kludge header) that
; checks what the boot loader handed it and prints it on the debug console.
;
; Run: trapeze run --multiboot mb_kernel.bin --append "root=/dev/x quiet"
;          --module mb_mod1.txt,"arg one" --module mb_mod2.txt --memory 16M
; QEMU: qemu-system-i386 -m 16 -kernel mb_kernel.bin -append "root=/dev/x quiet"
;          -initrd "mb_mod1.txt arg one,mb_mod2.txt"
;
; Tests: EAX = 0x2BADB002, the info flags for memory, cmdline, modules and memory
; map, mem_lower/mem_upper, the memory map, the command line, each module's string,
; length and first bytes (and page alignment, which the header asks for), and that
; the flat segments the loader left can be reloaded (MOV to DS/ES/SS, far RET to CS).
;
; Only what every correct loader must agree on is printed: QEMU's map (SeaBIOS
; e820) reserves 128 KiB at the top of RAM for the firmware (so its mem_upper is
; 15232 with -m 16, trapeze's 15360) and lists ROM and high reserved regions trapeze
; does not have, so mem_upper is range-checked and the map is checked (available
; RAM at 0 and at 1 MiB, nothing available in 0xA0000-0xFFFFF or beyond the 16 MiB
; of RAM, every entry size 20) rather than dumped.  mem_lower (639 KiB: both keep
; the 1 KiB EBDA at 0x9FC00 reserved) is printed.
;
; Output on port 0xE9, then debug-exit 0 (QEMU exit status 1).

        bits    32
        org     0x100000

MB_MAGIC  equ   0x1BADB002
MB_FLAGS  equ   (1 << 0) | (1 << 1) | (1 << 16)  ; align modules, mem info, a.out kludge

hdr:    dd      MB_MAGIC
        dd      MB_FLAGS
        dd      -(MB_MAGIC + MB_FLAGS)
        dd      hdr                     ; header_addr
        dd      hdr                     ; load_addr
        dd      load_end                ; load_end_addr
        dd      bss_end                 ; bss_end_addr
        dd      start                   ; entry_addr

start:  cld
        mov     esp, stack_top
        mov     [magic], eax
        mov     [info], ebx
        mov     ax, ds                  ; the loader's flat selectors must reload
        mov     es, ax
        mov     ss, ax
        mov     ds, ax
        push    cs
        push    .cs
        retf
.cs:    mov     esi, s_magic
        call    puts32
        mov     eax, [magic]
        call    hex32p
        cmp     eax, 0x2BADB002
        mov     esi, s_ok
        je      .m
        mov     esi, s_bad
.m:     call    puts32

        mov     ebx, [info]
        mov     esi, s_flags            ; the flags this kernel relies on
        call    puts32
        mov     eax, [ebx]
        and     eax, (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6)
        call    hex32p
        call    nl32

        mov     esi, s_lower
        call    puts32
        mov     eax, [ebx + 4]
        call    hex32p
        call    nl32
        mov     esi, s_upper            ; QEMU's is 128 KiB short of trapeze's
        call    puts32
        mov     eax, [ebx + 8]
        cmp     eax, 14 << 10
        mov     esi, s_ok
        jb      .ub
        cmp     eax, 15 << 10
        jbe     .u
.ub:    mov     esi, s_bad
.u:     call    puts32

        ; ---- memory map ----
        mov     esi, [ebx + 48]         ; mmap_addr
        mov     edi, esi
        add     edi, [ebx + 44]         ; + mmap_length
        xor     ebp, ebp                ; bit 0: RAM at 0, bit 1: RAM at 1M, bit 2: error
.map:   cmp     esi, edi
        jae     .mapdone
        cmp     dword [esi], 20
        je      .sz
        or      ebp, 4                  ; unexpected entry size
.sz:    cmp     dword [esi + 20], 1
        jne     .next                   ; only available RAM is checked
        cmp     dword [esi + 8], 0      ; base above 4G or length above 4G: error
        jne     .err
        cmp     dword [esi + 16], 0
        jne     .err
        mov     eax, [esi + 4]          ; base
        mov     edx, eax
        add     edx, [esi + 12]         ; end
        jc      .err
        cmp     edx, 16 << 20           ; nothing beyond the 16 MiB of RAM
        ja      .err
        cmp     eax, 0x100000           ; nothing available in A0000-FFFFF
        jae     .hi
        cmp     edx, 0xA0000
        ja      .err
        test    eax, eax
        jnz     .next
        cmp     edx, 0x9F000            ; at least 636 KiB at 0
        jb      .next
        or      ebp, 1
        jmp     .next
.hi:    cmp     eax, 0x100000
        jne     .next
        cmp     edx, 15 << 20           ; at least 14 MiB at 1 MiB
        jb      .next
        or      ebp, 2
        jmp     .next
.err:   or      ebp, 4
.next:  add     esi, [esi]
        add     esi, 4
        jmp     .map
.mapdone:
        mov     esi, s_mmap
        call    puts32
        mov     eax, ebp
        call    hex32p
        cmp     ebp, 3
        mov     esi, s_ok
        je      .mo
        mov     esi, s_bad
.mo:    call    puts32

        ; ---- command line ----
        mov     esi, s_cmd
        call    puts32
        mov     esi, [ebx + 16]
        call    puts32
        mov     al, '"'
        out     0xe9, al
        call    nl32

        ; ---- modules ----
        mov     esi, s_mods
        call    puts32
        mov     eax, [ebx + 20]
        call    hex32p
        call    nl32
        mov     edi, [ebx + 24]         ; mods_addr
        mov     ebp, [ebx + 20]
.mod:   test    ebp, ebp
        jz      .done
        mov     esi, s_mod
        call    puts32
        mov     esi, [edi + 8]
        call    puts32
        mov     esi, s_len
        call    puts32
        mov     eax, [edi + 4]
        sub     eax, [edi]
        call    hex32p
        mov     esi, s_data
        call    puts32
        mov     edx, [edi]
        mov     eax, [edx]
        bswap   eax                     ; bytes in file order
        call    hex32p
        mov     eax, [edx + 4]
        bswap   eax
        call    hex32p
        test    dword [edi], 0xFFF
        mov     esi, s_align
        jz      .al
        mov     esi, s_unalign
.al:    call    puts32
        add     edi, 16
        dec     ebp
        jmp     .mod

.done:  mov     esi, s_end
        call    puts32
        xor     eax, eax
        out     0xf4, eax
        cli
        hlt

%include "lib32.inc"

s_magic:   db "multiboot: eax=", 0
s_ok:      db " ok", 10, 0
s_bad:     db " BAD", 10, 0
s_flags:   db "flags&4D=", 0
s_lower:   db "mem_lower=", 0
s_upper:   db "mem_upper in 14336..15360 KiB:", 0
s_mmap:    db "mmap checks=", 0
s_cmd:     db 'cmdline="', 0
s_mods:    db "mods_count=", 0
s_mod:     db 'module "', 0
s_len:     db '" len=', 0
s_data:    db " data=", 0
s_align:   db " page-aligned", 10, 0
s_unalign: db " NOT page-aligned", 10, 0
s_end:     db "done", 10, 0

load_end:
        section .bss
        alignb  4
magic:  resd    1
info:   resd    1
        resb    4096
stack_top:
bss_end:
