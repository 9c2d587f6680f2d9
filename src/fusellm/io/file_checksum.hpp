#pragma once
// Whole-file checksums, verified before HDF5 opens a file.
//
// libhdf5 trusts its own metadata: a flipped bit in a superblock, object header, B-tree node or
// heap can make it read out of bounds and crash (segfault or abort) instead of returning an error.
// The per-dataset checksums inside a checkpoint catch damaged values, but only after HDF5 has
// parsed the metadata that leads to them. So every HDF5 file fusellm wrote for itself and reads
// back (training checkpoints, distribution caches, vocabulary mappings) carries an XXH64 of its whole bytes outside the
// file, and a file that does not match is refused, naming it, before H5Fopen sees it.
//
// A record is one line "<file name> <size> xxh64 <16 hex digits>": the lines of a checkpoint's
// COMPLETE marker (checkpoint_store.hpp) and of a cache's or a vocabulary mapping's sidecar
// "<file>.xxh64". A record
// without the "xxh64 <hex>" part (written before checksums were recorded) is legacy: size only.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fusellm {

struct FileDigest {
  uint64_t size = 0;
  uint64_t xxh64 = 0;
};

// Streams the file through XXH64 (seed 0); Error naming it when it cannot be read.
FileDigest digest_file(const std::string& path);

struct DigestRecord {
  std::string name;              // file name within its directory
  uint64_t size = 0;
  std::optional<uint64_t> xxh64;  // absent: a legacy record (size only)
};

// "<name> <size> xxh64 <hex>"; and back (nullopt for a line that is not one, legacy form accepted).
std::string digest_line(const std::string& name, const FileDigest& d);
std::optional<DigestRecord> parse_digest_line(std::string_view line);

// Error "<path>: ... fails its checksum ..." (or has another size) unless the file matches `want`.
// Legacy records (no xxh64) check the size only.
void verify_file(const std::string& path, const DigestRecord& want);

// Writes a small file durably: a temporary name, fsync, rename(2) over `path`, fsync of the directory.
void write_file_atomic(const std::string& path, const std::string& text);

// ---- sidecars, for files rewritten in place (a distribution cache grows batch by batch) ----------
//
// The sidecar "<path>.xxh64" describes the file as it was when its writer last closed it. A writer
// removes it before it modifies the file and writes it again after closing the file, so a sidecar
// that exists always describes the file's current bytes unless they were damaged since.

std::string sidecar_path(const std::string& path);
void write_sidecar(const std::string& path);
void remove_sidecar(const std::string& path);

enum class SidecarCheck { kVerified, kMissing };
// kVerified when the sidecar matches the file (remembered for this process while the file's size,
// inode and mtime stay the same, so the several opens of one cache by one command hash it once);
// kMissing when there is none (a file of an older fusellm, or one whose writer was killed); Error
// naming the file when it does not match, or when the sidecar itself is damaged.
SidecarCheck verify_sidecar(const std::string& path);

}  // namespace fusellm
