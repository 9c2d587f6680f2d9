#pragma once
// Scalar attributes of an HDF5 object (file, group or dataset): the one home of fusellm's
// attribute reading and writing (checkpoints, distribution caches, vocabulary mappings), with
// errors that name the file (`where`) and the attribute.
//
// Writing replaces an attribute of the same name: in place when its stored type is the one
// written (so a counter rewritten at every flush does not grow the file), else deleted and
// created again. Numbers are stored little-endian (I64LE, U64LE, F64LE); strings as fixed-length
// C strings of max(1, bytes) bytes, in the character set and padding that StringStyle gives (the
// files' formats differ there, and must stay as they are). Reading converts integers and floats
// to the type asked for, as HDF5 does, and reads fixed- and variable-length strings alike
// (trailing NULs dropped).
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace fusellm::h5 {

struct StringStyle {
  bool utf8 = true;       // H5T_CSET_UTF8, else H5T_CSET_ASCII
  bool null_pad = false;  // H5T_STR_NULLPAD, else H5T_STR_NULLTERM (HDF5's default)
};

bool has_attr(hid_t obj, const char* name);

void write_attr_i64(hid_t obj, const char* name, int64_t v, const std::string& where);
void write_attr_u64(hid_t obj, const char* name, uint64_t v, const std::string& where);
void write_attr_f64(hid_t obj, const char* name, double v, const std::string& where);
void write_attr_string(hid_t obj, const char* name, std::string_view v, const std::string& where, StringStyle style = {});

// Error "<where>: attribute '<name>' is missing" when absent, or naming what else is wrong.
int64_t read_attr_i64(hid_t obj, const char* name, const std::string& where);
uint64_t read_attr_u64(hid_t obj, const char* name, const std::string& where);
double read_attr_f64(hid_t obj, const char* name, const std::string& where);
std::string read_attr_string(hid_t obj, const char* name, const std::string& where);

// The stored type of an attribute, for readers that take values of any of the four kinds.
enum class AttrKind { I64, U64, F64, String, Other };
AttrKind attr_kind(hid_t obj, const char* name, const std::string& where);

}  // namespace fusellm::h5
