#pragma once
// The one small interface every byte of the MPI job travels through (DESIGN.md section 2,
// "Transport"): point-to-point messages between the ranks of a group, and the collectives the
// data-parallel students need. Three implementations, chosen at start:
//
//   mpi/mpi_transport.hpp       an MPI communicator: MPI_Isend, MPI_Improbe + MPI_Mrecv, MPI
//                               collectives (their non-blocking forms, so that every wait can
//                               time out); CPU ranks, and the control traffic of GPU ranks
//   nccl/nccl_transport.hpp     an NCCL communicator (ncclSend/ncclRecv in groups,
//                               ncclReduceScatter/ncclAllGather/ncclAllReduce) created from an id
//                               broadcast over an MPI transport; device buffers; GPU ranks
//   inproc/inproc_transport.hpp ranks as threads of one process, for tests (no MPI, no GPU)
//
// Messages. A message is a byte string of any length with a tag; between one sender and one
// receiver, messages of one tag arrive in the order they were sent (MPI's non-overtaking rule;
// NCCL keeps per-peer order and has no tags, so its transport keeps one stream per peer and the
// protocol never mixes tags from one peer in an order the receiver cannot predict).
//
// Collectives run over every rank of the transport, all ranks calling them in the same order.
// Sums are reproducible: the same ranks and sizes give the same bits on every run (MPI's
// algorithm is fixed by the sizes; the in-process one sums in rank order).
//
// Waiting. Every blocking call waits at most timeout() (0 = for ever) and then throws
// TransportTimeout naming the peer (or the collective) and how long it waited, so that a rank
// that died leaves no survivor hanging (the shared-cluster issue builds on this).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"

namespace fusellm::dist {

// Tags of the job's messages (one place, so two protocols never collide).
enum class Tag : int {
  control = 1,  // start-up agreement: fingerprints, resume position
  rows = 2,     // teacher -> student: one micro-batch of one source (rows_message.hpp)
  credit = 3,   // student -> teacher: one micro-batch consumed
  hidden = 4,   // teacher stage -> next stage: hidden states of one segment
  end = 5,      // student 0 -> every teacher: the students are done, or stopped (job_end.hpp)
  gradient = 6, // student -> student: a piece of a part's gradient for its shard's owner (sharded_gradients.hpp)
  test = 99,    // tests only
};

// A blocking call that waited longer than the transport's timeout.
class TransportTimeout : public Error {
 public:
  using Error::Error;
};

// A non-blocking send in flight. The bytes it sends must stay alive until it completes; the
// destructor of an unfinished request waits for it (with the timeout).
class Request {
 public:
  virtual ~Request() = default;
  virtual bool done() = 0;  // completed (never blocks)
  virtual void wait() = 0;  // until completed, or TransportTimeout
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string kind() const = 0;  // "mpi", "nccl", "inproc"
  // "rank 3 (host node07)" for messages; `r` is a rank of this transport.
  virtual std::string describe(int r) const = 0;

  // ---- point to point -------------------------------------------------------------------
  // Starts sending `bytes` to rank `dest`; `bytes` must outlive the request.
  virtual std::unique_ptr<Request> isend(int dest, Tag tag, std::span<const std::byte> bytes) = 0;
  // The next message from `src` with `tag`, blocking (at most timeout()).
  virtual std::vector<std::byte> recv(int src, Tag tag) = 0;
  // The next message from `src` with `tag` if one has arrived, else nullopt (never blocks).
  virtual std::optional<std::vector<std::byte>> try_recv(int src, Tag tag) = 0;

  // ---- collectives (every rank, same order) --------------------------------------------------
  // in: size() * out.size() values; rank r receives the sum over ranks of in[r * n, (r + 1) * n).
  virtual void reduce_scatter(std::span<const float> in, std::span<float> out) = 0;
  // out: size() * in.size() values; rank r's `in` lands at out[r * n, (r + 1) * n).
  virtual void all_gather(std::span<const float> in, std::span<float> out) = 0;
  // Element-wise sum over ranks, in place.
  virtual void all_reduce(std::span<double> values) = 0;
  // root's bytes to every rank; every rank passes a buffer of the same size.
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  virtual void barrier() = 0;

  // A new transport over the ranks that pass the same `color`, ordered by (key, rank); every
  // rank of this transport calls it (MPI_Comm_split). The result lives independently of this one.
  virtual std::unique_ptr<Transport> split(int color, int key) = 0;

  // Every blocking wait of this transport (0 = no limit).
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // ---- typed helpers over the byte interface -------------------------------------------------
  template <class T>
  std::unique_ptr<Request> isend_values(int dest, Tag tag, std::span<const T> v) {
    return isend(dest, tag, std::as_bytes(v));
  }

 protected:
  std::chrono::milliseconds timeout_{0};
};

}  // namespace fusellm::dist
