#include "common/progress.h"
#include "common/format.h"
#include "common/util.h"

#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct vmm_progress {
	pthread_mutex_t lock;
	char *label;
	uint64_t total, done;
	vmm_progress_mode mode;
	FILE *out;
	double start, last_draw;
	char *last_plain; /* the last plain line printed */
	int finished;
};

char *vmm_progress_format_rate(double bps)
{
	if (!(bps > 0))
		return xstrdup("-");
	cleanup_free char *b = vmm_format_bytes((uint64_t)bps);
	return xasprintf("%s/s", b);
}

char *vmm_progress_format_eta(double s)
{
	if (s < 0 || s > 360000.0 * 99)
		return xstrdup("--:--");
	unsigned long t = (unsigned long)(s + 0.5);
	if (t >= 3600)
		return xasprintf("%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
	return xasprintf("%lu:%02lu", t / 60, t % 60);
}

static unsigned percent(uint64_t done, uint64_t total)
{
	if (total == 0)
		return 0;
	if (done >= total)
		return 100;
	/* floor, so 100% means finished */
	return (unsigned)((long double)done * 100 / total);
}

char *vmm_progress_format_plain(uint64_t done, uint64_t total)
{
	return xasprintf("%u%%", percent(done, total));
}

char *vmm_progress_format_bar(const char *label, uint64_t done, uint64_t total, double elapsed,
			      int width)
{
	double rate = elapsed > 0.05 ? (double)done / elapsed : 0;
	cleanup_free char *d = vmm_format_bytes(done);
	cleanup_free char *t = total ? vmm_format_bytes(total) : xstrdup("?");
	cleanup_free char *r = vmm_progress_format_rate(rate);
	cleanup_free char *eta = vmm_progress_format_eta(
	    total && rate > 0 ? (double)(total > done ? total - done : 0) / rate : -1);
	cleanup_free char *tail =
	    xasprintf("%3u%%  %s / %s  %s  %s left", percent(done, total), d, t, r, eta);
	int fixed = (int)strlen(label) + 4 + (int)strlen(tail);
	int bar = width - fixed;
	if (bar > 40)
		bar = 40;
	if (bar < 10) /* too narrow for a bar: numbers only */
		return xasprintf("%s %s", label, tail);
	int fill = total ? (int)((long double)bar * (done > total ? total : done) / total) : 0;
	char *line = xmalloc((size_t)fixed + (size_t)bar + 8);
	char *p = line;
	p += sprintf(p, "%s [", label);
	memset(p, '#', (size_t)fill);
	memset(p + fill, '.', (size_t)(bar - fill));
	p += bar;
	sprintf(p, "] %s", tail);
	return line;
}

static int term_width(FILE *f)
{
	struct winsize ws;
	if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col - 1;
	return 79;
}

/* Called with the lock held. */
static void draw(vmm_progress *p, double now, int final)
{
	if (p->mode == VMM_PROGRESS_BAR) {
		cleanup_free char *line = vmm_progress_format_bar(
		    p->label, p->done, p->total, now - p->start, term_width(p->out));
		fprintf(p->out, "\r%s\033[K%s", line, final ? "\n" : "");
		fflush(p->out);
	} else if (p->mode == VMM_PROGRESS_PLAIN) {
		char *line = vmm_progress_format_plain(p->done, p->total);
		if (p->last_plain && strcmp(line, p->last_plain) == 0) {
			free(line);
			return;
		}
		fprintf(p->out, "%s\n", line);
		fflush(p->out);
		free(p->last_plain);
		p->last_plain = line;
	}
	p->last_draw = now;
}

vmm_progress *vmm_progress_new(const char *label, uint64_t total, vmm_progress_mode mode, FILE *out)
{
	vmm_progress *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->label = xstrdup(label ? label : "");
	p->total = total;
	p->mode = mode;
	p->out = out;
	p->start = vmm_now();
	pthread_mutex_lock(&p->lock);
	draw(p, p->start, 0);
	pthread_mutex_unlock(&p->lock);
	return p;
}

void vmm_progress_add(vmm_progress *p, uint64_t n)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done += n;
	double now = vmm_now();
	double interval = p->mode == VMM_PROGRESS_BAR ? 0.1 : 1.0;
	if (!p->finished && now - p->last_draw >= interval)
		draw(p, now, 0);
	pthread_mutex_unlock(&p->lock);
}

void vmm_progress_cb(void *ctx, uint64_t n)
{
	vmm_progress_add(ctx, n);
}

void vmm_progress_finish(vmm_progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (!p->finished) {
		if (p->total && p->done < p->total)
			p->done = p->total;
		draw(p, vmm_now(), 1);
		p->finished = 1;
	}
	pthread_mutex_unlock(&p->lock);
}

void vmm_progress_free(vmm_progress *p)
{
	if (!p)
		return;
	if (!p->finished && p->mode == VMM_PROGRESS_BAR) {
		/* interrupted: end the bar's line so an error starts on its own */
		fputc('\n', p->out);
		fflush(p->out);
	}
	pthread_mutex_destroy(&p->lock);
	free(p->label);
	free(p->last_plain);
	free(p);
}
