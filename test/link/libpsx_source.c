/* A program written for libpsx -- libcap's <sys/psx_syscall.h> -- built
 * unchanged and linked with -lpsxshim instead of -lpsx (no -Wl,-wrap). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/psx_syscall.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int stop;
static volatile int seen_keepcaps = -1;

/* Keeps reporting its own keep-caps flag, which only it can read. */
static void *watch(void *arg) {
    (void)arg;
    while (!stop) {
        seen_keepcaps = prctl(PR_GET_KEEPCAPS);
        usleep(1000);
    }
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, watch, NULL);
    while (seen_keepcaps != 0) usleep(1000);
    if (psx_syscall3(SYS_prctl, PR_SET_KEEPCAPS, 1, 0) != 0) {
        perror("psx_syscall3");
        return 1;
    }
    for (int i = 0; i < 5000 && seen_keepcaps != 1; i++) usleep(1000);
    int ok = seen_keepcaps == 1;
    if (psx_syscall(SYS_prctl, PR_SET_KEEPCAPS, 0) != 0) return 1;
    for (int i = 0; i < 5000 && seen_keepcaps != 0; i++) usleep(1000);
    ok = ok && seen_keepcaps == 0;
    stop = 1;
    pthread_join(t, NULL);
    if (!ok) {
        printf("FAIL: keep-caps set through psx_syscall did not reach the other thread\n");
        return 1;
    }
    printf("PASS: a libpsx program builds against <sys/psx_syscall.h>, links -lpsxshim, and reaches every thread\n");
    return 0;
}
