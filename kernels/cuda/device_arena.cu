#include <cuda_runtime.h>

#include <utility>

#include "cuda/device_arena.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

ArenaLayout::ArenaLayout(std::string name, size_t capacity) : name_(std::move(name)), capacity_(capacity) {}

size_t ArenaLayout::take(const std::string& what, size_t bytes) {
  if (find(what)) fail("device arena '{}': a buffer named '{}' is already taken (reset() first)", name_, what);
  if (bytes > left())
    fail("device arena '{}': request '{}' of {} bytes does not fit: {} bytes left of a capacity of {}", name_, what,
         bytes, left(), capacity_);
  const size_t pad = (kArenaAlign - bytes % kArenaAlign) % kArenaAlign;
  const size_t at = used_;
  // Rounded up to keep the next offset aligned, unless only the capacity's tail is left.
  used_ += left() - bytes >= pad ? bytes + pad : left();
  slots_.push_back({what, at, bytes});
  return at;
}

const ArenaLayout::Slot* ArenaLayout::find(const std::string& what) const {
  for (const Slot& s : slots_)
    if (s.name == what) return &s;
  return nullptr;
}

void ArenaLayout::reset() {
  slots_.clear();
  used_ = 0;
}

DeviceArena::DeviceArena(std::string name, size_t capacity) : layout_(std::move(name), capacity) {
  if (capacity == 0) return;
  void* p = nullptr;
  const cudaError_t st = cudaMalloc(&p, capacity);
  if (st != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it for the caller's next call
    fail("device arena '{}': cudaMalloc of {} bytes failed: {} ({})", layout_.name(), capacity,
         cudaGetErrorString(st), int(st));
  }
  mem_.reset(p);
}

void* DeviceArena::take_bytes(const std::string& what, size_t bytes) {
  const size_t at = layout_.take(what, bytes);
  return mem_ ? static_cast<char*>(mem_.get()) + at : nullptr;
}

void* DeviceArena::get_bytes(const std::string& what) const {
  const ArenaLayout::Slot* s = layout_.find(what);
  if (!s) fail("device arena '{}': no buffer named '{}' taken since the last reset", layout_.name(), what);
  return mem_ ? static_cast<char*>(mem_.get()) + s->offset : nullptr;
}

void DeviceArena::overflow(const std::string& what, size_t count, size_t size) const {
  fail("device arena '{}': request '{}' of {} elements of {} bytes overflows size_t", layout_.name(), what, count,
       size);
}

}  // namespace fusellm::cuda
