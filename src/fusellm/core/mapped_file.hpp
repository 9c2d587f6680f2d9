#pragma once
// A read-only memory map of a whole file (RAII). Checkpoints are read through it so that a
// tensor is copied at most once (into the fp32 compute buffer), never the whole file.
#include <cstddef>
#include <span>
#include <string>

namespace fusellm {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(addr_), size_}; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* addr_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace fusellm
