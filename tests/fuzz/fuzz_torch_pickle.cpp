// libFuzzer target: arbitrary bytes as the data.pkl of a PyTorch zip checkpoint.
// parse_torch_pickle must return tensor descriptors or throw fusellm::Error; any other exception,
// a sanitizer report (a read past the input, a leak from a dict put inside itself), deep recursion
// or a hang is a bug. Seeds: the data.pkl of the bf16 Llama fixture, single and sharded
// (tests/reference/gen_torch_bin.py).
#include <cstddef>
#include <cstdint>
#include <span>

#include "fusellm/core/error.hpp"
#include "fusellm/io/torch_pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    for (const auto& t : fusellm::parse_torch_pickle(bytes, "fuzz.bin"))
      if (t.shape.size() != t.stride.size() || t.offset < 0 || t.storage_numel < 0) __builtin_trap();
  } catch (const fusellm::Error&) {
    // Rejected input, as designed.
  }
  return 0;
}
