#include "fusellm/io/hdf5_whole_file.hpp"

#include <unistd.h>

#include <filesystem>

#include "fusellm/core/error.hpp"

namespace fusellm::h5 {

void write_whole_file(const std::string& path, const std::string& what, const std::function<void(hid_t file)>& fill) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    const ErrorSilencer quiet;
    File f(check_id(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "{}: cannot create {}", tmp,
                    what));
    fill(f);
    check_status(f.close(), "{}: cannot write {}", tmp, what);
  }
  remove_sidecar(path);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("{}: cannot rename {} into place ({}): {}", path, tmp, what, ec.message());
  write_sidecar(path);
}

File open_verified(const std::string& path, const std::string& what, SidecarCheck* missing) {
  if (!std::filesystem::exists(path)) fail("{}: {} not found", path, what);
  const SidecarCheck c = verify_sidecar(path);
  if (missing) *missing = c;
  const ErrorSilencer quiet;
  return File(check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "{}: not an HDF5 file ({})", path, what));
}

}  // namespace fusellm::h5
