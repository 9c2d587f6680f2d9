#pragma once
// Packing segments into training sequences (DESIGN.md 2.0; the original FuseLLM's group_texts):
// the segments' target tokens, in segment order, are concatenated and cut into sequences of
// [corpus].max_len tokens, so a segment may continue into the next sequence. Each sequence carries
// the aligned sparse rows of every source at its positions (copied from the segments' rows) and,
// per source, the token-weighted mean of its segments' CE (weights: the segment's tokens that lie
// in this sequence), which is what MinCE / AvgCE score a packed sequence by, as the original does.
//
// Unlike group_texts the last, shorter sequence is kept (a small corpus is not dropped whole).
// Labels: gold[i] = ids[i + 1] within the sequence (the last position has none). Without
// [corpus].document_mask, as the original, attention and labels run across the packed segments
// and doc_ids is empty; with it, doc_ids numbers the pieces of the sequence (attention stays within
// one, positions restart) and the last position of each piece has no label.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/data/teacher_rows.hpp"
#include "fusellm/fusion/kokkos_glue.hpp"

namespace fusellm {

// One segment as the packer sees it: its target tokens, and per source its rows (with its CE) as
// the source's RowsSource handed them out (rows_source.hpp).
struct PackInput {
  int64_t id = 0;                        // segment id
  std::vector<int32_t> target_ids;       // [T]
  std::vector<TeacherRows> rows;         // [K], each [T, k_j]; empty when training CLM only
};

struct PackedPiece {
  int64_t segment = 0;           // index into the inputs
  int64_t begin = 0, end = 0;    // token range of that segment
};

// A packed sequence's rows are the fusion kernels' input (fusion/fusion.hpp), so they are Kokkos
// Views of fp32 probabilities (fusion::HostRows): the segments' fp16 rows are widened once, here.
struct PackedSequence {
  std::vector<int32_t> ids;              // [T]
  std::vector<int32_t> gold;             // [T], -1: no label
  std::vector<int32_t> doc_ids;          // [T] with document_mask, else empty
  std::vector<fusion::HostRows> rows;    // [K] of [T, k_j]
  std::vector<double> ce;                // [K] token-weighted mean CE
  // [K] nats per UTF-8 byte: the pieces' summed CE over their bytes, a piece taking its share
  // (target tokens) of its segment's CE sum (ce x ce_tokens) and bytes; +Inf without bytes.
  std::vector<double> nats_per_byte;
  std::vector<float> position_ce;        // [K, T] per-position CE when every source's rows carry it, else empty
  std::vector<PackedPiece> pieces;
  int64_t tokens() const { return int64_t(ids.size()); }
};

class Packer {
 public:
  // Plans the sequences from the segments' lengths. max_len >= 1.
  Packer(std::span<const int64_t> segment_tokens, int64_t max_len);
  int64_t sequences() const { return int64_t(plan_.size()); }
  const std::vector<PackedPiece>& pieces(int64_t seq) const { return plan_.at(size_t(seq)); }
  // Builds sequence `seq` from the inputs (the same segments the plan was made from).
  PackedSequence build(int64_t seq, std::span<const PackInput> inputs, bool document_mask) const;
  // The same, fetching each segment of the sequence by its index (segment_source.hpp streams them
  // from the caches); a returned reference needs to stay valid only until the next call.
  using SegmentGetter = std::function<const PackInput&(int64_t segment)>;
  PackedSequence build(int64_t seq, const SegmentGetter& get, bool document_mask) const;

 private:
  std::vector<std::vector<PackedPiece>> plan_;
};

}  // namespace fusellm
