; string.asm - REP string instructions in real mode (16-bit boot sector).
;
; Tested: REP MOVSB/MOVSW/MOVSD, REP STOSW/STOSD, REPE CMPSB/CMPSW,
; REPNE SCASB, LODSB/LODSD, with DF=0 and DF=1, with operands and buffers that
; straddle 4 KiB page boundaries (0x1000, 0x2000, ...), unaligned words and
; dwords, an overlapping backward copy (memmove), a REP with CX=0, and the
; 32-bit address-size form (67h: ESI/EDI/ECX) in real mode.
; string2.asm (which would not fit in this sector) has the segment cases (a
; ~64 KiB copy, a 16-bit offset wrap) and 67h string ops above 1 MiB.
;
; Each test prints one line:
;   <tag> <hash> <EAX> <ESI> <EDI> <ECX> <FLAGS & 0x8D5>
; hash = h*31 + byte (h starts at 0) over the test's buffer, 0x40 bytes at DS:BX
; (see strrep.inc).  All GPRs start at 0, so the upper halves of
; ESI/EDI/ECX show that 16-bit address-size string ops leave them alone.
; FLAGS (OF SF ZF AF PF CF) are set by CMPS/SCAS; the other string instructions
; must leave them as they were, so every flag-setting instruction between the
; tests is one whose flags are all architecturally defined (ADD/ADC/DEC, never
; logic ops, shifts or multiplies).
;
; Buffers (cleared or filled with plain MOVs first, never by the string
; instructions under test):
;   SRC   0x0FF0..0x102F   bytes 0x41, 0x42, ..., 0x80 (straddles 0x1000)
;   work  0x1F00..0x70FF   zeroed; destinations straddle 0x2000 ... 0x7000

        bits    16
        org     0x7c00

TAG     equ     0x600           ; line tag 'A', 'B', ... (see strrep.inc)
SRC     equ     0x0ff0

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     eax, eax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x9000     ; stack above the code, clear of every buffer
        xor     edx, edx
        mov     byte [TAG], 'A'

        mov     di, 0x1f00      ; zero the work area
        mov     cx, (0x7100 - 0x1f00) / 4
        call    fillp           ; (EAX = EDX = 0)
        mov     sp, 0x2000      ; all GPRs but ESP = 0: POPAD 32 bytes of the
        popad                   ; zeroed work area
        mov     sp, 0x9000
        mov     di, SRC         ; SRC = 0x41, 0x42, ... 0x80
        mov     cl, 16
        mov     eax, 0x44434241
        mov     edx, 0x04040404
        call    fillp           ; its ADD leaves all six flags defined

; A: REP MOVSB, DF=0, source and destination both cross a page boundary
        mov     si, SRC
        mov     di, 0x1ff8
        mov     cx, 0x23
        rep     movsb
        mov     bx, 0x1ff0
        call    report
; B: REP MOVSW, DF=0, odd addresses; one word straddles 0x2FFF/0x3000
        mov     si, SRC + 1
        mov     di, 0x2ffd
        mov     cx, 0x11
        rep     movsw
        mov     bx, 0x2ff0
        call    report
; C: REP MOVSD (66h), DF=0, one dword straddles 0x4000
        mov     si, SRC + 2
        mov     di, 0x3ffa
        mov     cx, 9
        rep     movsd
        mov     bx, 0x3ff0
        call    report
; D: REP MOVSB, DF=1: overlapping memmove of A's buffer 5 bytes up (from the top)
        std
        mov     si, 0x201f
        mov     di, 0x2024
        mov     cx, 0x30
        rep     movsb
        mov     bx, 0x1ff0
        call    report
; E: REP MOVSW, DF=1, destination crosses 0x5000 downwards
        mov     si, SRC + 0x3e
        mov     di, 0x5007
        mov     cx, 0x10
        rep     movsw
        mov     bx, 0x4fe0
        call    report
; F: REP MOVSD, DF=1, one dword straddles 0x6000
        mov     si, 0x1000
        mov     di, 0x6002
        mov     cx, 6
        rep     movsd
        mov     bx, 0x5fe0
        call    report
; G: REP STOSW, DF=1, across 0x7000 downwards
        mov     ax, 0xa55a
        mov     di, 0x7002
        mov     cx, 5
        rep     stosw
        mov     bx, 0x6ff0
        call    report
; H: REP STOSD, DF=0, same buffer as G
        cld
        mov     eax, 0x12345678
        mov     di, 0x7005
        mov     cl, 3
        rep     stosd
        call    report
; I: REPE CMPSB, DF=0: SRC+2.. against C's copy; differs after 36 bytes
        mov     si, SRC + 2
        mov     di, 0x3ffa
        mov     cl, 0x30
        repe    cmpsb
        call    report
; J: REPE CMPSW, DF=1: SRC+1.. against B's copy, from the top; equal to the end
        std
        mov     si, SRC + 1 + 0x20
        mov     di, 0x2ffd + 0x20
        mov     cl, 0x11
        repe    cmpsw
        call    report
; K: REPNE SCASB, DF=0: find 0x66 = SRC[0x25]
        cld
        mov     al, 0x66
        mov     di, SRC
        mov     cl, 0x40
        repne   scasb
        call    report
; L: REPNE SCASB, DF=1: 0xEE is not there, CX runs out
        std
        mov     al, 0xee
        mov     di, SRC + 0x3f
        mov     cl, 0x40
        repne   scasb
        call    report
; M: LODSB, DF=1: sum of SRC, from the top
        mov     si, SRC + 0x3f
        mov     cl, 0x40
        mov     dx, cx          ; (MOV, not XOR: keep the flags defined) DX = 0x40
.m:     lodsb
        add     dl, al
        adc     dh, 0
        loop    .m
        mov     ax, dx
        call    report
; N: LODSD, DF=0: sum of 6 unaligned dwords at SRC+3 (crosses 0x1000)
        cld
        mov     si, SRC + 3
        mov     cl, 6
        mov     edx, ecx
.n:     lodsd
        add     edx, eax
        loop    .n
        mov     eax, edx
        call    report
; O: REP MOVSB with CX=0 does nothing, not even to SI/DI
        mov     si, 0x1234
        mov     di, 0x5678
        rep     movsb
        call    report
; P: 67h: REP MOVSB with 32-bit ESI/EDI/ECX (offsets < 64 KiB: valid in real mode)
        mov     esi, SRC
        mov     edi, 0x1fe0
        mov     ecx, 0x40
        a32 rep movsb
        mov     bx, 0x1fe0
        call    report

        mov     al, 0           ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

; fillp: store CX dwords at ES:DI with plain MOVs: EAX, EAX+EDX, EAX+2*EDX, ...
fillp:  mov     [es:di], eax
        add     eax, edx
        add     di, 4
        loop    fillp
        ret

%include "strrep.inc"
%define LIB16_NO_PUTS
%include "lib16.inc"

        times 510 - ($ - $$) db 0
        dw      0xaa55
