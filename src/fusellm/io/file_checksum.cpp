#include "fusellm/io/file_checksum.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <tuple>
#include <vector>

#include "fusellm/io/durable_file.hpp"
#include "fusellm/io/xxhash64.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSidecarHeader = "fusellm-file-checksum";

// A file descriptor closed on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_dir(const fs::path& dir) { fsync_path(dir.empty() ? fs::path(".") : dir, true); }

// What identifies one version of a file for the per-process memo of verified sidecars.
using FileVersion = std::tuple<std::string, dev_t, ino_t, off_t, int64_t, int64_t>;
std::optional<FileVersion> version_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileVersion{path, st.st_dev, st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec), int64_t(st.st_mtim.tv_nsec)};
}
std::mutex memo_mutex;
std::set<FileVersion>& verified_memo() {
  static std::set<FileVersion> memo;
  return memo;
}

}  // namespace

FileDigest digest_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY)};
  if (f.fd < 0) fail("{}: cannot open to verify its checksum: {}", path, std::strerror(errno));
  ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<unsigned char> buf(size_t(4) << 20);
  Xxh64 h;
  FileDigest d;
  for (;;) {
    const ssize_t n = ::read(f.fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("{}: read error while verifying its checksum: {}", path, std::strerror(errno));
    if (n == 0) break;
    h.update(buf.data(), size_t(n));
    d.size += uint64_t(n);
  }
  d.xxh64 = h.digest();
  return d;
}

std::string digest_line(const std::string& name, const FileDigest& d) {
  return fmt::format("{} {} xxh64 {:016x}", name, d.size, d.xxh64);
}

std::optional<DigestRecord> parse_digest_line(std::string_view line) {
  std::istringstream in{std::string(line)};
  DigestRecord r;
  std::string size, algo, hex, extra;
  if (!(in >> r.name >> size)) return std::nullopt;
  auto [p, ec] = std::from_chars(size.data(), size.data() + size.size(), r.size);
  if (ec != std::errc() || p != size.data() + size.size()) return std::nullopt;
  if (!(in >> algo)) return r;  // legacy: "<name> <size>"
  if (algo != "xxh64" || !(in >> hex) || hex.size() != 16 || (in >> extra)) return std::nullopt;
  uint64_t v = 0;
  auto [q, ec2] = std::from_chars(hex.data(), hex.data() + hex.size(), v, 16);
  if (ec2 != std::errc() || q != hex.data() + hex.size()) return std::nullopt;
  r.xxh64 = v;
  return r;
}

void verify_file(const std::string& path, const DigestRecord& want) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) fail("{}: missing or unreadable: {}", path, ec.message());
  if (size != want.size)
    fail("{}: has {} bytes but {} were recorded when it was written (truncated or overwritten)", path, size, want.size);
  if (!want.xxh64) return;
  const FileDigest got = digest_file(path);
  if (got.size != want.size || got.xxh64 != *want.xxh64)
    fail("{}: fails its checksum (xxh64 {:016x}, recorded {:016x} when it was written): the file was damaged since "
         "(a flipped bit on disk or in a copy, or an overwrite); not opened",
         path, got.xxh64, *want.xxh64);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const fs::path p(path);
  const fs::path tmp = path + ".tmp-" + std::to_string(::getpid());
  write_file_synced(tmp, text);
  try {
    rename_or_fail(tmp, p);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(p.parent_path());
}

std::string sidecar_path(const std::string& path) { return path + ".xxh64"; }

void write_sidecar(const std::string& path) {
  const FileDigest d = digest_file(path);
  write_file_atomic(sidecar_path(path),
                    fmt::format("{}\n{}\n", kSidecarHeader, digest_line(fs::path(path).filename().string(), d)));
  if (auto v = version_of(path)) {
    std::lock_guard lock(memo_mutex);
    verified_memo().insert(*v);  // this process just hashed these bytes
  }
}

void remove_sidecar(const std::string& path) {
  const std::string s = sidecar_path(path);
  if (::unlink(s.c_str()) != 0) {
    if (errno == ENOENT) return;
    fail("{}: cannot remove: {}", s, std::strerror(errno));
  }
  fsync_dir(fs::path(path).parent_path());
}

SidecarCheck verify_sidecar(const std::string& path) {
  const std::string s = sidecar_path(path);
  std::ifstream in(s, std::ios::binary);
  if (!in) {
    if (fs::exists(s)) fail("{}: cannot read the checksum of {}", s, path);
    return SidecarCheck::kMissing;
  }
  const auto v = version_of(path);
  {
    std::lock_guard lock(memo_mutex);
    if (v && verified_memo().count(*v)) return SidecarCheck::kVerified;
  }
  std::string header, line;
  std::getline(in, header);
  std::getline(in, line);
  const auto rec = parse_digest_line(line);
  if (header != kSidecarHeader || !rec || !rec->xxh64 || rec->name != fs::path(path).filename().string())
    fail("{}: the checksum record of {} is damaged (delete it to use the file unverified)", s, path);
  verify_file(path, *rec);
  if (v) {
    std::lock_guard lock(memo_mutex);
    verified_memo().insert(*v);
  }
  return SidecarCheck::kVerified;
}

}  // namespace fusellm
