#include "fusellm/align/align_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace fusellm::align {
namespace {

// Display width of a UTF-8 string in terminal cells (code points; good enough for a table).
size_t width(std::string_view s) {
  size_t w = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++w;
  return w;
}

std::string pad(std::string s, size_t w) {
  const size_t n = width(s);
  if (n < w) s.append(w - n, ' ');
  return s;
}

}  // namespace

const char* status_name(uint8_t status) {
  switch (status) {
    case kKeptExact: return "kept: exact";
    case kKeptMapped: return "kept: mapped (MinED)";
    case kKeptSpan: return "kept: byte span";
    case kKeptSpecial: return "kept: special";
    case kFallbackMany: return "fallback: many source tokens";
    case kFallbackMismatch: return "fallback: strings differ";
    case kFallbackUnaligned: return "fallback: unaligned";
    case kFallbackEmpty: return "fallback: no top-k id survived";
    default: return "?";
  }
}

std::string display_token(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    // Keep well-formed multi-byte UTF-8 sequences as they are.
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
    if (!valid) {
      out += fmt::format("\\x{:02X}", c);
      ++i;
      continue;
    }
    if (len > 1) {
      out.append(s.substr(i, len));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(char(c));
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02X}", c);
    } else {
      out.push_back(char(c));
    }
    i += len;
  }
  return out + "\"";
}

int64_t AlignSummary::kept() const {
  int64_t k = 0;
  for (int s = 0; s < kFallbackMany; ++s) k += by_status[s];
  return k;
}

AlignSummary summarize(const Alignment& al) {
  AlignSummary s;
  s.positions = int64_t(al.status.size());
  for (uint8_t st : al.status) ++s.by_status[st < 16 ? st : 15];
  return s;
}

std::string render_alignment(const TokenVocab& src, std::span<const int32_t> src_ids, int64_t s0,
                             const TokenVocab& tgt, std::span<const int32_t> tgt_ids, int64_t t0,
                             const Alignment& al) {
  std::vector<std::string> col_t, col_s, col_tok;
  size_t wt = 5, ws = 3, wk = 8;
  for (size_t j = 0; j < tgt_ids.size(); ++j) {
    const size_t p = size_t(t0) + j;
    col_t.push_back(display_token(tgt.normalized[size_t(tgt_ids[j])]));
    std::string srange = "-", stoks;
    if (p < al.lo.size() && al.lo[p] >= 0) {
      const int64_t lo = al.lo[p] - s0, hi = al.hi[p] - s0;
      srange = lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi);
      for (int64_t i = lo; i <= hi && i >= 0 && i < int64_t(src_ids.size()); ++i) {
        if (!stoks.empty()) stoks += ' ';
        stoks += display_token(src.normalized[size_t(src_ids[size_t(i)])]);
      }
    }
    col_s.push_back(srange);
    col_tok.push_back(stoks);
    wt = std::max(wt, width(col_t.back()));
    ws = std::max(ws, width(srange));
    wk = std::max(wk, std::min<size_t>(width(stoks), 40));
  }
  std::string out = fmt::format("{:>5}  {}  {}  {}  decision\n", "tgt", pad("token", wt), pad("src", ws),
                                pad("token(s)", wk));
  for (size_t j = 0; j < tgt_ids.size(); ++j) {
    const size_t p = size_t(t0) + j;
    const uint8_t st = p < al.status.size() ? al.status[p] : uint8_t(kFallbackUnaligned);
    out += fmt::format("{:>5}  {}  {}  {}  {}\n", j, pad(col_t[j], wt), pad(col_s[j], ws), pad(col_tok[j], wk),
                       status_name(st));
  }
  return out;
}

std::string render_summary(const AlignSummary& s) {
  std::string out;
  const double n = s.positions > 0 ? double(s.positions) : 1.0;
  for (int st = 0; st < 16; ++st) {
    if (s.by_status[st] == 0) continue;
    out += fmt::format("{:<32} {:>10}  {:5.1f}%\n", status_name(uint8_t(st)), s.by_status[st],
                       100.0 * double(s.by_status[st]) / n);
  }
  out += fmt::format("{:<32} {:>10}  {:5.1f}%\n", "kept (all kinds)", s.kept(), 100.0 * double(s.kept()) / n);
  return out;
}

std::string render_coverage(const VocabMapping& m) {
  const MapCoverage c = m.coverage();
  const double n = c.tokens > 0 ? double(c.tokens) : 1.0;
  std::string out = fmt::format("vocab mapping {} -> {}\n", m.source_name, m.target_name);
  out += fmt::format("  source tokens   {:>8}\n", c.tokens);
  out += fmt::format("  exact           {:>8}  {:5.1f}%\n", c.exact, 100.0 * double(c.exact) / n);
  out += fmt::format("  MinED           {:>8}  {:5.1f}%  (mean distance {:.2f})\n", c.mined,
                     100.0 * double(c.mined) / n, c.mean_mined_distance);
  if (c.overridden > 0)
    out += fmt::format("  overridden      {:>8}  {:5.1f}%\n", c.overridden, 100.0 * double(c.overridden) / n);
  out += fmt::format("  unmapped        {:>8}  {:5.1f}%\n", c.unmapped, 100.0 * double(c.unmapped) / n);
  if (c.padding > 0) out += fmt::format("  padding rows    {:>8}  (model vocab_size past the tokenizer)\n", c.padding);
  return out;
}

}  // namespace fusellm::align
