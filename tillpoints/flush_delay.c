/* A slower disk flush for `tillpoints bench --flush-delay-ms` (tillpoints/flush_delay.py).

   Loaded with LD_PRELOAD into the bench's processes, it makes every fsync and
   fdatasync wait TILLPOINTS_FLUSH_DELAY_US microseconds before the real call, as a
   till's eMMC or SATA SSD takes to flush where a server's disk takes 0.2 ms. The
   wait is a sleep, not work: the CPU stays free as it does while a disk flushes.
   It only ever makes a flush slower; what is written, and when it is durable, is
   the real call's. Benchmarks only: nothing of the product loads it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static long delay_us = -1;

static void wait_as_a_slow_disk(void)
{
    if (delay_us < 0) {
        const char *text = getenv("TILLPOINTS_FLUSH_DELAY_US");
        delay_us = text ? atol(text) : 0;
    }
    struct timespec left = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_as_a_slow_disk();
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_as_a_slow_disk();
    return real(fd);
}
