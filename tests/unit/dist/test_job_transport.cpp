// The job's world transport (dist/job_transport.hpp), over the in-process transport: messages
// left in flight are drained exactly.
#include <gtest/gtest.h>

#include <array>
#include <chrono>

#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/job_transport.hpp"

namespace fusellm::dist {
namespace {

const std::vector<std::byte> kBytes(16, std::byte{7});

TEST(JobTransport, DrainReceivesExactlyWhatWasSentAndNotReceived) {
  std::array<int64_t, 3> dropped{};
  InprocWorld::run(3, [&](Transport& inner) {
    inner.set_timeout(std::chrono::seconds(20));
    JobTransport t(inner);
    std::vector<std::unique_ptr<Request>> sends;
    if (t.rank() == 0) {  // 3 rows to rank 1, 2 credits to rank 2, 1 hidden to itself
      for (int i = 0; i < 3; ++i) sends.push_back(t.isend(1, Tag::rows, kBytes));
      for (int i = 0; i < 2; ++i) sends.push_back(t.isend(2, Tag::credit, kBytes));
      sends.push_back(t.isend(0, Tag::hidden, kBytes));
    } else if (t.rank() == 1) {
      EXPECT_EQ(t.recv(0, Tag::rows).size(), kBytes.size());  // one of the three
      sends.push_back(t.isend(2, Tag::rows, kBytes));
    }
    t.barrier();
    dropped[size_t(t.rank())] = t.drain_unreceived();
    for (auto& s : sends) EXPECT_TRUE(s->done());
    for (int src = 0; src < t.size(); ++src)
      for (Tag tag : {Tag::rows, Tag::credit, Tag::hidden}) EXPECT_FALSE(t.try_recv(src, tag).has_value());
  });
  EXPECT_EQ(dropped, (std::array<int64_t, 3>{1, 2, 3}));
}

TEST(JobTransport, NothingInFlightDrainsNothing) {
  InprocWorld::run(2, [](Transport& inner) {
    inner.set_timeout(std::chrono::seconds(20));
    JobTransport t(inner);
    if (t.rank() == 0) t.isend(1, Tag::rows, kBytes)->wait();
    if (t.rank() == 1) t.recv(0, Tag::rows);
    EXPECT_EQ(t.drain_unreceived(), 0);
  });
}

}  // namespace
}  // namespace fusellm::dist
