/* run.h — `vmm run` and `vmm resume` share one implementation (cmd/run.c). */
#ifndef VMM_CMD_RUN_H
#define VMM_CMD_RUN_H

#include <stdbool.h>

/* Parse run's options and run the VM; with resume_only the VM must be suspended. */
int cmd_run_vm(int argc, char **argv, bool resume_only);

#endif
