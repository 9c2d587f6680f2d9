#pragma once
// Writing safetensors files (the inverse of safetensors.hpp's reader), as the reference library's
// serialize_to_file lays them out: 8-byte little-endian header length, the JSON header
// ({"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [b, e]}, ...}) padded with
// spaces to a multiple of 8 bytes, then the tensors' bytes back to back in the given order.
// fp32 values are written as F32 or rounded to BF16 or F16 (round-to-nearest-even, as torch's
// .to(torch.bfloat16) / .half()).
//
// Atomic: the file is written to "<path>.tmp-<pid>", fsync'd, renamed over <path>, and the
// directory fsync'd, so a reader sees the old file or the complete new one, never a part.
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/tensor.hpp"

namespace fusellm {

struct SafetensorsEntry {
  std::string name;
  Shape shape;
  std::span<const float> data;  // numel(shape) values
  // Instead of `data` (left empty): fills the numel(shape) values when the writer reaches this
  // tensor, so a model computed tensor by tensor (weight merging) is never whole in memory.
  std::function<void(std::span<float>)> produce;
};

// dtype: F32, BF16 or F16. metadata: the "__metadata__" object (transformers wants {"format": "pt"}).
void write_safetensors(const std::string& path, std::span<const SafetensorsEntry> tensors, DType dtype = DType::F32,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Bytes the tensors take in the data buffer at `dtype` (sharding decisions).
int64_t safetensors_data_bytes(std::span<const SafetensorsEntry> tensors, DType dtype);

// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace fusellm
