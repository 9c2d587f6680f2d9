#pragma once
// A checkpoint's manifest, which is also its completion marker (<step dir>/COMPLETE): written
// last, after every file it lists is closed and fsync'd, so that its presence means the step was
// written completely.
//
//   fusellm-checkpoint
//   step <N>
//   <file> <bytes> xxh64 <16 hex>      one line per file (file_checksum.hpp's digest lines)
//
// One file ("state.h5") for a single process; a distributed job's ranks each add theirs (issue
// 11: one shard per rank, the metadata from rank 0). Markers of versions before whole-file
// checksums have lines "<file> <bytes>" (size only).
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/io/file_checksum.hpp"

namespace fusellm {

struct Manifest {
  int64_t step = 0;
  std::vector<DigestRecord> files;  // in the order written

  std::string text() const;
  // Error "<where>: damaged COMPLETE marker ..." for text that is not one (no file, a file twice).
  static Manifest parse(const std::string& text, const std::string& where);
  const DigestRecord* find(const std::string& file) const;
};

}  // namespace fusellm
