/* Built against <psxshim.h>, linked with -lpsxshim, NOT preloaded: the
 * library's own API and the libpsx API reach every thread, and the wrapped
 * libc calls are interposed through the link order alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <psxshim.h>

static int failures;
#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            failures++;                                                \
        }                                                              \
    } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stop;

static void *sleeper(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!stop) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* Does every thread of this process have `field` equal to the caller's? */
static int all_threads_agree(const char *field) {
    char mine[256] = "", path[128], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%ld/status", (long)syscall(SYS_gettid));
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, strlen(field))) snprintf(mine, sizeof mine, "%s", line);
    }
    if (f) fclose(f);
    int agree = 1, n = 0;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "ls /proc/%d/task", getpid());
    FILE *p = popen(cmd, "r");
    char tid[32];
    while (p && fgets(tid, sizeof tid, p)) {
        tid[strcspn(tid, "\n")] = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", tid);
        FILE *t = fopen(path, "r");
        char got[256] = "";
        while (t && fgets(line, sizeof line, t)) {
            if (!strncmp(line, field, strlen(field))) snprintf(got, sizeof got, "%s", line);
        }
        if (t) fclose(t);
        n++;
        if (strcmp(got, mine)) {
            printf("  thread %s: %s  caller: %s", tid, got, mine);
            agree = 0;
        }
    }
    if (p) pclose(p);
    return agree && n > 1;
}

int main(void) {
    if (geteuid() != 0) {
        printf("SKIP: needs root (CI runs as root)\n");
        return 77;
    }
    CHECK(psxshim_active() == 1);
    CHECK(strcmp(psxshim_version(), PSXSHIM_VERSION_STRING) == 0);
    CHECK(PSXSHIM_VERSION >= PSXSHIM_MAKE_VERSION(0, 1, 0));

    pthread_t th[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, sleeper, NULL) == 0);

    /* psx_syscall with 2 arguments: drop CAP_SYS_BOOT from the bounding set. */
    CHECK(psx_syscall(SYS_prctl, PR_CAPBSET_DROP, CAP_SYS_BOOT) == 0);
    CHECK(all_threads_agree("CapBnd:"));
    CHECK(psxshim_last_thread_count() == 5);

    /* psx_syscall3 and psx_syscall6. */
    CHECK(psx_syscall3(SYS_prctl, PR_CAPBSET_DROP, CAP_SYS_TIME, 0) == 0);
    CHECK(psx_syscall6(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0) == 0);
    CHECK(all_threads_agree("CapBnd:"));

    /* psxshim_syscall: any number, strict policy. */
    CHECK(psxshim_syscall(SYS_prctl, PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0, 0) == 0);
    CHECK(all_threads_agree("CapBnd:"));

    /* Errors come back like syscall(2), with nothing changed. */
    errno = 0;
    CHECK(psx_syscall(SYS_prctl, PR_CAPBSET_DROP, 999) == -1 && errno == EINVAL);
    CHECK(psx_set_sensitivity((psx_sensitivity_t)7) == -1);
    CHECK(psx_set_sensitivity(PSX_ERROR) == 0);

    /* The wrapped libc call, interposed by link order. */
    CHECK(prctl(PR_CAPBSET_DROP, CAP_SYS_PACCT, 0, 0, 0) == 0);
    CHECK(all_threads_agree("CapBnd:"));

    /* psx_load_syscalls hands out adapters in the convention libcap reads:
     * -errno (and errno set), except capset's -1. */
    long (*three)(long, long, long, long) = NULL;
    long (*six)(long, long, long, long, long, long, long) = NULL;
    psx_load_syscalls(&three, &six);
    CHECK(three != NULL && six != NULL);
    errno = 0;
    CHECK(three(SYS_prctl, PR_CAPBSET_DROP, 999, 0) == -EINVAL && errno == EINVAL);
    errno = 0;
    CHECK(six(SYS_prctl, PR_CAPBSET_DROP, 999, 0, 0, 0, 0) == -EINVAL && errno == EINVAL);
    CHECK(three(SYS_prctl, PR_CAPBSET_DROP, CAP_SYS_PACCT, 0) == 0);

    pthread_mutex_lock(&mu);
    stop = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    if (failures) return 1;
    printf("PASS: linked (not preloaded) API reaches every thread\n");
    return 0;
}
