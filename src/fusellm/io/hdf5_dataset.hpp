#pragma once
// Whole HDF5 datasets, written and read in one call: the one home of the dataset helpers that
// checkpoints, vocabulary mappings and segment indexes share (the distribution cache's extensible row datasets
// are its own). Errors name the file (`where`) and the dataset.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm::h5 {

// The native memory type of an element type fusellm stores.
template <class T> hid_t native_type();
template <> inline hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> inline hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> inline hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> inline hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> inline hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> inline hid_t native_type<uint16_t>() { return H5T_NATIVE_UINT16; }

struct DatasetLayout {
  hsize_t chunk = 0;  // rows per chunk along the first dimension; 0 = contiguous
  int deflate = 0;    // gzip level with chunking (0 = none)
};

// Creates `name` in loc with dims (none: a scalar) and file_type, and writes data (mem_type)
// when it holds any element. Returns the dataset, for attributes.
Dataset write_dataset(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, hid_t file_type,
                    hid_t mem_type, const void* data, const std::string& where, DatasetLayout layout = {});

// An open dataset whose element type is of class cls and elem_size bytes (else Error), and its
// dimensions.
Dataset open_dataset(hid_t loc, const std::string& name, H5T_class_t cls, size_t elem_size, std::vector<hsize_t>& dims,
                   const std::string& where);
void read_whole(hid_t dataset, hid_t mem_type, void* data, const std::string& name, const std::string& where);

// The whole dataset `name` of loc, whose stored elements must be of T's kind and size; dims
// receives its dimensions.
template <class T>
std::vector<T> read_dataset(hid_t loc, const std::string& name, std::vector<hsize_t>& dims, const std::string& where) {
  constexpr H5T_class_t cls = std::is_floating_point_v<T> ? H5T_FLOAT : H5T_INTEGER;
  const Dataset d = open_dataset(loc, name, cls, sizeof(T), dims, where);
  size_t n = 1;
  for (hsize_t x : dims) n *= size_t(x);
  std::vector<T> v(n);
  read_whole(d, native_type<T>(), v.data(), name, where);
  return v;
}

// A one-dimensional dataset: `v` written whole as `name` (file_type on disk), and read back whole
// (Error naming `where` and the dataset when it is not one-dimensional).
template <class T>
Dataset write_vector(hid_t loc, const std::string& name, const std::vector<T>& v, hid_t file_type,
                     const std::string& where, DatasetLayout layout = {}) {
  return write_dataset(loc, name, {hsize_t(v.size())}, file_type, native_type<T>(), v.data(), where, layout);
}
template <class T>
std::vector<T> read_vector(hid_t loc, const std::string& name, const std::string& where) {
  std::vector<hsize_t> dims;
  std::vector<T> v = read_dataset<T>(loc, name, dims, where);
  if (dims.size() != 1) fail("{}: dataset '{}' is not one-dimensional", where, name);
  return v;
}

}  // namespace fusellm::h5
