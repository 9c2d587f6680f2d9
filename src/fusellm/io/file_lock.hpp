#pragma once
// Advisory locks that keep two runs off the same files (a shared cluster's "I started it twice"):
// flock(2) on a lock file, held for the object's lifetime and released by the kernel when the
// process dies, so a killed run never leaves a stale lock behind. The exclusive holder writes its
// host, pid and start time into the file; a run refused the lock quotes them. Lock files are left
// in place (deleting one would race with the next run opening it). On NFS, Linux emulates flock
// with byte-range locks, which the server arbitrates.
#include <string>

namespace fusellm {

class FileLock {
 public:
  enum class Mode { kExclusive, kShared };

  // Takes the lock at once or throws Error "<what> is in use by another fusellm run (<holder>)...".
  // kExclusive creates the lock file (and fails, naming it, when it cannot); kShared takes no
  // lock when the file does not exist (nobody has ever written there).
  FileLock(std::string lock_path, std::string what, Mode mode = Mode::kExclusive);
  ~FileLock();
  FileLock(FileLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  FileLock& operator=(FileLock&&) = delete;

  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// "host <hostname> pid <pid> started <UTC time>": what a lock holder writes.
std::string lock_holder_text();

// Creates `dir` (and its parents) and proves that a file can be created in it, so a run that could
// not save learns it at start. Error naming `what` (e.g. "job.toml:12: [checkpoint].dir") and the
// directory. Note that root passes permission bits: only a path no one can write (under a regular
// file, on a read-only mount, in /proc) fails for root.
void require_writable_dir(const std::string& dir, const std::string& what);

}  // namespace fusellm
