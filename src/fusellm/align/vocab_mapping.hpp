#pragma once
// Vocabulary mapping from a source tokenizer's vocabulary to the target's (DESIGN.md section 1;
// the original FuseLLM `vocab_mapping.py`; tests/reference/align_reference.py, part 2):
//  - a special added token (BOS/EOS/pad...): the lowest target special id with the same literal
//    content (exact), else unmapped; explicit overrides (source id, target id), e.g. EOS -> EOS
//    from the two model configs, win;
//  - any other token: the lowest candidate target id with the same normalized string (exact),
//    else the candidate of minimum byte Levenshtein distance, ties to the lowest id (MinED;
//    kernels/kokkos/vocab_mapping.hpp, in parallel over source tokens). Candidates: the
//    non-special target tokens, less the byte-fallback entries `<0xHH>` whose byte a regular
//    token also spells (mapping_candidates: "2" maps to "2", not to `<0x32>`);
//  - ids past the tokenizer's vocabulary (a config vocab_size larger than the tokenizer's, i.e.
//    padding rows of the embedding): unmapped.
// Built once per (source, target) pair and cached in an HDF5 file next to the job; the file holds
// both vocabularies' fingerprints, and loading it for another tokenizer is an error that names
// the source. Every rank loads the same file (build on one rank, then load everywhere).
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fusellm/align/original_rules.hpp"
#include "fusellm/align/token_normalize.hpp"

namespace fusellm::align {

// The target ids a non-special source token may map to, ascending (see above).
std::vector<int32_t> mapping_candidates(const TokenVocab& tgt);

enum MapKind : uint8_t { kMapUnmapped = 0, kMapExact = 1, kMapMinED = 2, kMapOverride = 3 };

struct MapCoverage {
  int64_t tokens = 0;     // source tokenizer entries (holes excluded)
  int64_t exact = 0, mined = 0, overridden = 0, unmapped = 0;
  int64_t padding = 0;    // model rows past the tokenizer's vocabulary
  double mean_mined_distance = 0.0;
};

class VocabMapping {
 public:
  // Per source model id [source_model_vocab]: exact/override target (-1 else), any target (-1:
  // unmapped), kind, distance (0 exact, -1 unmapped).
  std::vector<int32_t> exact, full, dist;
  std::vector<uint8_t> kind;
  std::string source_name, target_name;
  std::string source_fingerprint, target_fingerprint;  // TokenVocab::fingerprint_hex
  std::string rules = "none";  // OriginalRules::to_string of the rules it was built under
  int64_t source_vocab = 0, target_vocab = 0;          // tokenizer entries
  double build_seconds = 0.0;

  // Builds the mapping on ExecSpace. `source_model_vocab` (0: the tokenizer's size) is the
  // source model's config vocab_size; `overrides` are (source id, target id) pairs. `rules`:
  // the original's strings/specials rules (original_rules.hpp) build it on the host instead.
  template <class ExecSpace>
  static VocabMapping build(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab = 0,
                            std::span<const std::pair<int32_t, int32_t>> overrides = {},
                            const OriginalRules& rules = {});
  static VocabMapping build(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab = 0,
                            std::span<const std::pair<int32_t, int32_t>> overrides = {},
                            const OriginalRules& rules = {});

  // HDF5: datasets exact, full, dist (int32) and kind (uint8); fingerprints, names, sizes and
  // provenance as attributes. Written to a temporary name, then renamed.
  void save(const std::string& path) const;
  static VocabMapping load(const std::string& path);
  // Throws fusellm::Error naming the source when the file was built for other vocabularies.
  void check(const TokenVocab& src, const TokenVocab& tgt, const std::string& where = "") const;
  static VocabMapping load_for(const std::string& path, const TokenVocab& src, const TokenVocab& tgt);
  // The cache: loads `path` if it exists and matches, else builds and saves it. A file built
  // for other tokenizers is an error (never silently overwritten). An empty path: built, not saved.
  // A file built under other rules (OriginalRules::changes_mapping) is an error too.
  static VocabMapping load_or_build(const std::string& path, const TokenVocab& src, const TokenVocab& tgt,
                                    int64_t source_model_vocab = 0,
                                    std::span<const std::pair<int32_t, int32_t>> overrides = {},
                                    const OriginalRules& rules = {});

  int64_t size() const { return int64_t(full.size()); }
  // XXH64 of the mapping itself (exact, full, dist, kind): ranks of one job compare it at start.
  uint64_t fingerprint() const;
  MapCoverage coverage() const;
};

}  // namespace fusellm::align
