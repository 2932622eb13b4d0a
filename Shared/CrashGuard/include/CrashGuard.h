#ifndef TWINSTREAM_CRASH_GUARD_H
#define TWINSTREAM_CRASH_GUARD_H

/// Installs the abort guard (idempotent; also run by a constructor when the process loads).
/// Returns 1 once installed.
int twinstream_crash_guard_install(void);

/// For tests: aborts from a new thread that blocks every signal, the way a librdkafka
/// assertion does. Never returns.
void twinstream_crash_guard_abort_on_blocking_thread(void);

#endif
