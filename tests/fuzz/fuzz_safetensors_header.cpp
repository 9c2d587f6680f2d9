// libFuzzer target: arbitrary bytes as a whole safetensors file. parse_safetensors_header must
// either return tensors whose byte spans lie inside the input or throw fusellm::Error; any other
// exception, a sanitizer report or a hang is a bug. Accepted float tensors are also converted, so
// ASan sees every byte a TensorInfo claims.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  std::map<std::string, std::string> metadata;
  try {
    const auto tensors = fusellm::parse_safetensors_header(bytes, "fuzz.safetensors", &metadata);
    std::vector<float> out;
    for (const auto& [name, t] : tensors) {
      if (t.bytes.data() < bytes.data() || t.bytes.data() + t.bytes.size() > bytes.data() + bytes.size())
        __builtin_trap();  // a span outside the file: the validation let something through
      if (t.dtype != fusellm::DType::F32 && t.dtype != fusellm::DType::F16 && t.dtype != fusellm::DType::BF16 &&
          t.dtype != fusellm::DType::F64)
        continue;
      out.resize(size_t(fusellm::numel(t.shape)));  // bounded: numel * dtype size == span size
      fusellm::convert_to_f32(t, out);
    }
  } catch (const fusellm::Error&) {
    // Rejected input, as designed.
  }
  return 0;
}
