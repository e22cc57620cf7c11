; rom.asm - a 64 KiB BIOS-style ROM image (`trapeze run --bios rom.bin`,
; `qemu-system-i386 -bios rom.bin`).
;
; The image ends at physical 0xFFFFF (and is aliased at the top of 4 GiB,
; 0xFFFF0000..0xFFFFFFFF).  The CPU starts at the reset vector F000:FFF0 (with
; CS.base = 0xFFFF0000 on real hardware and QEMU), which is image offset 0xFFF0;
; the far JMP there reloads CS = F000 (base 0xF0000), as every PC BIOS does.
;
; Tests: the reset vector and the initial far jump, running from ROM, RAM
; being usable with no chipset setup (stack at 0000:7000), fast A20, a switch
; to 16-bit protected mode with a code segment based at 0xF0000, and the
; 4 GiB alias: the dword at 0xFFFFFFF0 equals the one at 0x000FFFF0.
;
; Output:
;   trapeze rom: reset vector ok
;   cs=F000 linear=000Fxxxx        (CS, and CS*16 + IP of an instruction)
;   [FFFFFFF0]=00E05BEA [000FFFF0]=00E05BEA
;                                  (the first 4 bytes of the reset vector
;                                   "jmp 0xF000:0xE05B", through both addresses)
; then debug-exit 0 (QEMU exit status 1).

        bits    16
        org     0               ; offsets within segment F000

ROMBASE equ     0xf0000         ; linear address of image offset 0

        times   0xe05b - ($ - $$) db 0xff   ; the unused start of the ROM (erased-flash fill)

; F000:E05B, where the IBM PC BIOS put its POST entry point (any offset would do;
; a non-zero one makes the far JMP's operand visible in the output)
start:  cli
        cld
        mov     ax, cs          ; strings live in the ROM: DS = CS = F000
        mov     ds, ax
        xor     ax, ax
        mov     ss, ax          ; stack in RAM
        mov     esp, 0x7000

        mov     si, s_banner
        call    puts
        mov     si, s_cs
        call    puts
        mov     ax, cs
        call    hex16
        mov     si, s_lin
        call    puts
        call    .here           ; IP of .here, by call/pop
.here:  pop     bx
        mov     ax, cs
        movzx   eax, ax
        shl     eax, 4
        movzx   ebx, bx
        add     eax, ebx        ; linear = CS * 16 + IP
        call    hex32
        call    nl

        in      al, 0x92        ; fast A20 on, so 0xFFFFFFF0 is not masked to 0xFFEFFFF0
        or      al, 2
        and     al, 0xfe
        out     0x92, al
        o32 lgdt [cs:gdt_desc]  ; GDTR.base is linear: ROMBASE + gdt
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     CODE16:.pm      ; 16-bit code segment, base 0xF0000: same offsets
.pm:    mov     ax, ROMDATA
        mov     ds, ax          ; DS = the ROM again (strings)
        mov     ax, FLAT
        mov     ss, ax
        mov     fs, ax          ; FS = flat 4 GiB
        mov     si, s_top
        call    puts
        mov     eax, [fs:dword 0xfffffff0]
        call    hex32
        mov     si, s_low
        call    puts
        mov     eax, [fs:dword 0x000ffff0]
        call    hex32
        call    nl

        mov     al, 0           ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

%include "lib16.inc"

s_banner: db "trapeze rom: reset vector ok", 10, 0
s_cs:     db "cs=", 0
s_lin:    db " linear=", 0
s_top:    db "[FFFFFFF0]=", 0
s_low:    db " [000FFFF0]=", 0

; GDT: null, 16-bit code based at the ROM, 16-bit data based at the ROM,
; flat 4 GiB data
gdt:    dq      0
        dw      0xffff, 0x0000
        db      0x0f, 0x9a, 0x00, 0x00  ; base 0x000F0000, 64 KiB, code exec/read, 16-bit
        dw      0xffff, 0x0000
        db      0x0f, 0x92, 0x00, 0x00  ; base 0x000F0000, 64 KiB, data read/write
        dw      0xffff, 0x0000
        db      0x00, 0x92, 0xcf, 0x00  ; base 0, 4 GiB, data read/write
gdt_end:
CODE16  equ     0x08
ROMDATA equ     0x10
FLAT    equ     0x18
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      ROMBASE + gdt

        times   0xfff0 - ($ - $$) db 0xff

; ---- image offset 0xFFF0 = physical 0xFFFF0 = 0xFFFFFFF0: the reset vector ----
reset:  jmp     0xf000:start
        times   0x10000 - ($ - $$) db 0xff
