#pragma once
// Human-readable views for `fusellm align` (the CLI wiring lives in src/fusellm/cli): the
// side-by-side alignment of one document (target tokens | source tokens | decision) and the
// coverage of a vocabulary mapping (share exact / MinED / unmapped).
//
//   tgt  token          src      token(s)               decision
//     0  <s>            -                               fallback: unaligned
//     1  " Hello"       0        "Hello"                kept: exact
//     2  " world"       1-2      " wor" "ld"            fallback: many source tokens
//
// Token strings are shown normalized (token_normalize.hpp), quoted, with control characters,
// backslashes and quotes escaped and invalid UTF-8 bytes as \xHH.
#include <cstdint>
#include <span>
#include <string>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/align/vocab_mapping.hpp"

namespace fusellm::align {

const char* status_name(uint8_t status);  // "kept: exact", "fallback: many source tokens", ...
std::string display_token(std::string_view normalized);  // quoted and escaped

struct AlignSummary {
  int64_t positions = 0;
  int64_t by_status[16] = {};
  int64_t kept() const;
};
AlignSummary summarize(const Alignment& al);

// One document: target ids with the alignment's target positions [t0, t0 + size) and the
// source ids whose first token is source position s0 (positions in `al` are global).
std::string render_alignment(const TokenVocab& src, std::span<const int32_t> src_ids, int64_t s0,
                             const TokenVocab& tgt, std::span<const int32_t> tgt_ids, int64_t t0,
                             const Alignment& al);
// Counts per decision, as lines "kept: exact  1234  56.1%".
std::string render_summary(const AlignSummary& s);
// Coverage of a mapping: source tokens mapped exactly, by MinED (with the mean distance),
// overridden, unmapped; padding rows.
std::string render_coverage(const VocabMapping& m);

}  // namespace fusellm::align
