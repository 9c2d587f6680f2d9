#pragma once
// The Transport over NCCL (transport.hpp) for GPU ranks: collectives with ncclReduceScatter,
// ncclAllGather, ncclAllReduce and ncclBroadcast, messages with ncclSend/ncclRecv, both from the
// host memory the interface passes (staged through device buffers; device-pointer overloads,
// which the GPU issue needs to keep rows and gradients on the GPU, come later).
//
// Start: rank 0 makes two ncclUniqueIds, the `control` transport broadcasts them, every rank
// joins two communicators (ncclCommInitRank), one for messages and one for collectives, each with
// its own stream: NCCL runs one communicator's operations one after the other, so a message that
// waits for its receiver must not hold up a collective (or the reverse).
//
// Messages. NCCL has neither tags nor probes, and an ncclSend waits (on the GPU) until the
// receiver posts its ncclRecv, so each message is announced over `control` (an MPI transport,
// owned by this one):
//   - a header (size, tag, sequence number) goes over `control` at isend; small messages (at most
//     kInlineBytes) and messages to oneself travel inside it, whole;
//   - the receiver takes headers from each peer in order, files the small ones in a mailbox per
//     (peer, tag) (so tags keep MPI's semantics: per-tag order, any order across tags), and for a
//     large one posts the ncclRecv (grouped with its own unposted sends to that peer, the NCCL
//     idiom for an exchange) and answers "ready";
//   - the sender posts its ncclSend when "ready" comes back (or in such a group), always in
//     sequence order, so both sides post the pair's operations in an order that cannot wait on
//     each other.
// Progress happens inside the transport's calls (recv, try_recv, a request's done/wait, the
// collectives' waits), as with MPI without a progress thread. try_recv waits for the payload of a
// large message whose header has arrived (its sender is inside a transport call or soon will be).
//
// Limit, for the GPU issue: all ranks' messages share one communicator, which NCCL runs in
// order, so three or more ranks whose large messages wait on each other in a cycle can still
// wait for ever (the timeout then fires); per-pair communicators (PyTorch's ProcessGroupNCCL
// does this) remove it.
//
// Sums are reproducible for the same ranks, sizes and NCCL settings (NCCL's algorithm choice is
// a function of them; pin NCCL_ALGO/NCCL_PROTO across machines).
//
// After a TransportTimeout the communicators are aborted (ncclCommAbort), not destroyed. A request
// must not outlive its transport.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fusellm/dist/nccl/cuda_handles.hpp"
#include "fusellm/dist/transport.hpp"

namespace fusellm::dist::nccl {

struct NcclSend;  // nccl_transport.cpp: one message in flight

class NcclTransport final : public Transport {
 public:
  // Messages of at most this many bytes travel inside their header, over `control`.
  static constexpr size_t kInlineBytes = 64 * 1024;

  // Collective over `control`'s ranks; rank r uses CUDA device `device`. `control` is a transport
  // over the same ranks for this one alone (e.g. world.split(0, world.rank())); it carries the
  // headers, and this transport's timeout applies to it.
  NcclTransport(std::unique_ptr<Transport> control, int device);
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  int rank() const override { return control_->rank(); }
  int size() const override { return control_->size(); }
  std::string kind() const override { return "nccl"; }
  std::string describe(int r) const override { return control_->describe(r) + " (nccl)"; }

  std::unique_ptr<Request> isend(int dest, Tag tag, std::span<const std::byte> bytes) override;
  std::vector<std::byte> recv(int src, Tag tag) override;
  std::optional<std::vector<std::byte>> try_recv(int src, Tag tag) override;

  void reduce_scatter(std::span<const float> in, std::span<float> out) override;
  void all_gather(std::span<const float> in, std::span<float> out) override;
  void all_reduce(std::span<double> values) override;
  void broadcast(std::span<std::byte> bytes, int root) override;
  void barrier() override;

  // A new NCCL transport over control->split(color, key).
  std::unique_ptr<Transport> split(int color, int key) override;

  // Takes arrived headers and "ready" answers, posts what they allow (never waits for a peer).
  void progress();
  // Whether `s` has been sent (its header and its payload).
  bool sent(NcclSend& s);

 private:
  void take_headers(int src);
  void take_readies(int dest);
  // Posts the unposted sends to `peer` up to sequence `upto`, and a receive of `recv_bytes`
  // into `recv_buf` when given, in one NCCL group.
  void post(int peer, uint64_t upto, void* recv_buf, size_t recv_bytes);
  // Waits for `stream` (polling, with the timeout; progressing messages meanwhile when asked),
  // else aborts the communicators and throws TransportTimeout.
  void wait_stream(cudaStream_t stream, ncclComm_t comm, bool progress_meanwhile, const std::string& what);
  // Copies `in` to the device, runs `op(dev_in, dev_out)` on the collective stream, copies `out`
  // back and waits.
  template <class Op>
  void collective(const void* in, size_t in_bytes, void* out, size_t out_bytes, const char* what, Op&& op);

  std::unique_ptr<Transport> control_;
  int device_;
  NcclComm p2p_, coll_;
  CudaStream p2p_stream_, coll_stream_;
  std::vector<uint64_t> next_seq_;                              // per destination
  std::vector<std::deque<std::shared_ptr<NcclSend>>> unposted_;  // per destination, by sequence
  std::map<std::pair<int, int>, std::deque<std::vector<std::byte>>> mailbox_;  // (src, tag)
  std::vector<std::pair<std::vector<std::byte>, std::unique_ptr<Request>>> answers_;  // "ready"s in flight
};

}  // namespace fusellm::dist::nccl
