#pragma once
// XXH64 (Yann Collet's xxHash, 64-bit variant, spec: xxhash.com/doc/xxhash_spec.html), the
// checksum of every dataset in a checkpoint. Fast enough (several GB/s per core) to hash 7B
// parameters at every save and load; same values as the reference xxhash library (XXH64()).
// Written out here because Debian ships only the runtime of libxxhash, not its header.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace fusellm {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buffered_ = 0;
};

uint64_t xxh64(const void* data, size_t n, uint64_t seed = 0);
inline uint64_t xxh64(std::string_view s, uint64_t seed = 0) { return xxh64(s.data(), s.size(), seed); }

}  // namespace fusellm
