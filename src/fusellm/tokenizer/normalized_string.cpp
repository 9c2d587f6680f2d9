// NormalizedString operations, each reproducing the alignment bookkeeping of the method of
// tokenizers' `NormalizedString` it is named after.
#include "fusellm/tokenizer/normalized_string.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/tokenizer/regex.hpp"

namespace fusellm::tok {

void find_matches(const Regex& re, std::string_view s, bool invert, std::vector<Match>& out) {
  // tokenizers' `Pattern for &Regex` (and `Invert`): matches plus the gaps between them.
  if (s.empty()) {
    out.push_back({0, 0, invert});
    return;
  }
  thread_local std::vector<std::pair<std::size_t, std::size_t>> found;
  found.clear();
  re.find_iter(s, found);
  std::size_t prev = 0;
  for (auto [b, e] : found) {
    if (prev != b) out.push_back({uint32_t(prev), uint32_t(b), invert});
    out.push_back({uint32_t(b), uint32_t(e), !invert});
    prev = e;
  }
  if (prev != s.size()) out.push_back({uint32_t(prev), uint32_t(s.size()), invert});
}

NormalizedString::NormalizedString(std::string_view input, std::size_t b, std::size_t e)
    : s_(input.substr(b, e - b)), shift_(uint32_t(b)), orig_len_(uint32_t(e - b)) {
  align_.resize(s_.size());
  std::size_t i = 0;
  while (i < s_.size()) {
    const std::size_t len = utf8_len_from_lead(static_cast<unsigned char>(s_[i]));
    const Align a{uint32_t(b + i), uint32_t(b + i + len)};
    for (std::size_t k = 0; k < len; ++k) align_[i + k] = a;
    i += len;
  }
}

void NormalizedString::transform_range(std::size_t nb, std::size_t ne, const std::vector<Change>& dest,
                                       std::size_t initial_offset) {
  // Walks the replaced chars of [nb, ne) in step with dest: a char with change <= 0 takes the
  // alignment of the char it replaces, an inserted one (change > 0) that of the byte before.
  std::size_t cursor = nb;
  for (std::size_t k = 0; k < initial_offset && cursor < ne; ++k)
    cursor += utf8_len_from_lead(static_cast<unsigned char>(s_[cursor]));
  std::string ns;
  std::vector<Align> na;
  ns.reserve(ne - nb + dest.size());
  na.reserve(ne - nb + dest.size());
  auto consume = [&] {
    if (cursor < ne) cursor += utf8_len_from_lead(static_cast<unsigned char>(s_[cursor]));
  };
  for (const Change& ch : dest) {
    Align a;
    if (ch.change > 0) {
      a = cursor < 1 ? Align{shift_, shift_} : align_[cursor - 1];
    } else {
      if (cursor >= align_.size())  // the library indexes past its alignments here and panics
        fail("normalization: a transformation ran past the end of \"{}\" (the tokenizers library fails here too)",
             s_.substr(0, 60));
      a = align_[cursor];
      consume();
      for (int32_t k = 0; k < -ch.change; ++k) consume();
    }
    append_utf8(ns, ch.c);
    na.resize(ns.size(), a);
  }
  s_.replace(nb, ne - nb, ns);
  align_.erase(align_.begin() + nb, align_.begin() + ne);
  align_.insert(align_.begin() + nb, na.begin(), na.end());
}

void NormalizedString::transform(const std::vector<Change>& dest, std::size_t initial_offset) {
  if (whole_is_transform_range()) return transform_range(0, s_.size(), dest, initial_offset);
  // `convert_offsets(Range::Original(..))`: an empty original maps to 0..0; otherwise from the
  // first byte with a non-empty alignment to the last byte whose alignment ends inside it.
  std::size_t nb = 0, ne = 0;
  if (orig_len_ > 0) {
    bool have_start = false, have_end = false;
    for (std::size_t i = 0; i < align_.size(); ++i) {
      const Align a = align_[i];
      if (a.e - shift_ > orig_len_) break;
      if (!have_start && a.b != a.e) {
        nb = i;
        have_start = true;
      }
      ne = i + 1;
      have_end = true;
    }
    if (!have_start && !have_end) return;  // no range: the library leaves the string as it is
    if (!have_start) nb = ne;
    if (!have_end) ne = nb;
  }
  transform_range(nb, ne, dest, initial_offset);
}

void NormalizedString::prepend(std::string_view s) {
  // The first new char replaces the first char (so takes its alignment); the others and the
  // re-inserted first char follow it: everything aligns with the first char.
  if (s_.empty()) return;
  if (s.empty()) {
    // The library's changes are then only (first char, +1): an inserted char at the start, which
    // takes the empty alignment at the start of the original (later stages that `transform` keep
    // their quirks for such a string, see whole_is_transform_range).
    std::size_t i = 0;
    const char32_t first = next_char(s_, i);
    transform_range(0, i, {Change{first, 1}}, 0);
    return;
  }
  const Align a = align_[0];
  s_.insert(0, s);
  align_.insert(align_.begin(), s.size(), a);
}

void NormalizedString::replace(const std::vector<Match>& matches, std::string_view content) {
  // Each match is removed and content inserted in its place, every inserted char aligned with
  // the last byte of the match (`transform_range` with changes 1 after removing the match).
  std::string ns;
  std::vector<Align> na;
  ns.reserve(s_.size());
  na.reserve(s_.size());
  std::size_t last = 0;
  for (const Match& m : matches) {
    if (!m.is_match) continue;
    ns.append(s_, last, m.b - last);
    na.insert(na.end(), align_.begin() + last, align_.begin() + m.b);
    const Align a = m.e < 1 ? Align{shift_, shift_} : align_[m.e - 1];
    ns.append(content);
    na.resize(ns.size(), a);
    last = m.e;
  }
  ns.append(s_, last, std::string::npos);
  na.insert(na.end(), align_.begin() + last, align_.end());
  s_ = std::move(ns);
  align_ = std::move(na);
}

void NormalizedString::lowercase() {
  // Plain ASCII lowercase is a byte map that keeps every alignment.
  bool ascii = true;
  for (char c : s_)
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii && whole_is_transform_range()) {
    for (char& c : s_)
      if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return;
  }
  expand([](const std::string& s, std::size_t& i, char32_t* out) { return to_lowercase(next_char(s, i), out); });
}

void NormalizedString::strip(bool left, bool right) {
  // `lrstrip`: the kept chars keep their own alignments.
  std::size_t b = 0, e = s_.size();
  if (left) {
    std::size_t i = 0;
    while (i < s_.size()) {
      const std::size_t at = i;
      if (!is_whitespace(next_char(s_, i))) {
        b = at;
        break;
      }
      b = i;
    }
  }
  if (right) {
    while (e > b) {
      std::size_t start = e - 1;
      while (start > b && (static_cast<unsigned char>(s_[start]) & 0xC0) == 0x80) --start;
      std::size_t i = start;
      if (!is_whitespace(next_char(s_, i))) break;
      e = start;
    }
  }
  if (b == 0 && e == s_.size()) return;
  if (!whole_is_transform_range()) {
    // `lrstrip` as changes: the kept chars, the last one removing the trailing whitespace.
    std::vector<Change> dest;
    std::size_t leading = 0, trailing = 0;
    for (std::size_t i = 0; i < b;) next_char(s_, i), ++leading;
    for (std::size_t i = e; i < s_.size();) next_char(s_, i), ++trailing;
    for (std::size_t i = b; i < e;) dest.push_back({next_char(s_, i), 0});
    if (!dest.empty()) dest.back().change = -int32_t(trailing);
    transform(dest, leading);
    return;
  }
  s_ = s_.substr(b, e - b);
  align_ = std::vector<Align>(align_.begin() + b, align_.begin() + e);
}

namespace {

struct CC {  // a decomposed char, its change (0: first of its input char, 1: added), its class
  char32_t c;
  int32_t change;
  uint8_t ccc;
};

// unicode-normalization-alignments: each input char decomposes to (d0, 0), (d1, 1), ...; runs
// of non-starters are then stably sorted by combining class (canonical ordering).
std::vector<CC> decompose_ordered(const std::string& s, bool compat) {
  std::vector<CC> d;
  d.reserve(s.size());
  char32_t buf[18];
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = next_char(s, i);
    const int n = tok::decompose(c, compat, buf);
    for (int k = 0; k < n; ++k) d.push_back({buf[k], k == 0 ? 0 : 1, combining_class(buf[k])});
  }
  for (std::size_t a = 0; a < d.size();) {
    if (d[a].ccc == 0) {
      ++a;
      continue;
    }
    std::size_t b = a;
    while (b < d.size() && d[b].ccc != 0) ++b;
    if (b - a > 1) std::stable_sort(d.begin() + a, d.begin() + b, [](const CC& x, const CC& y) { return x.ccc < y.ccc; });
    a = b;
  }
  return d;
}

// Canonical composition (NFC/NFKC), the crate's `Recompositions` state machine: a combining
// char folds into its starter, adding its change minus one to the starter's.
std::vector<Change> recompose(const std::vector<CC>& d) {
  std::vector<Change> out;
  out.reserve(d.size());
  bool have_composee = false;
  Change composee{0, 0};
  int last_ccc = -1;            // -1: none
  std::vector<Change> pending;  // blocked combining chars, emitted after the composee
  const auto block = [&](const Change& ch, uint8_t ccc) {
    pending.push_back(ch);
    last_ccc = ccc;
  };
  const auto new_starter = [&](const Change& ch) {
    out.push_back(composee);
    out.insert(out.end(), pending.begin(), pending.end());
    pending.clear();
    composee = ch;
    last_ccc = -1;
  };
  for (const CC& x : d) {
    const Change ch{x.c, x.change};
    if (!have_composee) {
      if (x.ccc != 0) {
        out.push_back(ch);
      } else {
        composee = ch;
        have_composee = true;
      }
      continue;
    }
    const bool blocked = last_ccc >= 0 && last_ccc >= x.ccc;
    if (!blocked) {
      if (char32_t r = compose_pair(composee.c, x.c)) {
        composee = {r, composee.change + ch.change - 1};
        continue;
      }
    }
    if (x.ccc == 0) {  // a starter that did not compose (a starter is always blocked by pending chars)
      new_starter(ch);
      continue;
    }
    block(ch, x.ccc);
  }
  if (have_composee) out.push_back(composee);
  out.insert(out.end(), pending.begin(), pending.end());
  return out;
}

}  // namespace

void NormalizedString::decompose(bool compat, bool compose) {
  const bool ascii =
      std::all_of(s_.begin(), s_.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii && whole_is_transform_range()) return;  // ASCII is invariant under all four forms
  const std::vector<CC> d = decompose_ordered(s_, compat);
  if (compose) {
    transform(recompose(d), 0);
    return;
  }
  std::vector<Change> out;
  out.reserve(d.size());
  for (const CC& x : d) out.push_back({x.c, x.change});
  transform(out, 0);
}

NormalizedString NormalizedString::slice(std::size_t nb, std::size_t ne) const {
  NormalizedString r;
  r.s_ = s_.substr(nb, ne - nb);
  r.align_.assign(align_.begin() + nb, align_.begin() + ne);
  // original range: convert_offsets(Normalized(nb..ne)); an empty range maps to itself
  r.shift_ = nb == ne ? uint32_t(shift_ + nb) : align_[nb].b;
  r.orig_len_ = nb == ne ? 0 : align_[ne - 1].e - align_[nb].b;
  return r;
}

void NormalizedString::split(const std::vector<Match>& matches, SplitBehavior behavior,
                             std::vector<NormalizedString>& out) const {
  // The ranges to keep, merged as tokenizers' `NormalizedString::split` does per behavior.
  thread_local std::vector<std::pair<uint32_t, uint32_t>> keep;
  keep.clear();
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Match& m : matches)
        if (!m.is_match) keep.emplace_back(m.b, m.e);
      break;
    case SplitBehavior::Isolated:
      for (const Match& m : matches) keep.emplace_back(m.b, m.e);
      break;
    case SplitBehavior::Contiguous: {
      bool prev = false;
      for (const Match& m : matches) {
        if (m.is_match == prev && !keep.empty())
          keep.back().second = m.e;
        else
          keep.emplace_back(m.b, m.e);
        prev = m.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      bool prev = false;
      for (const Match& m : matches) {
        if (m.is_match && !prev && !keep.empty())
          keep.back().second = m.e;
        else
          keep.emplace_back(m.b, m.e);
        prev = m.is_match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !prev && !keep.empty())
          keep.back().first = it->b;
        else
          keep.emplace_back(it->b, it->e);
        prev = it->is_match;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    }
  }
  for (auto [b, e] : keep)
    if (b < e) out.push_back(slice(b, e));
}

std::pair<std::size_t, std::size_t> NormalizedString::to_original(std::size_t nb, std::size_t ne) const {
  if (nb == ne) return {shift_ + nb, shift_ + ne};
  if (nb > ne || ne > align_.size()) return {nb, ne};
  return {align_[nb].b, align_[ne - 1].e};
}

}  // namespace fusellm::tok
