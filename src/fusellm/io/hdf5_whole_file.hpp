#pragma once
// An HDF5 file written whole and read back verified, for the small files fusellm rebuilds rather
// than grows (vocabulary mappings, segment indexes): `fill` writes into a new file under a
// temporary name, which is renamed over `path`, and then the checksum sidecar "<path>.xxh64"
// (file_checksum.hpp) is written; the old sidecar goes first, so a writer killed between the two
// leaves a file without one, never a mismatched pair. open_verified checks the sidecar before
// HDF5 parses the file (which it may crash on when its metadata is damaged). Errors name the file
// and `what` it is ("the segment index").
#include <hdf5.h>

#include <functional>
#include <string>

#include "fusellm/io/file_checksum.hpp"
#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm::h5 {

void write_whole_file(const std::string& path, const std::string& what, const std::function<void(hid_t file)>& fill);
// The file opened read-only after its sidecar matched; kMissing sidecars are the caller's choice:
// `missing` says whether the sidecar was absent (the file is then opened unverified).
File open_verified(const std::string& path, const std::string& what, SidecarCheck* missing = nullptr);

}  // namespace fusellm::h5
