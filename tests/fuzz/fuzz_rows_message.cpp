// libFuzzer target: arbitrary bytes as a rows message of the MPI job (dist/rows_message.hpp).
// decode_rows must either return rows or throw fusellm::Error; any other exception, a sanitizer
// report or a hang is a bug. Random bytes rarely get past the checksum, so each input is decoded
// twice: as it is, against a fixed expectation, and with its checksum repaired and an expectation
// read from its own header and segment table, which lets the fuzzer reach the payload's parsing.
// An accepted message must encode back to the same bytes (the format has one spelling per rows).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/rows_message.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace {

using namespace fusellm::dist;

template <class T>
T read_at(const std::vector<std::byte>& m, size_t off) {
  T v{};
  if (off + sizeof(T) <= m.size()) std::memcpy(&v, m.data() + off, sizeof(T));
  return v;
}

// The expectation a message's own header and segment table describe.
RowsExpectation expectation_of(const std::vector<std::byte>& m) {
  RowsExpectation e{.micro_batch = read_at<int64_t>(m, 8), .source = read_at<int32_t>(m, 16), .source_name = "fuzz",
                    .segments = {}, .k = read_at<int32_t>(m, 28), .position_ce = (read_at<uint16_t>(m, 6) & 1) != 0,
                    .sender_rank = read_at<int32_t>(m, 20), .sender = "rank ? (fuzz)"};
  const int32_t segments = read_at<int32_t>(m, 24);
  if (segments > 0 && size_t(segments) <= m.size() / kRowsSegmentBytes)
    for (int32_t i = 0; i < segments; ++i) e.segments.push_back(read_at<int64_t>(m, kRowsHeaderBytes + size_t(i) * kRowsSegmentBytes));
  return e;
}

void decode_and_check(const std::vector<std::byte>& m, const RowsExpectation& e) {
  try {
    const auto rows = decode_rows(m, e);
    const RowsMessageInfo info{.micro_batch = e.micro_batch, .source = e.source, .sender_rank = e.sender_rank, .k = e.k,
                               .position_ce = e.position_ce};
    if (encode_rows(info, rows) != m) __builtin_trap();  // accepted, yet not what these rows encode to
  } catch (const fusellm::Error&) {
    // Refused, as designed.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> m(size);
  if (size) std::memcpy(m.data(), data, size);
  decode_and_check(m, RowsExpectation{.micro_batch = 1, .source = 0, .source_name = "fuzz", .segments = {1}, .k = 2,
                                      .position_ce = false, .sender_rank = 0, .sender = "rank 0 (fuzz)"});
  if (m.size() >= kRowsHeaderBytes) {
    const uint64_t sum = fusellm::xxh64(m.data() + kRowsHeaderBytes, m.size() - kRowsHeaderBytes);
    std::memcpy(m.data() + kRowsHeaderBytes - 8, &sum, 8);
  }
  decode_and_check(m, expectation_of(m));
  return 0;
}
