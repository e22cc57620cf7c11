; vmm.asm - a tiny classic trap-and-emulate VMM (Popek & Goldberg 1974).
;
; A ring-0 monitor runs a "guest kernel" deprivileged at ring 3 (ring
; compression: the guest believes it is a ring-0 kernel) with IOPL 0, real IF=1
; and the PIC masked (so no interrupt ever arrives).  The monitor keeps a virtual
; CPU: vIF, the virtual GDTR (limit and base) and the virtual CPL (0).  Every
; trap is a #GP (interrupt gate, DPL 0); the handler decodes the guest
; instruction from its opcode bytes, emulates it against the virtual CPU,
; advances the guest EIP past it and IRETs back:
;   FA CLI / FB STI        vIF := 0 / 1
;   9C PUSHF               push the real EFLAGS with IF := vIF (RF, VM cleared,
;                          as PUSHF pushes them)
;   9D POPF                vIF := popped IF; OF DF SF ZF AF PF CF go to the
;                          real EFLAGS; IOPL and the real IF stay
;   0F 01 /2 LGDT [d32]    virtual GDTR := the 6 bytes at d32 (never loaded)
;   0F 01 /0 SGDT [d32]    the 6 bytes at d32 := virtual GDTR
;   8C C8 MOV EAX, CS      EAX := guest CS with RPL := virtual CPL (0)
;   F4 HLT                 the guest is done: print "traps: N" and exit
;   E6 E9 OUT E9h, AL      device emulation of the debug console for the
;                          guest's output (not counted in N)
; Anything else counts as a trap and ends the run like HLT.
;
; The guest kernel (ring3 below), in order:
;   LGDT [fake] (base 00123450h, no real table) ; SGDT [buf], base == 00123450h?
;   CLI ; PUSHF, IF == 0?
;   STI ; PUSH 2 ; POPF (IF clear) ; PUSHF, IF == 0?
;   MOV EAX, CS, RPL == 0?
;   HLT
; and prints one line per check (ok or FAIL) through OUT E9h (which always
; traps: CPL 3 > IOPL 0, no I/O bitmap).
;
; Without --pg-strict (real x86, the QEMU reference vmm.expected): LGDT (and
; HLT) are privileged, CLI/STI are IOPL-sensitive: they trap (4 traps).  SGDT,
; PUSHF, POPF and MOV from CS are critical (sensitive, not privileged): they run
; on the real machine and escape the monitor:
;   sgdt: FAIL   SGDT stores the real GDTR, whose base is gdt (7Dxxh), not 123450h
;   cli: FAIL    PUSHF shows the real IF, 1 (CLI only cleared vIF)
;   popf: FAIL   POPF at CPL 3 > IOPL silently keeps IF = 1; PUSHF shows 1
;   cs: FAIL     MOV EAX, CS gives 001Bh: RPL 3 shows the real CPL
;   traps: 00000004   LGDT CLI STI HLT
;
; With --pg-strict (vmm.strict-expected, trapeze only): every sensitive
; instruction at CPL 3 is #GP(0), so the monitor sees all of them:
;   sgdt: ok     SGDT traps, returns the virtual GDTR: base 00123450h
;   cli: ok      CLI traps (vIF=0), PUSHF traps, pushes IF = vIF = 0
;   popf: ok     STI traps (vIF=1), POPF traps (vIF := 0), PUSHF traps, IF = 0
;   cs: ok       MOV EAX, CS traps, gives 0018h: RPL = virtual CPL 0
;   traps: 00000009   LGDT SGDT CLI PUSHF STI POPF PUSHF MOV-CS HLT (each
;                executed once; PUSH imm, POP r32, TEST, Jcc, near CALL/RET,
;                MOV, LODSB are innocuous, OUT traps but is not counted)
;
; Why real IF = 1: with the real IF at 0 (as in the other guests) the PUSHF
; after CLI and the POPF that clears IF would agree with the virtual state by
; luck; at 1 they show the escape.  Port 21h = FFh masks every PIC IRQ, so no
; interrupt arrives (under QEMU, SeaBIOS leaves the PIT's IRQ 0 unmasked).
;
; Memory: monitor state and stack 07C8h-080Fh, TSS 0820h, IDT 0888h (limit 6Fh,
; only #GP), all cleared first; start-up stack 7000h, guest stack 6000h.  The
; fake GDTR base 00123450h is never dereferenced.  Everything fits the 510-byte
; boot sector only just: the real-mode part makes no near jump (so CS:IP may be
; 07C0:0000 or 0000:7C00), and the GDTR sits in the null descriptor.

MON     equ     0x0800                  ; TSS ESP0: the monitor's stack is
                                        ; 07C8h-07FFh (one trap frame), and its
                                        ; state sits just above it, zeroed:
TRAPS   equ     MON                     ;   dword: traps emulated
VIF     equ     MON+4                   ;   byte: vIF, as EFLAGS bit 9 in a byte (0 or 2)
VCPL    equ     MON+5                   ;   byte: virtual CPL, 0
VGDTR   equ     MON+8                   ;   6 bytes: virtual GDTR
BUF     equ     MON+16                  ; the guest's SGDT buffer
TSS     equ     0x0820                  ; zeroed (only ESP0, SS0, I/O base used)
IDT     equ     0x0888                  ; 14 gates (vectors 0..0Dh), zeroed, #GP
                                        ; at 08F0h written last
F       equ     MON-56                  ; EBP in the handler: the pushad frame
GP      equ     gp - $$ + 0x7c00

        bits    16
        org     0x7c00
start:  cli
        cld                             ; no near jump in real mode: CS:IP
        xor     ax, ax                  ; may be 07C0:0000 or 0000:7C00
        mov     ds, ax
        lgdt    [gdt]
        mov     eax, cr0
        or      al, 1
        mov     cr0, eax
        jmp     0x08:.pm
        bits    32
.pm:    mov     ax, 0x10
        mov     ss, eax
        mov     esp, 0x7000
        mov     al, 0x23                ; ring-3 flat data: it survives the
        mov     ds, eax                 ; IRETs to ring 3, so neither the
        mov     es, eax                 ; guest nor the monitor reloads it
        mov     edi, MON
        push    (IDT+13*8-MON)/4        ; 0800h up to the #GP gate
        pop     ecx
        xor     eax, eax
        rep stosd
        mov     al, 0x28
        ltr     ax
        mov     eax, 0x00080000 | (GP & 0xffff)
        stosd
        xor     eax, eax                ; offset 31:16 = 0 (GP < 10000h)
        mov     ah, 0x8e                ; present, DPL 0, 32-bit interrupt gate
        stosd
        mov     dword [TSS+4], MON      ; ESP0
        mov     byte [TSS+8], 0x10      ; SS0
        mov     byte [TSS+0x66], 0x68   ; I/O map base past the limit: no bitmap
        lidt    [idt_desc]
        mov     al, 0xff                ; mask every PIC IRQ: the guest runs
        out     0x21, al                ; with the real IF = 1
        push    0x23                    ; SS
        push    0x6000                  ; ESP
        push    0x202                   ; EFLAGS: IOPL 0, IF 1
        push    0x1b                    ; CS
        push    ring3                   ; EIP
        iret

; ---- the guest kernel, ring 3 ----
ring3:  lgdt    [fake]
        sgdt    [BUF]
        cmp     dword [BUF+2], 0x00123450
        call    report
        db      "sgdt: ", 0
        cli
        pushf
        pop     eax
        test    ah, 2                   ; IF
        call    report
        db      "cli: ", 0
        sti
        push    2
        popf                            ; IF clear
        pushf
        pop     eax
        test    ah, 2
        call    report
        db      "popf: ", 0
        mov     eax, cs
        test    al, 3                   ; RPL
        call    report
        db      "cs: ", 0
        hlt

report: pop     esi                     ; print the label after the CALL, then
        mov     edi, s_ok               ; ok if ZF=1, else FAIL
        jz      .p
        add     edi, s_fail - s_ok
.p:     call    puts
        push    esi
        mov     esi, edi
puts:   lodsb                           ; print [ESI] up to a zero byte
        test    al, al
        jz      .r
        out     0xe9, al                ; traps at ring 3 (emulated)
        jmp     puts
.r:     ret

; ---- the monitor's trap handler (#GP), ring 0 ----
; EBP = the pushad frame: EAX +28, error code +32, then EIP +36, CS +40,
; EFLAGS +44, ESP +48, SS +52 of the guest; ESI walks the guest instruction,
; EDI is the guest ESP.
gp:     pushad
        mov     ebp, esp
        mov     esi, [ebp+36]
        mov     edi, [ebp+48]
        lodsb
        cmp     al, 0xe6                ; OUT imm8, AL (port E9h): device
        jne     .count                  ; emulation, not counted
        lodsb
        mov     al, [ebp+28]
        out     0xe9, al
        jmp     .next
.count: inc     dword [ebp+TRAPS-F]
        cmp     al, 0xfa                ; CLI
        je      .clsti
        cmp     al, 0xfb                ; STI
        jne     .pushf
.clsti: and     al, 1
        add     al, al
        mov     [ebp+VIF-F], al
        jmp     .next
.pushf: cmp     al, 0x9c                ; PUSHF
        jne     .popf
        mov     eax, [ebp+44]
        and     eax, ~0x30200           ; RF and VM read as 0; IF is vIF
        or      ah, [ebp+VIF-F]
        sub     edi, 4
        mov     [edi], eax
        jmp     .esp
.popf:  cmp     al, 0x9d                ; POPF
        jne     .mov
        mov     eax, [edi]
        scasd                           ; EDI += 4
        mov     edx, [ebp+44]           ; OF DF SF ZF AF PF CF from the
        xor     edx, eax                ; popped value
        and     edx, 0xcd5
        xor     [ebp+44], edx
        and     ah, 2
        mov     [ebp+VIF-F], ah
.esp:   mov     [ebp+48], edi
        jmp     .next
.mov:   cmp     al, 0x8c                ; MOV EAX, CS (8C C8)
        jne     .lsgdt
        lodsb
        mov     eax, [ebp+40]
        and     al, ~3
        or      al, [ebp+VCPL-F]        ; RPL := virtual CPL
        mov     [ebp+28], eax
        jmp     .next
.lsgdt: cmp     al, 0x0f                ; 0F 01 /0 SGDT or /2 LGDT [disp32]
        jne     .halt
        lodsw                           ; AH = ModRM
        test    ah, 0x10                ; reg 2: LGDT
        lodsd                           ; EAX = disp32
        lea     edx, [ebp+VGDTR-F]
        jnz     .copy                   ; LGDT: [disp32] -> virtual GDTR
        xchg    eax, edx                ; SGDT: virtual GDTR -> [disp32]
.copy:  push    esi
        xchg    esi, eax
        mov     edi, edx
        movsd
        movsw
        pop     esi
.next:  mov     [ebp+36], esi
        popad
        add     esp, 4
        iret
.halt:  mov     esi, s_traps            ; HLT (or anything unknown)
        call    puts
        mov     eax, [ebp+TRAPS-F]
        push    8
        pop     ecx
.dig:   rol     eax, 4
        push    eax
        and     al, 0x0f
        add     al, '0'
        cmp     al, '9'
        jbe     .out
        add     al, 'A' - '9' - 1
.out:   out     0xe9, al
        pop     eax
        loop    .dig
        mov     al, 10
        out     0xe9, al
        mov     al, 0
        out     0xf4, al                ; isa-debug-exit
        hlt

s_ok:   db      "ok", 10, 0
s_fail: db      "FAIL", 10, 0
s_traps: db     "traps: ", 0
fake:   dw      0x17                    ; the guest's GDTR: a made-up table
        dd      0x00123450
idt_desc:
        dw      14*8 - 1
        dd      IDT
gdt:    dw      gdt_end - gdt - 1       ; null descriptor, holds the GDTR
        dd      gdt
        dw      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dq      0x00cffa000000ffff      ; 18 code, ring 3
        dq      0x00cff2000000ffff      ; 20 data, ring 3
        dw      0x67, TSS, 0x8900, 0    ; 28 32-bit TSS, available
gdt_end:

        times 510 - ($ - $$) db 0
        dw      0xaa55
