#pragma once
// The message between two pipeline stages of a teacher replica (Tag::hidden,
// dist/stage_pipeline.hpp): one segment's residual stream after the sending stage's layers, with
// the segment's tokenizations, which the first stage made and the last one needs (CE on the
// source's own next tokens, alignment to the target's tokens).
//
//   header (48 bytes, little-endian as the ranks are):
//     u32 magic "FLHS", u32 version 1, i64 segment id, i64 source tokens T, i64 target tokens Tt,
//     i64 hidden size d, u64 xxh64 of the payload
//   payload: T source ids (i32), Tt target ids (i32), hidden states [T, d] (fp32, row-major)
//
// The receiver checks every field against what it expects (the segment it is at, its model's
// hidden size, the byte length the counts imply, the checksum) and fails naming the sender, the
// segment and the field: a stage that got the wrong message must not compute on it.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/tensor.hpp"
#include "fusellm/teach/teacher.hpp"

namespace fusellm::dist {

struct HiddenMessage {
  int64_t segment = 0;
  Teacher::Tokens tokens;
  Tensor hidden;  // [tokens.src_ids.size(), d]
};

std::vector<std::byte> pack_hidden(int64_t segment, const Teacher::Tokens& tokens, const Tensor& hidden);
// `from` names the sender in errors ("rank 2 (stage 0)").
HiddenMessage unpack_hidden(std::span<const std::byte> bytes, int64_t expected_segment, int64_t hidden_size,
                            const std::string& from);

}  // namespace fusellm::dist
