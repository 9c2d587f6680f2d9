#pragma once
// Helpers for the align tests: small synthetic vocabularies in byte-level and SentencePiece
// spelling, and naive host implementations (Levenshtein, the original `dtw`) to compare with.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::align::testing {

// GPT-2's bytes_to_unicode: the byte-level spelling of raw bytes ("Ġhello" for " hello").
inline std::string byte_level(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    uint32_t cp = b;
    if (!printable) {
      int n = 0;
      for (int c = 0; c < b; ++c) {
        const bool p = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
        if (!p) ++n;
      }
      cp = 256 + uint32_t(n);
    }
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else {
      out.push_back(char(0xC0 | (cp >> 6)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

// SentencePiece spelling: spaces as "▁".
inline std::string metaspace(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') out += "\xE2\x96\x81";
    else out.push_back(c);
  }
  return out;
}

inline int naive_levenshtein(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = int(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = int(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The original FuseLLM `dtw` (full matrix with an infinite border, backtrack by np.argmin over
// (diag, up, left)), written plainly: for each element of series 2, the series-1 indices on it.
inline std::vector<std::vector<int>> naive_dtw(const std::vector<std::string>& s1, const std::vector<std::string>& s2) {
  const size_t n = s1.size(), m = s2.size();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> M(n + 1, std::vector<double>(m + 1, inf));
  M[0][0] = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < m; ++j)
      M[i + 1][j + 1] = naive_levenshtein(s1[i], s2[j]) + std::min({M[i][j + 1], M[i + 1][j], M[i][j]});
  auto T = [&](long i, long j) { return M[size_t(i) + 1][size_t(j) + 1]; };
  long i = long(n) - 1, j = long(m) - 1;
  std::vector<std::vector<int>> map2(m);
  while (i > 0 || j > 0) {
    map2[size_t(j)].push_back(int(i));
    const double opts[3] = {i > 0 && j > 0 ? T(i - 1, j - 1) : inf, i > 0 ? T(i - 1, j) : inf,
                            j > 0 ? T(i, j - 1) : inf};
    const int move = int(std::min_element(opts, opts + 3) - opts);
    if (move == 0) { --i; --j; }
    else if (move == 1) { --i; }
    else { --j; }
  }
  map2[0].push_back(0);
  for (auto& v : map2) std::reverse(v.begin(), v.end());
  return map2;
}

// A vocabulary from raw byte strings, spelled for the given kind; `special` lists literal
// special tokens appended after them.
inline TokenVocab make_vocab(const std::string& name, NormKind kind, const std::vector<std::string>& words,
                             const std::vector<std::string>& specials = {},
                             DummyPrefix dummy = DummyPrefix::kNone) {
  std::vector<std::string> tokens;
  std::vector<uint8_t> flags;
  for (const auto& w : words) {
    tokens.push_back(kind == NormKind::kByteLevel ? byte_level(w) : kind == NormKind::kMetaspace ? metaspace(w) : w);
    flags.push_back(0);
  }
  for (const auto& s : specials) {
    tokens.push_back(s);
    flags.push_back(kTokenAdded | kTokenSpecial);
  }
  return TokenVocab::from_tokens(name, kind, std::move(tokens), std::move(flags), dummy);
}

inline int32_t id_of(const TokenVocab& v, const std::string& normalized) {
  for (int64_t i = 0; i < v.size(); ++i)
    if (v.normalized[size_t(i)] == normalized) return int32_t(i);
  return -1;
}

inline std::vector<int32_t> ids_of(const TokenVocab& v, const std::vector<std::string>& normalized) {
  std::vector<int32_t> out;
  for (const auto& s : normalized) out.push_back(id_of(v, s));
  return out;
}

// Host copies of SparseRows.
struct HostRows {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<float>> probs;
  std::vector<float> tail;
};
template <class Mem>
HostRows to_host(const SparseRows<Mem>& r) {
  auto ids = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r.ids);
  auto probs = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r.probs);
  auto tail = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r.tail);
  HostRows h;
  for (size_t t = 0; t < ids.extent(0); ++t) {
    std::vector<int32_t> ri;
    std::vector<float> rp;
    for (size_t c = 0; c < ids.extent(1); ++c) {
      if (ids(t, c) < 0) continue;
      ri.push_back(ids(t, c));
      rp.push_back(probs(t, c));
    }
    h.ids.push_back(ri);
    h.probs.push_back(rp);
  }
  for (size_t t = 0; t < tail.extent(0); ++t) h.tail.push_back(tail(t));
  return h;
}

// SparseRows in ExecSpace memory from host rows (each row padded with -1 to k).
template <class Mem>
SparseRows<Mem> make_rows(const std::vector<std::vector<std::pair<int32_t, float>>>& rows, int64_t k,
                          const std::vector<float>& tail = {}) {
  SparseRows<Kokkos::HostSpace> h("rows", int64_t(rows.size()), k, !tail.empty());
  for (size_t t = 0; t < rows.size(); ++t) {
    for (size_t c = 0; c < rows[t].size(); ++c) {
      h.ids(t, c) = rows[t][c].first;
      h.probs(t, c) = rows[t][c].second;
    }
    if (!tail.empty()) h.tail(t) = tail[t];
  }
  SparseRows<Mem> d;
  d.ids = Kokkos::create_mirror_view_and_copy(Mem(), h.ids);
  d.probs = Kokkos::create_mirror_view_and_copy(Mem(), h.probs);
  d.tail = Kokkos::create_mirror_view_and_copy(Mem(), h.tail);
  return d;
}

}  // namespace fusellm::align::testing
