/*
 * The library preloaded into an unprivileged QEMU so that it can have a
 * userfaultfd through /dev/userfaultfd (vm/shim/uffd_preload.c, DESIGN.md
 * §8b).  Built with vmm and kept inside its binary: QEMU gets it as a
 * sealed memfd, so no file of it needs installing.
 */
#ifndef VMM_VM_UFFD_SHIM_H
#define VMM_VM_UFFD_SHIM_H

#include <stddef.h>

/* The library's bytes; size 0 where vmm was built without it (the fuzzers). */
const unsigned char *vmm_uffd_shim(size_t *size);

#endif
