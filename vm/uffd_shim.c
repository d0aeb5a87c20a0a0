/* The preloaded library's bytes, in vmm's binary (vm/uffd_shim.h). */
#include "vm/uffd_shim.h"

/* VMM_UFFD_SHIM_SO: the built library's path (Makefile); without it, none */
#ifdef VMM_UFFD_SHIM_SO
#define SHIM_BYTES ".incbin \"" VMM_UFFD_SHIM_SO "\"\n"
#else
#define SHIM_BYTES ""
#endif

__asm__(".section .rodata\n"
	".balign 16\n"
	".globl vmm_uffd_shim_start\n"
	".hidden vmm_uffd_shim_start\n"
	".globl vmm_uffd_shim_end\n"
	".hidden vmm_uffd_shim_end\n"
	"vmm_uffd_shim_start:\n" SHIM_BYTES "vmm_uffd_shim_end:\n"
	".previous\n");

extern const unsigned char vmm_uffd_shim_start[], vmm_uffd_shim_end[];

const unsigned char *vmm_uffd_shim(size_t *size)
{
	*size = (size_t)(vmm_uffd_shim_end - vmm_uffd_shim_start);
	return vmm_uffd_shim_start;
}
