#include "fusellm/core/stop_signal.hpp"

#include <atomic>
#include <csignal>

#include <fmt/format.h>

namespace fusellm {

namespace {

// Lock-free, so storing from a handler is async-signal-safe (C++20 [support.signal]).
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig, std::memory_order_relaxed); }

}  // namespace

void install_stop_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a read or write the signal interrupts goes on, not EINTR
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return g_stop_signal.load(std::memory_order_relaxed); }

std::string signal_name(int sig) {
  switch (sig) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    default: return fmt::format("a signal {}", sig);
  }
}

void request_stop(int sig) { g_stop_signal.store(sig, std::memory_order_relaxed); }
void clear_stop() { g_stop_signal.store(0, std::memory_order_relaxed); }

}  // namespace fusellm
