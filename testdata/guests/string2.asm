; string2.asm - string instructions, part 2: segments and 32-bit addressing.
; (string.asm has the page-boundary and direction-flag cases; they do not all
; fit in one 512-byte boot sector.)
;
; Real mode:
;   A: a ~64 KiB REP MOVSD from 1000:0000 to 2000:0000 (0xFFFC bytes): crosses
;      15 page boundaries, but neither offset reaches the end of its segment
;   B: REP STOSB at 1000:FFFE with 16-bit addressing: DI wraps to 0000 inside
;      the segment, so it writes linear 0x1FFFE, 0x1FFFF, 0x10000, 0x10001 and
;      never 0x20000.  Two lines: B hashes 0x1FFF0..0x2002F, C 0x10000..0x1003F
; 16-bit protected mode (16-bit code segment, flat 4 GiB data segments), every
; string instruction with the 67h prefix, i.e. ESI/EDI/ECX, above 1 MiB:
;   D: REP MOVSB, DF=0, 128 KiB - 8 bytes, unaligned, destination crosses 4 MiB
;   E: REP MOVSD (66h 67h), DF=1: overlapping memmove of D's copy 6 bytes up
;   F: REPE CMPSD, DF=0: the source against E's result, with one byte in
;      the middle flipped: stops just past it
;   G: REPNE SCASD: find the dword at index 1000 of the source
;
; Output lines as in string.asm (strrep.inc):
;   <tag> <hash> <EAX> <ESI> <EDI> <ECX> <FLAGS & 0x8D5>
; Again only ADD/ADC/CMP-class instructions set flags between tests, so the
; printed flags are architecturally defined everywhere.
;
; Memory: 0x10000..0x1FFFF and 0x1F0000..0x20FFFF are filled with the dwords
; 1, 1+0x9E3779B9, 1+2*0x9E3779B9, ... with plain MOVs before use.

        bits    16
        org     0x7c00

TAG     equ     0x600
SRC     equ     0x1f0000        ; 128 KiB source above 1 MiB, crosses 2 MiB
DST     equ     0x3ff001        ; D's destination, crosses 4 MiB (0x400000)
N       equ     0x1fff8         ; bytes copied by D (a multiple of 4, for E/F)
STEP    equ     0x9e3779b9

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     eax, eax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x9000
        xor     ebx, ebx
        xor     ecx, ecx
        xor     esi, esi
        xor     edi, edi
        xor     ebp, ebp
        mov     byte [TAG], 'A'

; ---- A: ~64 KiB copy between segments ---------------------------------------
        mov     ax, 0x1000
        mov     es, ax
        mov     ds, ax
        mov     ch, 0x40        ; ECX = 0x4000 dwords: all of 1000:0000..FFFF
        call    fillp           ; (EDI = 0; its ADD makes all flags defined)
        mov     ax, 0x2000
        mov     es, ax
        mov     si, cx          ; CX is 0 again: SI = DI = 0 without touching flags
        mov     di, cx          ; (EDI[31:16] stays 1 from fillp: 16-bit string ops keep it)
        mov     cx, 0x3fff
        rep     movsd
        mov     ds, ax          ; hash the whole destination
        mov     bx, cx
        mov     bp, 0xfffc
        call    report.bp
; ---- B: 16-bit offset wrap inside a segment -----------------------------------
        mov     ax, 0x1000
        mov     es, ax
        mov     di, 0xfffe
        mov     cl, 4
        mov     al, 0x77
        rep     stosb
        mov     dx, 0x1fff      ; 1FFF:0000 = 0x1FFF0..0x2002F: 0x77 0x77 at 0x1FFFE,
        mov     ds, dx          ; then A's copy, unchanged
        call    report          ; (BX is still 0)
        push    es              ; 1000:0000: 0x77 0x77, then the fill
        pop     ds
        call    report

; ---- into 16-bit protected mode with flat 4 GiB data segments -----------------
        in      al, 0x92        ; fast A20 on: we are going above 1 MiB
        or      al, 2
        and     al, 0xfe
        out     0x92, al
        lgdt    [cs:gdt_desc]  ; (DS is still 0x1000)
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     CODE16:.pm16
.pm16:  mov     ax, FLAT
        mov     ds, ax
        mov     es, ax
        mov     ss, ax          ; (a 32-bit stack: ESP is 0x00009000)

        mov     edi, SRC
        mov     ecx, 0x8000
        call    fillp           ; 128 KiB at SRC; flags defined again

; D: REP MOVSB, DF=0, ESI/EDI/ECX
        mov     esi, SRC + 3
        mov     edi, DST
        mov     ecx, N
        a32 rep movsb
        mov     ebx, DST
        mov     ebp, N
        call    report.bp
; E: REP MOVSD, DF=1: D's copy moves 6 bytes up, overlapping, from the top
        std
        mov     esi, DST + N - 4
        lea     edi, [esi + 6]
        mov     ecx, N / 4
        a32 rep movsd
        mov     ebp, N + 6
        call    report.bp
; F: REPE CMPSD, DF=0: source+3 against E's result at DST+6, which is equal
;    except for byte 0x12345, inverted here first (NOT sets no flags)
        cld
        not     byte [dword DST + 6 + 0x12345]
        mov     esi, SRC + 3
        mov     edi, DST + 6
        mov     ecx, N / 4
        a32 repe cmpsd
        call    report
; G: REPNE SCASD: find the dword at index 1000 of the source
        mov     eax, (1 + 1000 * STEP) & 0xffffffff
        mov     edi, SRC
        mov     ecx, 0x8000
        a32 repne scasd
        call    report
        mov     al, 0           ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

; fillp: store ECX dwords at ES:EDI with plain MOVs: 1, 1+STEP, 1+2*STEP, ...
fillp:  mov     eax, 1
.next:  mov     [es:edi], eax
        add     eax, STEP
        add     edi, 4
        dec     ecx
        jnz     .next
        ret

%include "strrep.inc"
%define LIB16_NO_PUTS
%include "lib16.inc"

; GDT: null, 16-bit code (base 0, 64 KiB), flat 4 GiB read/write data.
; The null descriptor is never used by the CPU, so the 6-byte LGDT operand
; lives in it (a common boot-sector space saver).
gdt:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt
        dw      0
        dw      0xffff, 0       ; limit 15:0, base 15:0
        db      0, 0x9a, 0x00, 0 ; base 23:16, P DPL0 code exec/read, G=0 D=0 (16-bit), base 31:24
        dw      0xffff, 0
        db      0, 0x92, 0xcf, 0 ; data read/write, G=1 B=1, limit 0xFFFFF pages
gdt_end:
CODE16  equ     0x08
FLAT    equ     0x10

        times 510 - ($ - $$) db 0
        dw      0xaa55
