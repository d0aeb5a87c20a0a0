/*
 * helpers.h — what the unit tests share: temporary directories, a vmm home
 * in one, $PATH pointed at fake programs, and a child process holding a
 * lock.  Every function fails the
 * running test (cmocka) rather than return an error.  Linked into each
 * test binary (Makefile).
 */
#ifndef VMM_TESTS_UNIT_HELPERS_H
#define VMM_TESTS_UNIT_HELPERS_H

#include <stdbool.h>
#include <sys/types.h>

#include "vm/home.h"

/* A fresh directory "<prefix>XXXXXX", e.g. test_tmpdir("/tmp/vmm-copy-") (caller frees). */
char *test_tmpdir(const char *prefix);
/* Remove dir with everything in it and free the string; NULL is a no-op. */
void test_tmpdir_free(char *dir);

/*
 * A temporary home: test_tmpdir(prefix) made $VMM_HOME, $TART_HOME unset,
 * and opened into *home unless home is NULL.  Returns the directory.
 */
char *test_home_new(const char *prefix, vmm_home **home);
/* Free the home (may be NULL) and remove its directory. */
void test_home_free(char *root, vmm_home *home);

/* Put dir in front of $PATH, or make it all of $PATH; returns the old $PATH. */
char *test_path_push(const char *dir, bool alone);
/* Put the old $PATH back and free it. */
void test_path_restore(char *old);

typedef enum {
	TEST_LOCK_FLOCK,
	TEST_LOCK_POSIX,      /* write lock on the whole file: `vmm run`, Tart, vetu */
	TEST_LOCK_BUSY_READ,  /* read lock on VMM_BUSY_BYTE: push, export, clone */
	TEST_LOCK_BUSY_WRITE, /* write lock on VMM_BUSY_BYTE: set, delete, rename */
} test_lock_kind;
/*
 * Fork a child that locks path (flock, or one of the POSIX locks vm/bundle.h
 * describes) and holds the lock until test_child_release().  Returns once
 * the lock is held.
 */
pid_t test_child_lock(const char *path, test_lock_kind kind, int *release_fd);
/* Let the child go and check that it exited 0. */
void test_child_release(pid_t pid, int release_fd);

#endif
