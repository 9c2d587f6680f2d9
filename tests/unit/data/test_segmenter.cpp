// Segmenter (train/segmenter.hpp; the original split_long_text.py): every piece within the bound
// for every tokenizer, pieces cover the document in order, deterministic.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/data/segmenter.hpp"

using namespace fusellm;

namespace {
const std::string kDir = FUSELLM_SOURCE_DIR "/tests/fixtures/tokenizers/";

struct Toks {
  std::unique_ptr<Tokenizer> bl = Tokenizer::load(kDir + "bytelevel");
  std::unique_ptr<Tokenizer> sp = Tokenizer::load(kDir + "sp_bpe");
  std::vector<const Tokenizer*> all() const { return {bl.get(), sp.get()}; }
};

// The first documents of the tokenizer fixtures' corpus (many scripts), as a small JSONL file.
std::vector<std::string> fixture_texts(size_t n = 25) {
  std::vector<std::string> out;
  for (const auto& d : read_corpus(kDir + "docs.jsonl")) {
    if (out.size() == n) break;
    out.push_back(d.text);
  }
  return out;
}
std::string small_corpus() {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("fusellm_seg_" + std::to_string(::getpid()) + ".jsonl")).string();
  std::ofstream f(path, std::ios::binary);
  for (const auto& t : fixture_texts(200)) f << nlohmann::json{{"text", t}}.dump() << "\n";
  return path;
}

std::string long_text() {
  std::string s;
  for (const auto& t : fixture_texts()) s += t + "\n\n";
  // Characters of 2-4 bytes (byte fallback splits them into several tokens) and long runs.
  for (int i = 0; i < 40; ++i) s += "Grüße, 東京 😀 naïve café — ";
  s += std::string(300, ' ') + "end";
  return s;
}

void check_pieces(const Segmenter& seg, std::string_view text, const std::vector<std::pair<int64_t, int64_t>>& p) {
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(p.front().first, 0);
  EXPECT_EQ(p.back().second, int64_t(text.size()));
  for (size_t i = 0; i < p.size(); ++i) {
    if (i > 0) EXPECT_EQ(p[i].first, p[i - 1].second);
    ASSERT_LT(p[i].first, p[i].second);
    const auto piece = text.substr(size_t(p[i].first), size_t(p[i].second - p[i].first));
    // On a character boundary.
    EXPECT_NE(static_cast<unsigned char>(piece[0]) & 0xC0, 0x80);
    for (size_t t = 0; t < seg.tokenizers(); ++t) EXPECT_LE(seg.count(t, piece), seg.max_tokens()) << "piece " << i;
  }
}
}  // namespace

TEST(Segmenter, EveryTokenizerWithinBound) {
  Toks t;
  const std::string text = long_text();
  for (int64_t bound : {8, 33, 100, 500}) {
    Segmenter seg(t.all(), bound);
    const auto p = seg.split(text);
    check_pieces(seg, text, p);
    if (bound <= 100) EXPECT_GT(p.size(), 1u);
    // The cuts use the bound: pieces are not much shorter than it for the longest tokenizer.
    if (p.size() > 2) {
      const auto mid = std::string_view(text).substr(size_t(p[1].first), size_t(p[1].second - p[1].first));
      EXPECT_GE(std::max(seg.count(0, mid), seg.count(1, mid)), bound / 2) << bound;
    }
  }
}

TEST(Segmenter, ShortDocumentIsOnePiece) {
  Toks t;
  Segmenter seg(t.all(), 64);
  const auto p = seg.split("A short document.");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].first, 0);
  EXPECT_EQ(p[0].second, 17);
}

TEST(Segmenter, EachTokenizerAloneAndDeterministic) {
  Toks t;
  const std::string text = long_text();
  for (const Tokenizer* one : t.all()) {
    Segmenter seg({one}, 20);
    check_pieces(seg, text, seg.split(text));
  }
  Segmenter a(t.all(), 24), b(t.all(), 24);
  EXPECT_EQ(a.split(text), b.split(text));
  EXPECT_EQ(a.split(text), a.split(text));
}

TEST(Segmenter, StreamIdsStable) {
  Toks t;
  Segmenter seg(t.all(), 16);
  const std::string corpus = small_corpus();
  auto run = [&] {
    SegmentStream s(CorpusReader(corpus), seg);
    std::vector<Segment> out;
    Segment x;
    while (s.next(x)) out.push_back(x);
    return out;
  };
  const auto a = run(), b = run();
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 1u);
  const auto docs = read_corpus(corpus);
  std::filesystem::remove(corpus);
  std::vector<std::string> rebuilt(docs.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, int64_t(i));
    EXPECT_EQ(a[i].text, b[i].text);
    EXPECT_EQ(a[i].doc, b[i].doc);
    EXPECT_EQ(a[i].piece, b[i].piece);
    rebuilt[size_t(a[i].doc)] += a[i].text;
  }
  // Pieces of a document concatenate back to it.
  for (size_t d = 0; d < docs.size(); ++d) EXPECT_EQ(rebuilt[d], docs[d].text);
}

TEST(Segmenter, LongerThanTheTokenizingWindow) {
  Toks t;
  std::string text;
  while (text.size() < 90000) text += long_text();
  Segmenter seg(t.all(), 2000);
  const auto p = seg.split(text);
  check_pieces(seg, text, p);
  EXPECT_GT(p.size(), 3u);
}
