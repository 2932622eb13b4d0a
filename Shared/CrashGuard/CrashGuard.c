// An abort on a thread that blocks every signal (librdkafka's own threads do: an
// `rd_kafka_assert` calls abort() there) sends the Swift runtime's crash backtracer (Swift 6,
// Linux) into a wait that never ends: the process neither dies nor goes on, so an orchestrator
// never restarts it and a test run never finishes. This handler takes SIGABRT first: on such a
// thread it writes the thread's name and a glibc backtrace to stderr and lets the abort kill the
// process at once; on any other thread it hands the signal to the handler it replaced (the Swift
// backtracer), which works there.
#define _GNU_SOURCE
#include "CrashGuard.h"
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static struct sigaction previous;
static volatile sig_atomic_t installed = 0;

static void write_text(const char *text) {
    size_t left = strlen(text);
    while (left > 0) {
        ssize_t n = write(STDERR_FILENO, text, left);
        if (n <= 0) return;
        text += n;
        left -= (size_t)n;
    }
}

/// A thread that blocks SIGSEGV blocks every signal it can (librdkafka's threads); the runtime's
/// and Dispatch's threads leave it open.
static int blocks_every_signal(void) {
    sigset_t current;
    if (pthread_sigmask(SIG_BLOCK, NULL, &current) != 0) return 0;
    return sigismember(&current, SIGSEGV) == 1 && sigismember(&current, SIGBUS) == 1;
}

static void on_abort(int signal_number, siginfo_t *info, void *context) {
    if (!blocks_every_signal() && previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        if (previous.sa_flags & SA_SIGINFO) previous.sa_sigaction(signal_number, info, context);
        else previous.sa_handler(signal_number);
        return;
    }
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    write_text("*** aborted on thread \"");
    write_text(name);
    write_text("\" (it blocks every signal, as librdkafka's threads do); backtrace:\n");
    void *frames[64];
    int count = backtrace(frames, 64);
    backtrace_symbols_fd(frames, count, STDERR_FILENO);
    // abort() raises again once this returns, with the default action: the process dies now.
    struct sigaction fallback;
    memset(&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigaction(SIGABRT, &fallback, NULL);
}

int twinstream_crash_guard_install(void) {
    if (installed) return 1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_abort;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGABRT, &action, &previous) != 0) return 0;
    installed = 1;
    // backtrace() loads libgcc on first use, which is not safe inside a signal handler.
    void *warm[1];
    backtrace(warm, 1);
    return 1;
}

/// After the Swift runtime's initialisers (libraries' constructors run before the executable's).
__attribute__((constructor)) static void install_at_load(void) { twinstream_crash_guard_install(); }
