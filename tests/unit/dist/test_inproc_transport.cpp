// The in-process transport (dist/inproc/inproc_transport.hpp): ranks as threads.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "fusellm/dist/inproc/inproc_transport.hpp"

namespace fusellm::dist {
namespace {

std::span<const std::byte> bytes_of(const std::vector<int>& v) { return std::as_bytes(std::span(v)); }

std::vector<int> ints_of(const std::vector<std::byte>& b) {
  std::vector<int> v(b.size() / sizeof(int));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

TEST(InprocTransport, MessagesArriveInOrderPerTag) {
  InprocWorld::run(3, [](Transport& t) {
    t.set_timeout(std::chrono::seconds(20));
    if (t.rank() == 0) {
      for (int i = 0; i < 5; ++i) {
        const std::vector<int> a{i, i + 1}, b{-i};
        t.isend(1, Tag::test, bytes_of(a));
        t.isend(1, Tag::rows, bytes_of(b));
      }
    } else if (t.rank() == 1) {
      for (int i = 0; i < 5; ++i) EXPECT_EQ(ints_of(t.recv(0, Tag::rows)), std::vector<int>{-i});
      for (int i = 0; i < 5; ++i) EXPECT_EQ(ints_of(t.recv(0, Tag::test)), (std::vector<int>{i, i + 1}));
      EXPECT_FALSE(t.try_recv(0, Tag::test).has_value());
    }
  });
}

TEST(InprocTransport, CollectivesSumInRankOrder) {
  for (int n : {1, 2, 3}) {
    InprocWorld::run(n, [n](Transport& t) {
      t.set_timeout(std::chrono::seconds(20));
      const int r = t.rank();
      std::vector<float> in(size_t(4 * n));
      for (size_t i = 0; i < in.size(); ++i) in[i] = float(r * 100 + int(i));
      std::vector<float> out(4);
      t.reduce_scatter(in, out);
      for (int i = 0; i < 4; ++i) {
        float want = 0;
        for (int q = 0; q < n; ++q) want += float(q * 100 + r * 4 + i);
        EXPECT_EQ(out[size_t(i)], want);
      }
      std::vector<float> all(size_t(4 * n));
      t.all_gather(out, all);
      std::vector<double> d{double(r), 1.0};
      t.all_reduce(d);
      EXPECT_EQ(d[0], double(n * (n - 1) / 2));
      EXPECT_EQ(d[1], double(n));
      std::array<std::byte, 3> b{};
      if (r == n - 1) b = {std::byte{1}, std::byte{2}, std::byte{3}};
      t.broadcast(b, n - 1);
      EXPECT_EQ(b[2], std::byte{3});
      t.barrier();
    });
  }
}

TEST(InprocTransport, SplitMakesIndependentGroups) {
  InprocWorld::run(5, [](Transport& t) {
    t.set_timeout(std::chrono::seconds(20));
    const int color = t.rank() < 2 ? 0 : 1;
    auto g = t.split(color, -t.rank());  // key reverses the order
    EXPECT_EQ(g->size(), color == 0 ? 2 : 3);
    std::vector<double> v{double(t.rank())};
    g->all_reduce(v);
    EXPECT_EQ(v[0], color == 0 ? 1.0 : 9.0);
    EXPECT_EQ(g->rank(), color == 0 ? 1 - t.rank() : 4 - t.rank());
  });
}

TEST(InprocTransport, ARecvFromASilentPeerTimesOutNamingIt) {
  std::string what;
  try {
    InprocWorld::run(2, [](Transport& t) {
      t.set_timeout(std::chrono::milliseconds(200));
      if (t.rank() == 0) t.recv(1, Tag::rows);
    });
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("rank 0"), std::string::npos) << what;
  EXPECT_NE(what.find("from rank 1"), std::string::npos) << what;
  EXPECT_NE(what.find("timeout"), std::string::npos) << what;
}

}  // namespace
}  // namespace fusellm::dist

// The shared Transport contract (transport_cases.hpp), the same bodies the MPI transport runs,
// at 1, 2 and 3 ranks.
#include "transport_cases.hpp"

namespace fusellm::dist {
namespace {

void on_inproc_ranks(void (*body)(Transport&)) {
  for (int n : {1, 2, 3})
    InprocWorld::run(n, [body](Transport& t) {
      t.set_timeout(std::chrono::seconds(20));
      body(t);
    });
}

FUSELLM_TRANSPORT_TESTS(InprocTransportContract, on_inproc_ranks)

}  // namespace
}  // namespace fusellm::dist
