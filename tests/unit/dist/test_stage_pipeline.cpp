// Pipeline-parallel teachers (dist/stage_pipeline.hpp) over the in-process transport: the tiny
// job's sources (the demo Llama, whose tokenizer is the target's, and the demo GPT-NeoX, aligned)
// in 2 and in 3 stages, ranks as threads, give rows bit-identical to one Teacher's (ids, probs,
// status, CE, per-position CE), micro-batch after micro-batch, also from a replica that does not
// start at rank 0; the hidden-state message refuses what is not the expected segment's; a source
// with more stages than layers is refused naming the setting.
#include <gtest/gtest.h>
#include <omp.h>

extern "C" void openblas_set_num_threads(int);

#include <cstring>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "kokkos_thread.hpp"
#include "unit/dist/stage_cases.hpp"
#include "fusellm/dist/hidden_message.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/stage_pipeline.hpp"

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

namespace fusellm::dist {
namespace {

using fusellm::testing::error_of;
using namespace stage_cases;

// Ranks here are threads of one process running at once, whose OpenMP and OpenBLAS thread teams
// compete (an MPI rank is a process with its own): one thread each, as the reference, so every
// reduction runs in the one order the bit-for-bit comparison needs.
void one_thread() {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
}

// The source in `stages` stages on ranks [first, first + stages) of a world of first + stages
// ranks (rank < first: idle); the last stage's rows of every batch, in order.
std::vector<TeacherRows> pipelined(const std::string& source, int64_t stages, int first) {
  const JobConfig job = fx().staged(source, stages);
  std::vector<TeacherRows> out;
  const testing::KokkosLender kokkos;  // the last stage's Teacher scores and aligns with Kokkos
  InprocWorld::run(first + int(stages), [&](Transport& t) {
    t.set_timeout(std::chrono::seconds(60));
    if (t.rank() < first) return;
    one_thread();
    if (t.rank() == first + stages - 1) kokkos.lend();
    StagePipeline p(job, source, fx().toks, fx().vocab_map(source), &t, first, StagePipeline::Options{2});
    EXPECT_EQ(p.stage(), t.rank() - first);
    EXPECT_EQ(p.stages(), stages);
    for (const auto& b : batches()) {
      std::vector<TeacherRows> rows = p.run(b);
      EXPECT_LE(p.in_flight(), 2);  // the window: messages without their credit
      EXPECT_EQ(rows.size(), p.last() ? b.size() : 0);
      for (auto& r : rows) out.push_back(std::move(r));  // one rank (the last stage) writes
    }
    p.flush();
    EXPECT_EQ(p.in_flight(), 0);
    if (!p.last()) EXPECT_FALSE(t.try_recv(t.rank() + 1, Tag::credit));  // no message left behind
    if (p.stage() > 0) EXPECT_FALSE(t.try_recv(t.rank() - 1, Tag::hidden));
  });
  return out;
}

class StagePipelineTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StagePipelineTest, StagesGiveTheRowsOfOneTeacher) {
  const std::string source = GetParam();
  ASSERT_EQ(fx().segments.size(), 5u);
  one_thread();
  const std::vector<TeacherRows> want = reference_rows(source);
  for (const auto& [stages, first] : {std::pair{1, 0}, {2, 0}, {3, 0}, {2, 1}}) {
    SCOPED_TRACE(fmt::format("{} in {} stages from rank {}", source, stages, first));
    const std::vector<TeacherRows> got = pipelined(source, stages, first);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) expect_same_rows(got[i], want[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(TinyJob, StagePipelineTest, ::testing::Values("llama", "neox"));

TEST(StagePipeline, MoreStagesThanLayersAreRefused) {
  const JobConfig job = fx().staged("neox", 5);
  const std::string m = error_of([&] {
    InprocWorld::run(5, [&](Transport& t) {
      StagePipeline p(job, "neox", fx().toks, fx().vocab_map("neox"), &t, 0);
    });
  });
  EXPECT_HAS(m, "source[1].stages = 5");
  EXPECT_HAS(m, "5 stages for a model of 4 layers");
}

TEST(HiddenMessage, RefusesWhatIsNotTheExpectedSegments) {
  Teacher::Tokens tokens{{1, 2, 3}, {4, 5}};
  Tensor h({3, 4});
  for (int64_t i = 0; i < h.size(); ++i) h[i] = float(i) * 0.5f;
  const std::vector<std::byte> bytes = pack_hidden(17, tokens, h);
  const HiddenMessage m = unpack_hidden(bytes, 17, 4, "rank 0");
  EXPECT_EQ(m.tokens.src_ids, tokens.src_ids);
  EXPECT_EQ(m.tokens.tgt_ids, tokens.tgt_ids);
  EXPECT_EQ(std::memcmp(m.hidden.data(), h.data(), sizeof(float) * 12), 0);
  EXPECT_HAS(error_of([&] { unpack_hidden(bytes, 18, 4, "rank 0"); }), "from rank 0 for segment 18: the message is for segment 17");
  EXPECT_HAS(error_of([&] { unpack_hidden(bytes, 17, 8, "rank 0"); }), "hidden size 4, this stage's model has 8");
  std::vector<std::byte> flipped = bytes;
  flipped.back() ^= std::byte{1};
  EXPECT_HAS(error_of([&] { unpack_hidden(flipped, 17, 4, "rank 0"); }), "checksum");
  EXPECT_HAS(error_of([&] { unpack_hidden(std::span(bytes).first(bytes.size() - 4), 17, 4, "rank 0"); }), "bytes, expected");
  std::vector<std::byte> other = bytes;
  other[0] ^= std::byte{1};
  EXPECT_HAS(error_of([&] { unpack_hidden(other, 17, 4, "rank 0"); }), "not a hidden-state message");
}

}  // namespace
}  // namespace fusellm::dist
