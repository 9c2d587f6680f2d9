// Vocabulary mapping (exact, MinED with ties to the lowest target id, specials, padding rows,
// overrides) on every backend, against a plain brute force; the HDF5 cache, its fingerprint check
// and its checksum sidecar.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <unistd.h>

#include "align_test_util.hpp"
#include "kokkos_exec_spaces.hpp"

namespace fusellm::align {
namespace {

using testing::make_vocab;

template <class ExecSpace>
class VocabMappingTest : public ::testing::Test {};
TYPED_TEST_SUITE(VocabMappingTest, fusellm::testing::ExecSpaces);

TYPED_TEST(VocabMappingTest, ExactMinEdAndTies) {
  // Target: byte fallback "<0x41>" (id 3) and "A" (id 5) normalize to the same byte: the regular
  // token wins (exact -> 5), as the original's string match gives.
  const TokenVocab tgt = TokenVocab::from_tokens(
      "tgt", NormKind::kMetaspace, {"\xE2\x96\x81the", "abe", "abc", "<0x41>", "x", "A", "<s>"},
      {0, 0, 0, 0, 0, 0, kTokenAdded | kTokenSpecial});
  const TokenVocab src = make_vocab("src", NormKind::kByteLevel, {" the", "abd", "A", "zzzzzz", "<s>"}, {"<s>"});
  const VocabMapping m = VocabMapping::build<TypeParam>(src, tgt, 8);
  ASSERT_EQ(m.size(), 8);
  EXPECT_EQ(m.full[0], 0);  EXPECT_EQ(m.kind[0], kMapExact);   // Ġthe -> ▁the
  EXPECT_EQ(m.full[1], 1);  EXPECT_EQ(m.kind[1], kMapMinED);   // abd: abe (1) and abc (2) at distance 1
  EXPECT_EQ(m.dist[1], 1);  EXPECT_EQ(m.exact[1], -1);
  EXPECT_EQ(m.full[2], 5);  EXPECT_EQ(m.kind[2], kMapExact);   // A -> A, not the byte fallback <0x41>
  EXPECT_EQ(m.kind[3], kMapMinED);
  EXPECT_EQ(m.full[4], 1);  EXPECT_EQ(m.kind[4], kMapMinED);   // non-special "<s>": never a special target;
  EXPECT_EQ(m.dist[4], 3);                                     // abe, abc, x, A all at 3: lowest id
  EXPECT_EQ(m.full[5], 6);  EXPECT_EQ(m.kind[5], kMapExact);   // special <s> -> special <s>
  for (int i = 6; i < 8; ++i) {                                // padding rows
    EXPECT_EQ(m.full[size_t(i)], -1);
    EXPECT_EQ(m.kind[size_t(i)], kMapUnmapped);
  }
  const MapCoverage c = m.coverage();
  EXPECT_EQ(c.tokens, 6);
  EXPECT_EQ(c.exact, 3);
  EXPECT_EQ(c.mined, 3);
  EXPECT_EQ(c.padding, 2);
}

// A byte-fallback entry `<0xHH>` is a candidate only where no regular token spells that byte:
// "2" and "\n" map to the regular tokens (exact, and as MinED neighbours: "22" -> "2"), the lone
// UTF-8 lead byte 0xC3 (byte-level "Ã") to `<0xC3>`, the only token with that byte.
TYPED_TEST(VocabMappingTest, ByteFallbackOnlyWhereNoRegularToken) {
  const TokenVocab tgt = TokenVocab::from_tokens(
      "llama", NormKind::kMetaspace,
      {"<unk>", "<0x0A>", "<0x32>", "<0xC3>", "\xE2\x96\x81the", "2", "\n", "\xE2\x96\x81" "2"},
      {kTokenAdded | kTokenSpecial});
  const TokenVocab src = make_vocab("neox", NormKind::kByteLevel, {"2", "\n", "22", "\xC3", " 2"});
  const VocabMapping m = VocabMapping::build<TypeParam>(src, tgt);
  EXPECT_EQ(m.full[0], 5);  EXPECT_EQ(m.kind[0], kMapExact);   // "2" -> "2", not <0x32>
  EXPECT_EQ(m.full[1], 6);  EXPECT_EQ(m.kind[1], kMapExact);   // Ċ -> "\n", not <0x0A>
  EXPECT_EQ(m.full[2], 5);  EXPECT_EQ(m.kind[2], kMapMinED);   // "22" -> "2" (distance 1)
  EXPECT_EQ(m.dist[2], 1);
  EXPECT_EQ(m.full[3], 3);  EXPECT_EQ(m.kind[3], kMapExact);   // byte 0xC3 -> <0xC3>: no regular token has it
  EXPECT_EQ(m.full[4], 7);  EXPECT_EQ(m.kind[4], kMapExact);   // Ġ2 -> ▁2
  const std::vector<int32_t> cands = mapping_candidates(tgt);
  EXPECT_EQ(cands, (std::vector<int32_t>{3, 4, 5, 6, 7}));
}

TYPED_TEST(VocabMappingTest, SpecialsAndOverrides) {
  const TokenVocab src = make_vocab("neox", NormKind::kByteLevel, {"a", "b"}, {"<|endoftext|>", "<|padding|>"});
  const TokenVocab tgt = make_vocab("llama", NormKind::kMetaspace, {"a", "b"}, {"<unk>", "<s>", "</s>"});
  const std::vector<std::pair<int32_t, int32_t>> overrides = {{2, 4}};  // EOS -> EOS
  const VocabMapping m = VocabMapping::build<TypeParam>(src, tgt, 0, overrides);
  EXPECT_EQ(m.full[2], 4);
  EXPECT_EQ(m.exact[2], 4);
  EXPECT_EQ(m.kind[2], kMapOverride);
  EXPECT_EQ(m.full[3], -1);  // <|padding|>: no special of that name in the target
  EXPECT_EQ(m.kind[3], kMapUnmapped);
  const std::vector<std::pair<int32_t, int32_t>> bad = {{2, 99}};
  EXPECT_THROW(VocabMapping::build<TypeParam>(src, tgt, 0, bad), Error);
}

// Random vocabularies (short, medium, and a few > 64 bytes to take the DP path) against the
// plain definition: min over all non-special target ids of (distance, id).
TYPED_TEST(VocabMappingTest, MatchesBruteForce) {
  std::mt19937 rng(5);
  auto word = [&](int len) {
    std::string s;
    for (int i = 0; i < len; ++i) s.push_back(char('a' + rng() % 4));
    return s;
  };
  auto length = [&]() {
    const unsigned r = rng() % 100;
    return r < 80 ? 1 + int(rng() % 8) : r < 97 ? 9 + int(rng() % 60) : 65 + int(rng() % 150);
  };
  std::vector<std::string> sw, tw;
  for (int i = 0; i < 400; ++i) sw.push_back(word(length()));
  for (int i = 0; i < 300; ++i) tw.push_back(i % 7 == 0 ? sw[size_t(rng() % sw.size())] : word(std::min(length(), 60)));
  const TokenVocab src = make_vocab("src", NormKind::kPlain, sw);
  const TokenVocab tgt = make_vocab("tgt", NormKind::kPlain, tw, {"<s>"});
  const VocabMapping m = VocabMapping::build<TypeParam>(src, tgt);
  for (size_t i = 0; i < sw.size(); ++i) {
    int best = 1 << 30, best_id = -1;
    for (size_t j = 0; j < tw.size(); ++j) {
      const int d = testing::naive_levenshtein(sw[i], tw[j]);
      if (d < best) { best = d; best_id = int(j); }
    }
    ASSERT_EQ(m.full[i], best_id) << "source " << i << " '" << sw[i] << "'";
    ASSERT_EQ(m.dist[i], best) << "source " << i;
    ASSERT_EQ(m.kind[i], best == 0 ? kMapExact : kMapMinED);
  }
}

TYPED_TEST(VocabMappingTest, Hdf5CacheAndFingerprints) {
  const auto dir = std::filesystem::temp_directory_path() / ("fusellm_vocab_map_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "map.h5").string();
  std::filesystem::remove(path);
  const TokenVocab src = make_vocab("teacher/tokenizer.json", NormKind::kByteLevel, {" the", " cat", "s"}, {"<|endoftext|>"});
  const TokenVocab tgt = make_vocab("student/tokenizer.json", NormKind::kMetaspace, {" the", " ca", "t"}, {"</s>"});
  const std::vector<std::pair<int32_t, int32_t>> overrides = {{3, 3}};
  const VocabMapping built = VocabMapping::load_or_build(path, src, tgt, 6, overrides);
  ASSERT_TRUE(std::filesystem::exists(path));
  const VocabMapping loaded = VocabMapping::load_or_build(path, src, tgt, 6);
  EXPECT_EQ(loaded.exact, built.exact);
  EXPECT_EQ(loaded.full, built.full);
  EXPECT_EQ(loaded.dist, built.dist);
  EXPECT_EQ(loaded.kind, built.kind);
  EXPECT_EQ(loaded.kind[3], kMapOverride);
  EXPECT_EQ(loaded.source_fingerprint, src.fingerprint_hex());
  EXPECT_EQ(loaded.source_name, "teacher/tokenizer.json");

  // A mapping built for another source tokenizer: the error names the source.
  const TokenVocab other = make_vocab("other-teacher/tokenizer.json", NormKind::kByteLevel, {" the", " dog"});
  try {
    VocabMapping::load_for(path, other, tgt);
    FAIL() << "expected a fingerprint error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("other-teacher/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("teacher/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fingerprint"), std::string::npos) << msg;
  }
  EXPECT_THROW(VocabMapping::load_or_build(path, other, tgt), Error);  // never silently rebuilt
  const TokenVocab other_tgt = make_vocab("student2", NormKind::kMetaspace, {" the"});
  EXPECT_THROW(VocabMapping::load_for(path, src, other_tgt), Error);
  EXPECT_THROW(Aligner<TypeParam>(other, tgt, &loaded), Error);  // the aligner checks too
  EXPECT_THROW(VocabMapping::load_or_build(path, src, tgt, 100), Error);  // model vocab grew
  EXPECT_THROW(VocabMapping::load((dir / "missing.h5").string()), Error);
  {
    std::ofstream junk(dir / "junk.h5");
    junk << "not hdf5";
  }
  EXPECT_THROW(VocabMapping::load((dir / "junk.h5").string()), Error);

  // The file's checksum sidecar: one flipped byte is refused before HDF5 reads it, naming the
  // file; without the sidecar (an older fusellm's file) it loads unverified.
  ASSERT_TRUE(std::filesystem::exists(path + ".xxh64"));
  const std::string sidecar = path + ".xxh64";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-100, std::ios::end);
    char c = 0;
    f.read(&c, 1);
    f.seekp(-100, std::ios::end);
    c = char(c ^ 0x5a);
    f.write(&c, 1);
  }
  try {
    VocabMapping::load(path);
    FAIL() << "expected a checksum error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("vocab mapping " + path + " (delete it to rebuild)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fails its checksum"), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
  VocabMapping::load_or_build(path, src, tgt, 6, overrides);  // rebuilt: a new sidecar
  std::filesystem::remove(sidecar);
  EXPECT_EQ(VocabMapping::load(path).full, built.full);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fusellm::align
