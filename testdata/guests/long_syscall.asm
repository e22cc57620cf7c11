; long_syscall.asm - SYSCALL/SYSRET round trips, SWAPGS and RDTSCP in long mode.
;
; Enters 64-bit mode as long_mode.asm does, with U/S = 1 at every level of the
; identity map so ring 3 can run the same pages. STAR gives SYSCALL CS = 0x08,
; SS = 0x10 and SYSRET CS = 0x1B (32-bit) / 0x2B (64-bit), SS = 0x23; SFMASK
; clears DF. Ring 3 never writes a port; the kernel prints, one qword per line:
;   1  GS.base after SWAPGS (KERNEL_GS_BASE was 0000123456789AB0)
;   2  GS.base after a second SWAPGS (back to 0)
;   3  ECX of RDTSCP (TSC_AUX = 0x42)
; then SYSRET (REX.W) to 64-bit ring 3, which saves CS and SS in R12/R13, sets DF
; and SYSCALLs back to LSTAR. The kernel prints:
;   4  RCX  (the return RIP, after ring 3's SYSCALL)
;   5  R11  (ring 3's RFLAGS: DF | bit 1)
;   6  R12, R13  ring 3's CS and SS: 2B, 23
;   8  CS and SS in the kernel: 08, 10
;  10  RFLAGS in the kernel: DF cleared by SFMASK
; then SYSRET (32-bit) to compatibility-mode ring 3 (CS 0x1B), whose SYSCALL goes
; to CSTAR; the kernel prints:
;  11  RCX (the return EIP), and R12 = ring 3's CS there: 1B

        bits    16
        org     0x7c00

%define CODE64   0x08
%define DATA_SEL 0x10
%define PML4     0x10000

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

        push    PML4 >> 4
        pop     es
        xor     ax, ax
        xor     di, di
        mov     cx, 3 * 4096 / 2
        rep     stosw
        mov     dword [es:0x0000], 0x11007      ; PML4[0] -> PDPT, U/S | R/W | P
        mov     dword [es:0x1000], 0x12007      ; PDPT[0] -> PD
        mov     byte [es:0x2000], 0x87          ; PD[0]: 2 MiB page, U/S | R/W | P

        mov     eax, cr4
        or      al, 0x20                ; CR4.PAE
        mov     cr4, eax
        mov     eax, PML4
        mov     cr3, eax
        mov     ecx, 0xc0000080         ; EFER
        rdmsr
        or      ax, 0x0101              ; LME | SCE
        wrmsr
        lgdt    [gdt_desc]
        mov     eax, cr0
        or      eax, 0x80000001
        mov     cr0, eax
        jmp     CODE64:long64

        bits    64
long64: mov     ax, DATA_SEL
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     esp, 0x7000
        mov     esi, msrs
.msr:   lodsd                           ; table: index, low, high; index 0 ends it
        xchg    eax, ecx
        jrcxz   .done
        lodsd
        xchg    eax, edx
        lodsd
        xchg    eax, edx
        wrmsr
        jmp     .msr
.done:  swapgs
        call    gsbase
        swapgs
        call    gsbase
        rdtscp
        xchg    eax, ecx
        call    hex64
        mov     ecx, user64
        mov     r11d, 2                 ; RFLAGS for ring 3: IF = 0
        o64 sysret

gsbase: mov     ecx, 0xc0000101
        rdmsr
        shl     rdx, 32
        or      rax, rdx
; hex64: print RAX as 16 hex digits and a newline.
hex64:  push    rcx
        mov     ecx, 16
.dig:   rol     rax, 4
        push    rax
        and     al, 0x0f
        add     al, '0'
        cmp     al, '9'
        jbe     .out
        add     al, 'A' - '9' - 1
.out:   out     0xe9, al
        pop     rax
        loop    .dig
        mov     al, 10
        out     0xe9, al
        pop     rcx
        ret

user64: mov     r12, cs                 ; ring 3, 64-bit
        mov     r13, ss
        std
        syscall

lstar:  mov     rax, rcx                ; ring 0
        call    hex64
        mov     rax, r11
        call    hex64
        mov     rax, r12
        call    hex64
        mov     rax, r13
        call    hex64
        mov     rax, cs
        call    hex64
        mov     rax, ss
        call    hex64
        pushfq
        pop     rax
        call    hex64
        mov     ecx, user32
        sysret                          ; 32-bit: compatibility mode, CS 0x1B

        bits    32
user32: mov     ebx, cs                 ; ring 3, compatibility mode
        syscall

        bits    64
cstar:  mov     rax, rcx
        call    hex64
        mov     eax, ebx
        call    hex64
        mov     al, 0
        out     0xf4, al

; MSR index, then the value as two dwords (low, high).
msrs:   dd      0xc0000081, 0, 0x00180008       ; STAR: SYSRET base 0x18, SYSCALL 0x08
        dd      0xc0000082, lstar, 0            ; LSTAR
        dd      0xc0000083, cstar, 0            ; CSTAR
        dd      0xc0000084, 0x400, 0            ; SFMASK: DF
        dd      0xc0000102, 0x56789ab0, 0x1234  ; KERNEL_GS_BASE
        dd      0xc0000103, 0x42, 0             ; TSC_AUX
        dd      0

gdt:    dq      0
        dq      0x00209a0000000000      ; 0x08: 64-bit code, DPL 0
        dq      0x00cf92000000ffff      ; 0x10: data, DPL 0
gdt_desc:
        dw      gdt_desc - gdt - 1
        dd      gdt

        times   510 - ($ - $$) db 0
        dw      0xaa55
