#include "fusellm/io/hdf5_attribute.hpp"

#include <algorithm>

#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm::h5 {

namespace {

Attribute open_attr(hid_t obj, const char* name, const std::string& where) {
  if (!has_attr(obj, name)) fail("{}: attribute '{}' is missing", where, name);
  return Attribute(check_id(H5Aopen(obj, name, H5P_DEFAULT), "{}: cannot open attribute '{}'", where, name));
}

// Writes `value` (in mem_type) into the attribute `name` of file type file_type, replacing one
// that is there: in place when its type equals file_type, else deleted first.
void write_scalar(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value,
                  const std::string& where) {
  if (has_attr(obj, name)) {
    Attribute a(check_id(H5Aopen(obj, name, H5P_DEFAULT), "{}: cannot open attribute '{}'", where, name));
    Datatype t(check_id(H5Aget_type(a), "{}: attribute '{}'", where, name));
    Dataspace s(check_id(H5Aget_space(a), "{}: attribute '{}'", where, name));
    if (H5Tequal(t, file_type) > 0 && H5Sget_simple_extent_type(s) == H5S_SCALAR) {
      check_status(H5Awrite(a, mem_type, value), "{}: cannot write attribute '{}'", where, name);
      return;
    }
    a.reset();
    check_status(H5Adelete(obj, name), "{}: cannot replace attribute '{}'", where, name);
  }
  Dataspace space(check_id(H5Screate(H5S_SCALAR), "{}: attribute '{}'", where, name));
  Attribute a(check_id(H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT),
                       "{}: cannot create attribute '{}'", where, name));
  check_status(H5Awrite(a, mem_type, value), "{}: cannot write attribute '{}'", where, name);
}

template <typename T>
T read_number(hid_t obj, const char* name, hid_t mem_type, H5T_class_t cls, const std::string& where) {
  const Attribute a = open_attr(obj, name, where);
  Datatype t(check_id(H5Aget_type(a), "{}: attribute '{}'", where, name));
  if (H5Tget_class(t) != cls)
    fail("{}: attribute '{}' is not {}", where, name, cls == H5T_INTEGER ? "an integer" : "a floating-point number");
  T v{};
  check_status(H5Aread(a, mem_type, &v), "{}: cannot read attribute '{}'", where, name);
  return v;
}

}  // namespace

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

void write_attr_i64(hid_t obj, const char* name, int64_t v, const std::string& where) {
  write_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, where);
}
void write_attr_u64(hid_t obj, const char* name, uint64_t v, const std::string& where) {
  write_scalar(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, where);
}
void write_attr_f64(hid_t obj, const char* name, double v, const std::string& where) {
  write_scalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, where);
}

void write_attr_string(hid_t obj, const char* name, std::string_view v, const std::string& where, StringStyle style) {
  Datatype t(check_id(H5Tcopy(H5T_C_S1), "{}: attribute '{}'", where, name));
  check_status(H5Tset_size(t, std::max<size_t>(1, v.size())), "{}: attribute '{}'", where, name);
  check_status(H5Tset_cset(t, style.utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII), "{}: attribute '{}'", where, name);
  check_status(H5Tset_strpad(t, style.null_pad ? H5T_STR_NULLPAD : H5T_STR_NULLTERM), "{}: attribute '{}'", where,
               name);
  const std::string buf = v.empty() ? std::string(1, '\0') : std::string(v);
  write_scalar(obj, name, t, t, buf.data(), where);
}

int64_t read_attr_i64(hid_t obj, const char* name, const std::string& where) {
  return read_number<int64_t>(obj, name, H5T_NATIVE_INT64, H5T_INTEGER, where);
}
uint64_t read_attr_u64(hid_t obj, const char* name, const std::string& where) {
  return read_number<uint64_t>(obj, name, H5T_NATIVE_UINT64, H5T_INTEGER, where);
}
double read_attr_f64(hid_t obj, const char* name, const std::string& where) {
  return read_number<double>(obj, name, H5T_NATIVE_DOUBLE, H5T_FLOAT, where);
}

std::string read_attr_string(hid_t obj, const char* name, const std::string& where) {
  const Attribute a = open_attr(obj, name, where);
  Datatype t(check_id(H5Aget_type(a), "{}: attribute '{}'", where, name));
  if (H5Tget_class(t) != H5T_STRING) fail("{}: attribute '{}' is not a string", where, name);
  if (H5Tis_variable_str(t) > 0) {
    char* s = nullptr;
    Datatype m(check_id(H5Tcopy(H5T_C_S1), "{}: attribute '{}'", where, name));
    check_status(H5Tset_size(m, H5T_VARIABLE), "{}: attribute '{}'", where, name);
    check_status(H5Aread(a, m, &s), "{}: cannot read attribute '{}'", where, name);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  // Read in the stored type itself (no conversion): the bytes as written, whatever the padding.
  std::string out(H5Tget_size(t), '\0');
  check_status(H5Aread(a, t, out.data()), "{}: cannot read attribute '{}'", where, name);
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

AttrKind attr_kind(hid_t obj, const char* name, const std::string& where) {
  const Attribute a = open_attr(obj, name, where);
  Datatype t(check_id(H5Aget_type(a), "{}: attribute '{}'", where, name));
  switch (H5Tget_class(t)) {
    case H5T_INTEGER:
      if (H5Tget_size(t) != 8) return AttrKind::Other;
      return H5Tget_sign(t) == H5T_SGN_NONE ? AttrKind::U64 : AttrKind::I64;
    case H5T_FLOAT: return H5Tget_size(t) == 8 ? AttrKind::F64 : AttrKind::Other;
    case H5T_STRING: return AttrKind::String;
    default: return AttrKind::Other;
  }
}

}  // namespace fusellm::h5
