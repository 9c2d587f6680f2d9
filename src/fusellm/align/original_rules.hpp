#pragma once
// Where fusellm's alignment deliberately differs from the original FuseLLM code, and the switch
// back to the original for each difference (README, "Alignment: where fusellm differs from the
// original FuseLLM code"; tests/reference/align_reference.py, part 6, states the same in Python).
// Each flag, when set, makes that part behave as the original (`vocab_mapping.py`, `dtw` and
// `transform_step_logits` in src/utils/others.py, the collator in data_collator.py):
//  - strings: compare the vocabulary strings with the source's word marker swapped for the
//    target's (`x.replace('Ġ', '▁')`) instead of byte-normalized strings, cost strings with the
//    marker removed, distances over code points (`editdistance.eval` on str) instead of bytes;
//  - specials: special tokens are ordinary tokens: mapped over every target token (specials
//    included) and aligned inside the DTW (no pairing of the BOS/EOS edge runs);
//  - dummy_prefix: the "special case for mpt": target position 0 of the document only, byte-level
//    source only, one direction only (target token has the marker, source token has not);
//  - empty_row: a kept position whose row keeps no id takes the target model's own row (the
//    collator's "bad case") instead of falling back to a one-hot;
//  - onehot_current: a fallback is the one-hot of the current target token (the original's
//    issue #27), at the last position too, instead of the next token (none at the last).
// Rules that change the mapping or the DTW run on the host (original_rules.cpp), not in the
// kernels: they exist to reproduce and measure the original, not for speed.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fusellm::align {

struct TokenVocab;

struct OriginalRules {
  bool strings = false;
  bool specials = false;
  bool dummy_prefix = false;
  bool empty_row = false;
  bool onehot_current = false;

  static constexpr std::array<std::string_view, 5> kNames = {"strings", "specials", "dummy_prefix", "empty_row",
                                                             "onehot_current"};
  static OriginalRules all();
  // "" or "none": fusellm's rules; "all": the original's; else names from kNames joined by ','.
  // Throws fusellm::Error naming the unknown rule and the choices.
  static OriginalRules parse(std::string_view list);
  std::string to_string() const;  // canonical: the names set, in kNames order, or "none"
  bool flag(std::string_view name) const;
  void set(std::string_view name, bool on);
  bool any() const { return strings || specials || dummy_prefix || empty_row || onehot_current; }
  bool changes_mapping() const { return strings || specials; }
  bool changes_dtw() const { return strings || specials || dummy_prefix; }
  bool operator==(const OriginalRules&) const = default;
};

// The strings the rules compare, as code units (a byte per unit for fusellm's normalized strings,
// a code point per unit for the original's vocabulary strings): per id, the string compared for
// equality, the DTW cost string, and the word marker of the first-token rule.
struct RuleStrings {
  std::vector<std::u32string> eq, cost;
  std::u32string space;
};
// `vocab`'s strings as compared with `target` (for the target itself pass it twice).
RuleStrings rule_strings(const TokenVocab& vocab, const TokenVocab& target, bool original);

// Levenshtein distance over code units.
int unit_levenshtein(std::u32string_view a, std::u32string_view b);

}  // namespace fusellm::align
