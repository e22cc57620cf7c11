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

%include "prot.inc"
TSS     equ     0x1000

        PROT_START
        mov     dword [TSS+4], 0x6800   ; ESP0
        mov     dword [TSS+8], 0x10     ; SS0
        mov     word [TSS+0x66], 0x68   ; I/O map base past the limit: no bitmap
        mov     ax, 0x28
        ltr     ax
        mov     al, 0xff                ; mask every PIC IRQ: the guest runs
        out     0x21, al                ; with the real IF = 1
        mov     ebx, 13
        mov     eax, gp
        mov     dl, 0x8e
        call    gate
        push    0x23                    ; ring-3 flat data: survives the IRET
        pop     ds
        push    ds
        pop     es
        push    0x23                    ; SS
        push    0x6000                  ; ESP
        push    0x202                   ; EFLAGS: IOPL 0, IF 1
        push    0x1b                    ; CS
        push    ring3                   ; EIP
        iret

; ---- the guest kernel, ring 3 ----
ring3:  lgdt    [fake]
        sgdt    [buf]
        cmp     dword [buf+2], 0x00123450
        mov     esi, s_sgdt
        call    report
        cli
        call    seeif
        mov     esi, s_cli
        call    report
        sti
        push    2
        popf
        call    seeif
        mov     esi, s_popf
        call    report
        mov     eax, cs
        test    al, 3
        mov     esi, s_cs
        call    report
        hlt

seeif:  pushf                           ; ZF=1 if the IF it sees is 0
        pop     eax
        test    ah, 2
        ret

report: mov     edi, s_ok               ; ZF=1: ok
        jz      .p
        mov     edi, s_fail
.p:     call    puts32
        mov     esi, edi
        jmp     puts32

; ---- the monitor's trap handler, ring 0 ----
; pushad frame: EAX at +28, error code +32, EIP +36, CS +40, EFLAGS +44, ESP +48
gp:     pushad
        mov     esi, [esp+36]
        mov     edi, [esp+48]
        lodsb
        cmp     al, 0xe6                ; OUT imm8, AL
        jne     .count
        lodsb
        mov     al, [esp+28]
        out     0xe9, al
        jmp     .next
.count: inc     dword [traps]
        cmp     al, 0xfa                ; CLI / STI
        je      .clsti
        cmp     al, 0xfb
        jne     .pushf
.clsti: and     al, 1
        add     al, al
        mov     [vif], al
        jmp     .next
.pushf: cmp     al, 0x9c
        jne     .popf
        mov     eax, [esp+44]
        and     eax, ~0x30200           ; no RF, VM; IF from vIF
        or      ah, [vif]
        sub     edi, 4
        mov     [edi], eax
        jmp     .esp
.popf:  cmp     al, 0x9d
        jne     .mov
        mov     eax, [edi]
        scasd                           ; EDI += 4
        mov     dl, ah
        and     dl, 2
        mov     [vif], dl
        and     eax, 0xcd5
        and     dword [esp+44], ~0xcd5
        or      [esp+44], eax
.esp:   mov     [esp+48], edi
        jmp     .next
.mov:   cmp     al, 0x8c                ; MOV EAX, CS (8C C8)
        jne     .lsgdt
        lodsb
        mov     eax, [esp+40]
        and     al, ~3
        or      al, [vcpl]
        mov     [esp+28], eax
        jmp     .next
.lsgdt: cmp     al, 0x0f                ; 0F 01 /0 or /2, [disp32]
        jne     .halt
        lodsb
        lodsb
        mov     cl, al
        lodsd
        mov     edx, vgdtr
        test    cl, 0x10                ; /2: LGDT
        jz      .copy
        xchg    eax, edx
.copy:  push    esi
        mov     esi, eax
        mov     edi, edx
        movsd
        movsw
        pop     esi
.next:  mov     [esp+36], esi
        popad
        add     esp, 4
        iret
.halt:  mov     eax, [traps]            ; HLT (or anything unknown)
        call    show
        db      "traps: ", 0
        jmp     exit

        PROT_LIB

s_sgdt: db      "sgdt: ", 0
s_cli:  db      "cli: ", 0
s_popf: db      "popf: ", 0
s_cs:   db      "cs: ", 0
s_ok:   db      "ok", 10, 0
s_fail: db      "FAIL", 10, 0
fake:   dw      0x17
        dd      0x00123450
vcpl:   db      0
vif:    db      2
gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dq      0x00cffa000000ffff      ; 18 code, ring 3
        dq      0x00cff2000000ffff      ; 20 data, ring 3
        dw      0x67, TSS, 0x8900, 0    ; 28 32-bit TSS, available
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

traps   equ     0x0500                  ; monitor state below the IDT (zeroed)
vgdtr   equ     0x0504
buf     equ     0x050c                  ; the guest's SGDT buffer

;        times 510 - ($ - $$) db 0
        dw      0xaa55
