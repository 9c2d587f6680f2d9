#pragma once
// One file of a checkpoint: a StateDict in HDF5 (serial, C API), every part checksummed.
//
//   /<group>/<name>          fp32 tensors, shaped, in named groups ("model", "optim/m", ...);
//                            attribute xxh64
//   /meta/<name>             texts (uint8, 1-D); attribute xxh64
//   attributes of /          format "fusellm-checkpoint", format_version 1; each value (int64,
//                            uint64, double or fixed-length string); state_keys, the values' keys
//                            in order, ';'-joined; state_xxh64, XXH64 of their canonical text
//
// A dataset's checksum is XXH64 of its bytes seeded with XXH64 of its shape (int64s), so a
// damaged shape is caught as surely as a damaged value. The values' text is
// "key=value;key=value..." in state_keys order, int64 in decimal, uint64 and double (its bits) in
// 16 hex digits, strings as they are. Files written before state_keys existed (fusellm up to
// 8ba198a) held the trainer's values only, in a fixed order (state_file.cpp: kV1Keys), and are read
// in that order. A tensor group is a group holding datasets (or nothing); groups holding groups
// are its path ("optim" holds "m" and "v").
//
// Writing refuses what could not be read back or resumed from: a name that is empty, "." or holds
// a '/', a name given twice, a size that is not the shape's, a value that is not finite.
#include <string>

#include "fusellm/core/state_dict.hpp"

namespace fusellm {

void write_state_file(const std::string& path, const StateDictRef& state);
// Every checksum verified; Error naming the file and the part that is wrong.
StateDict read_state_file(const std::string& path);

}  // namespace fusellm
