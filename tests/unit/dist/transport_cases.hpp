#pragma once
// The Transport contract (src/fusellm/dist/transport.hpp) as test bodies written once and run
// against every backend (Cabana style: one body, one instantiation per backend). Each body is
// what ONE rank does; a backend's test runs it on every rank of a transport at once (under mpirun
// for MPI, on threads for the in-process transport):
//
//   FUSELLM_TRANSPORT_TESTS(MpiTransport, [](auto body) { body(world()); })
//
// Any rank count works, 1 included (the ring's neighbour is then the rank itself).
// Payloads are chosen so that every sum is exact in float and double: the expected values are
// the serial sums, compared bit for bit.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "error_of.hpp"
#include "fusellm/dist/transport.hpp"

namespace fusellm::dist::cases {

inline int next_rank(const Transport& t) { return (t.rank() + 1) % t.size(); }
inline int prev_rank(const Transport& t) { return (t.rank() + t.size() - 1) % t.size(); }

template <class T>
std::vector<T> values_of(const std::vector<std::byte>& b) {
  EXPECT_EQ(b.size() % sizeof(T), 0u);
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Waits for every request (before the payloads they send go away).
inline void wait_all(std::vector<std::unique_ptr<Request>>& reqs) {
  for (auto& r : reqs) r->wait();
  reqs.clear();
}

// Messages of one tag arrive in the order sent, and tags do not mix: each rank sends its ring
// neighbour 8 messages of tag `test` interleaved with 8 of tag `control` (of growing sizes), and
// the neighbour receives every `control` message first, then every `test` message.
inline void point_to_point_order(Transport& t) {
  constexpr int kMsgs = 8;
  const Tag tags[2] = {Tag::test, Tag::control};
  std::vector<std::vector<int32_t>> payloads;
  payloads.reserve(2 * kMsgs);
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < kMsgs; ++i)
    for (Tag tag : tags) {
      auto& p = payloads.emplace_back(size_t(3 * i + 3), int32_t(i));
      p[0] = t.rank();
      p[1] = int32_t(tag);
      reqs.push_back(t.isend_values<int32_t>(next_rank(t), tag, p));
    }
  for (Tag tag : {Tag::control, Tag::test})
    for (int i = 0; i < kMsgs; ++i) {
      const auto got = values_of<int32_t>(t.recv(prev_rank(t), tag));
      ASSERT_EQ(got.size(), size_t(3 * i + 3)) << "message " << i << " of tag " << int(tag);
      EXPECT_EQ(got[0], prev_rank(t));
      EXPECT_EQ(got[1], int32_t(tag));
      EXPECT_EQ(got[2], i) << "tag " << int(tag) << ": message " << i << " out of order";
    }
  wait_all(reqs);
  t.barrier();
}

// try_recv never blocks: nothing before the neighbour sends, the message (and an empty one) after.
inline void try_recv_never_blocks(Transport& t) {
  EXPECT_FALSE(t.try_recv(prev_rank(t), Tag::test).has_value());
  t.barrier();  // nobody sends before every rank has looked
  const std::vector<int32_t> payload{t.rank(), 7, 8};
  std::vector<std::unique_ptr<Request>> reqs;
  reqs.push_back(t.isend_values<int32_t>(next_rank(t), Tag::test, payload));
  reqs.push_back(t.isend(next_rank(t), Tag::test, {}));
  auto poll = [&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      if (auto m = t.try_recv(prev_rank(t), Tag::test)) return *m;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "try_recv: nothing from " << t.describe(prev_rank(t)) << " after 20 s";
        return std::vector<std::byte>{};
      }
    }
  };
  EXPECT_EQ(values_of<int32_t>(poll()), (std::vector<int32_t>{prev_rank(t), 7, 8}));
  EXPECT_TRUE(poll().empty());
  wait_all(reqs);
  t.barrier();
}

// A message of several MB (and an odd length) arrives whole.
inline void large_message(Transport& t) {
  std::vector<std::byte> payload(6 * 1024 * 1024 + 3);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte((i * 31 + size_t(t.rank()) * 7) & 0xff);
  auto req = t.isend(next_rank(t), Tag::test, payload);
  const auto got = t.recv(prev_rank(t), Tag::test);
  ASSERT_EQ(got.size(), payload.size());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != std::byte((i * 31 + size_t(prev_rank(t)) * 7) & 0xff);
  EXPECT_EQ(bad, 0u) << "bytes differ";
  req->wait();
  EXPECT_TRUE(req->done());
  t.barrier();
}

// reduce_scatter and all_reduce against the serial sums; all_gather and broadcast place every
// rank's values where the interface says.
inline void collectives_match_serial(Transport& t) {
  const int n = t.size(), me = t.rank();
  constexpr size_t kPer = 1000;
  // rank r contributes (r + 1) * (k % 97) at position k: small integers, exact in float
  std::vector<float> in(kPer * size_t(n)), out(kPer);
  for (size_t k = 0; k < in.size(); ++k) in[k] = float((me + 1) * int(k % 97));
  t.reduce_scatter(in, out);
  for (size_t i = 0; i < kPer; ++i) {
    double want = 0;
    for (int r = 0; r < n; ++r) want += double((r + 1) * int((size_t(me) * kPer + i) % 97));
    ASSERT_EQ(out[i], float(want)) << "reduce_scatter at " << i;
  }
  std::vector<float> mine(kPer), all(kPer * size_t(n));
  for (size_t i = 0; i < kPer; ++i) mine[i] = float(me * 10000 + int(i));
  t.all_gather(mine, all);
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < kPer; ++i) ASSERT_EQ(all[size_t(r) * kPer + i], float(r * 10000 + int(i)));
  std::vector<double> v(kPer);
  for (size_t i = 0; i < kPer; ++i) v[i] = me + 0.5 * double(i);
  t.all_reduce(v);
  for (size_t i = 0; i < kPer; ++i) ASSERT_EQ(v[i], double(n) * (n - 1) / 2 + 0.5 * double(i) * n);
  for (int root = 0; root < n; ++root) {
    std::vector<std::byte> b(1001, std::byte(me == root ? root + 1 : 0xEE));
    t.broadcast(b, root);
    for (std::byte x : b) ASSERT_EQ(x, std::byte(root + 1)) << "broadcast from " << root;
  }
  t.barrier();
}

// The same inputs give the same bits (transport.hpp: reproducible sums), with values whose sum
// does depend on the order.
inline void sums_are_reproducible(Transport& t) {
  const size_t per = 4099;
  std::vector<float> in(per * size_t(t.size()));
  for (size_t k = 0; k < in.size(); ++k) in[k] = 1.0f / float(1 + k % 13 + size_t(t.rank()) * 3) + 1e-3f * float(k);
  std::vector<float> a(per), b(per);
  t.reduce_scatter(in, a);
  t.reduce_scatter(in, b);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), per * sizeof(float)));
  std::vector<double> x(per), y;
  for (size_t i = 0; i < per; ++i) x[i] = 1.0 / double(3 + i + size_t(t.rank()));
  y = x;
  t.all_reduce(x);
  t.all_reduce(y);
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), per * sizeof(double)));
}

// Wrong sizes are refused on the calling rank before any communication (so every rank that
// makes the same mistake fails the same way and none waits).
inline void collectives_refuse_wrong_sizes(Transport& t) {
  std::vector<float> in(size_t(t.size()) * 4 + 1), out(4);
  EXPECT_NE(::fusellm::testing::error_of([&] { t.reduce_scatter(in, out); }), "");
  std::vector<float> small(4), big(size_t(t.size()) * 4 + 2);
  EXPECT_NE(::fusellm::testing::error_of([&] { t.all_gather(small, big); }), "");
  t.barrier();
}

// split: ranks of one color form a group ordered by key (here the reverse of the rank), and its
// collectives and messages stay within the group.
inline void split_into_groups(Transport& t) {
  const int me = t.rank(), color = me % 2;
  auto g = t.split(color, -me);
  std::vector<int> members;  // parent ranks of my color, by key = -rank
  for (int r = t.size() - 1; r >= 0; --r)
    if (r % 2 == color) members.push_back(r);
  ASSERT_EQ(g->size(), int(members.size()));
  ASSERT_EQ(members[size_t(g->rank())], me);
  EXPECT_EQ(g->kind(), t.kind());
  EXPECT_NE(g->describe(g->rank()).find("rank "), std::string::npos);
  std::vector<double> v{double(me)};
  g->all_reduce(v);
  EXPECT_EQ(v[0], double(std::accumulate(members.begin(), members.end(), 0)));
  const std::vector<int32_t> hello{me};
  auto req = g->isend_values<int32_t>(next_rank(*g), Tag::test, hello);
  EXPECT_EQ(values_of<int32_t>(g->recv(prev_rank(*g), Tag::test)),
            std::vector<int32_t>{members[size_t(prev_rank(*g))]});
  req->wait();
  g->barrier();
  t.barrier();
}

// A receive from a rank that never sends throws TransportTimeout within the timeout, naming the
// peer; the other ranks wait at a barrier meanwhile.
inline void recv_times_out(Transport& t) {
  const int silent = t.size() > 1 ? 1 : 0;
  if (t.rank() == 0) {
    const auto before = t.timeout();
    t.set_timeout(std::chrono::milliseconds(300));
    const auto start = std::chrono::steady_clock::now();
    std::string msg;
    try {
      t.recv(silent, Tag::test);
      ADD_FAILURE() << "recv returned a message nobody sent";
    } catch (const TransportTimeout& e) {
      msg = e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    t.set_timeout(before);
    EXPECT_GE(s, 0.3);
    EXPECT_LT(s, 5.0);
    EXPECT_NE(msg.find(t.describe(silent)), std::string::npos) << msg;
  }
  t.barrier();
}

}  // namespace fusellm::dist::cases

// The whole contract for one backend. `run` runs a body (void(Transport&)) on every rank.
#define FUSELLM_TRANSPORT_TESTS(Suite, run)                                                            \
  TEST(Suite, PointToPointOrderPerTag) { run(::fusellm::dist::cases::point_to_point_order); }          \
  TEST(Suite, TryRecvNeverBlocks) { run(::fusellm::dist::cases::try_recv_never_blocks); }              \
  TEST(Suite, LargeMessage) { run(::fusellm::dist::cases::large_message); }                            \
  TEST(Suite, CollectivesMatchSerialSums) { run(::fusellm::dist::cases::collectives_match_serial); }   \
  TEST(Suite, SumsAreReproducible) { run(::fusellm::dist::cases::sums_are_reproducible); }             \
  TEST(Suite, CollectivesRefuseWrongSizes) { run(::fusellm::dist::cases::collectives_refuse_wrong_sizes); } \
  TEST(Suite, SplitIntoGroups) { run(::fusellm::dist::cases::split_into_groups); }                     \
  TEST(Suite, RecvTimesOutNamingThePeer) { run(::fusellm::dist::cases::recv_times_out); }
