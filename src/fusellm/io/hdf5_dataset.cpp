#include "fusellm/io/hdf5_dataset.hpp"

#include <algorithm>

namespace fusellm::h5 {

Dataset write_dataset(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, hid_t file_type,
                    hid_t mem_type, const void* data, const std::string& where, DatasetLayout layout) {
  Dataspace space(check_id(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
                           "{}: dataspace of dataset '{}'", where, name));
  size_t n = 1;
  for (hsize_t x : dims) n *= size_t(x);
  PropList dcpl(check_id(H5Pcreate(H5P_DATASET_CREATE), "{}: dataset '{}'", where, name));
  if (layout.chunk > 0 && n > 0 && !dims.empty()) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min(layout.chunk, dims[0]);
    check_status(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()), "{}: dataset '{}': chunking", where, name);
    if (layout.deflate > 0)
      check_status(H5Pset_deflate(dcpl, unsigned(layout.deflate)), "{}: dataset '{}': deflate", where, name);
  }
  Dataset d(check_id(H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                     "{}: cannot create dataset '{}'", where, name));
  if (n > 0)
    check_status(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "{}: cannot write dataset '{}'", where,
                 name);
  return d;
}

Dataset open_dataset(hid_t loc, const std::string& name, H5T_class_t cls, size_t elem_size, std::vector<hsize_t>& dims,
                   const std::string& where) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) fail("{}: dataset '{}' is missing", where, name);
  Dataset d(check_id(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "{}: cannot open dataset '{}'", where, name));
  Datatype t(check_id(H5Dget_type(d), "{}: dataset '{}': no type", where, name));
  if (H5Tget_class(t) != cls || H5Tget_size(t) != elem_size)
    fail("{}: dataset '{}': element type is not {} ({} bytes)", where, name, cls == H5T_FLOAT ? "float" : "an integer",
         elem_size);
  Dataspace space(check_id(H5Dget_space(d), "{}: dataset '{}': no dataspace", where, name));
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail("{}: dataset '{}': damaged dataspace", where, name);
  dims.assign(size_t(rank), 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return d;
}

void read_whole(hid_t dataset, hid_t mem_type, void* data, const std::string& name, const std::string& where) {
  Dataspace space(check_id(H5Dget_space(dataset), "{}: dataset '{}': no dataspace", where, name));
  if (H5Sget_simple_extent_npoints(space) > 0)
    check_status(H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "{}: cannot read dataset '{}'",
                 where, name);
}

}  // namespace fusellm::h5
