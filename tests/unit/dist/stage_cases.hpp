#pragma once
// The pipeline-stage tests' common part (test_stage_pipeline.cpp over the in-process transport,
// test_mpi_stage_pipeline.cpp under mpirun): the tiny job, its first segments in micro-batches,
// one Teacher's rows of them (the reference), and the comparison bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fusellm/data/corpus.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"
#include "fusellm/teach/teacher.hpp"

namespace fusellm::dist::stage_cases {

namespace fs = std::filesystem;
inline const std::string kTiny = FUSELLM_SOURCE_DIR "/jobs/tiny.toml";

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

inline Fixture& fx() {
  static Fixture f;
  return f;
}

// Micro-batches of the segments: calls of 2, 2 and 1 (each one alignment batch).
inline std::vector<std::span<const Segment>> batches() {
  const std::span<const Segment> all = fx().segments;
  return {all.subspan(0, 2), all.subspan(2, 2), all.subspan(4)};
}

inline void expect_same(const TeacherRows& a, const TeacherRows& b) {
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

// One Teacher's rows of the batches, in order (what every stage count must give).
inline std::vector<TeacherRows> reference_rows(const std::string& source) {
  const Teacher one(fx().job, source, fx().toks, fx().vocab_map(source));
  std::vector<TeacherRows> want;
  for (const auto& b : batches())
    for (auto& r : one.rows(b)) want.push_back(std::move(r));
  return want;
}

}  // namespace fusellm::dist::stage_cases
