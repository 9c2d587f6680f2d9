// The rows message (dist/rows_message.hpp): a round trip is bit-exact, and every way a message can
// differ from what the receiver expects is refused with the sender, the source, the micro-batch
// and the field named.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "teacher_rows_same.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/dist/rows_message.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace fusellm::dist {
namespace {

using testing::error_of;

// A segment of T rows, k slots, with empty slots, fp16 values (subnormal, 1, the smallest
// normal) and position CE when asked.
TeacherRows make_rows(int64_t segment, int64_t T, int64_t k, bool position_ce) {
  TeacherRows r;
  r.segment = segment, r.doc = 1000 + segment, r.piece = int32_t(segment % 3), r.k = k;
  r.resize_rows(T);
  for (int64_t t = 0; t < T; ++t) {
    r.target_ids.push_back(int32_t(7 * t + segment));
    r.status.push_back(uint8_t(t % 4));
    for (int64_t j = 0; j + 1 < k; ++j)  // the last slot of every row stays empty (-1, 0)
      r.set(t, j, int32_t(100 * t + j), 1.0f / float(j + 2 + t));
    if (position_ce) r.position_ce.push_back(0.25f * float(t) + 1e-7f);
  }
  if (T > 0) r.probs[0] = 0x0001;  // a subnormal: its bits must survive
  if (T > 1) r.probs[1] = 0x3c00;  // 1.0
  r.ce = 2.718281828459045 + double(segment);
  r.ce_tokens = 3 * T + 1;
  r.source_tokens = 5 * T;
  r.bytes = 11 * T;
  return r;
}

using fusellm::testing::expect_same_rows;

struct Fixture {
  std::vector<TeacherRows> rows;
  RowsMessageInfo info;
  RowsExpectation expect;
};

Fixture fixture(bool position_ce, std::vector<int64_t> T = {5, 0, 3}) {
  Fixture f;
  const int64_t k = 4;
  for (size_t i = 0; i < T.size(); ++i) f.rows.push_back(make_rows(40 + int64_t(i), T[i], k, position_ce));
  f.info = {.micro_batch = 17, .source = 1, .sender_rank = 3, .k = k, .position_ce = position_ce};
  f.expect = {.micro_batch = 17, .source = 1, .source_name = "neox", .segments = {}, .k = k,
              .position_ce = position_ce, .sender_rank = 3, .sender = "rank 3 (host h)"};
  for (const auto& r : f.rows) f.expect.segments.push_back(r.segment);
  return f;
}

constexpr const char* kPrefix = "rows message from rank 3 (host h), source 'neox', micro-batch 17: ";

TEST(RowsMessage, RoundTripIsBitExact) {
  for (bool pce : {false, true}) {
    SCOPED_TRACE(pce ? "with position CE" : "without position CE");
    const auto f = fixture(pce);
    const auto msg = encode_rows(f.info, f.rows);
    EXPECT_EQ(msg.size(), rows_message_bytes(3, 8, 4, pce));
    EXPECT_EQ(msg.size(), kRowsHeaderBytes + 3 * kRowsSegmentBytes + 8 * (6 * 4 + 5 + (pce ? 4 : 0)));
    const auto back = decode_rows(msg, f.expect);
    ASSERT_EQ(back.size(), f.rows.size());
    for (size_t i = 0; i < back.size(); ++i) expect_same_rows(f.rows[i], back[i]);
    EXPECT_EQ(back[0].id(0, 3), -1);  // an empty slot stays empty
    EXPECT_EQ(back[0].prob(0, 1), 1.0f);  // probs[1]
  }
}

TEST(RowsMessage, EmptyMessageRoundTrips) {
  auto f = fixture(false, {});
  const auto msg = encode_rows(f.info, f.rows);
  EXPECT_EQ(msg.size(), kRowsHeaderBytes);
  EXPECT_TRUE(decode_rows(msg, f.expect).empty());
}

TEST(RowsMessage, HeaderLayoutIsTheDocumentedOne) {
  const auto f = fixture(true);
  const auto msg = encode_rows(f.info, f.rows);
  auto at = [&](size_t off, auto v) {
    std::memcpy(&v, msg.data() + off, sizeof(v));
    return v;
  };
  EXPECT_EQ(std::memcmp(msg.data(), "FLRW", 4), 0);
  EXPECT_EQ(at(4, uint16_t()), 1);
  EXPECT_EQ(at(6, uint16_t()), 1);  // per-position CE
  EXPECT_EQ(at(8, int64_t()), 17);
  EXPECT_EQ(at(16, int32_t()), 1);
  EXPECT_EQ(at(20, int32_t()), 3);
  EXPECT_EQ(at(24, int32_t()), 3);
  EXPECT_EQ(at(28, int32_t()), 4);
  EXPECT_EQ(at(32, int64_t()), 8);
  const uint64_t parts[6] = {3 * 60, 8 * 4 * 4, 8 * 4 * 2, 8 * 4, 8 * 4, 8};
  for (int p = 0; p < 6; ++p) EXPECT_EQ(at(40 + 8 * size_t(p), uint64_t()), parts[p]) << "part " << p;
  // First segment record, then the first id.
  EXPECT_EQ(at(kRowsHeaderBytes, int64_t()), 40);
  EXPECT_EQ(at(kRowsHeaderBytes + 16, int64_t()), 5);  // T
  EXPECT_EQ(at(kRowsHeaderBytes + 3 * kRowsSegmentBytes, int32_t()), f.rows[0].ids[0]);
}

// The message with the expectation changed by `edit` must be refused naming `field`.
template <class Edit>
void expect_refused(Edit edit, const std::string& field, bool pce = false) {
  auto f = fixture(pce);
  const auto msg = encode_rows(f.info, f.rows);
  edit(f.expect);
  const auto err = error_of([&] { decode_rows(msg, f.expect); });
  EXPECT_EQ(err.rfind(kPrefix, 0), 0u) << err;
  EXPECT_NE(err.find(field), std::string::npos) << err;
}

TEST(RowsMessage, EveryHeaderFieldIsCheckedAgainstTheExpectation) {
  auto f = fixture(false);
  const auto msg = encode_rows(f.info, f.rows);
  f.expect.micro_batch = 18;
  EXPECT_EQ(error_of([&] { decode_rows(msg, f.expect); }),
            "rows message from rank 3 (host h), source 'neox', micro-batch 18: header's micro-batch id is 17, expected 18");
  expect_refused([](auto& e) { e.source = 0; }, "source index is 1, expected 0");
  expect_refused([](auto& e) { e.sender_rank = 2; }, "sender rank is 3, expected 2");
  expect_refused([](auto& e) { e.k = 8; }, "k is 4, expected 8");
  expect_refused([](auto& e) { e.segments.pop_back(); }, "segment count is 3, expected 2");
  expect_refused([](auto& e) { e.segments[1] = 99; }, "segment 1 of the message is segment id 41, expected 99");
  expect_refused([](auto& e) { e.position_ce = true; }, "per-position CE is absent, expected present");
  expect_refused([](auto& e) { e.position_ce = false; }, "per-position CE is present, expected absent", true);
}

// The message with its bytes changed by `edit` must be refused naming `field`.
template <class Edit>
void expect_damaged(Edit edit, const std::string& field) {
  const auto f = fixture(true);
  auto msg = encode_rows(f.info, f.rows);
  edit(msg);
  const auto err = error_of([&] { decode_rows(msg, f.expect); });
  EXPECT_EQ(err.rfind(kPrefix, 0), 0u) << err;
  EXPECT_NE(err.find(field), std::string::npos) << err;
}

TEST(RowsMessage, DamagedBytesAreRefused) {
  expect_damaged([](auto& m) { m[0] = std::byte{'X'}; }, "magic is 58 4c 52 57, expected 'FLRW'");
  expect_damaged([](auto& m) { m[4] = std::byte{2}; }, "version 2, this build reads version 1");
  expect_damaged([](auto& m) { m[7] = std::byte{0x80}; }, "flags 0x8001 has unknown bits");
  expect_damaged([](auto& m) { m.resize(m.size() - 1); }, "message has 539 bytes, its header says 540 (truncated)");
  expect_damaged([](auto& m) { m.push_back(std::byte{0}); }, "(trailing bytes)");
  expect_damaged([](auto& m) { m.resize(50); }, "message has 50 bytes, shorter than the 96-byte header");
  expect_damaged([](auto& m) { m[32] = std::byte{9}; }, "length of part 'ids' is 128 bytes, expected 144 for 3 segments, 9 rows and k = 4");
  expect_damaged([](auto& m) { m[48] = std::byte{1}; }, "length of part 'ids' is 1 bytes, expected 128");
  expect_damaged([](auto& m) { m[33] = std::byte{0x7f}; }, "row count 32520 is impossible in a message of 540 bytes");
  for (size_t at : {size_t(96), size_t(96 + 59), size_t(300), size_t(539)})
    expect_damaged([at](auto& m) { m[at] ^= std::byte{0x10}; }, "checksum mismatch (payload corrupted in transit)");
  expect_damaged([](auto& m) { m[88] ^= std::byte{1}; }, "checksum mismatch");
}

// Every single-byte change anywhere in a small message is refused with a fusellm::Error (never a
// crash, never accepted): no header byte goes unchecked.
TEST(RowsMessage, EveryFlippedByteIsRefused) {
  for (bool pce : {false, true}) {
    const auto f = fixture(pce, {2, 0, 1});
    const auto good = encode_rows(f.info, f.rows);
    for (size_t at = 0; at < good.size(); ++at)
      for (std::byte x : {std::byte{0x01}, std::byte{0x80}, std::byte{0xff}}) {
        auto msg = good;
        msg[at] ^= x;
        const auto err = error_of([&] { decode_rows(msg, f.expect); });
        EXPECT_EQ(err.rfind(kPrefix, 0), 0u) << "byte " << at << " ^ " << int(x) << ": " << err;
      }
  }
}

TEST(RowsMessage, EveryTruncationIsRefused) {
  const auto f = fixture(true, {2, 1});
  const auto good = encode_rows(f.info, f.rows);
  for (size_t n = 0; n < good.size(); ++n) {
    const std::vector<std::byte> msg(good.begin(), good.begin() + std::ptrdiff_t(n));
    EXPECT_NE(error_of([&] { decode_rows(msg, f.expect); }).find("truncated"), std::string::npos) << n;
  }
}

TEST(RowsMessage, InconsistentRowsAreRefusedBySender) {
  auto f = fixture(true);
  f.rows[1].position_ce.push_back(1.0f);
  EXPECT_NE(error_of([&] { encode_rows(f.info, f.rows); }).find("segment 41 has 1 per-position CE values, expected 0"),
            std::string::npos);
  f = fixture(false);
  f.rows[0].probs.pop_back();
  EXPECT_NE(error_of([&] { encode_rows(f.info, f.rows); }).find("segment 40 has 19 probs, expected 20"), std::string::npos);
  f = fixture(false);
  f.info.k = 3;
  EXPECT_NE(error_of([&] { encode_rows(f.info, f.rows); }).find("has 4 as k, expected 3"), std::string::npos);
}

// The bound of issue 11: bytes per target token and source <= 6 k + 64, header amortized, for a
// micro-batch of realistic segments (here 8 segments of 256 tokens, k = 10, position CE on).
TEST(RowsMessage, BytesPerTokenWithinTheBound) {
  const int64_t k = 10, S = 8, T = 256;
  const double per_token = double(rows_message_bytes(S, S * T, k, true)) / double(S * T);
  EXPECT_LE(per_token, double(6 * k + 64));
  EXPECT_NEAR(per_token, 6 * k + 9 + (96.0 + 60.0 * S) / double(S * T), 1e-12);
}

TEST(RowsMessage, TestHookCorruptsTheNthMessageOnly) {
  const auto f = fixture(true);
  set_corrupt_message_for_test(2);
  const auto m1 = encode_rows(f.info, f.rows);
  const auto m2 = encode_rows(f.info, f.rows);
  const auto m3 = encode_rows(f.info, f.rows);
  set_corrupt_message_for_test(0);
  EXPECT_EQ(error_of([&] { decode_rows(m1, f.expect); }), "");
  EXPECT_EQ(error_of([&] { decode_rows(m2, f.expect); }),
            std::string(kPrefix) + "checksum mismatch (payload corrupted in transit)");
  EXPECT_EQ(error_of([&] { decode_rows(m3, f.expect); }), "");
  // Only the given sender's messages count.
  set_corrupt_message_for_test(1, 5);
  const auto other = encode_rows(f.info, f.rows);
  set_corrupt_message_for_test(0);
  EXPECT_EQ(error_of([&] { decode_rows(other, f.expect); }), "");
}

// The fuzz seeds were written by a Python script from the layout in rows_message.hpp's comment
// alone (checksum left 0): with the checksum filled in they decode, so the comment is the format.
TEST(RowsMessage, DocumentedLayoutWrittenElsewhereDecodes) {
  const auto path = std::string(FUSELLM_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_rows_message/two_segments_pce";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> msg(text.size());
  std::memcpy(msg.data(), text.data(), text.size());
  const uint64_t sum = xxh64(msg.data() + kRowsHeaderBytes, msg.size() - kRowsHeaderBytes);
  std::memcpy(msg.data() + 88, &sum, 8);
  const RowsExpectation e{.micro_batch = 1, .source = 0, .source_name = "seed", .segments = {10, 11}, .k = 2,
                          .position_ce = true, .sender_rank = 0, .sender = "rank 0 (python)"};
  const auto rows = decode_rows(msg, e);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].doc, 100);
  EXPECT_EQ(rows[0].rows(), 3);
  EXPECT_EQ(rows[1].rows(), 0);
  EXPECT_EQ(rows[0].piece, 0);
  EXPECT_EQ(rows[1].piece, 1);
  EXPECT_EQ(rows[0].bytes, 9);
  EXPECT_EQ(rows[0].ce, 1.5);
  EXPECT_EQ(rows[0].ids, (std::vector<int32_t>{0, -1, 7, -1, 14, -1}));
  EXPECT_EQ(rows[0].prob(2, 0), 0.5f);
  EXPECT_EQ(rows[0].target_ids, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(rows[0].position_ce, (std::vector<float>{0.5f, 0.5f, 0.5f}));
  EXPECT_EQ(rows[0].status, (std::vector<uint8_t>{0, 1, 2}));
}

}  // namespace
}  // namespace fusellm::dist
