#pragma once
// Waiting with a timeout by polling (transport.hpp, "Waiting"). MPI's and CUDA's waits
// (MPI_Wait, cudaStreamSynchronize) block without a limit, so the MPI and NCCL transports test
// for completion instead (MPI_Test, MPI_Improbe, cudaStreamQuery) with a short sleep between
// tests: 50 us at first, doubling up to 1 ms, so that a message that arrives at once costs
// microseconds, a long wait costs little CPU, and a timeout fires within about 1 ms of its limit.
#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

// Calls `done()` until it returns true (then true), or until `timeout` has passed (then false);
// a timeout of 0 waits for ever.
template <class F>
bool poll_until(F&& done, std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto nap = std::chrono::microseconds(50);
  while (!done()) {
    if (timeout.count() > 0 && clock::now() - start >= timeout) return false;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
  return true;
}

// "rows", "credit", ... for messages.
std::string_view tag_name(Tag tag);

// Throws TransportTimeout: "<what>: not done after 2.5 s (the transport's timeout)"; `what` names
// the operation and the peer, e.g. "recv of tag rows from rank 1 (host node07)".
[[noreturn]] void throw_timeout(const std::string& what, std::chrono::milliseconds waited);

}  // namespace fusellm::dist
