#pragma once
// The rows message of the MPI job (issue 11 item 3; Tag::rows in transport.hpp): one micro-batch
// of one source, sent by a teacher replica to the student that owns the micro-batch. It carries
// TeacherRows (data/teacher_rows.hpp) exactly, so a student fed by a transport sees the bytes a
// student fed by the distribution cache sees.
//
// Layout: explicit little-endian, fixed-width, no padding (written and read with memcpy).
//
//   header, 96 bytes
//     off  size  field
//       0     4  magic          "FLRW"
//       4     2  version        u16 = 1
//       6     2  flags          u16: bit 0 = per-position CE present; other bits 0
//       8     8  micro_batch    i64  global micro-batch id (the sampler's)
//      16     4  source         i32  index of the [[source]] in the job
//      20     4  sender         i32  world rank of the sending teacher replica
//      24     4  segments       i32  segments in the message (S)
//      28     4  k              i32  slots per row
//      32     8  rows           i64  target positions over all segments (R = sum of T)
//      40    48  part lengths   6 x u64 bytes of: segment table (60 S), ids (4 R k), probs (2 R k),
//                               target_ids (4 R), position_ce (4 R or 0), status (R)
//      88     8  checksum       u64  XXH64 (seed 0) of the payload (every byte after the header)
//   payload, the parts in that order, each the concatenation over the segments in message order
//     segment table, 60 bytes per segment: segment i64, doc i64, T i64, ce f64, ce_tokens i64,
//       source_tokens i64, bytes i64, piece i32
//     ids [R k] i32 (-1 = empty slot), probs [R k] u16 (fp16 bits), target_ids [R] i32,
//     position_ce [R] f32 (only with flag bit 0), status [R] u8
//
// Size: 96 + 60 S + R (6 k + 5), plus 4 R with per-position CE: 6 k + 9 bytes per target token
// and source, plus (96 + 60 S) / R of headers. The bound, 6 k + 64 per token amortized,
// holds whenever segments average 3 or more target tokens (a segment is hundreds), so per-position
// CE is always allowed; the flag exists because the fusions other than per-position MinCE do not
// need it and the teacher then sends 4 bytes per token less.
//
// The receiver knows what it expects (RowsExpectation: the micro-batch, the source, the segments
// in order, k, the sender) and checks every header field against it, the part lengths against
// the counts and the message's length, the checksum, then the segment table; any difference is a
// fusellm::Error naming the sender, the source, the micro-batch and the field.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/data/teacher_rows.hpp"

namespace fusellm::dist {

inline constexpr char kRowsMagic[4] = {'F', 'L', 'R', 'W'};
inline constexpr uint16_t kRowsVersion = 1;
inline constexpr size_t kRowsHeaderBytes = 96;
inline constexpr size_t kRowsSegmentBytes = 60;

// What the sender puts in the header besides the rows.
struct RowsMessageInfo {
  int64_t micro_batch = 0;
  int32_t source = 0;
  int32_t sender_rank = 0;   // world rank
  int64_t k = 0;             // every TeacherRows must have this k
  bool position_ce = false;  // every TeacherRows then has position_ce of size T, else empty
};

// What the receiver expects; decode_rows checks the message against every field.
struct RowsExpectation {
  int64_t micro_batch = 0;
  int32_t source = 0;
  std::string source_name;        // for messages: "source 'neox'"
  std::vector<int64_t> segments;  // segment ids, in message order
  int64_t k = 0;
  bool position_ce = false;
  int32_t sender_rank = 0;        // world rank
  std::string sender;             // for messages: "rank 3 (host node07)" (Transport::describe)
};

// The message for `rows` (in order); fusellm::Error when a TeacherRows is inconsistent with
// `info` or with itself (k, vector sizes).
std::vector<std::byte> encode_rows(const RowsMessageInfo& info, std::span<const TeacherRows> rows);

// The rows of a message, after every check above (fusellm::Error on any mismatch).
std::vector<TeacherRows> decode_rows(std::span<const std::byte> message, const RowsExpectation& expect);

// Bytes of a message of `segments` segments and `rows` target positions in all.
size_t rows_message_bytes(int64_t segments, int64_t rows, int64_t k, bool position_ce);

// ---- test hook: a message corrupted in transit ------------------------------------------------
// FUSELLM_TEST_CORRUPT_MESSAGE=<n> or <n>@<rank>: encode_rows flips one payload byte of the n-th
// message (1-based) this process encodes (only counting messages whose sender is <rank>, when
// given), so that the fault tests see what a receiver does with a damaged message. Read once, at
// the first encode_rows; set_corrupt_message_for_test overrides it (n = 0: never; rank -1: any)
// and restarts the count.
void set_corrupt_message_for_test(int64_t n, int32_t rank = -1);

}  // namespace fusellm::dist
