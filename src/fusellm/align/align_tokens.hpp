#pragma once
// Token alignment between a source tokenization and the target tokenization of the same texts,
// and its application to the source's top-k rows (DESIGN.md section 1; the kernels in
// kernels/kokkos/{token_alignment,byte_span_alignment,apply_alignment}.hpp state the rules).
//
//   TokenVocab src = TokenVocab::from_tokenizer_json("teacher/"), tgt = ...("student/");
//   VocabMapping map = VocabMapping::load_or_build("job/vocab_map.teacher.h5", src, tgt);
//   Aligner<Kokkos::DefaultExecutionSpace> aligner(src, tgt, &map);
//   DocBatch s, t;  s.add(src, src_ids, text);  t.add(tgt, tgt_ids, text);
//   Alignment al = aligner.align(s, t, AlignMethod::kMinED);
//   auto out = aligner.apply(al, t, teacher_rows, AlignMethod::kMinED);   // rows over the target vocab
//
// Methods: EM (keep the source's distribution where exactly one source token aligns and the
// normalized strings are equal; ids through exact string matches only), MinED (also where the
// mapping maps the source token to the target token; ids through the full mapping), byte spans
// (where the byte offsets at which both prefixes end coincide; ids through the full mapping).
// Fallback rows are one-hots of the next gold token; `onehot_current` is the original's
// current-token behaviour (its issue #27), for comparisons with it. OriginalRules
// (original_rules.hpp) switches each of fusellm's deviations from the original back.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Kokkos_Core.hpp>

#include "fusellm/align/align_spaces.hpp"
#include "fusellm/align/original_rules.hpp"
#include "fusellm/align/token_normalize.hpp"
#include "fusellm/align/vocab_mapping.hpp"
#include "kokkos/align_common.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::align {

enum class AlignMethod : uint8_t { kEM = 0, kMinED = 1, kByteSpan = 2 };
const char* to_string(AlignMethod m);                 // "em", "mined", "bytespan"
AlignMethod parse_align_method(std::string_view s);   // throws Error listing the choices

// Documents of one tokenization, concatenated.
struct DocBatch {
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets{0};  // [docs + 1]
  std::vector<int64_t> byte_ends;   // per token (TokenVocab::byte_ends); needed by kByteSpan

  // Adds a document; the text decides whether the tokenizer inserted a dummy-prefix space.
  void add(const TokenVocab& vocab, std::span<const int32_t> doc_ids, std::string_view text);
  void add(const TokenVocab& vocab, std::span<const int32_t> doc_ids, bool dummy_inserted = false);
  int64_t docs() const { return int64_t(offsets.size()) - 1; }
  int64_t tokens() const { return int64_t(ids.size()); }
};

// Per target position (global index into the target DocBatch).
struct Alignment {
  std::vector<int32_t> lo, hi;   // aligned source positions [lo, hi] (global), -1 if none
  std::vector<uint8_t> status;   // AlignStatus (kokkos/align_common.hpp)
  int64_t source_tokens = 0;
  // The source row whose distribution the position keeps, or -1 for a fallback.
  int32_t source(int64_t t) const { return align_kept(status[size_t(t)]) ? lo[size_t(t)] : -1; }
};

template <class ExecSpace>
class Aligner {
 public:
  using Mem = typename ExecSpace::memory_space;
  struct Rows {
    SparseRows<Mem> rows;                  // [target positions, k] over the target vocabulary
    Kokkos::View<uint8_t*, Mem> status;    // final status (kFallbackEmpty where nothing survived)
  };

  // Copies both vocabularies (and the mapping) to ExecSpace's memory once. `mapping` may be null
  // for EM/byte-span alignment without apply; when given, its fingerprints must match (else
  // fusellm::Error naming the source). `workspace_bytes` bounds the DTW's per-batch workspace.
  // `rules`: the original's rules to follow (the DTW ones, strings/specials/dummy_prefix, run on
  // the host; a mapping given must have been built under the same strings/specials rules).
  Aligner(const TokenVocab& src, const TokenVocab& tgt, const VocabMapping* mapping = nullptr,
          size_t workspace_bytes = size_t(256) << 20, const OriginalRules& rules = {});

  Alignment align(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method) const;
  // `onehot_current` or rules.onehot_current: the original's one-hot. rules.empty_row needs
  // `target_rows` ([target positions, k'], the target model's own top-k rows): a kept position
  // whose row keeps no id takes that row (status stays kFallbackEmpty).
  Rows apply(const Alignment& al, const DocBatch& tgt_docs, const SparseRows<Mem>& src_rows, AlignMethod method,
             bool onehot_current = false, const SparseRows<Mem>* target_rows = nullptr) const;
  const OriginalRules& rules() const { return rules_; }

  // Take the DTW's anti-diagonal traversal (the one GPUs use) on every backend; the CPU backends
  // otherwise go row by row. Same result; for tests.
  bool dtw_wavefront = false;

 private:
  struct Outputs {  // [target positions]
    Kokkos::View<int32_t*, Mem> lo, hi;
    Kokkos::View<uint8_t*, Mem> status;
  };
  Alignment align_host(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method) const;
  void align_byte_span(const DocBatch& src_docs, const DocBatch& tgt_docs, const Outputs& out) const;
  void align_dtw(const DocBatch& src_docs, const DocBatch& tgt_docs, AlignMethod method, const Outputs& out) const;

  const TokenVocab* src_;
  const TokenVocab* tgt_;
  const VocabMapping* mapping_ = nullptr;
  OriginalRules rules_;
  bool has_mapping_ = false;
  size_t workspace_bytes_;
  AlignStrings<Mem> src_norm_, tgt_norm_, src_cost_, tgt_cost_;
  Kokkos::View<const uint8_t*, Mem> src_flags_, tgt_flags_;
  Kokkos::View<const int32_t*, Mem> map_exact_, map_full_;
};

// One document, on the default execution space. `text` is needed for byte spans only (dummy
// prefix); `mapping` for MinED.
Alignment align_tokens(const TokenVocab& src, std::span<const int32_t> src_ids, const TokenVocab& tgt,
                       std::span<const int32_t> tgt_ids, AlignMethod method, const VocabMapping* mapping = nullptr,
                       std::string_view text = {}, const OriginalRules& rules = {});

#define FUSELLM_ALIGN_EXTERN(S) extern template class Aligner<S>;
FUSELLM_ALIGN_FOR_EACH_SPACE(FUSELLM_ALIGN_EXTERN)
#undef FUSELLM_ALIGN_EXTERN

}  // namespace fusellm::align
