#include "fusellm/io/hdf5_group.hpp"

namespace fusellm::h5 {

Group create_group(hid_t parent, const std::string& name, const std::string& where) {
  PropList gcpl(check_id(H5Pcreate(H5P_GROUP_CREATE), "{}: group '{}'", where, name));
  check_status(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), "{}: group '{}'",
               where, name);
  return Group(check_id(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT),
                        "{}: cannot create group '{}'", where, name));
}

Group open_group(hid_t parent, const std::string& path, const std::string& where) {
  if (H5Lexists(parent, path.c_str(), H5P_DEFAULT) <= 0) fail("{}: group '{}' is missing", where, path);
  return Group(check_id(H5Gopen2(parent, path.c_str(), H5P_DEFAULT), "{}: cannot open group '{}'", where, path));
}

// HDF5 1.12 renamed the link iteration API; Debian 12 has 1.10, clusters often 1.12 or 1.14.
#if H5_VERSION_GE(1, 12, 0)
#define FUSELLM_H5LITERATE H5Literate2
using LinkInfo = H5L_info2_t;
#else
#define FUSELLM_H5LITERATE H5Literate
using LinkInfo = H5L_info_t;
#endif

std::vector<std::string> list_links(hid_t group, LinkOrder order, const std::string& where) {
  std::vector<std::string> names;
  const herr_t r = FUSELLM_H5LITERATE(
      group, order == LinkOrder::Creation ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME, H5_ITER_INC, nullptr,
      [](hid_t, const char* name, const LinkInfo*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->emplace_back(name);
        return 0;
      },
      &names);
  check_status(r, "{}: cannot list a group", where);
  return names;
}

bool is_group(hid_t loc, const std::string& name, const std::string& where) {
  const hid_t id = check_id(H5Oopen(loc, name.c_str(), H5P_DEFAULT), "{}: cannot open '{}'", where, name);
  const bool group = H5Iget_type(id) == H5I_GROUP;
  H5Oclose(id);
  return group;
}

}  // namespace fusellm::h5
