#pragma once
// `fusellm teach` (offline mode, DESIGN.md section 2; the original FuseLLM's logits-caching step,
// forward_for_logits.py, followed by its token alignment, done once per teacher instead of per
// training run): one Teacher (teacher.hpp) over the corpus's segments (DESIGN.md 2.0), its rows
// appended to the distribution cache (distribution_cache.hpp) a batch of segments at a time, each
// batch committed. Resumable: a second run continues after the last committed batch. Every
// inconsistency between the job and an existing cache is refused before any model is loaded.
//
// Needs Kokkos initialized, or TeachOptions::init_kokkos (then Kokkos is finalized on return).
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/data/corpus.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"

namespace fusellm {

struct TeachOptions {
  std::string source;          // a [[source]] name
  int64_t limit = -1;          // only the first `limit` segments of the corpus (< 0: all)
  int64_t batch_segments = 16; // segments per committed batch
  bool progress = true;        // a progress line on stderr every few seconds
  bool init_kokkos = false;    // initialize Kokkos (after the checks) when it is not yet (the CLI)
};

struct TeachResult {
  std::string cache_path;
  int64_t resumed_from = 0;    // segments already in the cache
  int64_t segments = 0;        // segments in the cache now
  int64_t new_segments = 0;    // written by this run
  int64_t source_tokens = 0, target_tokens = 0;  // of the new segments
  int64_t kept_rows = 0, fallback_rows = 0;      // target positions: teacher kept / one-hot
  double seconds = 0.0;        // model + alignment + writing (not loading)
  bool complete = false;       // the whole corpus is in the cache
  CorpusStats corpus;          // of the documents read by this run
  int64_t split_documents = 0;
};

// <[cache].dir>/<source>.h5 and <[cache].dir>/vocab_map.<source>.h5.
std::string cache_path_for(const JobConfig& job, const std::string& source);
std::string vocab_map_path_for(const JobConfig& job, const std::string& source);

// The provenance a cache for `source` must have under this job (reads the tokenizers' vocabularies).
CacheProvenance expected_provenance(const JobConfig& job, const std::string& source);

// Refuses, naming the job file, line and field, a job whose offline caches cannot serve `train`:
// no [cache].dir, a source without a cache or without its vocabulary mapping, a cache made for
// other settings, or (require_complete) a cache whose teach run has not finished.
void check_offline_caches(const JobConfig& job, bool require_complete = true);

TeachResult teach(const JobConfig& job, const TeachOptions& opt);

}  // namespace fusellm
