#pragma once
// HDF5 groups: created with their links' creation order tracked (so a reader lists what was
// written in the order it was written), opened, and listed. Errors name the file (`where`).
#include <hdf5.h>

#include <string>
#include <vector>

#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm::h5 {

// `name` in parent (one path component), with tracked creation order.
Group create_group(hid_t parent, const std::string& name, const std::string& where);
Group open_group(hid_t parent, const std::string& path, const std::string& where);

enum class LinkOrder { Creation, Name };
// The names of the links in group: in creation order (the group must track it: create_group),
// or by name (any group).
std::vector<std::string> list_links(hid_t group, LinkOrder order, const std::string& where);

// Whether the object `name` of loc is a group (else a dataset, or something else).
bool is_group(hid_t loc, const std::string& name, const std::string& where);

}  // namespace fusellm::h5
