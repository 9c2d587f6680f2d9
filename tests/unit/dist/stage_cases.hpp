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

#include "teacher_rows_same.hpp"
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

using fusellm::testing::expect_same_rows;

// One Teacher's rows of the batches, in order (what every stage count must give).
inline std::vector<TeacherRows> reference_rows(const std::string& source) {
  const Teacher one(fx().job, source, fx().toks, fx().vocab_map(source));
  std::vector<TeacherRows> want;
  for (const auto& b : batches())
    for (auto& r : one.rows(b)) want.push_back(std::move(r));
  return want;
}

}  // namespace fusellm::dist::stage_cases
