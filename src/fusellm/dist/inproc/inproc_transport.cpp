#include "fusellm/dist/inproc/inproc_transport.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

namespace fusellm::dist {

struct InprocShared {
  explicit InprocShared(int n) : size(n), published(size_t(n), nullptr) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<std::byte>>> mail;  // (src, dst, tag)
  // The rendezvous: ranks arrive (publishing a pointer), all use, all leave; `round` counts
  // completed phases so a fast rank's next collective cannot mix with this one.
  std::vector<const void*> published;
  int arrived = 0, left = 0;
  int64_t round = 0;
  // split(): the groups made by the current split, by color.
  std::map<int, std::shared_ptr<InprocShared>> children;
};

namespace {

class DoneRequest final : public Request {
 public:
  bool done() override { return true; }
  void wait() override {}
};

// Waits on the group's condition until `ready`, or throws TransportTimeout after `timeout`.
template <class Pred>
void wait_for(InprocShared& g, std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout, Pred ready,
              const std::function<std::string()>& what) {
  if (timeout.count() <= 0) {
    g.cv.wait(lock, ready);
    return;
  }
  if (!g.cv.wait_for(lock, timeout, ready))
    throw TransportTimeout(fmt::format("{}: nothing after {:.1f} s (the transport's timeout)", what(),
                                       double(timeout.count()) / 1000.0));
}

}  // namespace

InprocTransport::InprocTransport(std::shared_ptr<InprocShared> group, int rank) : group_(std::move(group)), rank_(rank) {}

int InprocTransport::size() const { return group_->size; }

std::string InprocTransport::describe(int r) const { return fmt::format("rank {} (thread)", r); }

std::unique_ptr<Request> InprocTransport::isend(int dest, Tag tag, std::span<const std::byte> bytes) {
  if (dest < 0 || dest >= size()) fail("inproc transport: rank {} sends to rank {} of {}", rank_, dest, size());
  {
    std::lock_guard lock(group_->mu);
    group_->mail[{rank_, dest, int(tag)}].emplace_back(bytes.begin(), bytes.end());
  }
  group_->cv.notify_all();
  return std::make_unique<DoneRequest>();
}

std::vector<std::byte> InprocTransport::recv(int src, Tag tag) {
  std::unique_lock lock(group_->mu);
  auto& box = group_->mail[{src, rank_, int(tag)}];
  wait_for(*group_, lock, timeout(), [&] { return !box.empty(); },
           [&] { return fmt::format("rank {}: waiting for a message (tag {}) from {}", rank_, int(tag), describe(src)); });
  std::vector<std::byte> m = std::move(box.front());
  box.pop_front();
  return m;
}

std::optional<std::vector<std::byte>> InprocTransport::try_recv(int src, Tag tag) {
  std::lock_guard lock(group_->mu);
  auto& box = group_->mail[{src, rank_, int(tag)}];
  if (box.empty()) return std::nullopt;
  std::vector<std::byte> m = std::move(box.front());
  box.pop_front();
  return m;
}

void InprocTransport::rendezvous(const void* mine, const std::function<void(std::span<const void* const>)>& use,
                                 const char* what) {
  InprocShared& g = *group_;
  std::unique_lock lock(g.mu);
  const auto name = [&] { return fmt::format("rank {}: {} (waiting for the other {} ranks)", rank_, what, g.size - 1); };
  // Wait until the previous collective has been left by everyone (left == 0 means no one is
  // still inside it).
  wait_for(g, lock, timeout(), [&] { return g.left == 0; }, name);
  g.published[size_t(rank_)] = mine;
  const int64_t my_round = g.round;
  if (++g.arrived == g.size) {
    g.arrived = 0;
    g.left = g.size;
    ++g.round;
    g.cv.notify_all();
  }
  wait_for(g, lock, timeout(), [&] { return g.round != my_round; }, name);
  lock.unlock();
  use(g.published);
  lock.lock();
  // Leave: the last one out reopens the rendezvous.
  const int64_t leave_round = g.round;
  if (--g.left == 0) {
    g.cv.notify_all();
    return;
  }
  // No rank may return (and free what it published) before every rank has used it.
  wait_for(g, lock, timeout(), [&] { return g.left == 0 || g.round != leave_round; }, name);
}

void InprocTransport::reduce_scatter(std::span<const float> in, std::span<float> out) {
  const size_t n = out.size();
  if (in.size() != n * size_t(size()))
    fail("inproc reduce_scatter: rank {} gives {} values for {} ranks x {}", rank_, in.size(), size(), n);
  rendezvous(in.data(), [&](std::span<const void* const> all) {
    for (size_t i = 0; i < n; ++i) out[i] = 0.0f;
    for (const void* p : all) {  // rank order: reproducible
      const float* src = static_cast<const float*>(p) + size_t(rank_) * n;
      for (size_t i = 0; i < n; ++i) out[i] += src[i];
    }
  }, "reduce_scatter");
}

void InprocTransport::all_gather(std::span<const float> in, std::span<float> out) {
  const size_t n = in.size();
  if (out.size() != n * size_t(size()))
    fail("inproc all_gather: rank {} has room for {} values, {} ranks x {}", rank_, out.size(), size(), n);
  rendezvous(in.data(), [&](std::span<const void* const> all) {
    for (size_t r = 0; r < all.size(); ++r) std::memcpy(out.data() + r * n, all[r], n * sizeof(float));
  }, "all_gather");
}

void InprocTransport::all_reduce(std::span<double> values) {
  std::vector<double> mine(values.begin(), values.end());
  rendezvous(mine.data(), [&](std::span<const void* const> all) {
    for (double& v : values) v = 0.0;
    for (const void* p : all)
      for (size_t i = 0; i < values.size(); ++i) values[i] += static_cast<const double*>(p)[i];
  }, "all_reduce");
}

void InprocTransport::broadcast(std::span<std::byte> bytes, int root) {
  std::vector<std::byte> mine(bytes.begin(), bytes.end());
  rendezvous(mine.data(), [&](std::span<const void* const> all) {
    if (rank_ != root) std::memcpy(bytes.data(), all[size_t(root)], bytes.size());
  }, "broadcast");
}

void InprocTransport::barrier() {
  rendezvous(nullptr, [](std::span<const void* const>) {}, "barrier");
}

std::unique_ptr<Transport> InprocTransport::split(int color, int key) {
  const std::array<int, 2> mine{color, key};
  std::shared_ptr<InprocShared> child;
  int child_rank = 0;
  rendezvous(mine.data(), [&](std::span<const void* const> all) {
    std::vector<std::pair<int, int>> members;  // (key, rank) of my color
    for (size_t r = 0; r < all.size(); ++r) {
      const int* ck = static_cast<const int*>(all[r]);
      if (ck[0] == color) members.emplace_back(ck[1], int(r));
    }
    std::sort(members.begin(), members.end());
    for (size_t i = 0; i < members.size(); ++i)
      if (members[i].second == rank_) child_rank = int(i);
    std::lock_guard lock(group_->mu);
    auto& c = group_->children[color];
    if (!c) c = std::make_shared<InprocShared>(int(members.size()));
    child = c;
  }, "split");
  barrier();  // every rank has its child: the table can be cleared for the next split
  if (rank_ == 0) {
    std::lock_guard lock(group_->mu);
    group_->children.clear();
  }
  barrier();
  auto t = std::make_unique<InprocTransport>(std::move(child), child_rank);
  t->set_timeout(timeout());
  return t;
}

void InprocWorld::run(int n, const std::function<void(Transport&)>& fn) {
  auto group = std::make_shared<InprocShared>(n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        InprocTransport t(group, r);
        fn(t);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    if (errors[size_t(r)]) {
      try {
        std::rethrow_exception(errors[size_t(r)]);
      } catch (const std::exception& e) {
        fail("inproc rank {} of {}: {}", r, n, e.what());
      }
    }
}

}  // namespace fusellm::dist
