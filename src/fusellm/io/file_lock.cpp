#include "fusellm/io/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace fs = std::filesystem;

std::string lock_holder_text() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return fmt::format("host {} pid {} started {}", host, ::getpid(), when);
}

namespace {
std::string read_holder(int fd) {
  char buf[512] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s(buf, n > 0 ? size_t(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "holder unknown" : s;
}
}  // namespace

FileLock::FileLock(std::string lock_path, std::string what, Mode mode) : path_(std::move(lock_path)) {
  const bool excl = mode == Mode::kExclusive;
  fd_ = ::open(path_.c_str(), excl ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC), 0644);
  if (fd_ < 0) {
    if (!excl && errno == ENOENT) return;  // never written by a run that locks: nothing to wait for
    fail("{}: cannot create the lock file {}: {}", what, path_, std::strerror(errno));
  }
  if (::flock(fd_, (excl ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_holder(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail("{} is in use by another fusellm run ({}; lock file {}): wait for it to finish, or stop it", what, holder,
           path_);
    fail("{}: cannot lock {}: {}", what, path_, std::strerror(err));
  }
  if (excl) {
    const std::string text = lock_holder_text() + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != ssize_t(text.size())) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      fail("{}: cannot write the lock file {}: {}", what, path_, std::strerror(err));
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

void require_writable_dir(const std::string& dir, const std::string& what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the directory {}: {}", what, dir, ec.message());
  if (!fs::is_directory(dir, ec)) fail("{}: {} is not a directory", what, dir);
  const fs::path probe = fs::path(dir) / (".fusellm-write-test-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    fail("{}: the directory {} is not writable ({}); checked at start so that the run does not fail at its first save",
         what, dir, std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace fusellm
