; prot_long.asm - interrupts in long mode: 16-byte IDT gates, an IST stack, the
; 16-byte stack alignment, SS:RSP always pushed, a privilege change that loads a
; null SS, and IRETQ to ring 3.  Reference: qemu-system-x86_64.
;
; From real mode: identity-map the first 2 MiB (one 2-MiB user page), CR4.PAE,
; EFER.LME, CR0.PG|PE, far jump to 64-bit code.  The 64-bit TSS has RSP0 = 6808h
; and IST1 = 6008h, both 8 bytes off a 16-byte boundary.
;  1. INT3 through a gate with IST 1: the handler's RSP is 6000h - 40 (IST1
;     aligned down, then SS RSP RFLAGS CS RIP), and it prints that frame.
;  2. A load from a non-canonical address: #GP(0) on the current stack; the
;     handler prints error code, RIP, CS (not RFLAGS: the SDM sets RF in a fault's
;     image, QEMU does not) and skips the 3-byte instruction.
;  3. IRETQ to ring 3 (CS 1Bh, SS 23h, RSP 5800h); ring 3 runs INT 80h through a
;     DPL-3 gate: RSP0 aligned down to 6800h, the frame holds ring 3's SS:RSP, and
;     the handler's SS is null (selector 0, printed first).
; Every line is "RSP then the frame"; numbers are 16 hex digits.

        bits    16
        org     0x7c00
IDT     equ     0x0800                  ; 0x81 16-byte gates
TSS     equ     0x1800
PML4    equ     0x2000                  ; then the PDPT and the PD

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 0x7000
        mov     di, IDT
        mov     cx, (PML4 + 0x3000 - IDT) / 2
        rep stosw
        mov     byte [PML4], 0x07        ; PML4[0] -> PDPT at 3000h (P RW US)
        mov     byte [PML4+1], 0x30
        mov     word [PML4+0x1000], 0x4007 ; PDPT[0] -> PD at 4000h
        mov     byte [PML4+0x2000], 0x87 ; PD[0]: 2 MiB at 0 (P RW US PS)
        mov     dword [TSS+4], 0x6808   ; RSP0
        mov     dword [TSS+0x24], 0x6008 ; IST1
        mov     eax, cr4
        or      al, 0x20                ; PAE
        mov     cr4, eax
        mov     eax, PML4
        mov     cr3, eax
        mov     ecx, 0xc0000080         ; EFER
        rdmsr
        or      ah, 1                   ; LME
        wrmsr
        lgdt    [gdt_desc]
        lidt    [idt_desc]
        mov     eax, cr0
        or      eax, 0x80000001         ; PG | PE
        mov     cr0, eax
        jmp     0x08:lm

        bits    64
lm:     mov     eax, 0x10
        mov     ds, eax
        mov     es, eax
        mov     ss, eax
        mov     esp, 0x7000
        mov     ax, 0x28
        ltr     ax
        mov     ebx, 3
        mov     eax, brk
        mov     dx, 0x8e01              ; interrupt gate, DPL 0, IST 1
        call    gate
        mov     bl, 13
        mov     eax, gp
        mov     dh, 0x8e
        mov     dl, 0
        call    gate
        mov     bl, 0x80
        mov     eax, i80
        mov     dh, 0xee                ; DPL 3
        call    gate
        int3
        mov     rbx, 0x8000000000000000
        mov     rax, [rbx]
        push    0x23                    ; SS
        push    0x5800                  ; RSP
        push    2                       ; RFLAGS
        push    0x1b                    ; CS
        push    ring3                   ; RIP
        iretq

ring3:  int     0x80

brk:    mov     ecx, 5
        call    frame
        iretq
gp:     mov     ecx, 3
        call    frame
        add     qword [rsp+8], 3
        add     rsp, 8
        iretq
i80:    mov     eax, ss
        push    rax
        mov     ecx, 6
        call    frame
        mov     al, 0
        out     0xf4, al
        hlt

; frame: print RSP at the interrupt (the caller's RSP + 8), then ECX qwords from
; there on.  Clobbers RAX, RCX, RSI.
frame:  lea     rax, [rsp+8]
        mov     rsi, rax
        push    rcx
        call    hex64
        pop     rcx
.q:     lodsq
        push    rcx
        call    hex64
        pop     rcx
        loop    .q
        mov     al, 10
        out     0xe9, al
        ret

; hex64: print " " and RAX in 16 hex digits.  Clobbers RAX, ECX.
hex64:  push    rax
        mov     al, ' '
        out     0xe9, al
        pop     rax
        mov     ecx, 16
.d:     rol     rax, 4
        push    rax
        and     al, 0x0f
        add     al, '0'
        cmp     al, '9'
        jbe     .o
        add     al, 7
.o:     out     0xe9, al
        pop     rax
        loop    .d
        ret

; gate: IDT[EBX] = 64-bit gate to 0008:EAX, DL = IST, DH = access byte.
gate:   shl     ebx, 4
        mov     [IDT+rbx], ax
        mov     word [IDT+rbx+2], 0x08
        mov     [IDT+rbx+4], dx
        shr     eax, 16
        mov     [IDT+rbx+6], ax
        shr     ebx, 4
        ret

gdt:    dq      0
        dq      0x00209a0000000000      ; 08 64-bit code, ring 0
        dq      0x0000920000000000      ; 10 data, ring 0
        dq      0x0020fa0000000000      ; 18 64-bit code, ring 3
        dq      0x0000f20000000000      ; 20 data, ring 3
        dw      0x67, TSS, 0x8900, 0    ; 28 64-bit TSS (16 bytes)
        dq      0
gdt_end:
gdt_desc:
        dw      gdt_end - gdt - 1
        dd      gdt
idt_desc:
        dw      0x81 * 16 - 1
        dd      IDT

        times 510 - ($ - $$) db 0
        dw      0xaa55
