// safetensors writer: see safetensors_writer.hpp. The header is built with nlohmann::json (keys
// sorted, as any JSON object order is valid for the reader), padded with spaces to 8 bytes as
// safetensors' prepare() does; tensor data is converted and written in chunks, never as one
// second copy of the whole model.
#include "fusellm/io/safetensors_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {

namespace fs = std::filesystem;

// An open file descriptor, closed on destruction (RAII); sync() fsyncs and closes, reporting.
class Fd {
 public:
  Fd(const std::string& path, int flags) : path_(path), fd_(::open(path.c_str(), flags, 0644)) {
    if (fd_ < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void write(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, c, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail("{}: write failed: {}", path_, std::strerror(errno));
      c += w;
      n -= size_t(w);
    }
  }
  void sync_and_close() {
    const int r = ::fsync(fd_);
    const int err = errno;
    const int c = ::close(fd_);
    fd_ = -1;
    if (r != 0 || c != 0) fail("{}: fsync/close failed: {}", path_, std::strerror(r != 0 ? err : errno));
  }

 private:
  std::string path_;
  int fd_;
};

std::string temp_name(const std::string& path) { return path + ".tmp-" + std::to_string(::getpid()); }

void sync_dir_and_rename(const std::string& tmp, const std::string& path) {
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    fail("cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  Fd d(dir.string(), O_RDONLY | O_DIRECTORY);
  d.sync_and_close();
}

// Removes the temporary file unless released (a failed write leaves nothing behind).
struct TempGuard {
  std::string path;
  bool armed = true;
  ~TempGuard() {
    if (armed) {
      std::error_code ec;
      fs::remove(path, ec);
    }
  }
};

}  // namespace

int64_t safetensors_data_bytes(std::span<const SafetensorsEntry> tensors, DType dtype) {
  int64_t n = 0;
  for (const SafetensorsEntry& e : tensors) n += numel(e.shape) * int64_t(dtype_size(dtype));
  return n;
}

void write_safetensors(const std::string& path, std::span<const SafetensorsEntry> tensors, DType dtype,
                       const std::map<std::string, std::string>& metadata) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    fail("{}: can write F32, BF16 or F16 tensors, not {}", path, dtype_name(dtype));
  const int64_t esize = int64_t(dtype_size(dtype));
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  for (const SafetensorsEntry& e : tensors) {
    if (e.name.empty() || e.name == "__metadata__") fail("{}: invalid tensor name '{}'", path, e.name);
    if (header.contains(e.name)) fail("{}: tensor '{}' given twice", path, e.name);
    if (!e.produce && int64_t(e.data.size()) != numel(e.shape))
      fail("{}: tensor '{}' has {} values for shape {}", path, e.name, e.data.size(), shape_str(e.shape));
    const int64_t bytes = numel(e.shape) * esize;
    header[e.name] = {{"dtype", std::string(dtype_name(dtype))}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(h.size()) >> (8 * i)) & 0xff);

  TempGuard tmp{temp_name(path)};
  Fd f(tmp.path, O_WRONLY | O_CREAT | O_TRUNC);
  f.write(len, 8);
  f.write(h.data(), h.size());
  constexpr size_t kChunk = size_t(1) << 20;  // values per conversion chunk
  std::vector<uint16_t> half;
  std::vector<float> produced;  // one produced tensor at a time
  for (const SafetensorsEntry& e : tensors) {
    std::span<const float> data = e.data;
    if (e.produce) {
      produced.assign(size_t(numel(e.shape)), 0.f);
      e.produce(produced);
      data = produced;
    }
    if (dtype == DType::F32) {
      static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");
      f.write(data.data(), data.size() * sizeof(float));
      continue;
    }
    for (size_t i = 0; i < data.size(); i += kChunk) {
      const size_t n = std::min(kChunk, data.size() - i);
      half.resize(n);
      if (dtype == DType::BF16)
        for (size_t j = 0; j < n; ++j) half[j] = f32_to_bf16(data[i + j]);
      else
        for (size_t j = 0; j < n; ++j) half[j] = f32_to_f16(data[i + j]);
      f.write(half.data(), n * sizeof(uint16_t));
    }
  }
  f.sync_and_close();
  sync_dir_and_rename(tmp.path, path);
  tmp.armed = false;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  TempGuard tmp{temp_name(path)};
  Fd f(tmp.path, O_WRONLY | O_CREAT | O_TRUNC);
  f.write(bytes.data(), bytes.size());
  f.sync_and_close();
  sync_dir_and_rename(tmp.path, path);
  tmp.armed = false;
}

}  // namespace fusellm
