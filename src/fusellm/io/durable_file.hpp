#pragma once
// POSIX durability for files that must survive a crash whole or not at all (checkpoints): write
// to a temporary name, fsync the file, rename(2) it into place, fsync the directory. Errors name
// the path and the system's reason.
#include <filesystem>
#include <string>

namespace fusellm {

// fsync of a file or (directory = true) a directory, so that a rename in it is durable.
void fsync_path(const std::filesystem::path& p, bool directory);
// Writes a small file (O_TRUNC) and fsyncs it; the caller renames it into place.
void write_file_synced(const std::filesystem::path& p, const std::string& text);
// rename(2), atomic within a file system.
void rename_or_fail(const std::filesystem::path& from, const std::filesystem::path& to);
std::string read_small_file(const std::filesystem::path& p);

}  // namespace fusellm
