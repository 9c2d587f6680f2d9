#pragma once
// The distribution cache of offline mode (DESIGN.md sections 2 and 5; what the original FuseLLM's
// logits-caching script, forward_for_logits.py, writes per source model, without its 600 GB of
// int64 ids and dense per-token lists): one HDF5 file per teacher holding, for every segment of
// the corpus (DESIGN.md 2.0), the teacher's top-k distributions already aligned to the target
// tokenization and mapped into the target vocabulary, and the teacher's CE on the segment.
//
//   /ids          [rows, k] int32    target-vocabulary ids, -1 = empty slot
//   /probs        [rows, k] uint16   fp16 bits (attribute encoding = "fp16")
//   /target_ids   [rows]    int32    the target tokenization the rows are aligned to
//   /status       [rows]    uint8    alignment status per target position (kokkos/align_common.hpp)
//   /row_offsets  [segments + 1] int64   rows of segment i: [row_offsets[i], row_offsets[i + 1])
//   /segment_ids  [segments] int64,  /doc [segments] int64,  /piece [segments] int32
//   /ce           [segments] float64 mean CE (nats/token) of the teacher on its own tokens
//   /ce_tokens    [segments] int64   tokens it was averaged over (packing: token-weighted mean)
//   /bytes        [segments] int64   UTF-8 bytes of the segment (bits-per-byte scores)
//
// All datasets are extendible, chunked and deflate-compressed; a teach run appends one batch of
// segments at a time, flushes, then moves the `segments_done` / `rows_done` attributes, so an
// interrupted run resumes from the last committed batch (anything past it is cut off on open).
// Beside the cache: <cache>.xxh64, the size and XXH64 of its bytes as the last teach run left them
// (distribution_cache.cpp, verify_cache_file), and <cache>.lock, the lock a teach run holds.
// The provenance (teacher, tokenizers' fingerprints, k, temperature, alignment, one-hot mode,
// segmenting) is stored as attributes and checked against the job before any work.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fusellm/core/config_origins.hpp"
#include "fusellm/data/rows_source.hpp"
#include "fusellm/data/teacher_rows.hpp"

namespace fusellm {

inline constexpr const char* kDistributionCacheFormat = "fusellm.distribution_cache.v1";

struct CacheProvenance {
  std::string teacher;                        // the [[source]] name
  int64_t teacher_index = 0;                  // position of that source in the job
  std::string teacher_path;                   // checkpoint dir
  std::string teacher_tokenizer;              // tokenizer path
  std::string teacher_tokenizer_fingerprint;  // align::TokenVocab::fingerprint_hex
  std::string target_tokenizer;
  std::string target_tokenizer_fingerprint;
  std::string segmenter;                      // fingerprints of every tokenizer of the job, "max=<n>"
  int64_t max_tokens = 0;                     // [corpus].max_len - margin
  std::string corpus;                         // corpus path
  int64_t k = 0;
  double temperature = 1.0;
  std::string alignment;                      // "mined" | "em" | "bytespan"
  bool onehot_compat = false;
  std::string align_compat = "none";          // [distill].align_compat (OriginalRules::to_string)
  bool keep_tail = false;
  std::string teacher_dtype = "fp32";         // [[source]].dtype: "fp32" | "bf16"
  std::string version;                        // fusellm version that wrote it
  std::string job_file;                       // the job that wrote it
};

// The fusellm version string written into caches.
std::string fusellm_version();

// Throws fusellm::Error naming the cache file, the job file with the line (from the parsed job's
// `origins`, JobConfig::origins), and the field, at the first setting in which `cached` and
// `expected` (made from the job) differ.
void check_provenance(const std::string& cache_path, const CacheProvenance& cached, const CacheProvenance& expected,
                      const config::FieldOrigins& origins);

class DistributionCacheWriter {
 public:
  // Creates `path`, or reopens it to continue: its provenance must equal `prov` (else Error naming
  // the cache, the job's file and line and the field; `job` (the job's JobConfig::origins) may be
  // null in tests, then only the cache and the field are named), rows past the committed
  // `segments_done` are cut off.
  // Holds <path>.lock exclusively for its lifetime (a second writer is refused at once, naming the
  // holder's host and pid); an existing cache must match its checksum sidecar before HDF5 opens
  // it; close() writes a new sidecar.
  DistributionCacheWriter(const std::string& path, const CacheProvenance& prov, const config::FieldOrigins* job = nullptr);
  ~DistributionCacheWriter();
  DistributionCacheWriter(const DistributionCacheWriter&) = delete;
  DistributionCacheWriter& operator=(const DistributionCacheWriter&) = delete;

  int64_t segments_done() const { return segments_; }
  int64_t rows_done() const { return rows_; }
  bool complete() const { return complete_; }
  bool resumed() const { return resumed_; }
  // Appends a batch of segments' rows (each with k = the provenance's k; position_ce and
  // source_tokens are not stored); `commit` = false writes the data without moving segments_done
  // (a run killed between the two; tests).
  void append(const std::vector<TeacherRows>& batch, bool commit = true);
  // Marks the cache complete (the whole corpus is in it) with the corpus counters.
  void finish(int64_t documents, int64_t skipped_blank, int64_t invalid_utf8_docs);
  void close();

 private:
  struct Impl;
  void reopen(Impl& impl, const CacheProvenance& prov, const config::FieldOrigins* job);
  void check_and_cut_tail(Impl& impl);
  void create(Impl& impl, const CacheProvenance& prov);
  Impl* impl_ = nullptr;
  std::string path_;
  int64_t k_ = 0;
  int64_t segments_ = 0, rows_ = 0;
  bool complete_ = false, resumed_ = false;
};

// Verifies the file against its checksum sidecar (<path>.xxh64, written when a teach run closes
// it) before HDF5 opens it, and every segment read against what the writer guarantees (ids within
// `target_vocab` when it is > 0, probabilities in [0, 1], rows summing to at most 1 within fp16
// rounding): Error naming the cache, the segment and the row. Holds a shared lock on
// <path>.lock: a teach run writing the cache holds it exclusively. The first RowsSource: the
// trainer reads a source's rows through it (rows_source.hpp).
class DistributionCacheReader final : public RowsSource {
 public:
  explicit DistributionCacheReader(const std::string& path, int64_t target_vocab = 0);
  ~DistributionCacheReader() override;
  DistributionCacheReader(const DistributionCacheReader&) = delete;
  DistributionCacheReader& operator=(const DistributionCacheReader&) = delete;

  static CacheProvenance read_provenance(const std::string& path);
  const CacheProvenance& provenance() const { return prov_; }
  // check_provenance against what the job expects.
  void check(const CacheProvenance& expected, const config::FieldOrigins& job) const {
    check_provenance(path_, prov_, expected, job);
  }
  const std::string& path() const { return path_; }
  int64_t segments() const { return int64_t(segment_ids_.size()); }
  int64_t rows() const { return row_offsets_.back(); }
  int64_t k() const { return prov_.k; }
  bool complete() const { return complete_; }
  const std::vector<int64_t>& segment_ids() const { return segment_ids_; }
  const std::vector<double>& ce() const { return ce_; }
  // Target tokens (rows) of the segment at index i, from the index read on open (no I/O).
  int64_t segment_rows(int64_t i) const { return row_offsets_.at(size_t(i + 1)) - row_offsets_.at(size_t(i)); }

  std::optional<int64_t> find(int64_t segment_id) const;  // index of a segment id
  TeacherRows read(int64_t segment_id) const;             // Error naming the file when absent
  TeacherRows read_index(int64_t i) const;
  // RowsSource: read(segment).
  TeacherRows rows(int64_t segment) override { return read(segment); }
  std::string describe() const override { return path_; }

 private:
  struct Impl;
  Impl* impl_ = nullptr;
  std::string path_;
  int64_t target_vocab_ = 0;
  CacheProvenance prov_;
  bool complete_ = false;
  void check_rows(const TeacherRows& s) const;
  std::vector<int64_t> segment_ids_, row_offsets_, doc_, ce_tokens_, bytes_;
  std::vector<int32_t> piece_;
  std::vector<double> ce_;
};

}  // namespace fusellm
