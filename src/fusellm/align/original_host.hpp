#pragma once
// Host implementations of the vocabulary mapping and the DTW under OriginalRules (used when a
// rule that changes them is set; original_rules.hpp). Internal to src/fusellm/align.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "fusellm/align/original_rules.hpp"
#include "fusellm/align/vocab_mapping.hpp"

namespace fusellm::align {

// mapping_candidates under the rules: specials too (rules.specials); with rules.strings every
// byte-fallback entry (its string `<0xHH>` is nobody's twin).
std::vector<int32_t> mapping_candidates(const TokenVocab& tgt, const OriginalRules& rules);

namespace detail {

// n source ids, each unmapped (exact/full/dist -1, kind kMapUnmapped).
void set_unmapped(VocabMapping& m, int64_t n);

// Sets the (source id, target id) overrides on m (both the exact and the full mapping, kind
// kMapOverride); an id out of range is an error. The last step of both mapping builders.
void apply_overrides(VocabMapping& m, std::span<const std::pair<int32_t, int32_t>> overrides, int64_t target_size);

VocabMapping build_mapping_host(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab,
                                std::span<const std::pair<int32_t, int32_t>> overrides, const OriginalRules& rules);

// One document: fills lo/hi (global source positions: src0 + doc-local) and status of its m
// target positions.
void align_dtw_host(const TokenVocab& src, const TokenVocab& tgt, std::span<const int32_t> sids,
                    std::span<const int32_t> tids, bool mined, const VocabMapping* mapping, const OriginalRules& rules,
                    const RuleStrings& ss, const RuleStrings& ts, int64_t src0, int32_t* lo, int32_t* hi,
                    uint8_t* status);

}  // namespace detail
}  // namespace fusellm::align
