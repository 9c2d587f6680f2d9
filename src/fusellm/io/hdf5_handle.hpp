#pragma once
// RAII for HDF5 C API identifiers (hid_t): every file, group, dataset, dataspace, datatype,
// attribute and property list is closed exactly once, on every path, errors included. Plus the
// two things every HDF5 user in fusellm needs: silencing HDF5's own error printing (fusellm
// reports errors itself, with context) and turning a failed call into fusellm::Error that carries
// HDF5's innermost message.
//
//   h5::File f(h5::check_id(H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "{}: cannot open", path));
//   h5::Dataset d(h5::check_id(H5Dopen2(f, "model/x", H5P_DEFAULT), "{}: no dataset model/x", path));
//
// Serial HDF5 1.10 (Debian's libhdf5-dev): not thread-safe; call it from one thread at a time.
#include <hdf5.h>

#include <string>
#include <utility>

#include "fusellm/core/error.hpp"

namespace fusellm::h5 {

template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) reset(std::exchange(o.id_, H5I_INVALID_HID));
    return *this;
  }
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: passes straight into the C API
  explicit operator bool() const { return id_ >= 0; }

  void reset(hid_t id = H5I_INVALID_HID) {
    if (id_ >= 0) Close(id_);
    id_ = id;
  }
  // Closes now and reports failure (closing a file flushes it: its failure is a write error).
  herr_t close() {
    herr_t r = id_ >= 0 ? Close(id_) : 0;
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<&H5Fclose>;
using Group = Handle<&H5Gclose>;
using Dataset = Handle<&H5Dclose>;
using Dataspace = Handle<&H5Sclose>;
using Datatype = Handle<&H5Tclose>;
using Attribute = Handle<&H5Aclose>;
using PropList = Handle<&H5Pclose>;

// While alive, HDF5 does not print its error stack to stderr (restored afterwards).
class ErrorSilencer {
 public:
  ErrorSilencer() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~ErrorSilencer() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  ErrorSilencer(const ErrorSilencer&) = delete;
  ErrorSilencer& operator=(const ErrorSilencer&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost description on HDF5's current error stack ("" when empty), e.g. "truncated file:
// eof = 1024, sblock->base_addr = 0, stored_eof = 4096".
inline std::string last_error() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e && e->desc) *static_cast<std::string*>(out) = e->desc;
        return 0;
      },
      &msg);
  return msg;
}

// A returned id, or fusellm::Error with the context given and HDF5's reason.
template <typename... Args>
hid_t check_id(hid_t id, fmt::format_string<Args...> f, Args&&... args) {
  if (id < 0) {
    const std::string why = last_error();
    fail("{}{}", fmt::format(f, std::forward<Args>(args)...), why.empty() ? "" : " (HDF5: " + why + ")");
  }
  return id;
}
template <typename... Args>
void check_status(herr_t status, fmt::format_string<Args...> f, Args&&... args) {
  if (status < 0) {
    const std::string why = last_error();
    fail("{}{}", fmt::format(f, std::forward<Args>(args)...), why.empty() ? "" : " (HDF5: " + why + ")");
  }
}

}  // namespace fusellm::h5
