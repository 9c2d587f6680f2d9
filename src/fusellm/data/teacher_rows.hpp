#pragma once
// One source's rows for one segment (DESIGN.md 2.0 and 2): what a Teacher produces
// (teach/teacher.hpp), the distribution cache stores and reads back (distribution_cache.hpp), a
// transport carries from a teacher rank to a student rank, and the packer consumes (packer.hpp).
// The same type the whole way, so a run fed by the cache and one fed by a transport see the same
// bytes.
//
// Plain vectors of fixed-width types, one allocation each, so that a message is a header with the
// scalars and the sizes followed by the vectors' bytes. Probabilities are fp16 bits, as the cache
// stores them and the wire carries them (k x (4 + 2) bytes per target token): the Teacher rounds
// once, and every later holder passes the same bits on.
//
// The rows are over the target vocabulary at the target tokenization's positions: row t is the
// source's distribution of the token after target token t, aligned (align/align_tokens.hpp) and
// mapped (align/vocab_mapping.hpp). An empty slot has id -1 and probability 0; a row's slots are
// sorted by probability, descending (kokkos/sparse_rows.hpp).
#include <cstdint>
#include <vector>

#include "fusellm/core/dtype.hpp"

namespace fusellm {

struct TeacherRows {
  int64_t segment = 0;              // segment id: its position in the segment stream (data/segmenter.hpp)
  int64_t doc = 0;                  // the corpus document it was cut from
  int32_t piece = 0;                // its piece of that document
  int64_t k = 0;                    // slots per row
  std::vector<int32_t> target_ids;  // [T] the target tokenization the rows are aligned to
  std::vector<uint8_t> status;      // [T] alignment status per target position (kokkos/align_common.hpp)
  std::vector<int32_t> ids;         // [T * k] target-vocabulary ids, -1 = empty slot
  std::vector<uint16_t> probs;      // [T * k] fp16 bits
  double ce = 0.0;                  // the source's mean CE (nats/token) on its own next tokens (metric_ce)
  int64_t ce_tokens = 0;            // tokens that mean is over (the packer weights by target tokens)
  int64_t source_tokens = 0;        // the source's tokens of the segment (0 when read from a cache: not stored)
  int64_t bytes = 0;                // UTF-8 bytes of the segment's text (bits-per-byte scores)
  // [T] the source's CE at each target position, for MinCE per position (fusion/fusion.hpp); empty
  // until a Teacher computes it (issue 11). The cache format v1 does not store it.
  std::vector<float> position_ce;

  int64_t rows() const { return int64_t(target_ids.size()); }
  int32_t id(int64_t t, int64_t j) const { return ids[size_t(t * k + j)]; }
  float prob(int64_t t, int64_t j) const { return f16_to_f32(probs[size_t(t * k + j)]); }
  void set(int64_t t, int64_t j, int32_t id, float p) {
    ids[size_t(t * k + j)] = id;
    probs[size_t(t * k + j)] = f32_to_f16(p);
  }
  // T rows of k empty slots (the status and target ids are the caller's).
  void resize_rows(int64_t T) {
    ids.assign(size_t(T * k), -1);
    probs.assign(size_t(T * k), uint16_t(0));
  }
};

}  // namespace fusellm
