; prot_task.asm - hardware task switches: JMP to a TSS, CALL through a task gate
; and the IRET back (NT, back link), busy bits, and a double fault handled by a
; task gate in the IDT, as 32-bit kernels do.
;
; Task A (TSS 18h, loaded by LTR) runs the test; task B (TSS 20h) and the #DF task
; C (TSS 28h) start from TSSs holding just EIP, ESP, CS, SS, DS (and EAX for B).
; `state` prints: LAR of TSS B, LAR of TSS A (access byte 89h available, 8Bh busy),
; TR, EAX, EFLAGS (NT is bit 14).
;  1. A: state, then EAX = AAAA0001 and JMP 20h:0.
;  2. B: state (EAX B0B0B0B0 from its TSS; A's busy bit cleared by the JMP), then
;     JMP 18h:0 back to A, which resumes after its JMP with its EAX.
;  3. A: state; CALL 30h:0, a task gate for B: B resumes after its JMP, nested:
;     NT set, back link (printed from TSS B) 0018, A still busy; IRET returns to A
;     and frees B.
;  4. A: MOV DS with a selector past the GDT limit: #GP, whose IDT gate is not
;     present: #NP while delivering #GP is a double fault, and IDT entry 8 is a
;     task gate to C.  C prints state, then its stack (the #DF error code 0), the
;     EIP saved in TSS A (the faulting MOV) and C's back link (0018).

%define LIB32_NO_PUTS
%include "prot.inc"
TSSA    equ     0x1000
TSSB    equ     0x1100
TSSC    equ     0x1200

        PROT_START
        mov     edi, TSSA               ; three zeroed TSSs
        mov     cl, 3*0x100/4          ; EAX and ECX are 0 after PROT_START
        rep stosd
        mov     ebx, TSSB
        mov     dword [ebx+0x20], taskb ; EIP
        mov     dword [ebx+0x28], 0xb0b0b0b0 ; EAX
        mov     dword [ebx+0x38], 0x5000 ; ESP
        call    .segs
        mov     bh, TSSC >> 8
        mov     dword [ebx+0x20], taskc
        mov     dword [ebx+0x38], 0x4800
        call    .segs
        mov     ax, 0x18
        ltr     ax
        mov     dword [IDT+8*8], 0x00280000 ; task gate to TSS 28h
        mov     byte [IDT+8*8+5], 0x85
        mov     byte [IDT+13*8+5], 0x0e ; #GP: interrupt gate, not present
        jmp     taska
.segs:  mov     byte [ebx+0x4c], 0x08   ; CS
        mov     byte [ebx+0x50], 0x10   ; SS
        mov     byte [ebx+0x54], 0x10   ; DS
        ret

taska:  call    state
        mov     eax, 0xaaaa0001
        jmp     0x20:0
        call    state
        call    0x30:0
        call    state
        mov     ax, 0x99
        mov     ds, ax

taskb:  call    state
        jmp     0x18:0
        call    state
        mov     esi, TSSB
        mov     cl, 1
        call    dump
        iret

taskc:  call    state
        mov     esi, esp
        mov     cl, 1
        call    dump
        mov     esi, TSSA+0x20
        mov     cl, 1
        call    dump
        mov     esi, TSSC
        mov     cl, 1
        call    dump
        jmp     exit

state:  pushfd
        push    eax
        str     eax
        push    eax
        mov     eax, 0x18
        lar     eax, eax
        push    eax
        mov     eax, 0x20
        lar     eax, eax
        push    eax
        mov     esi, esp
        mov     ecx, 5
        call    dump
        add     esp, 20
        ret

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
        dw      0x67, TSSA, 0x8900, 0   ; 18 TSS A
        dw      0x67, TSSB, 0x8900, 0   ; 20 TSS B
        dw      0x67, TSSC, 0x8900, 0   ; 28 TSS C, the #DF task
        dw      0, 0x20, 0x8500, 0      ; 30 task gate to TSS B
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
