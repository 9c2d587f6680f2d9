#pragma once
// The Transport over an MPI communicator (transport.hpp). CPU ranks use it for everything, GPU
// ranks for their control traffic and to start NCCL.
//
//   isend          MPI_Isend; the request's destructor waits (with the timeout)
//   recv/try_recv  MPI_Improbe + MPI_Get_count + MPI_Mrecv (matched probe, MPI-3.1 section
//                  3.8.2: the probed message is the one received, whatever other threads do)
//   collectives    their non-blocking forms (MPI_Ireduce_scatter_block, MPI_Iallgather,
//                  MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) completed by MPI_Test polling, so
//                  that every wait can time out (poll.hpp)
//   split          MPI_Comm_split
//
// Messages of one tag between two ranks arrive in order: MPI's non-overtaking rule (MPI-3.1
// section 3.5). Sums are reproducible: Open MPI's reduction algorithm is chosen from the
// communicator size and the count only, and each algorithm combines in a fixed order.
//
// After a TransportTimeout the communicator may hold an unfinished operation (MPI forbids
// cancelling a collective): the rank should leave (MpiSession::abort), not retry.
//
// Messages are at most 2^31 - 1 bytes (MPI counts are int). A request must not outlive its
// transport.
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "fusellm/dist/transport.hpp"

namespace fusellm::dist::mpi {

class MpiTransport final : public Transport {
 public:
  // Over MPI_COMM_WORLD (not freed). MPI must be initialized (MpiSession).
  static std::unique_ptr<MpiTransport> world();
  // Over `comm`; freed by the destructor when `owned`. Collective over `comm`: gathers the host
  // names of its ranks (MPI_Get_processor_name) for describe().
  MpiTransport(MPI_Comm comm, bool owned);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "mpi"; }
  std::string describe(int r) const override;
  const std::string& host(int r) const;
  MPI_Comm comm() const { return comm_; }

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
  // Sets the error handler, rank and size, and gathers every rank's host name.
  void init();
  void check_peer(int r, const char* what) const;
  // Tests `req` until it completes, or throws TransportTimeout naming `what`.
  void wait_collective(MPI_Request& req, const char* what) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
};

}  // namespace fusellm::dist::mpi
