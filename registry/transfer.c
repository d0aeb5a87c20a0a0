#include "registry/transfer.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdlib.h>

void vmm_transfer_say(const vmm_transfer_ui *ui, const char *fmt, ...)
{
	if (!ui->say)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *line = xvasprintf(fmt, ap);
	va_end(ap);
	ui->say(ui->ctx, line);
	free(line);
}
