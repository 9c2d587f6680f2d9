#pragma once
// Device memory planned at start: one cudaMalloc of a fixed capacity, handed out as 256-byte
// aligned sub-buffers, named, in the order they are taken; reset() makes the whole capacity
// available again without freeing, so a training step that takes the same buffers in the same
// order after each reset gets the same pointers and calls cudaMalloc never (llm.c's single
// activations allocation; PyTorch's caching allocator reaches the same steady state by caching).
//
// Planning: take the same requests from an ArenaLayout of capacity SIZE_MAX and read used():
// that is the capacity the arena needs.
//
// The bookkeeping (ArenaLayout) is separate from the memory so that it is testable without a GPU.
// Includable from C++17 and C++20.
#include <cstddef>
#include <string>
#include <vector>

#include "cuda/device_buffer.hpp"

namespace fusellm::cuda {

constexpr size_t kArenaAlign = 256;  // cudaMalloc's own alignment; enough for any vector access

// Offsets within an arena of `capacity` bytes. A request of b bytes advances the next offset by b
// rounded up to kArenaAlign (or to the capacity, for a last request that fits unrounded).
class ArenaLayout {
 public:
  struct Slot {
    std::string name;
    size_t offset = 0;
    size_t bytes = 0;
  };

  ArenaLayout(std::string name, size_t capacity);

  // The offset of a new sub-buffer of `bytes` bytes named `what` (unique until the next reset).
  // Error naming the arena, the request, the bytes asked, the bytes left and the capacity when it
  // does not fit; Error when the name is taken.
  size_t take(const std::string& what, size_t bytes);
  // The slot taken under that name since the last reset; nullptr when none.
  const Slot* find(const std::string& what) const;
  // Forgets every slot: the next take starts at offset 0 again.
  void reset();

  const std::string& name() const { return name_; }
  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t left() const { return capacity_ - used_; }
  const std::vector<Slot>& slots() const { return slots_; }

 private:
  std::string name_;
  size_t capacity_ = 0;
  size_t used_ = 0;
  std::vector<Slot> slots_;
};

class DeviceArena {
 public:
  // One cudaMalloc of `capacity` bytes (none for 0); Error naming the arena when it fails.
  DeviceArena(std::string name, size_t capacity);

  void* take_bytes(const std::string& what, size_t bytes);
  template <class T>
  T* take(const std::string& what, size_t count) {
    if (count > size_t(-1) / sizeof(T)) overflow(what, count, sizeof(T));
    return static_cast<T*>(take_bytes(what, count * sizeof(T)));
  }
  // The sub-buffer taken under that name since the last reset; Error when none.
  void* get_bytes(const std::string& what) const;
  template <class T>
  T* get(const std::string& what) const {
    return static_cast<T*>(get_bytes(what));
  }
  // Every sub-buffer is forgotten (the memory stays allocated, its contents as they are).
  void reset() { layout_.reset(); }

  const ArenaLayout& layout() const { return layout_; }
  size_t capacity() const { return layout_.capacity(); }
  size_t used() const { return layout_.used(); }
  size_t left() const { return layout_.left(); }
  void* base() const { return mem_.get(); }

 private:
  [[noreturn]] void overflow(const std::string& what, size_t count, size_t size) const;

  ArenaLayout layout_;
  DevPtr<void> mem_;
};

}  // namespace fusellm::cuda
