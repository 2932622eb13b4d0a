#ifndef TWINSTREAM_CRASH_GUARD_H
#define TWINSTREAM_CRASH_GUARD_H

/// Installs the abort guard (idempotent; also run by a constructor when the process loads).
/// Returns 1 once installed.
int twinstream_crash_guard_install(void);

#endif
