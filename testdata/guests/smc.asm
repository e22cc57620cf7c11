; smc.asm - self-modifying code (real mode, 16-bit boot sector).
;
; x86 guarantees that a store to code is seen by the very next instruction
; fetch (no "stale prefetch" on P6 and later, and QEMU TCG is precise too), so
; an emulator with a decode cache must notice stores into code it has decoded,
; including the block it is executing right now.  Every case prints the values
; the code that actually ran produced:
;
;   a: a loop that stores a new imm16 into a MOV instruction a few bytes ahead,
;      in the same basic block, then executes it (expect 0000 1111 2222 3333 4444)
;   b: a function is called, then overwritten with REP MOVSB by a new version
;      and called again; three versions, each called twice (each pair equal)
;   c: a store to the instruction immediately following the store: DEC AX
;      becomes INC AX (expect 0101 from 0100; 00FF would be a stale decode)
;   d: the same kind of patch written through a different segment:offset that
;      aliases the same physical byte (invalidation must be by physical address)

        bits    16
        org     0x7c00

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 0x7000

; ---- a: patch the immediate of an instruction later in the same block -------
        mov     si, s_a
        call    puts
        xor     di, di                  ; i = 0
.aloop: imul    ax, di, 0x1111
        mov     [.patch + 1], ax        ; imm16 of the MOV below (B8 iw)
.patch: mov     ax, 0xdead              ; must run with the value just stored
        call    space_hex16
        inc     di
        cmp     di, 5
        jb      .aloop
        call    nl

; ---- b: overwrite a whole function with REP MOVSB, call it again -----------
        mov     si, s_b
        call    puts
        mov     bx, 0x0123              ; argument for the versions that use it
        mov     bp, versions            ; table of (source, length) pairs
.bver:  call    func
        call    space_hex16
        call    func                    ; a second call: the new version must stick
        call    space_hex16
        mov     si, [bp]                ; next version's bytes
        mov     cx, [bp + 2]
        jcxz    .bdone
        mov     di, func
        rep     movsb                   ; copy it over func
        add     bp, 4
        jmp     .bver
.bdone: call    nl

; ---- c: store to the very next instruction -----------------------------------
        mov     si, s_c
        call    puts
        mov     ax, 0x0100
        mov     byte [.next], 0x40      ; 0x40 = INC AX, replacing 0x48 = DEC AX
.next:  dec     ax
        call    space_hex16

; ---- d: the same through an aliasing segment (0x07C0:x = 0x0000:7C00+x) -----
        mov     dx, 0x07c0
        mov     es, dx
        mov     ax, 0x0100
        mov     byte [es:.next2 - 0x7c00], 0x40
.next2: dec     ax
        call    space_hex16
        call    nl

        mov     al, 0                   ; isa-debug-exit: status 1
        out     0xf4, al
.stop:  hlt
        jmp     .stop

space_hex16:
        push    ax
        mov     al, ' '
        call    putc
        pop     ax
        jmp     hex16

; The function that gets rewritten.  Room for the longest version.
func:   mov     ax, 0x1111              ; version 1: a constant
        ret
        times   16 - ($ - func) db 0xcc

; Replacement versions: assembled here, never executed in place.
v2:     lea     ax, [bx + 0x1000]       ; version 2: 0x1123
        ret
v2_end:
v3:     mov     ax, bx                  ; version 3: 0x0123 * 4 + 7 = 0x0493
        shl     ax, 2
        add     ax, 7
        ret
v3_end:
versions:
        dw      v2, v2_end - v2
        dw      v3, v3_end - v3
        dw      0, 0

%include "lib16.inc"

s_a:    db "a:", 0
s_b:    db "b:", 0
s_c:    db "c/d:", 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
