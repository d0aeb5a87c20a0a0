#include "cmd/cmd.h"
#include "cmd/run.h"

int cmd_resume(int argc, char **argv)
{
	return cmd_run_vm(argc, argv, true);
}
