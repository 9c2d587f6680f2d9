// fusellm's BertNormalizer against `tokenizers` 0.20.3's over every Unicode code point
// (0..0x10FFFF without the surrogates), for all 16 combinations of clean_text,
// handle_chinese_chars, strip_accents and lowercase. The expected outputs come from
// tests/reference/gen_bert_normalizer.py (tests/fixtures/tokenizer_unit/bert_normalizer.json):
// the library's output of each stage for every code point, which that script checked compose, in
// the library's order, to the library's output for every combination and code point.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "fusellm/tokenizer/normalizers.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace {

using nlohmann::json;
namespace tk = fusellm::tok;

const std::string kFixture = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/tokenizer_unit/bert_normalizer.json";
constexpr const char* kStages[] = {"clean_text", "handle_chinese_chars", "strip_accents", "lowercase"};
constexpr char32_t kMaxCodePoint = 0x10FFFF;

bool is_surrogate(char32_t c) { return c >= 0xD800 && c <= 0xDFFF; }

// One stage of the library: the output of every code point (an index into outs, or -1 when the
// code point maps to itself).
struct StageMap {
  std::vector<int32_t> index = std::vector<int32_t>(kMaxCodePoint + 1, -1);
  std::vector<std::u32string> outs;

  void append(char32_t c, std::u32string& to) const {
    if (index[c] < 0)
      to.push_back(c);
    else
      to += outs[std::size_t(index[c])];
  }
};

// The fixture's runs [first, last, out]: out's items are ints (the char cp + d) or strings.
std::vector<StageMap> read_stages() {
  std::ifstream in(kFixture, std::ios::binary);
  if (!in) return {};
  const json j = json::parse(in);
  std::vector<StageMap> maps(4);
  for (int s = 0; s < 4; ++s) {
    for (const auto& run : j.at("stages").at(kStages[s])) {
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
        maps[std::size_t(s)].index[c] = int32_t(maps[std::size_t(s)].outs.size());
        maps[std::size_t(s)].outs.push_back(std::move(out));
      }
    }
  }
  return maps;
}

const std::vector<StageMap>& stages() {
  static const std::vector<StageMap> m = read_stages();
  return m;
}

// The library's BertNormalizer on the code point c alone: its stages, in its order.
std::string expected(char32_t c, unsigned mask) {
  std::u32string s(1, c);
  for (int k = 0; k < 4; ++k) {
    if (!(mask >> k & 1)) continue;
    std::u32string next;
    for (char32_t x : s) stages()[std::size_t(k)].append(x, next);
    s = std::move(next);
  }
  std::string out;
  for (char32_t x : s) tk::append_utf8(out, x);
  return out;
}

std::unique_ptr<tk::Normalizer> bert(unsigned mask) {
  json j = {{"type", "BertNormalizer"}};
  for (int k = 0; k < 4; ++k) j[kStages[k]] = bool(mask >> k & 1);
  return tk::make_normalizer(j, tk::Ctx{"bert_normalizer.json", "normalizer"});
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
    if (c >= 0x20 && c < 0x7F) o.push_back(char(c));
    else o += "\\x{" + hex(c).substr(2) + "}";
  }
  return o + "\"";
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

// The only code points where fusellm differs from the library, each because the Unicode data
// differ (not the logic): the library's `is_mark_nonspacing` reads the unicode_categories crate's
// Unicode 8.0 tables and its NFD the unicode-normalization-alignments crate's older tables, while
// fusellm reads ICU (Debian's ICU 72: Unicode 15.0). fusellm reproduces the library's Unicode 8.0
// view for whole classes (chars assigned after 8.0 are neither "other" nor Mn for BertNormalizer,
// see unicode.hpp); these are the chars that 8.0 already had but later Unicode versions changed,
// which ICU can only answer for its own version. They matter only with strip_accents.
struct DataDifference {
  char32_t c;
  const char* why;
};
constexpr DataDifference kUnicodeDataDifferences[] = {
    {0x1734, "HANUNOO SIGN PAMUDPOD: Mn in the library's tables (stripped), Mc in ICU's (kept)"},
    {0x1885, "MONGOLIAN LETTER ALI GALI BALUDA: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0x1886, "MONGOLIAN LETTER ALI GALI THREE BALUDA: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0xA9BD, "JAVANESE CONSONANT SIGN KERET: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0x111C9, "SHARADA SANDHI MARK: not Mn in the library's tables (kept), Mn in ICU's (stripped)"},
    {0x11938, "DIVES AKURU VOWEL SIGN O (Unicode 13.0): its canonical decomposition U+11935 U+11930 is "
              "newer than the library's normalization tables"},
};
const DataDifference* data_difference(char32_t c, unsigned mask) {
  if (!(mask & 4u)) return nullptr;  // strip_accents
  for (const auto& d : kUnicodeDataDifferences)
    if (d.c == c) return &d;
  return nullptr;
}

class BertEveryCodePoint : public ::testing::TestWithParam<unsigned> {};

TEST_P(BertEveryCodePoint, MatchesLibrary) {
  ASSERT_FALSE(stages().empty()) << kFixture << " missing: run tests/reference/gen_bert_normalizer.py";
  const unsigned mask = GetParam();
  const auto n = bert(mask);
  // Code points in batches joined by "#" (which no stage changes, and a starter, so that NFD does
  // not reorder marks across it); a batch that differs is redone one code point at a time.
  constexpr std::size_t kBatch = 1024;
  std::vector<char32_t> batch;
  std::size_t differ = 0;
  std::string report, documented;
  auto check = [&] {
    std::string text, want;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (i) text += '#', want += '#';
      tk::append_utf8(text, batch[i]);
      want += expected(batch[i], mask);
    }
    if (normalize(*n, text) == want) return;
    for (char32_t c : batch) {
      const std::string got = normalize(*n, tk::utf8(c)), w = expected(c, mask);
      if (got == w) continue;
      if (data_difference(c, mask)) {
        documented += " " + hex(c);
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
  if (!documented.empty())
    std::printf("%s: Unicode-data differences (kUnicodeDataDifferences):%s\n", flags(mask).c_str(), documented.c_str());
  EXPECT_EQ(differ, 0u) << flags(mask) << ": " << differ << " code points differ (first 40):" << report;
}

INSTANTIATE_TEST_SUITE_P(Flags, BertEveryCodePoint, ::testing::Range(0u, 16u),
                         [](const auto& info) {
                           std::string s = flags(info.param);
                           for (char& ch : s)
                             if (ch == '+') ch = '_';
                           return s;
                         });

}  // namespace
