; lapic_timer.asm - the local APIC timer in its three modes, and a self-IPI.
;
; Ring 0, 32-bit, both 8259s masked, the xAPIC at FEE00000h software-enabled
; (SVR 1FFh), timer divide by 1, vector 40h.  The handler counts interrupts, stops
; the timer (initial count 0) when the count reaches [stop], and EOIs.  Each line
; prints values that do not depend on the emulator's speed:
;   periodic : t=5 interrupts, then the stopped timer's current count c=0
;   one-shot : t=1 interrupt, current count c=0 afterwards
;   deadline : TSC-deadline mode, if CPUID.1:ECX[24] says it exists (QEMU's TCG
;              does not have it): one interrupt, and IA32_TSC_DEADLINE reads 0
;              once it fired; prints D! only when that goes wrong
;   self-IPI : ICR fixed, self shorthand: t=1 interrupt

%define PROT_NO_DUMP
%include "prot.inc"

LAPIC   equ     0xfee00000
TMICT   equ     0x380                   ; EDI points here: the initial count
VEC     equ     0x40

        PROT_START
        mov     al, 0xff
        out     0x21, al
        out     0xa1, al
        mov     ebx, VEC
        mov     eax, tick
        mov     dl, 0x8e
        call    gate
        mov     edi, LAPIC + TMICT
        mov     dword [LAPIC+0xf0], 0x1ff       ; SVR: enabled, spurious FFh
        mov     dword [edi+0x3e0-TMICT], 0xb    ; divide by 1
        ; periodic, 100000 ticks, stopped by the handler after 5
        mov     byte [stop], 5
        mov     dword [edi+0x320-TMICT], 0x20000 | VEC
        mov     dword [edi], 100000
        mov     bl, 5
        call    await
        ; one-shot (stops by itself; [stop] stays 5)
        mov     dword [edi+0x320-TMICT], VEC
        mov     dword [edi], 50000
        mov     bl, 1
        call    await
        ; TSC deadline
        mov     eax, 1
        cpuid
        bt      ecx, 24
        jnc     .ipi
        mov     dword [edi+0x320-TMICT], 0x40000 | VEC
        rdtsc
        add     eax, 200000
        adc     edx, 0
        mov     ecx, 0x6e0
        wrmsr
        mov     bl, 1
        call    count
        rdmsr                           ; ECX is still 6E0h
        dec     dword [ticks]
        or      eax, [ticks]
        jz      .ipi
        call    show
        db      "D!", 0
.ipi:   ; self-IPI: ICR low = self shorthand, assert, fixed, VEC; taken at the STI
        cli
        mov     dword [edi+0x320-TMICT], 0x10000 | VEC
        mov     dword [edi+0x300-TMICT], 0x44000 | VEC
        mov     bl, 1
        call    await
        jmp     exit

; count: count interrupts from 0 with HLT until BL came.  await: the same, then
; print the count and the current-count register.
count:  mov     dword [ticks], 0
        sti
.h:     hlt
        cmp     [ticks], bl
        jb      .h
        ret

await:  call    count
        mov     eax, [ticks]
        call    show
        db      "t=", 0
        mov     eax, [edi+0x390-TMICT]
        call    show
        db      "c=", 0
        ret

tick:   push    eax
        inc     dword [ticks]
        mov     al, [ticks]
        cmp     al, [stop]
        jne     .eoi
        mov     dword [LAPIC+TMICT], 0
.eoi:   mov     dword [LAPIC+0xb0], 0
        pop     eax
        iret

ticks:  dd      0
stop:   db      0

        PROT_LIB

gdt:    dq      0
        dq      0x00cf9a000000ffff      ; 08 code, ring 0
        dq      0x00cf92000000ffff      ; 10 data, ring 0
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt

        times 510 - ($ - $$) db 0
        dw      0xaa55
