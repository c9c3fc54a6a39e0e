#if defined(__linux__)
#define _GNU_SOURCE
#endif

#include "sluice_sched.h"

#include <errno.h>

#if defined(__linux__)
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// The kernel's `struct sched_attr` (include/uapi/linux/sched/types.h); glibc has no wrapper.
struct sluice_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
    uint32_t sched_util_min;
    uint32_t sched_util_max;
};

int sluice_sched_set_slice(uint64_t nanoseconds) {
    struct sluice_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) != 0) return errno;
    // Real-time and deadline threads have no fair slice: left as they are.
    if (attr.sched_policy != SCHED_OTHER && attr.sched_policy != SCHED_BATCH) return EOPNOTSUPP;
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = nanoseconds;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return errno;
    return 0;
}
#else
int sluice_sched_set_slice(uint64_t nanoseconds) {
    (void)nanoseconds;
    return ENOSYS;
}
#endif
