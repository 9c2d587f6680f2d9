// Token alignment kernels on every Kokkos backend (Serial, OpenMP): the Levenshtein distance, the
// DTW against a plain port of the original `dtw`, the EM/MinED decisions, byte spans, and the
// edge cases of the issue (empty, length 1, identical tokenizers, BOS on one side, CJK / emoji /
// combining marks split across tokens).
#include <gtest/gtest.h>

#include <random>

#include "align_test_util.hpp"
#include "kokkos_exec_spaces.hpp"
#include "kokkos/align_common.hpp"

namespace fusellm::align {
namespace {

using testing::byte_level;
using testing::ids_of;
using testing::make_vocab;

template <class ExecSpace>
class TokenAlignment : public ::testing::Test {};
TYPED_TEST_SUITE(TokenAlignment, fusellm::testing::ExecSpaces);

std::string random_bytes(std::mt19937& rng, int len, int alphabet) {
  std::string s;
  for (int i = 0; i < len; ++i) s.push_back(char('a' + rng() % unsigned(alphabet)));
  return s;
}

TYPED_TEST(TokenAlignment, LevenshteinMatchesPlainDp) {
  using Mem = typename TypeParam::memory_space;
  std::mt19937 rng(7);
  std::vector<std::string> a, b;
  for (int i = 0; i < 3000; ++i) {
    const int kind = i % 10;
    int la = int(rng() % 12), lb = int(rng() % 12);
    if (kind == 7) { la = 60 + int(rng() % 10); lb = 55 + int(rng() % 15); }  // around Myers' 64
    if (kind == 8) { la = 70 + int(rng() % 200); lb = int(rng() % 90); }     // long vs short
    if (kind == 9) { la = 65 + int(rng() % 190); lb = 65 + int(rng() % 190); }  // DP path, <= 256
    const int alpha = kind % 2 ? 3 : 26;
    a.push_back(random_bytes(rng, la, alpha));
    b.push_back(random_bytes(rng, lb, alpha));
  }
  auto pack = [](const std::vector<std::string>& v) {
    std::vector<int64_t> off{0};
    std::string chars;
    for (const auto& s : v) { chars += s; off.push_back(int64_t(chars.size())); }
    Kokkos::View<uint8_t*, Kokkos::HostSpace> c("c", chars.size());
    Kokkos::View<int64_t*, Kokkos::HostSpace> o("o", off.size());
    for (size_t i = 0; i < chars.size(); ++i) c(i) = uint8_t(chars[i]);
    for (size_t i = 0; i < off.size(); ++i) o(i) = off[i];
    AlignStrings<Mem> s;
    s.chars = Kokkos::create_mirror_view_and_copy(Mem(), c);
    s.offsets = Kokkos::create_mirror_view_and_copy(Mem(), o);
    return s;
  };
  const AlignStrings<Mem> A = pack(a), B = pack(b);
  Kokkos::View<int*, Mem> out("out", a.size());
  Kokkos::parallel_for(Kokkos::RangePolicy<TypeParam>(0, int64_t(a.size())), KOKKOS_LAMBDA(const int64_t i) {
    out(i) = align_levenshtein(A.data(i), A.len(i), B.data(i), B.len(i));
  });
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(h(i), testing::naive_levenshtein(a[i], b[i])) << "pair " << i << " lengths " << a[i].size() << ", "
                                                              << b[i].size();
}

// Random documents over a shared word list, spelled byte-level on the source side and
// SentencePiece-style on the target side (so the DTW sees real marker differences), compared
// position by position with the original `dtw` run on the cost strings.
TYPED_TEST(TokenAlignment, DtwMatchesOriginalDtw) {
  std::mt19937 rng(11);
  std::vector<std::string> words;
  for (int i = 0; i < 60; ++i) {
    std::string w = random_bytes(rng, 1 + int(rng() % 6), 5);
    if (rng() % 2) w = " " + w;
    words.push_back(w);
  }
  const TokenVocab src = make_vocab("src", NormKind::kByteLevel, words);
  const TokenVocab tgt = make_vocab("tgt", NormKind::kMetaspace, words);
  DocBatch s, t;
  std::vector<std::vector<int32_t>> sdocs, tdocs;
  for (int d = 0; d < 120; ++d) {
    std::vector<int32_t> a(size_t(rng() % 30)), b(size_t(rng() % 30));
    if (d % 10 == 0) a.resize(1);
    if (d % 40 == 7) { a.resize(150 + rng() % 100); b.resize(150 + rng() % 100); }  // long ones
    for (auto& x : a) x = int32_t(rng() % words.size());
    for (auto& x : b) x = int32_t(rng() % words.size());
    s.add(src, a);
    t.add(tgt, b);
    sdocs.push_back(a);
    tdocs.push_back(b);
  }
  // A small workspace forces several launches (chunks of documents); both traversals of the DP
  // (rows on CPUs, anti-diagonals on GPUs) must give the original's path.
  Aligner<TypeParam> aligner(src, tgt, nullptr, 2000);
  for (const bool wavefront : {false, true}) {
  SCOPED_TRACE(wavefront ? "anti-diagonals" : "rows");
  aligner.dtw_wavefront = wavefront;
  const Alignment al = aligner.align(s, t, AlignMethod::kEM);
  for (size_t d = 0; d < sdocs.size(); ++d) {
    const int64_t s0 = s.offsets[d], t0 = t.offsets[d];
    if (sdocs[d].empty() || tdocs[d].empty()) {
      for (size_t j = 0; j < tdocs[d].size(); ++j) {
        EXPECT_EQ(al.lo[size_t(t0) + j], -1);
        EXPECT_EQ(al.status[size_t(t0) + j], kFallbackUnaligned);
      }
      continue;
    }
    std::vector<std::string> c1, c2;
    for (int32_t x : sdocs[d]) c1.push_back(cost_string(src.normalized[size_t(x)]));
    for (int32_t x : tdocs[d]) c2.push_back(cost_string(tgt.normalized[size_t(x)]));
    const auto map2 = testing::naive_dtw(c1, c2);
    for (size_t j = 0; j < tdocs[d].size(); ++j) {
      ASSERT_EQ(al.lo[size_t(t0) + j], s0 + map2[j].front()) << "doc " << d << " target " << j;
      ASSERT_EQ(al.hi[size_t(t0) + j], s0 + map2[j].back()) << "doc " << d << " target " << j;
      const uint8_t st = al.status[size_t(t0) + j];
      if (map2[j].size() > 1) {
        EXPECT_EQ(st, kFallbackMany);
      } else {
        const bool equal = words[size_t(sdocs[d][size_t(map2[j][0])])] == words[size_t(tdocs[d][j])];
        const bool first = j == 0 && map2[j][0] == 0;
        if (!first) EXPECT_EQ(st, equal ? kKeptExact : kFallbackMismatch) << "doc " << d << " target " << j;
      }
    }
  }
  }
}

TYPED_TEST(TokenAlignment, IdenticalTokenizersGiveTheIdentity) {
  std::mt19937 rng(3);
  std::vector<std::string> words = {" the", " cat", "s", " sat", ".", "\n", " on", " mat", "ma", "t"};
  for (const NormKind kind : {NormKind::kByteLevel, NormKind::kMetaspace}) {
    const TokenVocab v = make_vocab("same", kind, words, {"<s>", "</s>"});
    const int32_t bos = int32_t(words.size()), eos = bos + 1;
    DocBatch s;
    for (int d = 0; d < 40; ++d) {
      std::vector<int32_t> a(size_t(rng() % 50));
      for (auto& x : a) x = int32_t(rng() % words.size());
      if (d % 3 == 0) a.insert(a.begin(), bos);
      if (d % 4 == 0) a.push_back(eos);
      s.add(v, a);
    }
    VocabMapping map = VocabMapping::build<TypeParam>(v, v);
    Aligner<TypeParam> aligner(v, v, &map);
    for (const AlignMethod m : {AlignMethod::kEM, AlignMethod::kMinED, AlignMethod::kByteSpan}) {
      const Alignment al = aligner.align(s, s, m);
      for (int64_t p = 0; p < s.tokens(); ++p) {
        ASSERT_EQ(al.lo[size_t(p)], p) << to_string(m);
        ASSERT_EQ(al.hi[size_t(p)], p) << to_string(m);
        const uint8_t want = v.special(s.ids[size_t(p)]) ? kKeptSpecial
                             : m == AlignMethod::kByteSpan ? kKeptSpan : kKeptExact;
        ASSERT_EQ(al.status[size_t(p)], want) << to_string(m) << " position " << p;
      }
    }
  }
}

TYPED_TEST(TokenAlignment, EmptyAndLengthOne) {
  const std::vector<std::string> words = {"Hello", " world", " wor", "ld", "H"};
  const TokenVocab src = make_vocab("src", NormKind::kByteLevel, words);
  const TokenVocab tgt = make_vocab("tgt", NormKind::kMetaspace, words);
  DocBatch s, t;
  s.add(src, std::vector<int32_t>{});           t.add(tgt, std::vector<int32_t>{});       // both empty
  s.add(src, std::vector<int32_t>{});           t.add(tgt, std::vector<int32_t>{0, 1});   // source empty
  s.add(src, std::vector<int32_t>{0, 1});       t.add(tgt, std::vector<int32_t>{});       // target empty
  s.add(src, std::vector<int32_t>{0});          t.add(tgt, std::vector<int32_t>{0});      // 1 x 1, equal
  s.add(src, std::vector<int32_t>{4});          t.add(tgt, std::vector<int32_t>{0});      // 1 x 1, differ
  s.add(src, std::vector<int32_t>{0, 2, 3});    t.add(tgt, std::vector<int32_t>{0, 1});   // 3 x 2
  s.add(src, std::vector<int32_t>{0});          t.add(tgt, std::vector<int32_t>{0, 2, 3});  // 1 x 3
  Aligner<TypeParam> aligner(src, tgt);
  // Target positions: doc1 0-1, doc3 2, doc4 3, doc5 4-5, doc6 6-8; source: doc2 0-1, doc3 2,
  // doc4 3, doc5 4-6, doc6 7.
  const Alignment em = aligner.align(s, t, AlignMethod::kEM);
  ASSERT_EQ(em.status.size(), 9u);
  EXPECT_EQ(em.lo, (std::vector<int32_t>{-1, -1, 2, 3, 4, 5, 7, 7, 7}));
  EXPECT_EQ(em.hi, (std::vector<int32_t>{-1, -1, 2, 3, 4, 6, 7, 7, 7}));
  EXPECT_EQ(em.status, (std::vector<uint8_t>{kFallbackUnaligned, kFallbackUnaligned, kKeptExact, kFallbackMismatch,
                                             kKeptExact, kFallbackMany, kKeptExact, kFallbackMismatch,
                                             kFallbackMismatch}));
  const Alignment span = aligner.align(s, t, AlignMethod::kByteSpan);
  EXPECT_EQ(span.lo, (std::vector<int32_t>{-1, -1, 2, -1, 4, 6, 7, -1, -1}));
  for (size_t j = 0; j < 9; ++j)
    EXPECT_EQ(span.status[j], span.lo[j] >= 0 ? kKeptSpan : kFallbackUnaligned) << j;
}

// BOS added by the target tokenizer only (Llama-style), by the source only, and by both; EOS at
// the end of both. The first content tokens differ by SentencePiece's dummy-prefix space.
TYPED_TEST(TokenAlignment, BosOnOneSideOnly) {
  const std::vector<std::string> words = {"Hello", " Hello", " world", "!"};
  const TokenVocab src = make_vocab("neox", NormKind::kByteLevel, words, {"<|endoftext|>"});
  const TokenVocab tgt = make_vocab("llama", NormKind::kMetaspace, words, {"<s>", "</s>"}, DummyPrefix::kAlways);
  const int32_t src_eot = 4, bos = 4, eos = 5;
  VocabMapping map = VocabMapping::build<TypeParam>(src, tgt);
  Aligner<TypeParam> aligner(src, tgt, &map);
  const std::string text = "Hello world!";
  DocBatch s, t;
  s.add(src, std::vector<int32_t>{0, 2, 3}, text);                  // Hello Ġworld !
  t.add(tgt, std::vector<int32_t>{bos, 1, 2, 3}, text);             // <s> ▁Hello ▁world !
  s.add(src, std::vector<int32_t>{src_eot, 0, 2, 3}, text);         // <|endoftext|> Hello Ġworld !
  t.add(tgt, std::vector<int32_t>{1, 2, 3}, text);                  // ▁Hello ▁world !
  s.add(src, std::vector<int32_t>{src_eot, 0, 2, 3, src_eot}, text);
  t.add(tgt, std::vector<int32_t>{bos, 1, 2, 3, eos}, text);
  for (const AlignMethod m : {AlignMethod::kEM, AlignMethod::kMinED, AlignMethod::kByteSpan}) {
    const Alignment al = aligner.align(s, t, m);
    const uint8_t kept = m == AlignMethod::kByteSpan ? kKeptSpan : kKeptExact;
    // doc 0: target BOS aligns to nothing, the rest one to one.
    EXPECT_EQ(al.status[0], kFallbackUnaligned) << to_string(m);
    for (int j = 1; j < 4; ++j) {
      EXPECT_EQ(al.lo[size_t(j)], j - 1) << to_string(m);
      EXPECT_EQ(al.status[size_t(j)], kept) << to_string(m) << " " << j;
    }
    // doc 1: the source's BOS is left out; ▁Hello <- Hello.
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(al.lo[size_t(4 + j)], 3 + 1 + j) << to_string(m);
      EXPECT_EQ(al.status[size_t(4 + j)], kept) << to_string(m);
    }
    // doc 2: BOS with BOS, EOS with EOS.
    EXPECT_EQ(al.lo[7], 7);
    EXPECT_EQ(al.status[7], kKeptSpecial);
    EXPECT_EQ(al.lo[11], 11);
    EXPECT_EQ(al.status[11], kKeptSpecial);
    for (int j = 1; j < 4; ++j) EXPECT_EQ(al.status[size_t(7 + j)], kept);
  }
}

TYPED_TEST(TokenAlignment, MinEdKeepsMappedTokens) {
  const TokenVocab src = make_vocab("src", NormKind::kByteLevel, {" colour", " red", " the"});
  const TokenVocab tgt = make_vocab("tgt", NormKind::kMetaspace, {" color", " red", " the"});
  VocabMapping map = VocabMapping::build<TypeParam>(src, tgt);
  ASSERT_EQ(map.full[0], 0);
  ASSERT_EQ(map.kind[0], kMapMinED);
  Aligner<TypeParam> aligner(src, tgt, &map);
  DocBatch s, t;
  s.add(src, std::vector<int32_t>{2, 0, 1});
  t.add(tgt, std::vector<int32_t>{2, 0, 1});
  const Alignment em = aligner.align(s, t, AlignMethod::kEM);
  const Alignment mined = aligner.align(s, t, AlignMethod::kMinED);
  EXPECT_EQ(em.status, (std::vector<uint8_t>{kKeptExact, kFallbackMismatch, kKeptExact}));
  EXPECT_EQ(mined.status, (std::vector<uint8_t>{kKeptExact, kKeptMapped, kKeptExact}));
}

// A CJK character, an emoji and a combining sequence, split into byte pieces differently by the
// two tokenizers: positions align exactly where both have read the same bytes.
TYPED_TEST(TokenAlignment, ByteSpansInsideCharacters) {
  const std::string ni = "\xE4\xBD\xA0", hao = "\xE5\xA5\xBD";          // 你 好
  const std::string emoji = "\xF0\x9F\x98\x80";                          // 😀
  const std::string e_acute = "e\xCC\x81";                               // e + U+0301
  // Source (byte-level): "\xE4\xBD" | "\xA0\xE5" | "\xA5\xBD" | " " | emoji[0..2] | emoji[2..] | e_acute
  std::vector<std::string> sw = {ni.substr(0, 2), ni.substr(2) + hao.substr(0, 1), hao.substr(1), " ",
                                 emoji.substr(0, 2), emoji.substr(2), e_acute};
  // Target (SentencePiece with byte fallback): <0xE4> <0xBD> <0xA0> 好 ▁ <0xF0>.. <0x80> e ́
  std::vector<std::string> tw = {hao, " ", "e", "\xCC\x81"};
  std::vector<std::string> ttok;
  for (const auto& w : tw) ttok.push_back(testing::metaspace(w));
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    ttok.push_back(buf);
  }
  const TokenVocab src = make_vocab("src", NormKind::kByteLevel, sw);
  const TokenVocab tgt = TokenVocab::from_tokens("tgt", NormKind::kMetaspace, ttok);
  auto fb = [](unsigned char b) { return int32_t(4 + b); };
  DocBatch s, t;
  s.add(src, std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6});
  t.add(tgt, std::vector<int32_t>{fb(0xE4), fb(0xBD), fb(0xA0), 0, 1, fb(0xF0), fb(0x9F), fb(0x98), fb(0x80), 2, 3});
  Aligner<TypeParam> aligner(src, tgt);
  const Alignment al = aligner.align(s, t, AlignMethod::kByteSpan);
  // Source ends: 2 4 6 7 9 11 14; target ends: 1 2 3 6 7 8 9 10 11 12 14.
  const std::vector<int32_t> want = {-1, 0, -1, 2, 3, -1, 4, -1, 5, -1, 6};
  EXPECT_EQ(al.lo, want);
  for (size_t j = 0; j < want.size(); ++j)
    EXPECT_EQ(al.status[j], want[j] >= 0 ? kKeptSpan : kFallbackUnaligned) << j;
}

TYPED_TEST(TokenAlignment, ErrorsNameTheVocabulary) {
  const TokenVocab src = make_vocab("teacher-tokenizer", NormKind::kByteLevel, {"a", "b"});
  const TokenVocab tgt = make_vocab("student-tokenizer", NormKind::kMetaspace, {"a", "b"});
  Aligner<TypeParam> aligner(src, tgt);
  DocBatch s, t;
  s.ids = {0, 7};
  s.offsets = {0, 2};
  t.add(tgt, std::vector<int32_t>{0});
  try {
    aligner.align(s, t, AlignMethod::kEM);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("teacher-tokenizer"), std::string::npos) << e.what();
  }
  DocBatch s2;
  s2.add(src, std::vector<int32_t>{0});
  EXPECT_THROW(aligner.align(s2, t, AlignMethod::kMinED), Error);  // MinED without a mapping
}

}  // namespace
}  // namespace fusellm::align
