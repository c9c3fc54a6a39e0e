#ifndef SLUICE_SCHED_H
#define SLUICE_SCHED_H

#include <stdint.h>

/// Asks the scheduler for a time slice of `nanoseconds` for the calling thread, keeping its policy
/// and nice value (Linux 6.12+ EEVDF: `sched_attr.sched_runtime` of a SCHED_OTHER thread; the
/// kernel clamps it to 0.1-100 ms, and 0 restores its default). Returns 0, or the errno;
/// EOPNOTSUPP for a real-time or deadline thread, which has no such slice and is left alone.
/// On other systems it does nothing and returns ENOSYS.
int sluice_sched_set_slice(uint64_t nanoseconds);

#endif
