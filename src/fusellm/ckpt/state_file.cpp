#include "fusellm/ckpt/state_file.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <mutex>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hdf5_attribute.hpp"
#include "fusellm/io/hdf5_dataset.hpp"
#include "fusellm/io/hdf5_group.hpp"
#include "fusellm/io/xxhash64.hpp"

namespace fusellm {

namespace {

constexpr const char* kFormat = "fusellm-checkpoint";
constexpr int64_t kFormatVersion = 1;
constexpr const char* kChecksumAttr = "xxh64";
constexpr const char* kTextGroup = "meta";
constexpr const char* kReserved[] = {"format", "format_version", "state_keys", "state_xxh64"};
// The values of files written before state_keys (format 1 as fusellm wrote it up to 8ba198a), in
// the order of their checksum; the last two only in files that have them.
constexpr const char* kV1Keys[] = {"step",
                                   "tokens_seen",
                                   "sampler_epoch",
                                   "sampler_position",
                                   "optim_steps",
                                   "schedule_kind",
                                   "schedule_base_lr",
                                   "schedule_warmup_steps",
                                   "schedule_total_steps",
                                   "schedule_min_lr_ratio",
                                   "schedule_num_cycles",
                                   "data_sequences",
                                   "data_fingerprint"};
// Strings as checkpoints always stored them (ASCII, NUL-padded).
constexpr h5::StringStyle kStringStyle{.utf8 = false, .null_pad = true};

static_assert(std::endian::native == std::endian::little, "checkpoints hash and store little-endian bytes");

uint64_t tensor_checksum(const Shape& shape, const void* data, size_t bytes) {
  const uint64_t seed = xxh64(shape.data(), shape.size() * sizeof(int64_t));
  return xxh64(data, bytes, seed);
}

std::string values_text(const KeyValues& kv) {
  std::string t;
  for (const auto& [k, v] : kv.entries()) {
    if (!t.empty()) t += ';';
    t += k + "=";
    if (auto* i = std::get_if<int64_t>(&v)) t += std::to_string(*i);
    else if (auto* u = std::get_if<uint64_t>(&v)) t += fmt::format("{:016x}", *u);
    else if (auto* d = std::get_if<double>(&v)) t += fmt::format("{:016x}", std::bit_cast<uint64_t>(*d));
    else t += std::get<std::string>(v);
  }
  return t;
}

void check_name(const std::string& name, const std::string& what, const std::string& where) {
  if (name.empty() || name == "." || name.find('/') != std::string::npos)
    fail("{}: {} name '{}' cannot be stored (empty, '.' or contains '/')", where, what, name);
}

// ---- writing --------------------------------------------------------------------------------------

void write_checksummed(hid_t loc, const std::string& name, const Shape& shape, hid_t file_type, hid_t mem_type,
                       const void* data, size_t bytes, const std::string& where) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  const h5::Dataset d = h5::write_dataset(loc, name, dims, file_type, mem_type, data, where);
  h5::write_attr_u64(d, kChecksumAttr, tensor_checksum(shape, data, bytes), where + ":" + name);
}

// The group at path ("optim/m"), creating each missing component.
h5::Group make_group(hid_t file, const std::string& path, const std::string& where) {
  h5::Group g(h5::check_id(H5Gopen2(file, "/", H5P_DEFAULT), "{}: no root group", where));
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string part = path.substr(start, end - start);
    check_name(part, "group", where);
    g = H5Lexists(g, part.c_str(), H5P_DEFAULT) > 0 ? h5::open_group(g, part, where) : h5::create_group(g, part, where);
    start = end + 1;
  }
  return g;
}

void write_tensors(hid_t file, const std::string& path, const std::vector<TensorRef>& ts, const std::string& where) {
  if (path == kTextGroup) fail("{}: tensor group '{}' is reserved for texts", where, path);
  const h5::Group g = make_group(file, path, where);
  std::set<std::string> seen;
  for (const auto& t : ts) {
    check_name(t.name, path + " tensor", where);
    if (!seen.insert(t.name).second) fail("{}: {} tensor '{}' given twice", where, path, t.name);
    if (int64_t(t.data.size()) != numel(t.shape))
      fail("{}: {} tensor '{}' has {} values for shape {}", where, path, t.name, t.data.size(), shape_str(t.shape));
    // A checkpoint is what a run resumes from and exports: one holding Inf or NaN is never written.
    if (auto it = std::find_if(t.data.begin(), t.data.end(), [](float x) { return !std::isfinite(x); });
        it != t.data.end())
      fail("{}: {} tensor '{}' holds {} at index {}: a checkpoint that is not finite is not written", where, path,
           t.name, *it, it - t.data.begin());
    write_checksummed(g, t.name, t.shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t.data.data(), t.data.size_bytes(), where);
  }
}

void write_values(hid_t f, const KeyValues& kv, const std::string& where) {
  std::string keys;
  for (const auto& [k, v] : kv.entries()) {
    if (k.empty() || k.find(';') != std::string::npos || std::ranges::count(kReserved, k) != 0)
      fail("{}: value name '{}' cannot be stored (empty, holds ';' or reserved)", where, k);
    if (auto* i = std::get_if<int64_t>(&v)) h5::write_attr_i64(f, k.c_str(), *i, where);
    else if (auto* u = std::get_if<uint64_t>(&v)) h5::write_attr_u64(f, k.c_str(), *u, where);
    else if (auto* d = std::get_if<double>(&v)) h5::write_attr_f64(f, k.c_str(), *d, where);
    else h5::write_attr_string(f, k.c_str(), std::get<std::string>(v), where, kStringStyle);
    keys += (keys.empty() ? "" : ";") + k;
  }
  h5::write_attr_string(f, "state_keys", keys, where, kStringStyle);
  h5::write_attr_u64(f, "state_xxh64", xxh64(values_text(kv)), where);
}

// ---- reading --------------------------------------------------------------------------------------

template <typename T>
std::vector<T> read_checksummed(hid_t loc, const std::string& name, Shape& shape, const std::string& what) {
  constexpr H5T_class_t cls = std::is_floating_point_v<T> ? H5T_FLOAT : H5T_INTEGER;
  std::vector<hsize_t> dims;
  const h5::Dataset d = h5::open_dataset(loc, name, cls, sizeof(T), dims, what);
  shape.assign(dims.begin(), dims.end());
  std::vector<T> data(size_t(numel(shape)));
  h5::read_whole(d, h5::native_type<T>(), data.data(), name, what);
  const std::string ds = what + ":" + name;
  const uint64_t want = h5::read_attr_u64(d, kChecksumAttr, ds);
  const uint64_t got = tensor_checksum(shape, data.data(), data.size() * sizeof(T));
  if (got != want)
    fail("{}: checksum mismatch (stored {:016x}, computed {:016x} over shape {}): the data or its shape is damaged", ds,
         want, got, shape_str(shape));
  return data;
}

// Every tensor group under `path` (a group of groups is walked, a group of datasets read).
void read_groups(hid_t file, const std::string& path, StateDict& out, const std::string& where) {
  const h5::Group g = h5::open_group(file, path, where);
  const std::vector<std::string> by_name = h5::list_links(g, h5::LinkOrder::Name, where + ":" + path);
  const bool container = std::ranges::any_of(by_name, [&](const std::string& n) { return h5::is_group(g, n, where); });
  if (container) {
    for (const std::string& n : by_name) {
      if (!h5::is_group(g, n, where)) fail("{}:{}: holds groups and a dataset ('{}')", where, path, n);
      read_groups(file, path + "/" + n, out, where);
    }
    return;
  }
  auto& tensors = out.group(path);
  for (const std::string& n : h5::list_links(g, h5::LinkOrder::Creation, where + ":" + path)) {
    Shape shape;
    std::vector<float> data = read_checksummed<float>(g, n, shape, where + ":" + path);
    tensors.push_back({n, Tensor(shape, std::move(data))});
  }
}

void read_texts(hid_t file, StateDict& out, const std::string& where) {
  const std::string what = where + ":" + kTextGroup;
  const h5::Group g = h5::open_group(file, kTextGroup, where);
  for (const std::string& n : h5::list_links(g, h5::LinkOrder::Creation, what)) {
    Shape shape;
    const std::vector<uint8_t> bytes = read_checksummed<uint8_t>(g, n, shape, what);
    if (shape.size() != 1) fail("{}/{}: expected a 1-D byte array", what, n);
    out.texts.emplace_back(n, std::string(bytes.begin(), bytes.end()));
  }
}

KeyValues read_values(hid_t f, const std::string& where) {
  std::vector<std::string> keys;
  if (h5::has_attr(f, "state_keys")) {
    const std::string list = h5::read_attr_string(f, "state_keys", where);
    for (size_t s = 0; s < list.size();) {
      const size_t e = std::min(list.find(';', s), list.size());
      keys.push_back(list.substr(s, e - s));
      s = e + 1;
    }
  } else {
    for (const char* k : kV1Keys)
      if (h5::has_attr(f, k) || (std::string_view(k) != "data_sequences" && std::string_view(k) != "data_fingerprint"))
        keys.emplace_back(k);
  }
  KeyValues kv;
  for (const std::string& k : keys) {
    switch (h5::attr_kind(f, k.c_str(), where)) {
      case h5::AttrKind::I64: kv.set(k, h5::read_attr_i64(f, k.c_str(), where)); break;
      case h5::AttrKind::U64: kv.set(k, h5::read_attr_u64(f, k.c_str(), where)); break;
      case h5::AttrKind::F64: kv.set(k, h5::read_attr_f64(f, k.c_str(), where)); break;
      case h5::AttrKind::String: kv.set(k, h5::read_attr_string(f, k.c_str(), where)); break;
      case h5::AttrKind::Other: fail("{}: attribute '{}' is not an int64, uint64, double or string", where, k);
    }
  }
  if (xxh64(values_text(kv)) != h5::read_attr_u64(f, "state_xxh64", where))
    fail("{}: checksum mismatch of the values (the root attributes: step, sampler, schedule)", where);
  return kv;
}

// libhdf5 may be built without thread safety (hdf5_handle.hpp), and the ranks of the in-process
// transport (dist/inproc) are threads that write their checkpoint files at the same time: one
// file at a time per process. An MPI rank is a process of its own, so ranks never wait on it.
std::mutex hdf5_mutex;

}  // namespace

void write_state_file(const std::string& path, const StateDictRef& state) {
  const std::string& where = path;
  std::lock_guard lock(hdf5_mutex);
  h5::ErrorSilencer quiet;
  h5::File f(h5::check_id(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), "{}: cannot create", where));
  h5::write_attr_string(f, "format", kFormat, where, kStringStyle);
  h5::write_attr_i64(f, "format_version", kFormatVersion, where);
  write_values(f, state.values, where);
  for (const auto& [path_, tensors] : state.groups) write_tensors(f, path_, tensors, where);
  const h5::Group meta = h5::create_group(f, kTextGroup, where);
  std::set<std::string> seen;
  for (const auto& [name, text] : state.texts) {
    check_name(name, "text", where);
    if (!seen.insert(name).second) fail("{}: text '{}' given twice", where, name);
    write_checksummed(meta, name, Shape{int64_t(text.size())}, H5T_STD_U8LE, H5T_NATIVE_UINT8, text.data(), text.size(),
                      where);
  }
  h5::check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "{}: flush failed", where);
  h5::check_status(f.close(), "{}: close failed", where);
}

StateDict read_state_file(const std::string& path) {
  const std::string& where = path;
  std::lock_guard lock(hdf5_mutex);
  h5::ErrorSilencer quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0) fail("{}: not a readable HDF5 file (truncated or overwritten?)", where);
  h5::File f(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "{}: cannot open", where));
  if (h5::read_attr_string(f, "format", where) != kFormat) fail("{}: not a fusellm checkpoint", where);
  if (int64_t v = h5::read_attr_i64(f, "format_version", where); v != kFormatVersion)
    fail("{}: checkpoint format version {}, this build reads {}", where, v, kFormatVersion);
  StateDict s;
  s.values = read_values(f, where);
  for (const std::string& n : h5::list_links(f, h5::LinkOrder::Name, where))
    if (n != kTextGroup) read_groups(f, n, s, where);
  read_texts(f, s, where);
  return s;
}

}  // namespace fusellm
