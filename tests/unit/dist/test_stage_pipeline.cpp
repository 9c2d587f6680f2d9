// Pipeline-parallel teachers (dist/stage_pipeline.hpp) over the in-process transport: the tiny
// job's sources (the demo Llama, whose tokenizer is the target's, and the demo GPT-NeoX, aligned)
// in 2 and in 3 stages, ranks as threads, give rows bit-identical to one Teacher's (ids, probs,
// status, CE, per-position CE), micro-batch after micro-batch, also from a replica that does not
// start at rank 0; the hidden-state message refuses what is not the expected segment's; a source
// with more stages than layers is refused naming the setting.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "kokkos_thread.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/dist/hidden_message.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/stage_pipeline.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"
#include "fusellm/teach/teacher.hpp"

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

namespace fusellm::dist {
namespace {

namespace fs = std::filesystem;
using fusellm::testing::error_of;
const std::string kTiny = FUSELLM_SOURCE_DIR "/jobs/tiny.toml";

// The tiny job, its tokenizers, its first segments and a directory for the vocabulary maps.
struct Fixture {
  fs::path dir = fs::temp_directory_path() / ("fusellm_stages_" + std::to_string(::getpid()));
  JobConfig job = load_job(kTiny);
  std::shared_ptr<const JobTokenizers> toks = std::make_shared<JobTokenizers>(JobTokenizers::load(job));
  std::vector<Segment> segments;
  Fixture() {
    fs::create_directories(dir);
    const Segmenter seg = toks->segmenter(job);
    SegmentStream stream(CorpusReader::from_config(job.corpus), seg);
    for (Segment s; segments.size() < 5 && stream.next(s);) segments.push_back(s);
  }
  ~Fixture() { fs::remove_all(dir); }
  std::string vocab_map(const std::string& source) const { return (dir / ("vocab_map." + source + ".h5")).string(); }
  // The job with [[source]] `source` in `stages` stages (and teacher ranks to match).
  JobConfig staged(const std::string& source, int64_t stages) const {
    JobParseOptions o;
    o.overrides = {fmt::format("source[{}].stages={}", source == "llama" ? 0 : 1, stages)};
    return load_job(kTiny, o);
  }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

// Micro-batches of the segments: calls of 2, 2 and 1 (each one alignment batch).
std::vector<std::span<const Segment>> batches() {
  const std::span<const Segment> all = fx().segments;
  return {all.subspan(0, 2), all.subspan(2, 2), all.subspan(4)};
}

void expect_same(const TeacherRows& a, const TeacherRows& b) {
  EXPECT_EQ(a.segment, b.segment);
  EXPECT_EQ(a.doc, b.doc);
  EXPECT_EQ(a.piece, b.piece);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.target_ids, b.target_ids);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.probs, b.probs);  // fp16 bits
  EXPECT_EQ(std::memcmp(&a.ce, &b.ce, sizeof(double)), 0) << a.ce << " vs " << b.ce;
  EXPECT_EQ(a.ce_tokens, b.ce_tokens);
  EXPECT_EQ(a.source_tokens, b.source_tokens);
  EXPECT_EQ(a.bytes, b.bytes);
  ASSERT_EQ(a.position_ce.size(), b.position_ce.size());
  EXPECT_EQ(std::memcmp(a.position_ce.data(), b.position_ce.data(), sizeof(float) * a.position_ce.size()), 0);
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
  std::vector<TeacherRows> want;
  {
    const Teacher one(fx().job, source, fx().toks, fx().vocab_map(source));
    for (const auto& b : batches())
      for (auto& r : one.rows(b)) want.push_back(std::move(r));
  }
  for (const auto& [stages, first] : {std::pair{1, 0}, {2, 0}, {3, 0}, {2, 1}}) {
    SCOPED_TRACE(fmt::format("{} in {} stages from rank {}", source, stages, first));
    const std::vector<TeacherRows> got = pipelined(source, stages, first);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) expect_same(got[i], want[i]);
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
