#include "fusellm/dist/nccl/nccl_transport.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <limits>

#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/dist/poll.hpp"

namespace fusellm::dist::nccl {

// Tags on the private control transport (it carries nothing else, so they collide with no one).
constexpr Tag kHeaderTag = Tag::control;
constexpr Tag kReadyTag = Tag::credit;

// Sent over control before every message; small messages follow it in the same control message.
struct Header {
  uint64_t size;  // payload bytes
  uint64_t seq;   // per (sender, receiver): 0, 1, 2, ...
  int32_t tag;
  uint32_t is_inline;  // 1: the payload follows this header; 0: it comes over NCCL
};

struct NcclSend {
  int dest = 0;
  uint64_t seq = 0;
  std::span<const std::byte> payload;
  bool large = false;   // over NCCL (else inside the header)
  bool posted = false;  // its ncclSend is on the stream
  std::vector<std::byte> header;
  std::unique_ptr<Request> header_req;
  DeviceBuffer staging;
  CudaEvent done;  // recorded after its ncclSend
};

namespace {

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclTransport& t, std::shared_ptr<NcclSend> s, Tag tag) : t_(t), s_(std::move(s)), tag_(tag) {}
  ~NcclRequest() override {
    try {
      wait();
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());  // a destructor cannot throw; the job is ending anyway
    }
  }
  bool done() override { return t_.sent(*s_); }
  void wait() override {
    if (!poll_until([&] { return done(); }, t_.timeout()))
      throw_timeout(fmt::format("send of tag {} ({} bytes) to {}", tag_name(tag_), s_->payload.size(),
                                t_.describe(s_->dest)),
                    t_.timeout());
  }

 private:
  NcclTransport& t_;
  std::shared_ptr<NcclSend> s_;
  Tag tag_;
};

// ncclGroupStart .. ncclGroupEnd, ended even when a call inside throws.
class NcclGroup {
 public:
  NcclGroup() { FUSELLM_NCCL_CHECK(ncclGroupStart()); }
  void end() {
    open_ = false;
    FUSELLM_NCCL_CHECK(ncclGroupEnd());
  }
  ~NcclGroup() {
    if (open_) ncclGroupEnd();
  }

 private:
  bool open_ = true;
};

}  // namespace

NcclTransport::NcclTransport(std::unique_ptr<Transport> control, int device)
    : control_(std::move(control)), device_(device) {
  if (!control_) fail("nccl transport: no control transport");
  if (cuda::device_count() == 0) fail("nccl transport: {}", cuda::device_description());
  FUSELLM_CUDA_CHECK(cudaSetDevice(device_));
  set_timeout(control_->timeout());
  ncclUniqueId ids[2] = {};
  if (rank() == 0) {
    FUSELLM_NCCL_CHECK(ncclGetUniqueId(&ids[0]));
    FUSELLM_NCCL_CHECK(ncclGetUniqueId(&ids[1]));
  }
  control_->broadcast(std::as_writable_bytes(std::span(ids)), 0);
  p2p_ = NcclComm::create(size(), ids[0], rank());
  coll_ = NcclComm::create(size(), ids[1], rank());
  p2p_stream_ = CudaStream::create();
  coll_stream_ = CudaStream::create();
  next_seq_.assign(size_t(size()), 0);
  unposted_.resize(size_t(size()));
}

NcclTransport::~NcclTransport() = default;

// ---- messages ------------------------------------------------------------------------------------

std::unique_ptr<Request> NcclTransport::isend(int dest, Tag tag, std::span<const std::byte> bytes) {
  if (dest < 0 || dest >= size()) fail("nccl transport: isend to rank {} of {}", dest, size());
  auto s = std::make_shared<NcclSend>();
  s->dest = dest;
  s->seq = next_seq_[size_t(dest)]++;
  s->payload = bytes;
  s->large = dest != rank() && bytes.size() > kInlineBytes;  // NCCL cannot send to itself outside a group
  const Header h{bytes.size(), s->seq, int32_t(tag), s->large ? 0u : 1u};
  s->header.resize(sizeof h + (s->large ? 0 : bytes.size()));
  std::memcpy(s->header.data(), &h, sizeof h);
  if (!s->large && !bytes.empty()) std::memcpy(s->header.data() + sizeof h, bytes.data(), bytes.size());
  control_->set_timeout(timeout());
  s->header_req = control_->isend(dest, kHeaderTag, s->header);
  if (s->large) unposted_[size_t(dest)].push_back(s);
  return std::make_unique<NcclRequest>(*this, std::move(s), tag);
}

bool NcclTransport::sent(NcclSend& s) {
  progress();
  if (!s.header_req->done()) return false;
  if (!s.large) return true;
  if (!s.posted) return false;
  const cudaError_t q = cudaEventQuery(s.done.get());
  if (q == cudaErrorNotReady) return false;
  FUSELLM_CUDA_CHECK(q);
  return true;
}

void NcclTransport::post(int peer, uint64_t upto, void* recv_buf, size_t recv_bytes) {
  auto& queue = unposted_[size_t(peer)];
  std::vector<std::shared_ptr<NcclSend>> sends;
  while (!queue.empty() && queue.front()->seq <= upto) {
    sends.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  if (sends.empty() && recv_buf == nullptr) return;
  cudaStream_t st = p2p_stream_.get();
  for (auto& s : sends) {  // pageable host memory: the copy is staged before cudaMemcpyAsync returns
    s->staging = DeviceBuffer::create(s->payload.size());
    FUSELLM_CUDA_CHECK(cudaMemcpyAsync(s->staging.get(), s->payload.data(), s->payload.size(), cudaMemcpyHostToDevice, st));
  }
  NcclGroup group;
  for (auto& s : sends) FUSELLM_NCCL_CHECK(ncclSend(s->staging.get(), s->payload.size(), ncclUint8, peer, p2p_.get(), st));
  if (recv_buf != nullptr) FUSELLM_NCCL_CHECK(ncclRecv(recv_buf, recv_bytes, ncclUint8, peer, p2p_.get(), st));
  group.end();
  for (auto& s : sends) {
    s->done = CudaEvent::create();
    FUSELLM_CUDA_CHECK(cudaEventRecord(s->done.get(), st));
    s->posted = true;
  }
}

void NcclTransport::take_readies(int dest) {
  while (auto m = control_->try_recv(dest, kReadyTag)) {
    uint64_t seq = 0;
    if (m->size() != sizeof seq) fail("nccl transport: a 'ready' of {} bytes from {}", m->size(), describe(dest));
    std::memcpy(&seq, m->data(), sizeof seq);
    post(dest, seq, nullptr, 0);  // nothing when that send went out in a group already
  }
}

void NcclTransport::take_headers(int src) {
  while (auto m = control_->try_recv(src, kHeaderTag)) {
    Header h{};
    if (m->size() < sizeof h) fail("nccl transport: a header of {} bytes from {}", m->size(), describe(src));
    std::memcpy(&h, m->data(), sizeof h);
    auto& box = mailbox_[{src, h.tag}];
    if (h.is_inline) {
      box.emplace_back(m->begin() + sizeof h, m->end());
      continue;
    }
    // Post the receive with our own pending sends to src (the peer does the same: an exchange
    // completes in one group on each side), say "ready" so that src posts its send, then wait.
    std::vector<std::byte> host(h.size);
    DeviceBuffer buf = DeviceBuffer::create(h.size);
    post(src, std::numeric_limits<uint64_t>::max(), buf.get(), h.size);
    FUSELLM_CUDA_CHECK(cudaMemcpyAsync(host.data(), buf.get(), h.size, cudaMemcpyDeviceToHost, p2p_stream_.get()));
    auto& [seq_bytes, req] = answers_.emplace_back(std::vector<std::byte>(sizeof h.seq), nullptr);
    std::memcpy(seq_bytes.data(), &h.seq, sizeof h.seq);
    req = control_->isend(src, kReadyTag, seq_bytes);
    wait_stream(p2p_stream_.get(), p2p_.get(), false,
                fmt::format("recv of tag {} ({} bytes) from {}", tag_name(Tag(h.tag)), h.size, describe(src)));
    box.push_back(std::move(host));
  }
}

void NcclTransport::progress() {
  control_->set_timeout(timeout());
  std::erase_if(answers_, [](auto& a) { return a.second->done(); });
  for (int p = 0; p < size(); ++p) {
    take_readies(p);
    take_headers(p);
  }
}

std::optional<std::vector<std::byte>> NcclTransport::try_recv(int src, Tag tag) {
  if (src < 0 || src >= size()) fail("nccl transport: try_recv from rank {} of {}", src, size());
  progress();
  auto it = mailbox_.find({src, int(tag)});
  if (it == mailbox_.end() || it->second.empty()) return std::nullopt;
  std::vector<std::byte> m = std::move(it->second.front());
  it->second.pop_front();
  return m;
}

std::vector<std::byte> NcclTransport::recv(int src, Tag tag) {
  std::optional<std::vector<std::byte>> got;
  if (!poll_until([&] { return (got = try_recv(src, tag)).has_value(); }, timeout()))
    throw_timeout(fmt::format("{}: recv of tag {} from {}", describe(rank()), tag_name(tag), describe(src)), timeout());
  return std::move(*got);
}

// ---- waiting and collectives -------------------------------------------------------------------

void NcclTransport::wait_stream(cudaStream_t stream, ncclComm_t comm, bool progress_meanwhile, const std::string& what) {
  auto done = [&] {
    if (progress_meanwhile) progress();  // peers may wait for our "ready" answers meanwhile
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaErrorNotReady) {
      ncclResult_t async = ncclSuccess;
      FUSELLM_NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
      FUSELLM_NCCL_CHECK(async);
      return false;
    }
    FUSELLM_CUDA_CHECK(q);
    return true;
  };
  if (!poll_until(done, timeout())) {
    // The kernels may never finish: ncclCommDestroy would wait for them, ncclCommAbort does not.
    p2p_.abort();
    coll_.abort();
    throw_timeout(fmt::format("{}: {}", describe(rank()), what), timeout());
  }
}

template <class Op>
void NcclTransport::collective(const void* in, size_t in_bytes, void* out, size_t out_bytes, const char* what, Op&& op) {
  cudaStream_t st = coll_stream_.get();
  DeviceBuffer din = DeviceBuffer::create(in_bytes), dout = DeviceBuffer::create(out_bytes);
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(din.get(), in, in_bytes, cudaMemcpyHostToDevice, st));
  check(op(din.get(), dout.get(), st), what, __FILE__, __LINE__);  // names the collective
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(out, dout.get(), out_bytes, cudaMemcpyDeviceToHost, st));
  wait_stream(st, coll_.get(), true, fmt::format("{} over {} ranks", what, size()));
}

void NcclTransport::reduce_scatter(std::span<const float> in, std::span<float> out) {
  if (in.size() != out.size() * size_t(size()))
    fail("nccl transport: reduce_scatter: {} values in, expected {} ranks x {} out", in.size(), size(), out.size());
  collective(in.data(), in.size_bytes(), out.data(), out.size_bytes(), "reduce_scatter", [&](void* i, void* o, cudaStream_t st) {
    return ncclReduceScatter(i, o, out.size(), ncclFloat, ncclSum, coll_.get(), st);
  });
}

void NcclTransport::all_gather(std::span<const float> in, std::span<float> out) {
  if (out.size() != in.size() * size_t(size()))
    fail("nccl transport: all_gather: {} values out, expected {} ranks x {} in", out.size(), size(), in.size());
  collective(in.data(), in.size_bytes(), out.data(), out.size_bytes(), "all_gather", [&](void* i, void* o, cudaStream_t st) {
    return ncclAllGather(i, o, in.size(), ncclFloat, coll_.get(), st);
  });
}

void NcclTransport::all_reduce(std::span<double> values) {
  collective(values.data(), values.size_bytes(), values.data(), values.size_bytes(), "all_reduce",
             [&](void* i, void* o, cudaStream_t st) {
               return ncclAllReduce(i, o, values.size(), ncclDouble, ncclSum, coll_.get(), st);
             });
}

void NcclTransport::broadcast(std::span<std::byte> bytes, int root) {
  if (root < 0 || root >= size()) fail("nccl transport: broadcast from rank {} of {}", root, size());
  collective(bytes.data(), bytes.size(), bytes.data(), bytes.size(), "broadcast", [&](void* i, void* o, cudaStream_t st) {
    return ncclBroadcast(i, o, bytes.size(), ncclUint8, root, coll_.get(), st);
  });
}

void NcclTransport::barrier() {
  // A one-value all-reduce on the collective communicator: every rank's earlier collectives are
  // then done too.
  double one = 1;
  all_reduce(std::span(&one, 1));
}

std::unique_ptr<Transport> NcclTransport::split(int color, int key) {
  control_->set_timeout(timeout());
  auto t = std::make_unique<NcclTransport>(control_->split(color, key), device_);
  t->set_timeout(timeout());
  return t;
}

}  // namespace fusellm::dist::nccl
