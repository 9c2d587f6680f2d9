#include "fusellm/dist/mpi/mpi_transport.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/mpi/mpi_check.hpp"
#include "fusellm/dist/poll.hpp"

namespace fusellm::dist::mpi {
namespace {

int mpi_count(size_t n, const char* what) {
  if (n > size_t(INT_MAX))
    fail("{}: {} elements, more than MPI's int count allows (2^31 - 1); send it in parts", what, n);
  return int(n);
}

// One MPI_Isend. Its buffer belongs to the caller (transport.hpp); the destructor waits so that
// MPI never reads a buffer that was freed.
class MpiSendRequest final : public Request {
 public:
  MpiSendRequest(const MpiTransport& t, int dest, Tag tag, MPI_Request req) : t_(t), dest_(dest), tag_(tag), req_(req) {}
  ~MpiSendRequest() override {
    try {
      wait();
    } catch (const std::exception& e) {
      // A destructor cannot throw. The peer is gone or stuck; leave the send to MPI (the job is
      // about to end: the caller saw, or will see, a timeout of its own).
      spdlog::error("{}", e.what());
      if (req_ != MPI_REQUEST_NULL) MPI_Request_free(&req_);
    }
  }
  bool done() override {
    if (req_ == MPI_REQUEST_NULL) return true;
    int flag = 0;
    FUSELLM_MPI_CHECK(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  }
  void wait() override {
    if (!poll_until([&] { return done(); }, t_.timeout()))
      throw_timeout(fmt::format("send of tag {} to {}", tag_name(tag_), t_.describe(dest_)), t_.timeout());
  }

 private:
  const MpiTransport& t_;
  int dest_;
  Tag tag_;
  MPI_Request req_;
};

}  // namespace

std::unique_ptr<MpiTransport> MpiTransport::world() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) fail("mpi transport: MPI is not initialized (start an MpiSession first)");
  return std::make_unique<MpiTransport>(MPI_COMM_WORLD, false);
}

MpiTransport::MpiTransport(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  try {
    init();
  } catch (...) {
    if (owned_) MPI_Comm_free(&comm_);  // the destructor does not run for a throwing constructor
    throw;
  }
}

void MpiTransport::init() {
  // MPI-3.1 section 8.3: a new communicator inherits its parent's handler; set it anyway, so a
  // communicator from elsewhere also reports errors instead of aborting.
  FUSELLM_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  FUSELLM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  FUSELLM_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  FUSELLM_MPI_CHECK(MPI_Get_processor_name(name, &len));
  std::vector<char> all(size_t(size_) * MPI_MAX_PROCESSOR_NAME);
  FUSELLM_MPI_CHECK(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm_));
  for (int r = 0; r < size_; ++r) {
    const char* h = all.data() + size_t(r) * MPI_MAX_PROCESSOR_NAME;
    hosts_.emplace_back(h, strnlen(h, MPI_MAX_PROCESSOR_NAME));
  }
}

MpiTransport::~MpiTransport() {
  if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);  // a destructor cannot throw
}

std::string MpiTransport::describe(int r) const {
  check_peer(r, "describe");
  return fmt::format("rank {} (host {})", r, hosts_[size_t(r)]);
}

const std::string& MpiTransport::host(int r) const {
  check_peer(r, "host");
  return hosts_[size_t(r)];
}

void MpiTransport::check_peer(int r, const char* what) const {
  if (r < 0 || r >= size_) fail("mpi transport: {}: rank {} is not a rank of this group of {} ranks", what, r, size_);
}

// ---- point to point ---------------------------------------------------------------------------

std::unique_ptr<Request> MpiTransport::isend(int dest, Tag tag, std::span<const std::byte> bytes) {
  check_peer(dest, "isend");
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Isend(bytes.data(), mpi_count(bytes.size(), "isend"), MPI_BYTE, dest, int(tag), comm_, &req));
  return std::make_unique<MpiSendRequest>(*this, dest, tag, req);
}

std::optional<std::vector<std::byte>> MpiTransport::try_recv(int src, Tag tag) {
  check_peer(src, "try_recv");
  int flag = 0;
  MPI_Message msg = MPI_MESSAGE_NULL;
  MPI_Status st;
  FUSELLM_MPI_CHECK(MPI_Improbe(src, int(tag), comm_, &flag, &msg, &st));
  if (!flag) return std::nullopt;
  int n = 0;
  FUSELLM_MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &n));
  std::vector<std::byte> bytes(static_cast<size_t>(n));
  FUSELLM_MPI_CHECK(MPI_Mrecv(bytes.data(), n, MPI_BYTE, &msg, MPI_STATUS_IGNORE));
  return bytes;
}

std::vector<std::byte> MpiTransport::recv(int src, Tag tag) {
  std::optional<std::vector<std::byte>> got;
  if (!poll_until([&] { return (got = try_recv(src, tag)).has_value(); }, timeout()))
    throw_timeout(fmt::format("{}: recv of tag {} from {}", describe(rank_), tag_name(tag), describe(src)), timeout());
  return std::move(*got);
}

// ---- collectives -------------------------------------------------------------------------------

void MpiTransport::wait_collective(MPI_Request& req, const char* what) const {
  auto done = [&] {
    int flag = 0;
    FUSELLM_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  };
  if (!poll_until(done, timeout()))
    throw_timeout(fmt::format("{}: {} over {} ranks", describe(rank_), what, size_), timeout());
}

void MpiTransport::reduce_scatter(std::span<const float> in, std::span<float> out) {
  if (in.size() != out.size() * size_t(size_))
    fail("mpi transport: reduce_scatter: {} values in, expected {} ranks x {} out", in.size(), size_, out.size());
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Ireduce_scatter_block(in.data(), out.data(), mpi_count(out.size(), "reduce_scatter"), MPI_FLOAT,
                                              MPI_SUM, comm_, &req));
  wait_collective(req, "reduce_scatter");
}

void MpiTransport::all_gather(std::span<const float> in, std::span<float> out) {
  if (out.size() != in.size() * size_t(size_))
    fail("mpi transport: all_gather: {} values out, expected {} ranks x {} in", out.size(), size_, in.size());
  const int n = mpi_count(in.size(), "all_gather");
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Iallgather(in.data(), n, MPI_FLOAT, out.data(), n, MPI_FLOAT, comm_, &req));
  wait_collective(req, "all_gather");
}

void MpiTransport::all_reduce(std::span<double> values) {
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, values.data(), mpi_count(values.size(), "all_reduce"), MPI_DOUBLE,
                                   MPI_SUM, comm_, &req));
  wait_collective(req, "all_reduce");
}

void MpiTransport::broadcast(std::span<std::byte> bytes, int root) {
  check_peer(root, "broadcast");
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Ibcast(bytes.data(), mpi_count(bytes.size(), "broadcast"), MPI_BYTE, root, comm_, &req));
  wait_collective(req, "broadcast");
}

void MpiTransport::barrier() {
  MPI_Request req = MPI_REQUEST_NULL;
  FUSELLM_MPI_CHECK(MPI_Ibarrier(comm_, &req));
  wait_collective(req, "barrier");
}

std::unique_ptr<Transport> MpiTransport::split(int color, int key) {
  if (color < 0) fail("mpi transport: split: color {} is negative (MPI_Comm_split needs colors >= 0)", color);
  MPI_Comm sub = MPI_COMM_NULL;
  FUSELLM_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  auto t = std::make_unique<MpiTransport>(sub, true);
  t->set_timeout(timeout());
  return t;
}

}  // namespace fusellm::dist::mpi
