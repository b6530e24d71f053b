# Ferry lab guest "dirty": a 512-byte boot sector that keeps dirtying memory at a set rate, so that
# a live migration of it converges only when the migration outruns it.
#
# Build (lab/guest.ts does this, no shell):  as --32 -o dirty.o dirty.s
#                                            ld -m elf_i386 -Ttext=0x7c00 --oformat=binary -o dirty.bin dirty.o
#
# What it does, after SeaBIOS loads it at 0x7c00 (real mode):
#   1. A20 on (port 0x92), flat 32-bit GDT, protected mode, no paging.
#   2. PIC: only IRQ0 (the PIT) unmasked; it stays at vector 8 where SeaBIOS put it. An IDT of 256
#      interrupt gates, all pointing at one handler that counts a tick and sends EOI.
#   3. PIT channel 0, mode 2, divisor PIT_DIVISOR (1193182 / divisor ticks per second).
#   4. Forever: sleep (hlt) until a tick is pending, then `incl` one dword in each of PAGES_PER_TICK
#      consecutive 4 KiB pages of the region [2 MiB, 2 MiB + REGION_PAGES * 4 KiB), wrapping around.
#      Ticks that arrive while it works are worked off afterwards, but the PIC holds only one pending
#      IRQ0: while the vCPU does not run for longer than a tick (host contention, auto-converge's
#      throttle) ticks are lost. Rate = PAGES_PER_TICK * 1193182 / PIT_DIVISOR pages/s is a ceiling.
#      PIT_DIVISOR = 0: unpaced, dirties as fast as the vCPU can (no timer, no hlt).
#   5. Serial (COM1): "ferry-dirty\r\n" at start, then one '.' per pass over the region.
#
# Parameters live at fixed offsets of the 512-byte image and are patched by the lab per VM:
#   0x1e0  magic "FDG1"
#   0x1e4  u32 REGION_PAGES    (pages in the region; 1 MiB = 256 pages)
#   0x1e8  u32 PAGES_PER_TICK
#   0x1ec  u32 PIT_DIVISOR     (0 = unpaced; else 1..65535, 65536 is not supported)
#   0x1fe  0x55 0xaa

        .set REGION_START, 0x200000
        .set IDT_BASE, 0x1000
        .set TICKS, 0x0ff0            # u32 pending tick count (below the IDT)
        .set COM1, 0x3f8

        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp
        ljmp    $0, $real               # normalise CS:IP to 0000:7cxx
real:
        in      $0x92, %al              # fast A20
        or      $2, %al
        and     $0xfe, %al
        out     %al, $0x92
        lgdtl   gdtr
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $pm

        .code32
pm:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %esp

        mov     $banner, %esi           # "ferry-dirty\r\n"
1:      lodsb
        test    %al, %al
        jz      2f
        call    putc
        jmp     1b
2:
        # IDT: 256 identical interrupt gates -> tick (selector 0x08, present, DPL 0, 32-bit)
        mov     $IDT_BASE, %edi
        mov     $256, %ecx
        mov     $tick, %eax
        or      $0x00080000, %eax       # selector 0x08 in the high word; offset 15..0 low
        mov     $0x00008e00, %edx       # offset 31..16 = 0 (handler < 64 KiB), type 0x8e
3:      stosl
        mov     %edx, (%edi)
        add     $4, %edi
        loop    3b
        lidtl   idtr
        movl    $0, TICKS

        mov     $REGION_START, %edi     # edi = next page to dirty
        mov     param_divisor, %ecx
        jecxz   unpaced

        mov     $0x34, %al              # PIT ch0, lo/hi byte, mode 2 (rate generator), binary
        out     %al, $0x43
        mov     %cl, %al
        out     %al, $0x40
        mov     %ch, %al
        out     %al, $0x40
        mov     $0xfe, %al              # PIC: master only IRQ0; slave all masked
        out     %al, $0x21
        mov     $0xff, %al
        out     %al, $0xa1

paced:
        cli
        cmpl    $0, TICKS
        jne     work
        sti                             # sti; hlt: no tick can slip in between
        hlt
        jmp     paced
work:
        decl    TICKS
        sti
        mov     param_per_tick, %ecx
        jecxz   paced
4:      call    dirty_one
        loop    4b
        jmp     paced

unpaced:
        call    dirty_one
        jmp     unpaced

# Dirties the page at edi, advances edi, wraps (printing '.') at the region's end. Keeps ecx.
dirty_one:
        incl    (%edi)
        add     $4096, %edi
        mov     param_pages, %eax
        shl     $12, %eax
        add     $REGION_START, %eax
        cmp     %eax, %edi
        jb      5f
        mov     $REGION_START, %edi
        mov     $0x2e, %al             # '.'
        call    putc
5:      ret

putc:                                   # al -> COM1 (QEMU's UART needs no set-up)
        push    %edx
        mov     $COM1, %dx
        out     %al, %dx
        pop     %edx
        ret

tick:                                   # every interrupt (only IRQ0 is unmasked) lands here
        push    %eax
        incl    TICKS
        mov     $0x20, %al              # EOI to the master PIC
        out     %al, $0x20
        pop     %eax
        iret

banner: .asciz  "ferry-dirty\r\n"

        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff      # 0x08: code, base 0, 4 GiB, 32-bit
        .quad   0x00cf92000000ffff      # 0x10: data, base 0, 4 GiB
gdtr:   .word   gdtr - gdt - 1
        .long   gdt
idtr:   .word   256 * 8 - 1
        .long   IDT_BASE

        .org    0x1e0
        .ascii  "FDG1"
param_pages:    .long 24576             # 96 MiB
param_per_tick: .long 26
param_divisor:  .long 12118             # 26 * 1193182 / 12118 = 2560 pages/s (10 MiB/s), 98.5 ticks/s
        .org    0x1fe
        .byte   0x55, 0xaa
