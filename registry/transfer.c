#include "registry/transfer.h"
#include "common/util.h"

#include <pthread.h>
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

struct vmm_transfer_pool {
	size_t n, next; /* next: the first job nobody took */
	vmm_transfer_job job;
	void *ctx;
	pthread_mutex_t lock; /* guards next, failed (written) and err */
	bool failed;
	vmm_error *err; /* the first failure */
};

bool vmm_transfer_failed(const vmm_transfer_pool *pool)
{
	return pool && __atomic_load_n(&pool->failed, __ATOMIC_ACQUIRE);
}

static void *worker(void *arg)
{
	vmm_transfer_pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		size_t i = p->next++;
		bool stop = p->failed || i >= p->n;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		vmm_error *e = NULL;
		if (p->job(p->ctx, p, i, &e) < 0) {
			pthread_mutex_lock(&p->lock);
			if (!p->failed) {
				p->err = steal_ptr(e);
				__atomic_store_n(&p->failed, true, __ATOMIC_RELEASE);
			}
			pthread_mutex_unlock(&p->lock);
			vmm_error_free(e);
			break;
		}
	}
	return NULL;
}

int vmm_transfer_parallel(size_t n, int threads, vmm_transfer_job job, void *ctx, vmm_error **err)
{
	vmm_transfer_pool p = {.n = n, .job = job, .ctx = ctx};
	size_t nt = threads > 0 ? (size_t)threads : 4;
	if (nt > n)
		nt = n;
	if (nt == 0)
		return 0;
	pthread_mutex_init(&p.lock, NULL);
	pthread_t *t = xcalloc(nt, sizeof(*t));
	size_t started = 0;
	while (started < nt && pthread_create(&t[started], NULL, worker, &p) == 0)
		started++;
	if (!started)
		worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
	pthread_mutex_destroy(&p.lock);
	if (!p.failed)
		return 0;
	if (err) {
		vmm_error_free(*err);
		*err = steal_ptr(p.err);
	}
	vmm_error_free(p.err);
	return -1;
}
