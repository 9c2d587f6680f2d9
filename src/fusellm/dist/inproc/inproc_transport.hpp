#pragma once
// The transport with ranks as threads of one process (dist/transport.hpp): what the tests of the
// MPI job's parts run on when they need several ranks but no MPI (Cabana's habit: one test body,
// run over every backend). Messages are copied into the receiver's mailbox at once (a send is
// complete when it returns, as an MPI eager send is); collectives meet at a rendezvous and sum in
// rank order, so they are reproducible, as the interface promises.
//
//   InprocWorld::run(3, [](Transport& t) { ... t.rank() ... });   // three ranks, one thread each
//
// run() joins every thread and rethrows the first rank's exception (with its rank named), after
// giving every rank that waits on a dead peer its timeout: set one (set_timeout) in tests whose
// ranks may fail, or a failing rank leaves its peers waiting for ever.
#include <functional>
#include <memory>

#include "fusellm/dist/transport.hpp"

namespace fusellm::dist {

struct InprocShared;  // inproc_transport.cpp: mailboxes and the rendezvous of one group

class InprocTransport final : public Transport {
 public:
  InprocTransport(std::shared_ptr<InprocShared> group, int rank);
  int rank() const override { return rank_; }
  int size() const override;
  std::string kind() const override { return "inproc"; }
  std::string describe(int r) const override;

  std::unique_ptr<Request> isend(int dest, Tag tag, std::span<const std::byte> bytes) override;
  std::vector<std::byte> recv(int src, Tag tag) override;
  std::optional<std::vector<std::byte>> try_recv(int src, Tag tag) override;

  void reduce_scatter(std::span<const float> in, std::span<float> out) override;
  void all_gather(std::span<const float> in, std::span<float> out) override;
  void all_reduce(std::span<double> values) override;
  void broadcast(std::span<std::byte> bytes, int root) override;
  void barrier() override;
  std::unique_ptr<Transport> split(int color, int key) override;

 private:
  // Every rank publishes `mine`, then `use` reads all ranks' (in rank order) once all have
  // arrived; no rank leaves before all have used them, so the pointers stay valid.
  void rendezvous(const void* mine, const std::function<void(std::span<const void* const>)>& use,
                  const char* what);
  std::shared_ptr<InprocShared> group_;
  int rank_;
};

class InprocWorld {
 public:
  // n ranks, each running fn on its own thread with its own transport; a rank's exception is
  // rethrown here (the lowest failing rank's) after all threads end.
  static void run(int n, const std::function<void(Transport&)>& fn);
};

}  // namespace fusellm::dist
