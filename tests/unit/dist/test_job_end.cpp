// The job's end (dist/job_end.hpp), over the in-process transport: the end message takes a
// teacher out of a wait that would otherwise last until its timeout, and a teacher that finished
// serving waits for it.
#include <gtest/gtest.h>

#include <array>
#include <chrono>

#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/job_end.hpp"

namespace fusellm::dist {
namespace {

const std::vector<std::byte> kBytes(16, std::byte{7});

// A teacher (rank 1) waits for a credit that never comes; student 0's end message interrupts the
// wait long before the 20 s timeout, once, and the teacher learns the students' step.
TEST(JobEnd, EndMessageInterruptsATeachersWait) {
  InprocWorld::run(2, [](Transport& inner) {
    inner.set_timeout(std::chrono::seconds(20));
    JobTransport t(inner);
    if (t.rank() == 0) {
      const std::array<int64_t, 2> end{7, 1};  // job_end.cpp's message: step 7, stopped
      t.isend_values<int64_t>(1, Tag::end, end)->wait();
    } else {
      watch_for_end(t);
      const auto start = std::chrono::steady_clock::now();
      try {
        t.recv(0, Tag::credit);
        ADD_FAILURE() << "the wait returned a credit nobody sent";
      } catch (const JobEnded& e) {
        EXPECT_EQ(e.end().step, 7);
        EXPECT_TRUE(e.end().stopped);
      }
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
      EXPECT_NO_THROW(t.check_interrupt());  // once: the interrupt is gone
    }
    t.drain_unreceived();
  });
}

TEST(JobEnd, TeacherThatFinishedWaitsForTheEndMessage) {
  InprocWorld::run(2, [](Transport& inner) {
    inner.set_timeout(std::chrono::seconds(20));
    JobTransport t(inner);
    if (t.rank() == 0) {
      const std::array<int64_t, 2> end{20, 0};
      t.isend_values<int64_t>(1, Tag::end, end)->wait();
    } else {
      const JobEnd e = wait_for_end(t);
      EXPECT_EQ(e.step, 20);
      EXPECT_FALSE(e.stopped);
      EXPECT_EQ(t.timeout(), std::chrono::seconds(20));  // restored after the unlimited wait
    }
    EXPECT_EQ(t.drain_unreceived(), 0);
  });
}

TEST(JobEnd, MalformedEndMessageNamesTheSender) {
  InprocWorld::run(2, [](Transport& inner) {
    inner.set_timeout(std::chrono::seconds(20));
    JobTransport t(inner);
    if (t.rank() == 0) t.isend(1, Tag::end, std::span(kBytes).first(3))->wait();
    if (t.rank() == 1) {
      try {
        wait_for_end(t);
        ADD_FAILURE() << "a 3-byte end message was accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("end message from rank 0"), std::string::npos) << e.what();
      }
    }
  });
}

}  // namespace
}  // namespace fusellm::dist
