// fusellm's per-character normalizers against `tokenizers` 0.20.3's over every Unicode code point
// (0..0x10FFFF without the surrogates): BertNormalizer in all 16 combinations of clean_text,
// handle_chinese_chars, strip_accents and lowercase, NFD, NFKD, NFC, NFKC and StripAccents, and
// the punctuation test of the Punctuation and BertPreTokenizer pre-tokenizers.
// The expected outputs come from tests/reference/gen_unicode_normalizers.py
// (tests/fixtures/tokenizer_unit/unicode_normalizers.json): the library's output for every code
// point of each normalizer and of each BertNormalizer stage, which that script checked compose, in
// the library's order, to the library's output for every flag combination and code point.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fusellm/tokenizer/normalizers.hpp"
#include "fusellm/tokenizer/pre_tokenizers.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace {

using nlohmann::json;
namespace tk = fusellm::tok;

const std::string kFixture =
    std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/tokenizer_unit/unicode_normalizers.json";
constexpr const char* kStages[] = {"clean_text", "handle_chinese_chars", "strip_accents", "lowercase"};
constexpr const char* kNormalizers[] = {"NFD", "NFKD", "NFC", "NFKC", "StripAccents"};
constexpr char32_t kMaxCodePoint = 0x10FFFF;

bool is_surrogate(char32_t c) { return c >= 0xD800 && c <= 0xDFFF; }

// The library's output for every code point: an index into outs, or -1 when the code point maps
// as in `base` (NFKD's base is NFD, NFKC's is NFC) or, without a base, to itself.
struct CodeMap {
  std::vector<int32_t> index = std::vector<int32_t>(kMaxCodePoint + 1, -1);
  std::vector<std::u32string> outs;
  const CodeMap* base = nullptr;

  void append(char32_t c, std::u32string& to) const {
    if (index[c] >= 0)
      to += outs[std::size_t(index[c])];
    else if (base)
      base->append(c, to);
    else
      to.push_back(c);
  }
};

// The fixture's runs [first, last, out]: out's items are ints (the char cp + d) or strings.
void read_runs(const json& rows, CodeMap& m) {
  for (const auto& run : rows) {
    const auto first = run.at(0).get<char32_t>(), last = run.at(1).get<char32_t>();
    for (char32_t c = first; c <= last; ++c) {
      std::u32string out;
      for (const auto& item : run.at(2)) {
        if (item.is_number()) {
          out.push_back(char32_t(int64_t(c) + item.get<int64_t>()));
        } else {
          const std::string t = item.get<std::string>();
          for (std::size_t i = 0; i < t.size();) out.push_back(tk::next_char(t, i));
        }
      }
      m.index[c] = int32_t(m.outs.size());
      m.outs.push_back(std::move(out));
    }
  }
}

const json& fixture() {
  static const json j = [] {
    std::ifstream in(kFixture, std::ios::binary);
    return in ? json::parse(in) : json();
  }();
  return j;
}

// "stages/<flag>" and "normalizers/<type>" -> the library's map.
const std::map<std::string, CodeMap>& maps() {
  static const std::map<std::string, CodeMap> m = [] {
    std::map<std::string, CodeMap> r;
    if (fixture().is_null()) return r;
    const json& j = fixture();
    for (const char* s : kStages) read_runs(j.at("stages").at(s), r[std::string("stages/") + s]);
    for (const char* n : kNormalizers) read_runs(j.at("normalizers").at(n), r[std::string("normalizers/") + n]);
    r["normalizers/NFKD"].base = &r["normalizers/NFD"];
    r["normalizers/NFKC"].base = &r["normalizers/NFC"];
    return r;
  }();
  return m;
}

std::string to_utf8(const std::u32string& s) {
  std::string out;
  for (char32_t x : s) tk::append_utf8(out, x);
  return out;
}

// The library's BertNormalizer on the code point c alone: its stages, in its order.
std::string expected_bert(char32_t c, unsigned mask) {
  std::u32string s(1, c);
  for (int k = 0; k < 4; ++k) {
    if (!(mask >> k & 1)) continue;
    std::u32string next;
    for (char32_t x : s) maps().at(std::string("stages/") + kStages[k]).append(x, next);
    s = std::move(next);
  }
  return to_utf8(s);
}

std::string normalize(const tk::Normalizer& n, const std::string& text) {
  tk::NormalizedString s(text, 0, text.size());
  n.normalize(s);
  return s.get();
}

std::string hex(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", unsigned(c));
  return buf;
}

std::string show(const std::string& s) {
  std::string o = "\"";
  for (std::size_t i = 0; i < s.size();) {
    const char32_t c = tk::next_char(s, i);
    if (c >= 0x20 && c < 0x7F)
      o.push_back(char(c));
    else
      o += "\\x{" + hex(c).substr(2) + "}";
  }
  return o + "\"";
}

// The only code points where fusellm differs from the library, each because the Unicode data
// differ (not the logic). The library reads old tables: BertNormalizer's `is_control` and
// `is_mark_nonspacing` the unicode_categories crate's (Unicode 8.0), the normalization forms and
// StripAccents the unicode-normalization-alignments crate's (Unicode 9.0); fusellm reads ICU
// (Debian's ICU 72: Unicode 15.0). fusellm reproduces the old tables for whole classes: a char
// assigned after them is neither control nor mark, and has no decomposition, composition or
// combining class (see unicode.hpp). What remains are chars those versions already had whose
// general category later Unicode versions changed: ICU only answers for its own version.
struct DataDifference {
  char32_t c;
  const char* why;
};
// BertNormalizer with strip_accents (Mn of the Unicode 8.0 tables).
constexpr DataDifference kBertDifferences[] = {
    {0x1734, "HANUNOO SIGN PAMUDPOD: Mn in the library's tables (stripped), Mc in ICU's (kept)"},
    {0x1885, "MONGOLIAN LETTER ALI GALI BALUDA: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0x1886, "MONGOLIAN LETTER ALI GALI THREE BALUDA: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0xA9BD, "JAVANESE CONSONANT SIGN KERET: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0x111C9, "SHARADA SANDHI MARK: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
};
// The Punctuation and BertPreTokenizer pre-tokenizers (P* of the Unicode 8.0 tables).
constexpr DataDifference kPunctuationDifferences[] = {
    {0x166D, "CANADIAN SYLLABICS CHI SIGN: P* in the library's tables (split off), So in ICU's"},
    {0x111C9, "SHARADA SANDHI MARK: P* in the library's tables (split off), Mn in ICU's"},
};
// StripAccents (M* of the Unicode 9.0 tables).
constexpr DataDifference kStripAccentsDifferences[] = {
    {0x1CF2, "VEDIC SIGN ARDHAVISARGA: a mark in the library's tables (stripped), Lo in ICU's (kept)"},
    {0x1CF3, "VEDIC SIGN ROTATED ARDHAVISARGA: a mark in the library's tables (stripped), Lo in ICU's (kept)"},
    {0x111C9, "SHARADA SANDHI MARK: no mark in the library's tables (kept), Mn in ICU's (stripped)"},
};

template <std::size_t N>
bool listed(const DataDifference (&list)[N], char32_t c) {
  for (const auto& d : list)
    if (d.c == c) return true;
  return false;
}

// Runs n over every code point, in batches joined by sep (a starter that n leaves alone, so that
// NFD does not reorder marks across it); a batch that differs is redone one code point at a time.
// Differences for which documented(c) holds are printed, not counted.
template <class Expected, class Documented>
void expect_every_code_point(const tk::Normalizer& n, const std::string& what, char sep, Expected expected,
                             Documented documented) {
  constexpr std::size_t kBatch = 1024;
  std::vector<char32_t> batch;
  std::size_t differ = 0;
  std::string report, seen;
  auto check = [&] {
    std::string text, want;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (i) text += sep, want += sep;
      tk::append_utf8(text, batch[i]);
      want += expected(batch[i]);
    }
    if (normalize(n, text) == want) return;
    for (char32_t c : batch) {
      const std::string got = normalize(n, tk::utf8(c)), w = expected(c);
      if (got == w) continue;
      if (documented(c)) {
        seen += " " + hex(c);
        continue;
      }
      if (++differ <= 40) report += "\n  " + hex(c) + ": fusellm " + show(got) + ", library " + show(w);
    }
  };
  for (char32_t c = 0; c <= kMaxCodePoint; ++c) {
    if (is_surrogate(c)) continue;
    batch.push_back(c);
    if (batch.size() == kBatch) check(), batch.clear();
  }
  if (!batch.empty()) check();
  if (!seen.empty()) std::printf("%s: documented Unicode-data differences:%s\n", what.c_str(), seen.c_str());
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " code points differ (first 40):" << report;
}

std::string flags(unsigned mask) {
  std::string s;
  for (int k = 0; k < 4; ++k) {
    if (!(mask >> k & 1)) continue;
    if (!s.empty()) s += "+";
    s += kStages[k];
  }
  return s.empty() ? "none" : s;
}

class BertEveryCodePoint : public ::testing::TestWithParam<unsigned> {};

TEST_P(BertEveryCodePoint, MatchesLibrary) {
  ASSERT_FALSE(maps().empty()) << kFixture << " missing: run tests/reference/gen_unicode_normalizers.py";
  const unsigned mask = GetParam();
  json j = {{"type", "BertNormalizer"}};
  for (int k = 0; k < 4; ++k) j[kStages[k]] = bool(mask >> k & 1);
  const auto n = tk::make_normalizer(j, tk::Ctx{"unicode_normalizers.json", "normalizer"});
  expect_every_code_point(
      *n, "BertNormalizer " + flags(mask), '#', [&](char32_t c) { return expected_bert(c, mask); },
      [&](char32_t c) { return (mask & 4u) != 0 && listed(kBertDifferences, c); });
}

INSTANTIATE_TEST_SUITE_P(Flags, BertEveryCodePoint, ::testing::Range(0u, 16u), [](const auto& info) {
  std::string s = flags(info.param);
  for (char& ch : s)
    if (ch == '+') ch = '_';
  return s;
});

class NormalizerEveryCodePoint : public ::testing::TestWithParam<std::string> {};

TEST_P(NormalizerEveryCodePoint, MatchesLibrary) {
  ASSERT_FALSE(maps().empty()) << kFixture << " missing: run tests/reference/gen_unicode_normalizers.py";
  const std::string type = GetParam();
  const auto n = tk::make_normalizer(json{{"type", type}}, tk::Ctx{"unicode_normalizers.json", "normalizer"});
  const CodeMap& m = maps().at("normalizers/" + type);
  expect_every_code_point(
      *n, type, '\x01',  // (NFKD makes "#" of U+FE5F)
      [&](char32_t c) {
        std::u32string s;
        m.append(c, s);
        return to_utf8(s);
      },
      [&](char32_t c) { return type == "StripAccents" && listed(kStripAccentsDifferences, c); });
}

INSTANTIATE_TEST_SUITE_P(Types, NormalizerEveryCodePoint, ::testing::ValuesIn(std::vector<std::string>(
                                                              std::begin(kNormalizers), std::end(kNormalizers))),
                         [](const auto& info) { return info.param; });

// The library's punctuation test, through fusellm's Punctuation pre-tokenizer: "a" + code points
// joined by "a" + "a" ("a" is no punctuation); a punctuation char is split off as a piece of its own.
TEST(PunctuationEveryCodePoint, MatchesLibrary) {
  ASSERT_TRUE(fixture().contains("punctuation")) << kFixture << ": run tests/reference/gen_unicode_normalizers.py";
  std::vector<bool> want(kMaxCodePoint + 1, false);
  for (const auto& run : fixture()["punctuation"])
    for (char32_t c = run.at(0).get<char32_t>(); c <= run.at(1).get<char32_t>(); ++c) want[c] = true;
  const auto pre =
      tk::make_pre_tokenizer(json{{"type", "Punctuation"}}, tk::Ctx{"unicode_normalizers.json", "pre_tokenizer"});
  std::vector<bool> got(kMaxCodePoint + 1, false);
  std::vector<char32_t> batch;
  auto run = [&] {
    std::string text = "a";
    for (char32_t c : batch) tk::append_utf8(text, c), text += 'a';
    tk::PreTokenizedString p;
    p.splits.push_back(tk::Split{tk::NormalizedString(text, 0, text.size()), false, {}, {}});
    pre->pre_tokenize(p);
    for (const auto& sp : p.splits) {
      const std::string& t = sp.normalized.get();
      std::size_t i = 0;
      const char32_t c = tk::next_char(t, i);
      if (i == t.size() && c != 'a') got[c] = true;
    }
    batch.clear();
  };
  for (char32_t c = 0; c <= kMaxCodePoint; ++c) {
    if (is_surrogate(c) || c == 'a') continue;
    batch.push_back(c);
    if (batch.size() == 1024) run();
  }
  run();
  std::size_t differ = 0;
  std::string report, seen;
  for (char32_t c = 0; c <= kMaxCodePoint; ++c) {
    if (got[c] == want[c]) continue;
    if (listed(kPunctuationDifferences, c)) {
      seen += " " + hex(c);
      continue;
    }
    if (++differ <= 40)
      report += "\n  " + hex(c) + (got[c] ? ": punctuation for fusellm only" : ": punctuation for the library only");
  }
  if (!seen.empty()) std::printf("Punctuation: documented Unicode-data differences:%s\n", seen.c_str());
  EXPECT_EQ(differ, 0u) << differ << " code points differ (first 40):" << report;
}

}  // namespace
