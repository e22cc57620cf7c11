; pci_enum.asm - PCI configuration mechanism #1 (ports 0xCF8/0xCFC).
;
; Reads the vendor/device dword (offset 0) and the class/revision dword
; (offset 8) of 00:00.0 (the i440FX host bridge) and 00:01.0 (the PIIX3 ISA
; bridge), then the vendor/device of the empty slot 00:1F.0 (all ones), and
; reads CONFIG_ADDRESS back. The class dword's revision byte is masked out.
; (00:02.0 is left alone: QEMU puts its VGA there, trapeze its pci-testdev.)

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
        mov     ebx, 0x80000000         ; 00:00.0
        call    dev
        mov     ebx, 0x80000800         ; 00:01.0
        call    dev
        mov     eax, 0x8000f800         ; 00:1F.0
        call    cfg
        call    hex32
        call    nl
        mov     dx, 0xcf8
        in      eax, dx
        call    hex32
        call    nl
        mov     al, 0
        out     0xf4, al
        hlt

; print "VVVVDDDD CCCCCC" for the device at config address EBX
dev:    mov     eax, ebx
        call    cfg
        call    hex32
        mov     al, ' '
        call    putc
        lea     eax, [ebx + 8]
        call    cfg
        and     eax, 0xffffff00
        call    hex32
        call    nl
        ret

; EAX = config dword at address EAX
cfg:    mov     dx, 0xcf8
        out     dx, eax
        mov     dx, 0xcfc
        in      eax, dx
        ret

%define LIB16_NO_PUTS
%include "lib16.inc"

        times 510 - ($ - $$) db 0
        dw      0xaa55
