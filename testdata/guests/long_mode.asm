; long_mode.asm - from real mode straight into 64-bit long mode and back out.
;
; Real mode: identity-map the first 2 MiB with 4-level paging (a 2-MByte page),
; plus a 1-GByte page at linear 1 GiB (physical 0) and the same tables again at
; the top of the address space (PML4 entry 511). CR4.PAE, CR3, EFER.LME, then
; CR0.PE and CR0.PG in one MOV: IA-32e mode is active (EFER.LMA) with the
; real-mode CS, i.e. compatibility mode, and a far JMP loads a 64-bit CS
; (SDM Vol.3 9.8.5). 64-bit code stores its results as qwords at RES:
;   0, 1  RDX:RAX of 0123456789ABCDEF * FEDCBA9876543210 (MUL)
;   2, 3  quotient and remainder of a 128-by-64 DIV
;   4     R8..R15 arithmetic (SAR, IMUL, ROL, SUB, XOR)
;   5     EFER in 64-bit mode (LME | LMA = 500)
;   6     the qword at 0x40007C00 (1-GByte page: the boot sector's first bytes)
;   7     the qword at 0xFFFFFF8000007C00 (PML4 entry 511: the same bytes)
; A far return (REX.W RETF) goes to a 32-bit code segment: compatibility mode,
; still under long-mode paging. It prints the results, EFER there, clears CR0.PG
; (which deactivates IA-32e mode: LMA = 0) and prints EFER again.

        bits    16
        org     0x7c00

%define CODE64   0x08
%define DATA_SEL 0x10
%define CODE32   0x18
%define PML4     0x10000
%define RES      0x8000

start:  cli
        cld
        jmp     0x0000:.cs0
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     ss, ax
        mov     sp, 0x7000
        in      al, 0x92
        or      al, 2
        and     al, 0xfe
        out     0x92, al

        push    PML4 >> 4               ; ES:DI = PML4; zero it, the PDPT, the PD
        pop     es
        xor     ax, ax
        xor     di, di
        mov     cx, 3 * 4096 / 2
        rep     stosw
        mov     dword [es:0x0000], 0x11003      ; PML4[0]   -> PDPT at 0x11000
        mov     dword [es:0x0ff8], 0x11003      ; PML4[511] -> the same PDPT
        mov     dword [es:0x1000], 0x12003      ; PDPT[0]   -> PD at 0x12000
        mov     byte [es:0x1008], 0x83  ; PDPT[1]: 1 GiB page at physical 0
        mov     byte [es:0x2000], 0x83  ; PD[0]: 2 MiB page at physical 0

        mov     eax, cr4
        or      al, 0x20                ; CR4.PAE
        mov     cr4, eax
        mov     eax, PML4
        mov     cr3, eax
        mov     ecx, 0xc0000080         ; EFER
        rdmsr
        or      ah, 0x01                ; LME
        wrmsr
        lgdt    [gdt_desc]
        mov     eax, cr0
        or      eax, 0x80000001         ; PG | PE: IA-32e mode, compatibility mode
        mov     cr0, eax
        jmp     CODE64:long64

        bits    64
long64: mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x7000
        mov     edi, RES
        mov     rax, 0x0123456789abcdef
        mov     rbx, 0xfedcba9876543210
        mul     rbx
        mov     [rdi], rdx
        mov     [rdi + 8], rax
        mov     rcx, -59                ; 2^64 - 59, a prime above RDX
        div     rcx                     ; RDX:RAX / RCX
        mov     [rdi + 16], rax
        mov     [rdi + 24], rdx
        mov     r8, rbx
        sar     r8, 7
        mov     r9, r8
        imul    r9, r8
        mov     r10, r9
        rol     r10, 13
        sub     r10, r8
        mov     r15, r10
        xor     r15, rbx
        mov     [rdi + 32], r15
        mov     ecx, 0xc0000080
        rdmsr
        mov     [rdi + 40], rax         ; RDMSR zero-extends into RAX
        mov     rax, [0x40007c00]
        mov     [rdi + 48], rax
        mov     rax, 0xffffff8000007c00
        mov     rax, [rax]
        mov     [rdi + 56], rax
        push    CODE32
        push    compat
        o64 retf

        bits    32
compat: mov     esi, RES
        mov     bl, 8
.res:   lodsd
        xchg    eax, edx                ; low dword
        lodsd
        call    hex32p                  ; high dword first
        xchg    eax, edx
        call    hex32p
        call    nl32
        dec     bl
        jnz     .res
        call    efer
        mov     eax, cr0
        btr     eax, 31                 ; PG = 0: leaves IA-32e mode
        mov     cr0, eax
        call    efer
        mov     al, 0
        out     0xf4, al

efer:   mov     ecx, 0xc0000080
        rdmsr
        call    hex32p
        jmp     nl32

%include "lib32.inc"

gdt:    dq      0
        dq      0x00209a0000000000      ; 0x08: 64-bit code (L = 1)
        dq      0x00cf92000000ffff      ; 0x10: data, flat 4 GiB
        dq      0x00cf9a000000ffff      ; 0x18: 32-bit code, flat 4 GiB
gdt_desc:
        dw      gdt_desc - gdt - 1
        dd      gdt

        times   510 - ($ - $$) db 0
        dw      0xaa55
