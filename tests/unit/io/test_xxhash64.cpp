// XXH64 against values from the reference library (libxxhash 0.8.1, XXH64()).
#include <gtest/gtest.h>

#include <vector>

#include "fusellm/io/xxhash64.hpp"

using namespace fusellm;

TEST(Xxh64, MatchesTheReferenceLibrary) {
  EXPECT_EQ(xxh64(""), 0xef46db3751d8e999ULL);
  EXPECT_EQ(xxh64("a"), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(xxh64("abc"), 0x44bc2cf5ad770999ULL);
  std::vector<unsigned char> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = (unsigned char)((i * 31 + 7) & 0xff);
  struct Case {
    size_t n;
    uint64_t seed0, seed12345;
  };
  const Case cases[] = {
      {3, 0x56e6957632a487f9ULL, 0x94ff877cd86385beULL},    {4, 0xc60d15b1e3ff8f04ULL, 0x1034b01f61e3b2e6ULL},
      {7, 0xafbefc3d6c6f9a8eULL, 0xd06aa9dbe7add6d1ULL},    {8, 0x3da5c7aa269683e0ULL, 0x23befc2f0d90da1aULL},
      {31, 0x4a74f3a1a39ad4a1ULL, 0xbff21e6871cdf167ULL},   {32, 0x8d57d6a4671cc43dULL, 0x7bdfe9fbcc771266ULL},
      {33, 0x62c9fd21ed857664ULL, 0x5a23927b0946b212ULL},   {63, 0x5c320a0d2707057fULL, 0x60148113d74960d3ULL},
      {64, 0x7bbabbc45729d17eULL, 0xeeff42e996f0f7d5ULL},   {100, 0xefa0ad2d3e70c151ULL, 0x4f2e446ab943e539ULL},
      {1000, 0x99594f4828043d35ULL, 0xcbd42ae414e71a03ULL},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(xxh64(data.data(), c.n), c.seed0) << c.n;
    EXPECT_EQ(xxh64(data.data(), c.n, 12345), c.seed12345) << c.n;
  }
}

// An empty vector's data() is null: hashing it is the empty input's hash, with no memcpy from
// null (undefined behaviour that UBSan reported from CheckpointStore::load of an empty text).
TEST(Xxh64, EmptyRangeFromANullPointer) {
  const std::vector<unsigned char> empty;
  EXPECT_EQ(xxh64(empty.data(), 0), 0xef46db3751d8e999ULL);
  Xxh64 h(0);
  h.update(nullptr, 0);
  h.update("a", 1);
  h.update(nullptr, 0);
  EXPECT_EQ(h.digest(), 0xd24ec4f1a98c6e5bULL);
}

TEST(Xxh64, StreamingInAnyPiecesEqualsOneShot) {
  std::vector<unsigned char> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = (unsigned char)(i * 7 + 1);
  for (size_t piece : {1, 3, 5, 31, 32, 33, 97, 1000}) {
    Xxh64 h(99);
    for (size_t i = 0; i < data.size(); i += piece) h.update(data.data() + i, std::min(piece, data.size() - i));
    EXPECT_EQ(h.digest(), xxh64(data.data(), data.size(), 99)) << piece;
  }
}
