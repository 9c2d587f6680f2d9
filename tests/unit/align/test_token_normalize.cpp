// Token-string normalization (the rules in src/fusellm/align/token_normalize.hpp), tokenizer.json
// detection of the kind and the dummy prefix, and the byte ends used by byte-span alignment.
#include <gtest/gtest.h>

#include "align_test_util.hpp"

namespace fusellm::align {
namespace {

TEST(TokenNormalize, ByteLevel) {
  EXPECT_EQ(normalize_token("\xC4\xA0the", NormKind::kByteLevel, false), " the");       // Ġthe
  EXPECT_EQ(normalize_token("\xC4\x8A", NormKind::kByteLevel, false), "\n");            // Ċ
  EXPECT_EQ(normalize_token("caf\xC3\x83\xC2\xA9", NormKind::kByteLevel, false), "caf\xC3\xA9");  // cafÃ©
  EXPECT_EQ(normalize_token("\xC3\xA4\xC2\xBD", NormKind::kByteLevel, false), "\xE4\xBD");  // partial 你
  EXPECT_EQ(normalize_token("<|endoftext|>", NormKind::kByteLevel, true), "<|endoftext|>");
  EXPECT_EQ(normalize_token("\xE2\x82\xAC", NormKind::kByteLevel, false), "\xE2\x82\xAC");  // outside the table
  for (int b = 0; b < 256; ++b) {
    const std::string raw(1, char(b));
    EXPECT_EQ(normalize_token(testing::byte_level(raw), NormKind::kByteLevel, false), raw) << b;
  }
}

TEST(TokenNormalize, Metaspace) {
  EXPECT_EQ(normalize_token("\xE2\x96\x81the", NormKind::kMetaspace, false), " the");
  EXPECT_EQ(normalize_token("\xE2\x96\x81\xE2\x96\x81", NormKind::kMetaspace, false), "  ");
  EXPECT_EQ(normalize_token("<0x0A>", NormKind::kMetaspace, false), "\n");
  EXPECT_EQ(normalize_token("<0xE4>", NormKind::kMetaspace, false), "\xE4");
  EXPECT_EQ(normalize_token("<0xZZ>", NormKind::kMetaspace, false), "<0xZZ>");
  EXPECT_EQ(normalize_token("<s>", NormKind::kMetaspace, true), "<s>");
  EXPECT_EQ(normalize_token("\xE4\xBD\xA0", NormKind::kMetaspace, false), "\xE4\xBD\xA0");
  EXPECT_EQ(cost_string("  the cat "), "thecat");
}

TEST(TokenNormalize, DetectsKindAndDummyPrefix) {
  const std::string dir = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/align/tokenizers/";
  const TokenVocab bl = TokenVocab::from_tokenizer_json(dir + "bytelevel.json");
  EXPECT_EQ(bl.kind, NormKind::kByteLevel);
  EXPECT_EQ(bl.dummy_prefix, DummyPrefix::kNone);
  EXPECT_TRUE(bl.special(0));                            // <|endoftext|>
  EXPECT_FALSE(bl.special(bl.size() - 1));               // "  ", a non-special added token
  EXPECT_EQ(bl.normalized[size_t(bl.size() - 1)], "  ");
  const TokenVocab sp = TokenVocab::from_tokenizer_json(dir + "sp_bpe.json");
  EXPECT_EQ(sp.kind, NormKind::kMetaspace);
  EXPECT_EQ(sp.dummy_prefix, DummyPrefix::kAlways);      // Prepend("▁") normalizer
  EXPECT_TRUE(sp.special(1));                            // <s>
  EXPECT_EQ(sp.normalized[3 + 0x0A], "\n");              // <0x0A>
  EXPECT_THROW(TokenVocab::from_tokenizer_json(dir + "missing.json"), Error);
}

TEST(TokenNormalize, ByteEnds) {
  const TokenVocab v = testing::make_vocab("sp", NormKind::kMetaspace, {" Hello", " world", " ", "x"}, {"<s>", "</s>"},
                                           DummyPrefix::kIfNoLeadingSpace);
  EXPECT_TRUE(v.dummy_inserted("Hello"));
  EXPECT_FALSE(v.dummy_inserted(" Hello"));
  EXPECT_FALSE(v.dummy_inserted(""));
  // <s> ▁Hello ▁world </s> for "Hello world": BOS/EOS zero-width, the dummy space not counted.
  EXPECT_EQ(v.byte_ends(std::vector<int32_t>{4, 0, 1, 5}, true), (std::vector<int64_t>{0, 5, 11, 11}));
  // A lone dummy "▁" is zero-width; a special inside the text counts its literal bytes.
  EXPECT_EQ(v.byte_ends(std::vector<int32_t>{2, 3, 5, 3}, true), (std::vector<int64_t>{0, 1, 5, 6}));
  EXPECT_THROW(v.byte_ends(std::vector<int32_t>{9}, false), Error);
}

}  // namespace
}  // namespace fusellm::align
