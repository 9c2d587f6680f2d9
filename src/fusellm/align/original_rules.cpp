#include "fusellm/align/original_rules.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <limits>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "fusellm/align/original_host.hpp"
#include "fusellm/core/error.hpp"
#include "kokkos/align_common.hpp"

namespace fusellm::align {
namespace {

// UTF-8 -> code points (an invalid byte becomes U+FFFD + the byte, so it never equals valid text).
std::u32string code_points(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      ok = (d >> 6) == 0x2;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD0000u | c);  // outside Unicode: equal only to the same invalid byte
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::u32string byte_units(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (char c : s) out.push_back(char32_t(static_cast<unsigned char>(c)));
  return out;
}

// The original's word marker of a tokenizer (TOKENIZER_TO_SPECIAL_TOKEN): `Ġ` for byte-level BPE,
// `▁` for SentencePiece-style; none for other vocabularies.
std::u32string marker_of(const TokenVocab& v) {
  switch (v.kind) {
    case NormKind::kByteLevel: return U"\u0120";
    case NormKind::kMetaspace: return U"\u2581";
    case NormKind::kPlain: break;
  }
  return U"";
}

std::u32string replace_all(std::u32string s, const std::u32string& from, const std::u32string& to) {
  if (from.empty()) return s;
  for (size_t p = s.find(from); p != std::u32string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

}  // namespace

OriginalRules OriginalRules::all() { return {true, true, true, true, true}; }

bool OriginalRules::flag(std::string_view name) const {
  if (name == "strings") return strings;
  if (name == "specials") return specials;
  if (name == "dummy_prefix") return dummy_prefix;
  if (name == "empty_row") return empty_row;
  if (name == "onehot_current") return onehot_current;
  return false;
}

void OriginalRules::set(std::string_view name, bool on) {
  if (name == "strings") strings = on;
  else if (name == "specials") specials = on;
  else if (name == "dummy_prefix") dummy_prefix = on;
  else if (name == "empty_row") empty_row = on;
  else if (name == "onehot_current") onehot_current = on;
  else fail("alignment rule '{}': expected one of strings, specials, dummy_prefix, empty_row, onehot_current", name);
}

OriginalRules OriginalRules::parse(std::string_view list) {
  if (list.empty() || list == "none") return {};
  if (list == "all") return all();
  OriginalRules r;
  for (size_t b = 0; b <= list.size();) {
    size_t e = list.find(',', b);
    if (e == std::string_view::npos) e = list.size();
    std::string_view name = list.substr(b, e - b);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name.empty()) fail("alignment rules '{}': an empty name (expected names joined by ',', 'all' or 'none')", list);
    r.set(name, true);
    b = e + 1;
  }
  return r;
}

std::string OriginalRules::to_string() const {
  std::string out;
  for (const auto n : kNames)
    if (flag(n)) out += (out.empty() ? "" : ",") + std::string(n);
  return out.empty() ? "none" : out;
}

RuleStrings rule_strings(const TokenVocab& vocab, const TokenVocab& target, bool original) {
  RuleStrings r;
  const size_t n = vocab.tokens.size();
  r.eq.reserve(n);
  r.cost.reserve(n);
  if (!original) {
    for (const auto& s : vocab.normalized) {
      r.eq.push_back(byte_units(s));
      r.cost.push_back(byte_units(cost_string(s)));
    }
    r.space = U" ";
    return r;
  }
  // The original: `x.replace(blending_marker, base_marker)` for equality (a target token keeps its
  // string), `x.replace(own_marker, '')` for the DTW cost.
  const std::u32string own = marker_of(vocab), tm = marker_of(target);
  for (const auto& t : vocab.tokens) {
    const std::u32string cp = code_points(t);
    r.eq.push_back(own.empty() ? cp : replace_all(cp, own, tm));
    r.cost.push_back(replace_all(cp, own, U""));
  }
  r.space = tm;
  return r;
}

int unit_levenshtein(std::u32string_view a, std::u32string_view b) {
  if (a.size() < b.size()) std::swap(a, b);
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = int(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diag = row[0];
    row[0] = int(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int up = row[j];
      row[j] = std::min({up + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

// ---- vocabulary mapping under the rules (the reference's vocab_mapping with rules) ------------------
std::vector<int32_t> mapping_candidates(const TokenVocab& tgt, const OriginalRules& rules) {
  if (!rules.changes_mapping()) return mapping_candidates(tgt);
  // rules.strings: a byte-fallback entry is the string `<0xHH>`, no other token's twin.
  if (!rules.strings) {
    std::vector<int32_t> out = mapping_candidates(tgt);
    for (int64_t j = 0; j < tgt.size(); ++j)
      if (tgt.special(j) && !tgt.hole(j)) out.push_back(int32_t(j));
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<int32_t> out;
  for (int64_t j = 0; j < tgt.size(); ++j)
    if (!tgt.hole(j) && (rules.specials || !tgt.special(j))) out.push_back(int32_t(j));
  return out;
}

namespace detail {

VocabMapping build_mapping_host(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab,
                                std::span<const std::pair<int32_t, int32_t>> overrides, const OriginalRules& rules) {
  VocabMapping m;
  const int64_t n = std::max(src.size(), source_model_vocab);
  detail::set_unmapped(m, n);
  const RuleStrings ss = rule_strings(src, tgt, rules.strings), ts = rule_strings(tgt, tgt, rules.strings);
  const std::vector<int32_t> cands = mapping_candidates(tgt, rules);
  std::unordered_map<std::u32string_view, int32_t> exact_index;
  std::unordered_map<std::string_view, int32_t> special_index;
  size_t max_len = 0;
  for (const int32_t j : cands) {
    exact_index.emplace(ts.eq[size_t(j)], j);
    max_len = std::max(max_len, ts.eq[size_t(j)].size());
  }
  for (int64_t j = 0; j < tgt.size(); ++j)
    if (tgt.special(j)) special_index.emplace(tgt.normalized[size_t(j)], int32_t(j));
  // Candidates by length: |len(x) - len(y)| bounds the distance, so groups are visited in order
  // of that bound and the search stops past the best distance (the result is the brute force's).
  std::vector<std::vector<int32_t>> by_len(max_len + 1);
  for (const int32_t j : cands) by_len[ts.eq[size_t(j)].size()].push_back(j);

  std::vector<int32_t> queries;
  for (int64_t i = 0; i < src.size(); ++i) {
    if (src.special(i) && !rules.specials) {
      if (auto it = special_index.find(src.normalized[size_t(i)]); it != special_index.end()) {
        m.exact[size_t(i)] = m.full[size_t(i)] = it->second;
        m.kind[size_t(i)] = kMapExact;
        m.dist[size_t(i)] = 0;
      }
      continue;
    }
    if (src.hole(i)) continue;
    if (auto it = exact_index.find(ss.eq[size_t(i)]); it != exact_index.end()) {
      m.exact[size_t(i)] = m.full[size_t(i)] = it->second;
      m.kind[size_t(i)] = kMapExact;
      m.dist[size_t(i)] = 0;
      continue;
    }
    queries.push_back(int32_t(i));
  }
  std::vector<int32_t> out_id(queries.size(), -1), out_dist(queries.size(), -1);
  Kokkos::parallel_for(
      "fusellm::align::mapping_host", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, queries.size()),
      [&](const size_t q) {
        const std::u32string& x = ss.eq[size_t(queries[q])];
        const int64_t lx = int64_t(x.size()), ml = int64_t(max_len);
        int64_t best = std::numeric_limits<int64_t>::max();  // (distance << 32) | id
        for (int64_t delta = 0;; ++delta) {
          if (best != std::numeric_limits<int64_t>::max() && delta > (best >> 32)) break;
          if (delta > lx && lx + delta > ml) break;
          for (int side = 0; side < (delta == 0 ? 1 : 2); ++side) {
            const int64_t L = side == 0 ? lx - delta : lx + delta;
            if (L < 0 || L > ml) continue;
            for (const int32_t j : by_len[size_t(L)]) {
              const int64_t key = (int64_t(unit_levenshtein(x, ts.eq[size_t(j)])) << 32) | j;
              best = std::min(best, key);
            }
          }
        }
        if (best != std::numeric_limits<int64_t>::max()) {
          out_id[q] = int32_t(best & 0xffffffff);
          out_dist[q] = int32_t(best >> 32);
        }
      });
  for (size_t q = 0; q < queries.size(); ++q) {
    if (out_id[q] < 0) continue;
    const size_t i = size_t(queries[q]);
    m.full[i] = out_id[q];
    m.dist[i] = out_dist[q];
    m.kind[i] = kMapMinED;
  }
  detail::apply_overrides(m, overrides, tgt.size());
  return m;
}

// ---- DTW under the rules (the reference's align_dtw with rules) -------------------------------------
namespace {

// The original `dtw(series_1 = source, series_2 = target)`: for each target index, the source
// indices the backtrack visits with it (ascending; token_alignment.hpp states the recurrence).
std::vector<std::pair<int64_t, int64_t>> dtw_ranges(int64_t n, int64_t m, const auto& cost) {
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  std::vector<int64_t> M(size_t((n + 1) * (m + 1)), kInf);
  auto at = [&](int64_t i, int64_t j) -> int64_t& { return M[size_t(i * (m + 1) + j)]; };
  at(0, 0) = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) at(i + 1, j + 1) = cost(i, j) + std::min({at(i, j + 1), at(i + 1, j), at(i, j)});
  auto T = [&](int64_t i, int64_t j) { return at(i + 1, j + 1); };  // the trimmed matrix
  std::vector<std::pair<int64_t, int64_t>> range(size_t(m), {-1, -1});
  auto visit = [&](int64_t i, int64_t j) {
    auto& r = range[size_t(j)];
    if (r.second < 0) r.second = i;
    r.first = i;
  };
  int64_t i = n - 1, j = m - 1;
  while (i > 0 || j > 0) {
    visit(i, j);
    const int64_t diag = i > 0 && j > 0 ? T(i - 1, j - 1) : kInf;
    const int64_t up = i > 0 ? T(i - 1, j) : kInf;
    const int64_t left = j > 0 ? T(i, j - 1) : kInf;
    if (diag <= up && diag <= left) { --i; --j; }  // first minimum, as np.argmin
    else if (up <= left) { --i; }
    else { --j; }
  }
  visit(0, 0);
  return range;
}

bool starts_with(const std::u32string& s, const std::u32string& p) {
  return !p.empty() && s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}

}  // namespace

void align_dtw_host(const TokenVocab& src, const TokenVocab& tgt, std::span<const int32_t> sids,
                    std::span<const int32_t> tids, bool mined, const VocabMapping* mapping, const OriginalRules& rules,
                    const RuleStrings& ss, const RuleStrings& ts, int64_t src0, int32_t* lo, int32_t* hi,
                    uint8_t* status) {
  const int64_t n = int64_t(sids.size()), m = int64_t(tids.size());
  for (int64_t j = 0; j < m; ++j) { lo[j] = hi[j] = -1; status[j] = kFallbackUnaligned; }
  size_t ls = 0, ts_ = 0, lt = 0, tt = 0;
  if (!rules.specials) {
    std::tie(ls, ts_) = src.edge_runs(sids);
    std::tie(lt, tt) = tgt.edge_runs(tids);
    for (size_t r = 1; r <= std::min(ls, lt); ++r) {
      lo[lt - r] = hi[lt - r] = int32_t(src0 + int64_t(ls - r));
      status[lt - r] = kKeptSpecial;
    }
    for (size_t r = 0; r < std::min(ts_, tt); ++r) {
      lo[size_t(m) - tt + r] = hi[size_t(m) - tt + r] = int32_t(src0 + n - int64_t(ts_) + int64_t(r));
      status[size_t(m) - tt + r] = kKeptSpecial;
    }
  }
  const int64_t nc = n - int64_t(ls + ts_), mc = m - int64_t(lt + tt);
  if (nc <= 0 || mc <= 0) return;
  const auto range = dtw_ranges(nc, mc, [&](int64_t i, int64_t j) {
    return int64_t(unit_levenshtein(ss.cost[size_t(sids[ls + size_t(i)])], ts.cost[size_t(tids[lt + size_t(j)])]));
  });
  for (int64_t jj = 0; jj < mc; ++jj) {
    const int64_t t = int64_t(lt) + jj;
    const auto [a0, a1] = range[size_t(jj)];
    lo[t] = int32_t(src0 + int64_t(ls) + a0);
    hi[t] = int32_t(src0 + int64_t(ls) + a1);
    if (a0 != a1) { status[t] = kFallbackMany; continue; }
    const int32_t sid = sids[ls + size_t(a0)], tid = tids[size_t(t)];
    const std::u32string& a = ss.eq[size_t(sid)];
    const std::u32string& b = ts.eq[size_t(tid)];
    const std::u32string& sp = ts.space;
    bool first;
    if (rules.dummy_prefix)  // the original: target position 0, byte-level source, target side only
      first = t == 0 && src.kind == NormKind::kByteLevel && starts_with(b, sp) && !starts_with(a, sp) && sp + a == b;
    else  // fusellm: first content position of both sides, either side
      first = jj == 0 && a0 == 0 &&
              ((starts_with(a, sp) && a.substr(sp.size()) == b) || (starts_with(b, sp) && b.substr(sp.size()) == a));
    if (a == b || first) status[t] = kKeptExact;
    else if (mined && mapping && sid < mapping->size() && mapping->full[size_t(sid)] == tid) status[t] = kKeptMapped;
    else status[t] = kFallbackMismatch;
  }
}

}  // namespace detail
}  // namespace fusellm::align
