#pragma once
// The string that travels through the pipeline, as tokenizers' `NormalizedString` and
// `PreTokenizedString`: the normalized text plus, for every byte of it, the byte range of the
// input it came from ("alignment"). Every stage edits text through these operations so that a
// token's offsets can be mapped back to the input at the end.
//
// Alignments here are absolute byte ranges into the whole input (the library keeps them
// relative to each slice plus an `original_shift`; the sum is the same number).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

class Regex;

struct Align {
  uint32_t b = 0, e = 0;
};

// One piece of a pattern search over a string: [b, e) and whether it is a match.
struct Match {
  uint32_t b, e;
  bool is_match;
};

// tokenizers' `SplitDelimiterBehavior`.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// (char, change) as tokenizers' `NormalizedString::transform` takes them: change 0 replaces the
// next input char, 1 inserts a char (aligned with the previous one), -n replaces the next char
// and also removes the n chars after it.
struct Change {
  char32_t c;
  int32_t change;
};

// ---- patterns (tokenizers' `Pattern::find_matches`) ------------------------------------------
// A regex (a String pattern is an escaped regex): matches and the gaps between them.
void find_matches(const Regex& re, std::string_view s, bool invert, std::vector<Match>& out);
// A char predicate: every matching char is its own match.
template <class Pred>
void find_matches_pred(std::string_view s, Pred pred, std::vector<Match>& out) {
  if (s.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  std::size_t last = 0, i = 0;
  while (i < s.size()) {
    const std::size_t b = i;
    const char32_t c = next_char(s, i);
    if (pred(c)) {
      if (last < b) out.push_back({uint32_t(last), uint32_t(b), false});
      out.push_back({uint32_t(b), uint32_t(i), true});
      last = i;
    }
  }
  if (last < s.size()) out.push_back({uint32_t(last), uint32_t(s.size()), false});
}

class NormalizedString {
 public:
  NormalizedString() = default;
  // The input bytes [b, e) as they are: every char aligned with itself.
  NormalizedString(std::string_view input, std::size_t b, std::size_t e);

  const std::string& get() const { return s_; }
  bool empty() const { return s_.empty(); }
  std::size_t size() const { return s_.size(); }
  uint32_t original_shift() const { return shift_; }
  const std::vector<Align>& alignments() const { return align_; }

  // tokenizers' `transform_range` over the normalized bytes [nb, ne).
  void transform_range(std::size_t nb, std::size_t ne, const std::vector<Change>& dest, std::size_t initial_offset);
  // tokenizers' `transform`: transform_range over the normalized range that the whole original
  // range maps to (`Range::Original(..)`). That is the whole string except when it starts with
  // zero-width alignments (chars a Replace inserted at its very start) or has an empty original;
  // there the library's quirks are kept.
  void transform(const std::vector<Change>& dest, std::size_t initial_offset);

  void prepend(std::string_view s);                                 // `NormalizedString::prepend`
  void replace(const std::vector<Match>& matches, std::string_view content);  // `replace`
  void lowercase();                                                 // `lowercase`
  void nfd() { decompose(false, false); }
  void nfkd() { decompose(true, false); }
  void nfc() { decompose(false, true); }
  void nfkc() { decompose(true, true); }
  void strip(bool left, bool right);                                // `lrstrip`
  // `filter`: keeps the chars for which keep(c) holds, each with its own alignment.
  template <class Keep>
  void filter(Keep keep) {
    if (!whole_is_transform_range()) {
      // The library's changes: each kept char carries the number of removed chars after it.
      std::vector<Change> dest;
      std::size_t leading = 0;
      bool seen = false;
      for (std::size_t i = 0; i < s_.size();) {
        const char32_t c = next_char(s_, i);
        if (keep(c)) {
          dest.push_back({c, 0});
          seen = true;
        } else if (seen) {
          --dest.back().change;
        } else {
          ++leading;
        }
      }
      transform(dest, leading);
      return;
    }
    std::string ns;
    std::vector<Align> na;
    ns.reserve(s_.size());
    na.reserve(s_.size());
    std::size_t i = 0;
    while (i < s_.size()) {
      const std::size_t b = i;
      const char32_t c = next_char(s_, i);
      if (keep(c)) {
        ns.append(s_, b, i - b);
        na.insert(na.end(), align_.begin() + b, align_.begin() + i);
      }
    }
    s_ = std::move(ns);
    align_ = std::move(na);
  }
  // `map`: every char replaced by f(c), keeping its alignment.
  template <class F>
  void map(F f) {
    expand([&](const std::string& str, std::size_t& i, char32_t* out) {
      out[0] = f(next_char(str, i));
      return 1;
    });
  }
  // Each char expanded to the chars f writes (up to 4); all of them take its alignment. This is
  // `transform` with changes (c0, 0), (c1, 1), ... per input char, as `lowercase` and the
  // byte-level mapping produce them.
  template <class F>
  void expand(F f) {
    char32_t out[8];
    if (!whole_is_transform_range()) {
      std::vector<Change> dest;
      for (std::size_t i = 0; i < s_.size();) {
        const int n = f(s_, i, out);
        for (int k = 0; k < n; ++k) dest.push_back({out[k], k == 0 ? 0 : 1});
      }
      transform(dest, 0);
      return;
    }
    std::string ns;
    std::vector<Align> na;
    ns.reserve(s_.size() + s_.size() / 2);
    na.reserve(s_.size() + s_.size() / 2);
    std::size_t i = 0;
    while (i < s_.size()) {
      const std::size_t b = i;
      const int n = f(s_, i, out);  // reads one char at i, advances i
      for (int k = 0; k < n; ++k) append_utf8(ns, out[k]);
      na.resize(ns.size(), align_[b]);
    }
    s_ = std::move(ns);
    align_ = std::move(na);
  }

  // `slice(Range::Normalized(nb..ne))`.
  NormalizedString slice(std::size_t nb, std::size_t ne) const;
  // slice(0, size()) in place: same text and alignments, original_shift recomputed from them.
  void reslice_whole() {
    if (!s_.empty()) {
      shift_ = align_[0].b;
      orig_len_ = align_.back().e - align_[0].b;
    }
  }
  // `split(pattern, behavior)`: the pieces (empty ones dropped) appended to out.
  void split(const std::vector<Match>& matches, SplitBehavior behavior, std::vector<NormalizedString>& out) const;
  // A token's normalized byte range -> input byte range, as `convert_offsets` + original_shift.
  std::pair<std::size_t, std::size_t> to_original(std::size_t nb, std::size_t ne) const;

 private:
  void decompose(bool compat, bool compose);
  // Whether the library's `transform` range (see transform) is the whole string, so that the
  // direct implementations of filter/map/expand/strip apply.
  bool whole_is_transform_range() const {
    return s_.empty() || (orig_len_ > 0 && align_[0].b != align_[0].e);
  }
  std::string s_;
  std::vector<Align> align_;  // one per byte of s_
  uint32_t shift_ = 0;        // where this piece's original starts in the input
  uint32_t orig_len_ = 0;     // length of this piece's original (`len_original`)
};

// A model token inside a split: normalized byte range [b, e) of that split.
struct Token {
  int32_t id;
  uint32_t b, e;
};

struct Split {
  NormalizedString normalized;
  bool has_tokens = false;   // set for added tokens, and after the model ran
  std::vector<Token> tokens;
  std::string added_value;   // the matched text, for an added token
};

// tokenizers' `PreTokenizedString`: the splits of one input.
class PreTokenizedString {
 public:
  std::vector<Split> splits;

  // Replaces every split without tokens by the pieces f(normalized, out) writes (empty ones
  // dropped), as `PreTokenizedString::split`.
  template <class F>
  void split(F f) {
    std::vector<Split> next;
    next.reserve(splits.size());
    std::vector<NormalizedString> pieces;
    for (auto& sp : splits) {
      if (sp.has_tokens) {
        next.push_back(std::move(sp));
        continue;
      }
      pieces.clear();
      f(std::move(sp.normalized), pieces);
      for (auto& p : pieces)
        if (!p.empty()) next.push_back(Split{std::move(p), false, {}, {}});
    }
    splits = std::move(next);
  }
  // Applies f to the normalized string of every split without tokens (`normalize`).
  template <class F>
  void normalize(F f) {
    for (auto& sp : splits)
      if (!sp.has_tokens) f(sp.normalized);
  }
};

}  // namespace fusellm::tok
