#include "fusellm/ckpt/checkpoint_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "fusellm/io/file_checksum.hpp"
#include "fusellm/io/xxhash64.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "fusellm-checkpoint";
constexpr int64_t kFormatVersion = 1;
constexpr const char* kStateFile = "state.h5";
constexpr const char* kMarker = "COMPLETE";
constexpr const char* kLatest = "latest";
constexpr const char* kChecksumAttr = "xxh64";

static_assert(std::endian::native == std::endian::little, "checkpoints hash and store little-endian bytes");

// ---- POSIX durability -----------------------------------------------------------------------

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail("{}: cannot open to fsync: {}", p.string(), std::strerror(errno));
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0) fail("{}: fsync failed: {}", p.string(), std::strerror(err));
}

// Writes a small file and fsyncs it (the caller renames it into place and fsyncs the directory).
void write_file_synced(const fs::path& p, const std::string& text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("{}: cannot create: {}", p.string(), std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail("{}: write failed: {}", p.string(), std::strerror(err));
    }
    done += size_t(n);
  }
  const int r = ::fsync(fd);
  const int err = errno;
  if (::close(fd) != 0 || r != 0) fail("{}: fsync/close failed: {}", p.string(), std::strerror(err));
}

void rename_or_fail(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail("cannot rename {} to {}: {}", from.string(), to.string(), std::strerror(errno));
}

std::string read_small_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot read", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// "step-<N>" -> N; nullopt for anything else (.tmp-step-..., latest, step-x).
std::optional<int64_t> parse_step_name(const std::string& name) {
  if (!name.starts_with("step-") || name.size() == 5 || name.size() > 5 + 18) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

std::string step_name(int64_t step) { return "step-" + std::to_string(step); }

// ---- checksums ------------------------------------------------------------------------------

// XXH64 of the bytes, seeded with XXH64 of the shape (as int64), so a changed shape changes it.
uint64_t tensor_checksum(const Shape& shape, const void* data, size_t bytes) {
  const uint64_t seed = xxh64(shape.data(), shape.size() * sizeof(int64_t));
  return xxh64(data, bytes, seed);
}

// One canonical text of every root attribute; its XXH64 is stored as state_xxh64.
std::string state_text(const TrainState& s) {
  return fmt::format(
      "step={};tokens_seen={};sampler_epoch={};sampler_position={};optim_steps={};schedule_kind={};"
      "schedule_base_lr={:016x};schedule_warmup_steps={};schedule_total_steps={};schedule_min_lr_ratio={:016x};"
      "schedule_num_cycles={:016x}",
      s.step, s.tokens_seen, s.sampler_epoch, s.sampler_position, s.optim_steps, schedule_name(s.schedule.kind),
      std::bit_cast<uint64_t>(s.schedule.base_lr), s.schedule.warmup_steps, s.schedule.total_steps,
      std::bit_cast<uint64_t>(s.schedule.min_lr_ratio), std::bit_cast<uint64_t>(s.schedule.num_cycles)) +
         // Appended only when recorded, so checkpoints written before these fields still verify.
         (s.data_fingerprint == 0 ? std::string()
                                  : fmt::format(";data_sequences={};data_fingerprint={:016x}", s.data_sequences,
                                                s.data_fingerprint));
}

// ---- HDF5 writing ---------------------------------------------------------------------------

h5::Dataspace scalar_space() { return h5::Dataspace(h5::check_id(H5Screate(H5S_SCALAR), "HDF5: H5Screate")); }

template <typename T>
void write_attr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const T& value, const std::string& where) {
  auto space = scalar_space();
  h5::Attribute a(h5::check_id(H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT),
                               "{}: cannot create attribute {}", where, name));
  h5::check_status(H5Awrite(a, mem_type, &value), "{}: cannot write attribute {}", where, name);
}
void write_attr_i64(hid_t obj, const char* name, int64_t v, const std::string& where) {
  write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v, where);
}
void write_attr_u64(hid_t obj, const char* name, uint64_t v, const std::string& where) {
  write_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, v, where);
}
void write_attr_f64(hid_t obj, const char* name, double v, const std::string& where) {
  write_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, where);
}
void write_attr_str(hid_t obj, const char* name, const std::string& v, const std::string& where) {
  h5::Datatype t(h5::check_id(H5Tcopy(H5T_C_S1), "HDF5: H5Tcopy"));
  H5Tset_size(t, std::max<size_t>(1, v.size()));
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  auto space = scalar_space();
  h5::Attribute a(h5::check_id(H5Acreate2(obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT),
                               "{}: cannot create attribute {}", where, name));
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  h5::check_status(H5Awrite(a, t, buf.data()), "{}: cannot write attribute {}", where, name);
}

h5::Group create_group(hid_t parent, const char* name, const std::string& where) {
  // Track creation order so a load returns tensors in the order they were saved.
  h5::PropList gcpl(h5::check_id(H5Pcreate(H5P_GROUP_CREATE), "HDF5: H5Pcreate"));
  h5::check_status(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), "HDF5: gcpl");
  return h5::Group(h5::check_id(H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), "{}: cannot create group {}",
                                where, name));
}

void write_dataset(hid_t group, const std::string& name, const Shape& shape, hid_t file_type, hid_t mem_type,
                   const void* data, size_t bytes, const std::string& where) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Dataspace space(h5::check_id(shape.empty() ? H5Screate(H5S_SCALAR)
                                                 : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
                                   "{}: dataspace for {}", where, name));
  h5::Dataset d(h5::check_id(H5Dcreate2(group, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                             "{}: cannot create dataset {}", where, name));
  if (bytes > 0)
    h5::check_status(H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "{}: cannot write dataset {}", where,
                     name);
  write_attr_u64(d, kChecksumAttr, tensor_checksum(shape, data, bytes), where + ":" + name);
}

void check_name(const std::string& name, const char* group, const std::string& where) {
  if (name.empty() || name == "." || name.find('/') != std::string::npos)
    fail("{}: {} tensor name '{}' cannot be stored (empty, '.' or contains '/')", where, group, name);
}

void write_tensors(hid_t file, const char* path, const std::vector<TensorRef>& ts, const std::string& where) {
  h5::Group g(h5::check_id(H5Gopen2(file, path, H5P_DEFAULT), "{}: no group {}", where, path));
  std::map<std::string, int> seen;
  for (const auto& t : ts) {
    check_name(t.name, path, where);
    if (seen[t.name]++) fail("{}: {} tensor '{}' given twice", where, path, t.name);
    if (int64_t(t.data.size()) != numel(t.shape))
      fail("{}: {} tensor '{}' has {} values for shape {}", where, path, t.name, t.data.size(), shape_str(t.shape));
    // A checkpoint is what a run resumes from and exports: one holding Inf or NaN is never written.
    if (auto it = std::find_if(t.data.begin(), t.data.end(), [](float x) { return !std::isfinite(x); });
        it != t.data.end())
      fail("{}: {} tensor '{}' holds {} at index {}: a checkpoint that is not finite is not written", where, path,
           t.name, *it, it - t.data.begin());
    write_dataset(g, t.name, t.shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t.data.data(), t.data.size() * sizeof(float),
                  where);
  }
}

void write_state_file(const fs::path& file, const CheckpointContents& c) {
  const std::string where = file.string();
  h5::ErrorSilencer quiet;
  h5::File f(h5::check_id(H5Fcreate(file.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), "{}: cannot create", where));
  const TrainState& s = c.state;
  write_attr_str(f, "format", kFormat, where);
  write_attr_i64(f, "format_version", kFormatVersion, where);
  write_attr_i64(f, "step", s.step, where);
  write_attr_i64(f, "tokens_seen", s.tokens_seen, where);
  write_attr_i64(f, "sampler_epoch", s.sampler_epoch, where);
  write_attr_i64(f, "sampler_position", s.sampler_position, where);
  write_attr_i64(f, "optim_steps", s.optim_steps, where);
  write_attr_str(f, "schedule_kind", std::string(schedule_name(s.schedule.kind)), where);
  write_attr_f64(f, "schedule_base_lr", s.schedule.base_lr, where);
  write_attr_i64(f, "schedule_warmup_steps", s.schedule.warmup_steps, where);
  write_attr_i64(f, "schedule_total_steps", s.schedule.total_steps, where);
  write_attr_f64(f, "schedule_min_lr_ratio", s.schedule.min_lr_ratio, where);
  write_attr_f64(f, "schedule_num_cycles", s.schedule.num_cycles, where);
  if (s.data_fingerprint != 0) {
    write_attr_i64(f, "data_sequences", s.data_sequences, where);
    write_attr_u64(f, "data_fingerprint", s.data_fingerprint, where);
  }
  write_attr_u64(f, "state_xxh64", xxh64(state_text(s)), where);

  create_group(f, "model", where);
  auto optim = create_group(f, "optim", where);
  create_group(optim, "m", where);
  create_group(optim, "v", where);
  auto meta = create_group(f, "meta", where);
  write_tensors(f, "model", c.model, where);
  write_tensors(f, "optim/m", c.optim_m, where);
  write_tensors(f, "optim/v", c.optim_v, where);
  for (const auto& [name, text] : {std::pair<const char*, const std::string&>{"rng_state", s.rng_state},
                                   std::pair<const char*, const std::string&>{"job_toml", s.job_toml}})
    write_dataset(meta, name, Shape{int64_t(text.size())}, H5T_STD_U8LE, H5T_NATIVE_UINT8, text.data(), text.size(),
                  where);
  meta.reset();
  optim.reset();
  h5::check_status(H5Fflush(f, H5F_SCOPE_GLOBAL), "{}: flush failed", where);
  h5::check_status(f.close(), "{}: close failed", where);
}

// ---- HDF5 reading ---------------------------------------------------------------------------

template <typename T>
T read_attr(hid_t obj, const char* name, hid_t mem_type, const std::string& where) {
  if (H5Aexists(obj, name) <= 0) fail("{}: attribute '{}' is missing", where, name);
  h5::Attribute a(h5::check_id(H5Aopen(obj, name, H5P_DEFAULT), "{}: cannot open attribute '{}'", where, name));
  T v{};
  h5::check_status(H5Aread(a, mem_type, &v), "{}: cannot read attribute '{}'", where, name);
  return v;
}
std::string read_attr_str(hid_t obj, const char* name, const std::string& where) {
  if (H5Aexists(obj, name) <= 0) fail("{}: attribute '{}' is missing", where, name);
  h5::Attribute a(h5::check_id(H5Aopen(obj, name, H5P_DEFAULT), "{}: cannot open attribute '{}'", where, name));
  h5::Datatype ft(h5::check_id(H5Aget_type(a), "{}: attribute '{}'", where, name));
  if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0)
    fail("{}: attribute '{}' is not a fixed-length string", where, name);
  const size_t n = H5Tget_size(ft);
  h5::Datatype mt(h5::check_id(H5Tcopy(H5T_C_S1), "HDF5: H5Tcopy"));
  H5Tset_size(mt, n);
  H5Tset_strpad(mt, H5T_STR_NULLPAD);
  std::string buf(n, '\0');
  h5::check_status(H5Aread(a, mt, buf.data()), "{}: cannot read attribute '{}'", where, name);
  while (!buf.empty() && buf.back() == '\0') buf.pop_back();
  return buf;
}

// HDF5 1.12 renamed the link iteration API; Debian 12 has 1.10, clusters often 1.12 or 1.14.
#if H5_VERSION_GE(1, 12, 0)
#define FUSELLM_H5LITERATE H5Literate2
using LinkInfo = H5L_info2_t;
#else
#define FUSELLM_H5LITERATE H5Literate
using LinkInfo = H5L_info_t;
#endif

std::vector<std::string> list_links(hid_t group, const std::string& where) {
  std::vector<std::string> names;
  const herr_t r = FUSELLM_H5LITERATE(
      group, H5_INDEX_CRT_ORDER, H5_ITER_INC, nullptr,
      [](hid_t, const char* name, const LinkInfo*, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->emplace_back(name);
        return 0;
      },
      &names);
  h5::check_status(r, "{}: cannot list", where);
  return names;
}

// Reads one dataset of the expected element type and verifies its checksum against the shape.
template <typename T>
std::vector<T> read_verified(hid_t group, const std::string& name, hid_t mem_type, H5T_class_t cls, Shape& shape,
                             const std::string& where) {
  const std::string what = where + ":" + name;
  h5::Dataset d(h5::check_id(H5Dopen2(group, name.c_str(), H5P_DEFAULT), "{}: cannot open dataset", what));
  h5::Datatype ft(h5::check_id(H5Dget_type(d), "{}: no type", what));
  if (H5Tget_class(ft) != cls || H5Tget_size(ft) != sizeof(T))
    fail("{}: element type is not {} ({} bytes)", what, cls == H5T_FLOAT ? "float" : "an integer", sizeof(T));
  h5::Dataspace space(h5::check_id(H5Dget_space(d), "{}: no dataspace", what));
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail("{}: damaged dataspace", what);
  std::vector<hsize_t> dims(rank);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  shape.assign(dims.begin(), dims.end());
  std::vector<T> data(size_t(numel(shape)));
  if (!data.empty())
    h5::check_status(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), "{}: cannot read data", what);
  const uint64_t want = read_attr<uint64_t>(d, kChecksumAttr, H5T_NATIVE_UINT64, what);
  const uint64_t got = tensor_checksum(shape, data.data(), data.size() * sizeof(T));
  if (got != want)
    fail("{}: checksum mismatch (stored {:016x}, computed {:016x} over shape {}): the data or its shape is damaged",
         what, want, got, shape_str(shape));
  return data;
}

std::vector<NamedTensor> read_tensors(hid_t file, const char* path, const std::string& where) {
  const std::string gwhere = where + ":" + path;
  if (H5Lexists(file, path, H5P_DEFAULT) <= 0) fail("{}: group is missing", gwhere);
  h5::Group g(h5::check_id(H5Gopen2(file, path, H5P_DEFAULT), "{}: cannot open group", gwhere));
  std::vector<NamedTensor> out;
  for (const auto& name : list_links(g, gwhere)) {
    Shape shape;
    auto data = read_verified<float>(g, name, H5T_NATIVE_FLOAT, H5T_FLOAT, shape, gwhere);
    out.push_back({name, Tensor(shape, std::move(data))});
  }
  return out;
}

std::string read_text(hid_t file, const char* name, const std::string& where) {
  const std::string gwhere = where + ":meta";
  h5::Group g(h5::check_id(H5Gopen2(file, "meta", H5P_DEFAULT), "{}: cannot open group", gwhere));
  if (H5Lexists(g, name, H5P_DEFAULT) <= 0) fail("{}/{}: dataset is missing", gwhere, name);
  Shape shape;
  auto bytes = read_verified<uint8_t>(g, name, H5T_NATIVE_UINT8, H5T_INTEGER, shape, gwhere);
  if (shape.size() != 1) fail("{}/{}: expected a 1-D byte array", gwhere, name);
  return std::string(bytes.begin(), bytes.end());
}

TrainCheckpoint read_state_file(const fs::path& file) {
  const std::string where = file.string();
  h5::ErrorSilencer quiet;
  if (H5Fis_hdf5(file.c_str()) <= 0) fail("{}: not a readable HDF5 file (truncated or overwritten?)", where);
  h5::File f(h5::check_id(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "{}: cannot open", where));
  if (read_attr_str(f, "format", where) != kFormat) fail("{}: not a fusellm checkpoint", where);
  if (int64_t v = read_attr<int64_t>(f, "format_version", H5T_NATIVE_INT64, where); v != kFormatVersion)
    fail("{}: checkpoint format version {}, this build reads {}", where, v, kFormatVersion);

  TrainCheckpoint c;
  TrainState& s = c.state;
  auto i64 = [&](const char* n) { return read_attr<int64_t>(f, n, H5T_NATIVE_INT64, where); };
  auto f64 = [&](const char* n) { return read_attr<double>(f, n, H5T_NATIVE_DOUBLE, where); };
  s.step = i64("step");
  s.tokens_seen = i64("tokens_seen");
  s.sampler_epoch = i64("sampler_epoch");
  s.sampler_position = i64("sampler_position");
  s.optim_steps = i64("optim_steps");
  const std::string kind = read_attr_str(f, "schedule_kind", where);
  const auto k = schedule_from_name(kind);
  if (!k) fail("{}: attribute schedule_kind: unknown schedule '{}'", where, kind);
  s.schedule.kind = *k;
  s.schedule.base_lr = f64("schedule_base_lr");
  s.schedule.warmup_steps = i64("schedule_warmup_steps");
  s.schedule.total_steps = i64("schedule_total_steps");
  s.schedule.min_lr_ratio = f64("schedule_min_lr_ratio");
  s.schedule.num_cycles = f64("schedule_num_cycles");
  if (H5Aexists(f, "data_fingerprint") > 0) {
    s.data_sequences = i64("data_sequences");
    s.data_fingerprint = read_attr<uint64_t>(f, "data_fingerprint", H5T_NATIVE_UINT64, where);
  }
  const uint64_t want = read_attr<uint64_t>(f, "state_xxh64", H5T_NATIVE_UINT64, where);
  if (xxh64(state_text(s)) != want) fail("{}: checksum mismatch of the root attributes (step, sampler, schedule)", where);

  c.model = read_tensors(f, "model", where);
  c.optim_m = read_tensors(f, "optim/m", where);
  c.optim_v = read_tensors(f, "optim/v", where);
  s.rng_state = read_text(f, "rng_state", where);
  s.job_toml = read_text(f, "job_toml", where);
  return c;
}

}  // namespace

// ---- CheckpointContents / TrainCheckpoint --------------------------------------------------------

void CheckpointContents::add_optimizer(const AdamW& opt) {
  std::map<std::string, const Shape*> shapes;
  for (const auto& t : model) shapes[t.name] = &t.shape;
  for (const auto& [name, st] : opt.states()) {
    auto it = shapes.find(name);
    Shape shape = it != shapes.end() && numel(*it->second) == int64_t(st.m.size()) ? *it->second
                                                                                     : Shape{int64_t(st.m.size())};
    optim_m.push_back({name, shape, st.m});
    optim_v.push_back({name, shape, st.v});
  }
  state.optim_steps = opt.steps();
}

const Tensor* TrainCheckpoint::find_model(const std::string& name) const {
  for (const auto& t : model)
    if (t.name == name) return &t.tensor;
  return nullptr;
}

void TrainCheckpoint::restore_optimizer(AdamW& opt) const {
  if (optim_m.size() != optim_v.size())
    fail("{}: {} exp_avg tensors but {} exp_avg_sq", path, optim_m.size(), optim_v.size());
  opt.clear();
  for (size_t i = 0; i < optim_m.size(); ++i) {
    const auto& m = optim_m[i];
    const NamedTensor* v = nullptr;
    for (const auto& cand : optim_v)
      if (cand.name == m.name) v = &cand;
    if (!v) fail("{}: optimizer state of '{}' has exp_avg but no exp_avg_sq", path, m.name);
    opt.set_state(m.name, std::vector<float>(m.tensor.data(), m.tensor.data() + m.tensor.size()),
                  std::vector<float>(v->tensor.data(), v->tensor.data() + v->tensor.size()));
  }
  opt.set_steps(state.optim_steps);
}

// ---- CheckpointStore ------------------------------------------------------------------------

CheckpointStore::CheckpointStore(std::string dir, int64_t keep) : dir_(std::move(dir)), keep_(keep) {
  if (keep_ < 0) fail("CheckpointStore: keep must be >= 0 (0 keeps all), found {}", keep_);
}

std::string CheckpointStore::save(const CheckpointContents& c) const {
  const int64_t step = c.state.step;
  if (step < 0) fail("{}: cannot save a checkpoint for step {}", dir_, step);
  const fs::path dir(dir_);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create checkpoint directory: {}", dir_, ec.message());

  const std::string pid = std::to_string(::getpid());
  const fs::path tmp = dir / (".tmp-" + step_name(step) + "-" + pid);
  const fs::path final_dir = dir / step_name(step);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) fail("{}: cannot create: {}", tmp.string(), ec.message());

  try {
    // 1. The state file, closed (flushed) and fsync'd.
    const fs::path state = tmp / kStateFile;
    write_state_file(state, c);
    fsync_path(state, false);
    // 2. The marker, last, recording the file's size and XXH64 so that a truncated or damaged file
    //    is refused before HDF5 opens it (file_checksum.hpp: libhdf5 may crash on bad metadata).
    //    Hashing reads back what was just written, from the page cache when it fits there.
    write_file_synced(tmp / kMarker, fmt::format("{}\nstep {}\n{}\n", kFormat, step,
                                                 digest_line(kStateFile, digest_file(state.string()))));
    fsync_path(tmp, true);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }

  // 3. Into place with one rename. An existing step-N (a resumed run redoing a step) moves aside first.
  fs::path old;
  if (fs::exists(final_dir)) {
    old = dir / (".old-" + step_name(step) + "-" + pid);
    fs::remove_all(old, ec);
    rename_or_fail(final_dir, old);
  }
  rename_or_fail(tmp, final_dir);
  fsync_path(dir, true);

  // 4. `latest`, through a temporary name.
  const fs::path latest_tmp = dir / (".latest.tmp-" + pid);
  write_file_synced(latest_tmp, step_name(step) + "\n");
  rename_or_fail(latest_tmp, dir / kLatest);
  fsync_path(dir, true);

  if (!old.empty()) fs::remove_all(old, ec);
  prune(step);
  return final_dir.string();
}

void CheckpointStore::prune(int64_t saved_step) const {
  const fs::path dir(dir_);
  std::error_code ec;
  std::vector<std::pair<int64_t, fs::path>> complete;
  std::vector<fs::path> remove;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // Leftovers of saves that were killed (the one just made was renamed away).
    if (name.starts_with(".tmp-step-") || name.starts_with(".old-step-") || name.starts_with(".latest.tmp-")) {
      remove.push_back(e.path());
      continue;
    }
    const auto step = parse_step_name(name);
    if (!step || !e.is_directory()) continue;
    if (*step > saved_step) {
      // Newer than what was just saved: the run resumed from an older checkpoint, so these belong
      // to a history that no longer leads here.
      spdlog::info("checkpoint {}: removing {} (newer than the step just saved, from before a resume)", dir_, name);
      remove.push_back(e.path());
    } else if (fs::exists(e.path() / kMarker)) {
      complete.emplace_back(*step, e.path());
    } else if (*step < saved_step) {
      remove.push_back(e.path());  // incomplete: no save leaves one, so it is debris
    }
  }
  std::sort(complete.begin(), complete.end());
  if (keep_ > 0 && int64_t(complete.size()) > keep_)
    for (size_t i = 0; i + size_t(keep_) < complete.size(); ++i) remove.push_back(complete[i].second);
  for (const auto& p : remove) {
    // Rename first so that a kill mid-delete never leaves a step-N that looks complete but is not.
    fs::path doomed = p;
    if (parse_step_name(p.filename().string())) {
      doomed = dir / (".old-" + p.filename().string() + "-" + std::to_string(::getpid()));
      if (::rename(p.c_str(), doomed.c_str()) != 0) doomed = p;
    }
    fs::remove_all(doomed, ec);
    if (ec) spdlog::warn("checkpoint {}: cannot remove {}: {}", dir_, doomed.string(), ec.message());
  }
}

std::vector<int64_t> CheckpointStore::complete_steps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec))
    if (auto s = parse_step_name(e.path().filename().string()); s && fs::exists(e.path() / kMarker))
      steps.push_back(*s);
  std::sort(steps.begin(), steps.end());
  return steps;
}

TrainCheckpoint CheckpointStore::load(const std::string& step_dir) {
  const fs::path d(step_dir);
  if (!fs::is_directory(d)) fail("{}: no such checkpoint directory", step_dir);
  const fs::path marker = d / kMarker;
  if (!fs::exists(marker)) fail("{}: incomplete: no {} marker (its save did not finish)", step_dir, kMarker);
  // "fusellm-checkpoint", "step <N>", then one digest line per file (file_checksum.hpp).
  std::istringstream m(read_small_file(marker));
  std::string format, step_line, line;
  std::getline(m, format);
  std::getline(m, step_line);
  std::optional<DigestRecord> state_rec;
  while (std::getline(m, line)) {
    if (line.empty()) continue;
    const auto r = parse_digest_line(line);
    if (!r) fail("{}: damaged {} marker (line \"{}\")", step_dir, kMarker, line);
    if (r->name == kStateFile) state_rec = r;
  }
  int64_t step = -1;
  std::istringstream sl(step_line);
  std::string step_word, rest;
  if (format != kFormat || !(sl >> step_word >> step) || step_word != "step" || (sl >> rest) || !state_rec)
    fail("{}: damaged {} marker", step_dir, kMarker);
  const fs::path state = d / kStateFile;
  if (!state_rec->xxh64)
    spdlog::info("{}: the {} marker records no checksum (a checkpoint of an older fusellm): size checked only, {} is "
                 "not verified before HDF5 opens it",
                 step_dir, kMarker, kStateFile);
  verify_file(state.string(), *state_rec);  // before HDF5 touches it
  TrainCheckpoint c = read_state_file(state);
  if (c.state.step != step) fail("{}: the marker says step {}, {} says step {}", step_dir, step, kStateFile, c.state.step);
  c.path = step_dir;
  return c;
}

std::optional<TrainCheckpoint> CheckpointStore::load_latest() const {
  const fs::path dir(dir_);
  if (!fs::is_directory(dir)) return std::nullopt;

  std::vector<int64_t> steps;  // every step-<N> directory, complete or not
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (auto s = parse_step_name(e.path().filename().string()); s && e.is_directory()) steps.push_back(*s);
  std::sort(steps.rbegin(), steps.rend());

  std::vector<std::string> warnings;
  auto warn = [&](const std::string& w) {
    spdlog::warn("{}", w);
    warnings.push_back(w);
  };

  // `latest` first, then every other checkpoint, newest first.
  std::vector<int64_t> order;
  const fs::path latest = dir / kLatest;
  const bool has_latest = fs::exists(latest);
  if (has_latest) {
    std::string text = read_small_file(latest);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    const auto s = parse_step_name(text);
    if (!s) warn(fmt::format("checkpoint {}: `latest` is damaged (\"{}\"); trying the newest checkpoint", dir_, text));
    else if (std::find(steps.begin(), steps.end(), *s) == steps.end())
      warn(fmt::format("checkpoint {}: `latest` names {}, which does not exist; trying older ones", dir_, text));
    else order.push_back(*s);
  }
  for (int64_t s : steps)
    if (std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);

  if (order.empty()) {
    if (has_latest) fail("{}: `latest` exists but there is no step-<N> checkpoint directory", dir_);
    return std::nullopt;
  }
  for (int64_t s : order) {
    const std::string path = (dir / step_name(s)).string();
    try {
      TrainCheckpoint c = load(path);
      c.warnings = std::move(warnings);
      if (!c.warnings.empty()) spdlog::warn("checkpoint {}: resuming from {} (step {})", dir_, path, c.state.step);
      return c;
    } catch (const Error& e) {
      // e.what() starts with the checkpoint's path and says what is wrong with it.
      warn(fmt::format("unusable checkpoint, falling back to an older one: {}", e.what()));
    }
  }
  std::string all;
  for (const auto& w : warnings) all += "\n  " + w;
  fail("{}: no usable checkpoint:{}", dir_, all);
}

std::string rng_to_text(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

void rng_from_text(std::mt19937_64& rng, const std::string& text) {
  std::istringstream is(text);
  std::mt19937_64 r;
  is >> r;
  if (is.fail()) fail("RNG state: not a std::mt19937_64 state ({} bytes of text)", text.size());
  rng = r;
}

}  // namespace fusellm
