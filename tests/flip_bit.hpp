#pragma once
// Flips one bit of a file in place: the damage a bad disk, a torn copy or a cosmic ray leaves,
// for the checksum and fallback tests of checkpoints and distribution caches.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fusellm::testing {

inline void flip_bit(const std::filesystem::path& file, uint64_t offset, int bit) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(offset));
  char c;
  if (!f.read(&c, 1)) throw std::runtime_error("flip_bit: cannot read byte " + std::to_string(offset) + " of " + file.string());
  c = char(c ^ (1 << bit));
  f.seekp(std::streamoff(offset));
  f.write(&c, 1);
}

}  // namespace fusellm::testing
