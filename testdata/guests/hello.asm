; hello.asm - trapeze's default guest (embedded in `trapeze run`).
;
; A 512-byte boot sector, real mode, 16-bit code (with 32-bit registers through
; the 66h operand-size prefix).  It prints a banner and then three results of
; non-trivial integer work, one per line, on the debug console (port 0xE9):
;
;   primes: the first 20 primes, by trial division with DIV (and MUL for d*d)
;   crc32:  the CRC-32 (IEEE, reflected, poly 0xEDB88320, as zlib.crc32) of this
;           guest's own code bytes, 0x7C00 up to the label code_end, bitwise
;           with 32-bit shifts/XORs
;   fib:    Fibonacci F(90) as a 64-bit number, each step a 64-bit add done as
;           ADD on the low dwords and ADC on the high dwords (the carry matters
;           from F(48) on)
;
; It exits through the isa-debug-exit port 0xF4 with value 0 (exit status 1).
;
; Machine conventions: loaded at 0000:7C00; nothing else is assumed (no BIOS
; calls), every register and segment used is initialised here.

        bits    16
        org     0x7c00

start:  cli                     ; no interrupts: under QEMU the BIOS's timer IRQ would otherwise run
        cld
        jmp     0x0000:.cs0     ; make CS=0 even if a loader used 07C0:0000
.cs0:   xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, 0x7000      ; stack below the code page (0x7000-0x7FFF holds the code)

        mov     si, banner
        call    puts

; ---- first 20 primes by trial division -----------------------------------
        mov     si, s_primes
        call    puts
        mov     bp, 20          ; primes still to print
        mov     di, 2           ; candidate n
.cand:  mov     bx, 2           ; trial divisor d
.try:   mov     ax, bx
        mul     bx              ; DX:AX = d*d
        cmp     ax, di
        ja      .prime          ; d*d > n: no divisor found, n is prime
        mov     ax, di
        xor     dx, dx
        div     bx              ; DX = n mod d
        test    dx, dx
        jz      .next           ; divisible: composite
        inc     bx
        jmp     .try
.prime: mov     al, ' '
        call    putc
        mov     ax, di
        call    dec16
        dec     bp
        jz      .pdone
.next:  inc     di
        jmp     .cand
.pdone: call    nl

; ---- CRC-32 of our own code bytes, 32-bit registers via the 66h prefix ------
        mov     si, start
        mov     di, code_end - start    ; number of bytes
        or      eax, -1                 ; initial CRC 0xFFFFFFFF
.byte:  xor     al, [si]
        inc     si
        mov     dl, 8
.bit:   shr     eax, 1                  ; CF = bit shifted out
        jnc     .nox
        xor     eax, 0xEDB88320
.nox:   dec     dl
        jnz     .bit
        dec     di
        jnz     .byte
        not     eax                     ; final XOR
        mov     si, s_crc
        call    puts
        call    hex32
        call    nl

; ---- F(90) with 64-bit additions: ADD low dwords, ADC high dwords -----------
        xor     eax, eax                ; a = F(0) = 0  in EDX:EAX
        xor     edx, edx
        mov     ebx, 1                  ; b = F(1) = 1  in EBP:EBX
        xor     ebp, ebp
        mov     cx, 90
.fib:   add     eax, ebx                ; a + b, low half
        adc     edx, ebp                ;        high half plus the carry
        xchg    eax, ebx                ; (a, b) <- (b, a + b)
        xchg    edx, ebp
        loop    .fib                    ; after k steps a = F(k)
        mov     si, s_fib
        call    puts
        push    eax
        mov     eax, edx
        call    hex32                   ; high dword
        pop     eax
        call    hex32                   ; low dword
        call    nl

        mov     al, 0                   ; isa-debug-exit: status (0 << 1) | 1 = 1
        out     0xf4, al
        cli                             ; not reached when the exit device is present
.stop:  hlt
        jmp     .stop

%define LIB16_DEC16
%include "lib16.inc"
code_end:                               ; the CRC above covers start .. code_end

banner:   db "trapeze default guest: real mode, 16-bit", 10, 0
s_primes: db "primes:", 0
s_crc:    db "crc32(code)=", 0
s_fib:    db "fib(90)=0x", 0

        times 510 - ($ - $$) db 0
        dw      0xaa55
