#include "fusellm/data/distribution_cache.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "fusellm/io/file_checksum.hpp"
#include "fusellm/io/file_lock.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hdf5_attribute.hpp"
#include "fusellm/io/hdf5_handle.hpp"

namespace fusellm {

namespace fs = std::filesystem;

std::string fusellm_version() { return "0.1.0"; }

namespace {
struct FieldRef {
  const char* attr;      // cache attribute
  std::string section;   // job section ("source" for [[source]])
  std::vector<std::string> keys;  // job keys, first written one names the line
  std::string label;     // "[distill].top_k"
};

std::string where_in_job(const config::FieldOrigins& job, const FieldRef& f, int64_t index) {
  for (const auto& k : f.keys)
    if (std::string w = job.where(f.section, k, size_t(index)); !w.empty()) return w;
  return fmt::format("{} (default)", job.file.empty() ? "<job>" : job.file);
}
}  // namespace

void check_provenance(const std::string& cache_path, const CacheProvenance& c, const CacheProvenance& e,
                      const config::FieldOrigins& job) {
  auto bad = [&](const FieldRef& f, const std::string& cached, const std::string& now, int64_t index = 0) {
    fail("{}: distribution cache made with {} = {}, but {}: {} gives {} (delete the cache or fix the job)",
         cache_path, f.attr, cached, where_in_job(job, f, index), f.label, now);
  };
  const std::string src = fmt::format("[[source]] '{}' ", e.teacher);
  if (c.target_tokenizer_fingerprint != e.target_tokenizer_fingerprint)
    bad({"target_tokenizer_fingerprint", "target", {"tokenizer", "init_from", "path"}, "[target].tokenizer"},
        c.target_tokenizer_fingerprint + " (" + c.target_tokenizer + ")",
        e.target_tokenizer_fingerprint + " (" + e.target_tokenizer + ")");
  if (c.teacher_tokenizer_fingerprint != e.teacher_tokenizer_fingerprint)
    bad({"teacher_tokenizer_fingerprint", "source", {"tokenizer", "path"}, src + "tokenizer"},
        c.teacher_tokenizer_fingerprint + " (" + c.teacher_tokenizer + ")",
        e.teacher_tokenizer_fingerprint + " (" + e.teacher_tokenizer + ")", e.teacher_index);
  if (c.k != e.k) bad({"k", "distill", {"top_k"}, "[distill].top_k"}, std::to_string(c.k), std::to_string(e.k));
  if (c.temperature != e.temperature)
    bad({"temperature", "distill", {"temperature"}, "[distill].temperature"}, fmt::format("{}", c.temperature),
        fmt::format("{}", e.temperature));
  if (c.alignment != e.alignment)
    bad({"alignment", "distill", {"alignment"}, "[distill].alignment"}, c.alignment, e.alignment);
  if (c.onehot_compat != e.onehot_compat)
    bad({"onehot_compat", "distill", {"onehot_compat"}, "[distill].onehot_compat"}, c.onehot_compat ? "true" : "false",
        e.onehot_compat ? "true" : "false");
  if (c.align_compat != e.align_compat)
    bad({"align_compat", "distill", {"align_compat"}, "[distill].align_compat"}, c.align_compat, e.align_compat);
  if (c.keep_tail != e.keep_tail)
    bad({"keep_tail", "distill", {"keep_tail"}, "[distill].keep_tail"}, c.keep_tail ? "true" : "false",
        e.keep_tail ? "true" : "false");
  if (c.teacher_dtype != e.teacher_dtype)
    bad({"teacher_dtype", "source", {"dtype"}, src + "dtype"}, c.teacher_dtype, e.teacher_dtype, e.teacher_index);
  if (c.max_tokens != e.max_tokens)
    bad({"max_tokens", "corpus", {"margin", "max_len"}, "[corpus].max_len - [corpus].margin"},
        std::to_string(c.max_tokens), std::to_string(e.max_tokens));
  if (c.segmenter != e.segmenter)
    bad({"segmenter", "source", {"tokenizer", "path"}, "the tokenizers of [[source]] and [target] (segments)"},
        c.segmenter, e.segmenter);
  if (c.corpus != e.corpus) bad({"corpus", "corpus", {"path"}, "[corpus].path"}, c.corpus, e.corpus);
  if (c.teacher != e.teacher)
    bad({"teacher", "source", {"name", "path"}, src + "name"}, c.teacher, e.teacher, e.teacher_index);
}

// ---- HDF5 helpers -----------------------------------------------------------------------------------

namespace {

void write_provenance(hid_t f, const CacheProvenance& p, const std::string& path) {
  h5::write_attr_string(f, "format", kDistributionCacheFormat, path);
  h5::write_attr_string(f, "teacher", p.teacher, path);
  h5::write_attr_i64(f, "teacher_index", p.teacher_index, path);
  h5::write_attr_string(f, "teacher_path", p.teacher_path, path);
  h5::write_attr_string(f, "teacher_tokenizer", p.teacher_tokenizer, path);
  h5::write_attr_string(f, "teacher_tokenizer_fingerprint", p.teacher_tokenizer_fingerprint, path);
  h5::write_attr_string(f, "target_tokenizer", p.target_tokenizer, path);
  h5::write_attr_string(f, "target_tokenizer_fingerprint", p.target_tokenizer_fingerprint, path);
  h5::write_attr_string(f, "segmenter", p.segmenter, path);
  h5::write_attr_i64(f, "max_tokens", p.max_tokens, path);
  h5::write_attr_string(f, "corpus", p.corpus, path);
  h5::write_attr_i64(f, "k", p.k, path);
  h5::write_attr_f64(f, "temperature", p.temperature, path);
  h5::write_attr_string(f, "alignment", p.alignment, path);
  h5::write_attr_i64(f, "onehot_compat", int64_t(p.onehot_compat), path);
  h5::write_attr_string(f, "align_compat", p.align_compat, path);
  h5::write_attr_i64(f, "keep_tail", int64_t(p.keep_tail), path);
  h5::write_attr_string(f, "teacher_dtype", p.teacher_dtype, path);
  h5::write_attr_string(f, "fusellm_version", p.version, path);
  h5::write_attr_string(f, "job_file", p.job_file, path);
}

CacheProvenance read_provenance_from(hid_t f, const std::string& path) {
  if (!h5::has_attr(f, "format")) fail("{}: attribute 'format' is missing (not a fusellm distribution cache?)", path);
  const std::string fmt_ = h5::read_attr_string(f, "format", path);
  if (fmt_ != kDistributionCacheFormat)
    fail("{}: format '{}', expected '{}' (not a fusellm distribution cache?)", path, fmt_, kDistributionCacheFormat);
  CacheProvenance p;
  p.teacher = h5::read_attr_string(f, "teacher", path);
  p.teacher_index = h5::read_attr_i64(f, "teacher_index", path);
  p.teacher_path = h5::read_attr_string(f, "teacher_path", path);
  p.teacher_tokenizer = h5::read_attr_string(f, "teacher_tokenizer", path);
  p.teacher_tokenizer_fingerprint = h5::read_attr_string(f, "teacher_tokenizer_fingerprint", path);
  p.target_tokenizer = h5::read_attr_string(f, "target_tokenizer", path);
  p.target_tokenizer_fingerprint = h5::read_attr_string(f, "target_tokenizer_fingerprint", path);
  p.segmenter = h5::read_attr_string(f, "segmenter", path);
  p.max_tokens = h5::read_attr_i64(f, "max_tokens", path);
  p.corpus = h5::read_attr_string(f, "corpus", path);
  p.k = h5::read_attr_i64(f, "k", path);
  p.temperature = h5::read_attr_f64(f, "temperature", path);
  p.alignment = h5::read_attr_string(f, "alignment", path);
  p.onehot_compat = h5::read_attr_i64(f, "onehot_compat", path) != 0;
  // Caches written before align_compat existed were aligned under fusellm's rules.
  p.align_compat = h5::has_attr(f, "align_compat") ? h5::read_attr_string(f, "align_compat", path) : "none";
  p.keep_tail = h5::read_attr_i64(f, "keep_tail", path) != 0;
  // Caches written before [[source]].dtype existed come from fp32 teachers.
  p.teacher_dtype = h5::has_attr(f, "teacher_dtype") ? h5::read_attr_string(f, "teacher_dtype", path) : "fp32";
  p.version = h5::read_attr_string(f, "fusellm_version", path);
  p.job_file = h5::read_attr_string(f, "job_file", path);
  return p;
}

struct DsSpec {
  const char* name;
  hid_t file_type;
  hid_t mem_type;
  int rank;  // 1 or 2 (second dim = k)
};
// Row datasets, then per-segment datasets.
const DsSpec kRowSets[] = {{"ids", H5T_STD_I32LE, H5T_NATIVE_INT32, 2},
                           {"probs", H5T_STD_U16LE, H5T_NATIVE_UINT16, 2},
                           {"target_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, 1},
                           {"status", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1}};
const DsSpec kSegSets[] = {{"segment_ids", H5T_STD_I64LE, H5T_NATIVE_INT64, 1},
                           {"doc", H5T_STD_I64LE, H5T_NATIVE_INT64, 1},
                           {"piece", H5T_STD_I32LE, H5T_NATIVE_INT32, 1},
                           {"ce", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1},
                           {"ce_tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, 1},
                           {"bytes", H5T_STD_I64LE, H5T_NATIVE_INT64, 1}};

constexpr hsize_t kRowChunk = 4096;
constexpr hsize_t kSegChunk = 1024;

void create_dataset(hid_t f, const DsSpec& d, int64_t k, hsize_t chunk, const std::string& path) {
  hsize_t dims[2] = {0, hsize_t(k)}, maxd[2] = {H5S_UNLIMITED, hsize_t(k)}, ch[2] = {chunk, hsize_t(k)};
  h5::Dataspace s(h5::check_id(H5Screate_simple(d.rank, dims, maxd), "{}: dataspace {}", path, d.name));
  h5::PropList pl(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(pl, d.rank, ch);
  H5Pset_shuffle(pl);
  H5Pset_deflate(pl, 4);
  h5::Dataset ds(h5::check_id(H5Dcreate2(f, d.name, d.file_type, s, H5P_DEFAULT, pl, H5P_DEFAULT),
                              "{}: cannot create dataset '{}'", path, d.name));
}

hsize_t extent0(hid_t ds) {
  h5::Dataspace s(H5Dget_space(ds));
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(s, dims, nullptr);
  return dims[0];
}

// Writes n rows at `at`, growing the dataset to at + n.
void write_rows(hid_t ds, const DsSpec& d, int64_t k, hsize_t at, hsize_t n, const void* data, const std::string& path) {
  const hsize_t cols = d.rank == 2 ? hsize_t(k) : 1;
  hsize_t newd[2] = {at + n, cols};
  h5::check_status(H5Dset_extent(ds, newd), "{}: cannot extend '{}'", path, d.name);
  if (n == 0) return;
  h5::Dataspace fs_(H5Dget_space(ds));
  hsize_t start[2] = {at, 0}, count[2] = {n, cols};
  H5Sselect_hyperslab(fs_, H5S_SELECT_SET, start, nullptr, count, nullptr);
  h5::Dataspace ms(H5Screate_simple(d.rank, count, nullptr));
  h5::check_status(H5Dwrite(ds, d.mem_type, ms, fs_, H5P_DEFAULT, data), "{}: cannot write '{}'", path, d.name);
}
void read_rows(hid_t ds, hid_t mem_type, int rank, int64_t k, hsize_t at, hsize_t n, void* data, const char* name,
               const std::string& path) {
  if (n == 0) return;
  const hsize_t cols = rank == 2 ? hsize_t(k) : 1;
  h5::Dataspace fs_(H5Dget_space(ds));
  hsize_t start[2] = {at, 0}, count[2] = {n, cols};
  h5::check_status(H5Sselect_hyperslab(fs_, H5S_SELECT_SET, start, nullptr, count, nullptr),
                   "{}: '{}' rows [{}, {}) out of range", path, name, at, at + n);
  h5::Dataspace ms(H5Screate_simple(rank, count, nullptr));
  h5::check_status(H5Dread(ds, mem_type, ms, fs_, H5P_DEFAULT, data), "{}: cannot read '{}'", path, name);
}
template <class T>
std::vector<T> read_all(hid_t f, const char* name, hid_t mem_type, hsize_t n, const std::string& path) {
  h5::Dataset ds(h5::check_id(H5Dopen2(f, name, H5P_DEFAULT), "{}: no dataset '{}'", path, name));
  if (extent0(ds) < n) fail("{}: dataset '{}' has {} entries, expected {} (damaged cache)", path, name, extent0(ds), n);
  std::vector<T> v(n);
  read_rows(ds, mem_type, 1, 1, 0, n, v.data(), name, path);
  return v;
}

}  // namespace

// ---- writer ---------------------------------------------------------------------------------------

namespace {

// The cache's whole bytes against its sidecar "<cache>.xxh64" before HDF5 opens it (libhdf5 may
// crash on damaged metadata; file_checksum.hpp). Why a sidecar and not a record inside the file or
// a marker like a checkpoint's: a cache is rewritten in place, batch by batch, over hours, and
// `train --limit` uses one that is not finished, so no checksum can live inside it and none can
// wait for `teach` to finish. The writer removes the sidecar before it changes the file and writes
// it after closing it (at the end of every teach run, finished or not, and when one fails): a
// sidecar that exists describes the bytes as the last writer left them. A cache without one was
// written by an older fusellm or by a teach run that was killed; it is used unverified, with a
// log line (the next teach run over it writes one).
void verify_cache_file(const std::string& path) {
  if (verify_sidecar(path) == SidecarCheck::kVerified) return;
  static std::mutex m;
  static std::set<std::string> told;
  std::lock_guard lock(m);
  if (told.insert(path).second)
    spdlog::info("{}: no checksum file {} (a cache of an older fusellm, or its teach run was killed): not verified "
                 "before HDF5 opens it",
                 path, sidecar_path(path));
}

std::string lock_path_of(const std::string& cache) { return cache + ".lock"; }

}  // namespace

struct DistributionCacheWriter::Impl {
  std::optional<FileLock> lock;  // first: released after the file is closed
  h5::File file;
  h5::Dataset rows[4];
  h5::Dataset segs[6];
  h5::Dataset offsets;
};

DistributionCacheWriter::DistributionCacheWriter(const std::string& path, const CacheProvenance& prov,
                                                 const config::FieldOrigins* job)
    : path_(path), k_(prov.k) {
  h5::ErrorSilencer quiet;
  auto impl = std::make_unique<Impl>();
  std::error_code ec;
  if (auto dir = fs::path(path).parent_path(); !dir.empty()) fs::create_directories(dir, ec);
  // Two teach runs on one cache would interleave their batches: the second is refused at once.
  impl->lock.emplace(lock_path_of(path), fmt::format("the distribution cache {}", path));
  if (fs::exists(path, ec))
    reopen(*impl, prov, job);
  else
    create(*impl, prov);
  impl_ = impl.release();
}

// Continues an existing cache: the same provenance, the committed part intact, a partial tail cut.
void DistributionCacheWriter::reopen(Impl& impl, const CacheProvenance& prov, const config::FieldOrigins* job) {
  const std::string& path = path_;
  verify_cache_file(path);
  // From here on the file changes (HDF5 updates its superblock even on a read-write open); a new
  // sidecar is written when it is closed again, also when this function fails.
  remove_sidecar(path);
  try {
    if (H5Fis_hdf5(path.c_str()) <= 0) fail("{}: exists and is not an HDF5 file (not a distribution cache)", path);
    impl.file = h5::File(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT),
                                       "{}: cannot open the distribution cache to continue", path));
    const CacheProvenance cached = read_provenance_from(impl.file, path);
    check_provenance(path, cached, prov, job ? *job : config::FieldOrigins{});
    segments_ = h5::read_attr_i64(impl.file, "segments_done", path);
    rows_ = h5::read_attr_i64(impl.file, "rows_done", path);
    complete_ = h5::read_attr_i64(impl.file, "complete", path) != 0;
    resumed_ = true;
    for (int i = 0; i < 4; ++i)
      impl.rows[i] = h5::Dataset(h5::check_id(H5Dopen2(impl.file, kRowSets[i].name, H5P_DEFAULT),
                                               "{}: no dataset '{}' (damaged cache)", path, kRowSets[i].name));
    for (int i = 0; i < 6; ++i)
      impl.segs[i] = h5::Dataset(h5::check_id(H5Dopen2(impl.file, kSegSets[i].name, H5P_DEFAULT),
                                               "{}: no dataset '{}' (damaged cache)", path, kSegSets[i].name));
    impl.offsets = h5::Dataset(
        h5::check_id(H5Dopen2(impl.file, "row_offsets", H5P_DEFAULT), "{}: no dataset 'row_offsets'", path));
    check_and_cut_tail(impl);
  } catch (...) {
    for (auto& d : impl.rows) d.reset();
    for (auto& d : impl.segs) d.reset();
    impl.offsets.reset();
    if (impl.file.close() >= 0 && H5Fis_hdf5(path.c_str()) > 0) {
      try {
        write_sidecar(path);
      } catch (const Error&) {
      }
    }
    throw;
  }
}

// Verifies the committed part of a reopened cache, then cuts off any partial tail past it.
void DistributionCacheWriter::check_and_cut_tail(Impl& impl) {
  const std::string& path = path_;
  for (int i = 0; i < 4; ++i)
    if (extent0(impl.rows[i]) < hsize_t(rows_))
      fail("{}: '{}' has {} rows, {} committed (damaged cache; delete it)", path, kRowSets[i].name,
           extent0(impl.rows[i]), rows_);
  for (int i = 0; i < 6; ++i)
    if (extent0(impl.segs[i]) < hsize_t(segments_))
      fail("{}: '{}' has {} entries, {} committed (damaged cache; delete it)", path, kSegSets[i].name,
           extent0(impl.segs[i]), segments_);
  if (extent0(impl.offsets) < hsize_t(segments_ + 1))
    fail("{}: 'row_offsets' is shorter than the {} committed segments (damaged cache; delete it)", path, segments_);
  int64_t end = -1;
  read_rows(impl.offsets, H5T_NATIVE_INT64, 1, 1, hsize_t(segments_), 1, &end, "row_offsets", path);
  if (end != rows_)
    fail("{}: row_offsets[{}] = {} but rows_done = {} (damaged cache; delete it)", path, segments_, end, rows_);
  bool cut = false;
  for (int i = 0; i < 4; ++i) {
    if (extent0(impl.rows[i]) == hsize_t(rows_)) continue;
    cut = true;
    hsize_t d[2] = {hsize_t(rows_), hsize_t(k_)};
    h5::check_status(H5Dset_extent(impl.rows[i], d), "{}: cannot truncate '{}'", path, kRowSets[i].name);
  }
  for (int i = 0; i < 6; ++i) {
    if (extent0(impl.segs[i]) == hsize_t(segments_)) continue;
    cut = true;
    hsize_t d[1] = {hsize_t(segments_)};
    h5::check_status(H5Dset_extent(impl.segs[i], d), "{}: cannot truncate '{}'", path, kSegSets[i].name);
  }
  if (extent0(impl.offsets) != hsize_t(segments_ + 1)) {
    cut = true;
    hsize_t d[1] = {hsize_t(segments_ + 1)};
    h5::check_status(H5Dset_extent(impl.offsets, d), "{}: cannot truncate 'row_offsets'", path);
  }
  if (cut) {
    spdlog::warn("{}: cut off a partial batch past the {} committed segments (an interrupted run)", path, segments_);
    H5Fflush(impl.file, H5F_SCOPE_GLOBAL);
  }
}

void DistributionCacheWriter::create(Impl& impl, const CacheProvenance& prov) {
  const std::string& path = path_;
  impl.file = h5::File(h5::check_id(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT),
                                    "{}: cannot create the distribution cache", path));
  write_provenance(impl.file, prov, path);
  for (const auto& d : kRowSets) create_dataset(impl.file, d, k_, kRowChunk, path);
  for (const auto& d : kSegSets) create_dataset(impl.file, d, k_, kSegChunk, path);
  const DsSpec off{"row_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1};
  create_dataset(impl.file, off, k_, kSegChunk, path);
  {
    h5::Dataset p(H5Dopen2(impl.file, "probs", H5P_DEFAULT));
    h5::write_attr_string(p, "encoding", "fp16", path);
  }
  for (int i = 0; i < 4; ++i) impl.rows[i] = h5::Dataset(H5Dopen2(impl.file, kRowSets[i].name, H5P_DEFAULT));
  for (int i = 0; i < 6; ++i) impl.segs[i] = h5::Dataset(H5Dopen2(impl.file, kSegSets[i].name, H5P_DEFAULT));
  impl.offsets = h5::Dataset(H5Dopen2(impl.file, "row_offsets", H5P_DEFAULT));
  const int64_t zero = 0;
  write_rows(impl.offsets, off, 1, 0, 1, &zero, path);
  h5::write_attr_i64(impl.file, "segments_done", 0, path);
  h5::write_attr_i64(impl.file, "rows_done", 0, path);
  h5::write_attr_i64(impl.file, "complete", 0, path);
  h5::check_status(H5Fflush(impl.file, H5F_SCOPE_GLOBAL), "{}: cannot flush", path);
}

DistributionCacheWriter::~DistributionCacheWriter() {
  try {
    close();
  } catch (...) {
  }
}

void DistributionCacheWriter::close() {
  if (!impl_) return;
  std::unique_ptr<Impl> impl(std::exchange(impl_, nullptr));
  for (auto& d : impl->rows) d.reset();
  for (auto& d : impl->segs) d.reset();
  impl->offsets.reset();
  if (impl->file.close() < 0) fail("{}: error closing the distribution cache", path_);
  write_sidecar(path_);  // the bytes as this writer leaves them (verify_cache_file)
}

void DistributionCacheWriter::append(const std::vector<TeacherRows>& batch, bool commit) {
  if (!impl_) fail("{}: the cache is closed", path_);
  if (batch.empty()) return;
  h5::ErrorSilencer quiet;
  int64_t n_rows = 0;
  for (const auto& s : batch) {
    const int64_t T = s.rows();
    if (s.k != k_ || int64_t(s.status.size()) != T || int64_t(s.ids.size()) != T * k_ ||
        int64_t(s.probs.size()) != T * k_)
      fail("{}: segment {}: {} target tokens, {} statuses, {} ids, {} probs of k = {} for the cache's k = {}", path_,
           s.segment, T, s.status.size(), s.ids.size(), s.probs.size(), s.k, k_);
    n_rows += T;
  }
  std::vector<int32_t> ids, tids;
  std::vector<uint16_t> probs;
  std::vector<uint8_t> status;
  ids.reserve(size_t(n_rows * k_));
  probs.reserve(size_t(n_rows * k_));
  std::vector<int64_t> seg_id, doc, ce_tok, bytes, offs;
  std::vector<int32_t> piece;
  std::vector<double> ce;
  int64_t end = rows_;
  for (const auto& s : batch) {
    ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    probs.insert(probs.end(), s.probs.begin(), s.probs.end());
    tids.insert(tids.end(), s.target_ids.begin(), s.target_ids.end());
    status.insert(status.end(), s.status.begin(), s.status.end());
    seg_id.push_back(s.segment);
    doc.push_back(s.doc);
    piece.push_back(s.piece);
    ce.push_back(s.ce);
    ce_tok.push_back(s.ce_tokens);
    bytes.push_back(s.bytes);
    end += s.rows();
    offs.push_back(end);
  }
  const hsize_t r0 = hsize_t(rows_), s0 = hsize_t(segments_), nr = hsize_t(n_rows), ns = hsize_t(batch.size());
  write_rows(impl_->rows[0], kRowSets[0], k_, r0, nr, ids.data(), path_);
  write_rows(impl_->rows[1], kRowSets[1], k_, r0, nr, probs.data(), path_);
  write_rows(impl_->rows[2], kRowSets[2], k_, r0, nr, tids.data(), path_);
  write_rows(impl_->rows[3], kRowSets[3], k_, r0, nr, status.data(), path_);
  write_rows(impl_->segs[0], kSegSets[0], k_, s0, ns, seg_id.data(), path_);
  write_rows(impl_->segs[1], kSegSets[1], k_, s0, ns, doc.data(), path_);
  write_rows(impl_->segs[2], kSegSets[2], k_, s0, ns, piece.data(), path_);
  write_rows(impl_->segs[3], kSegSets[3], k_, s0, ns, ce.data(), path_);
  write_rows(impl_->segs[4], kSegSets[4], k_, s0, ns, ce_tok.data(), path_);
  write_rows(impl_->segs[5], kSegSets[5], k_, s0, ns, bytes.data(), path_);
  const DsSpec off{"row_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1};
  write_rows(impl_->offsets, off, 1, s0 + 1, ns, offs.data(), path_);
  // Data first, then the commit point: a run killed in between leaves a tail the next open cuts.
  h5::check_status(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "{}: cannot flush", path_);
  if (!commit) return;
  segments_ += int64_t(batch.size());
  rows_ += n_rows;
  h5::write_attr_i64(impl_->file, "rows_done", rows_, path_);
  h5::write_attr_i64(impl_->file, "segments_done", segments_, path_);
  h5::check_status(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "{}: cannot flush", path_);
}

void DistributionCacheWriter::finish(int64_t documents, int64_t skipped_blank, int64_t invalid_utf8_docs) {
  if (!impl_) fail("{}: the cache is closed", path_);
  h5::ErrorSilencer quiet;
  h5::write_attr_i64(impl_->file, "documents", documents, path_);
  h5::write_attr_i64(impl_->file, "skipped_blank_documents", skipped_blank, path_);
  h5::write_attr_i64(impl_->file, "invalid_utf8_documents", invalid_utf8_docs, path_);
  h5::write_attr_i64(impl_->file, "complete", 1, path_);
  complete_ = true;
  h5::check_status(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "{}: cannot flush", path_);
}

// ---- reader ---------------------------------------------------------------------------------------

struct DistributionCacheReader::Impl {
  std::optional<FileLock> lock;  // shared: a teach run writing this cache holds it exclusively
  h5::File file;
  h5::Dataset ids, probs, tids, status;
};

CacheProvenance DistributionCacheReader::read_provenance(const std::string& path) {
  h5::ErrorSilencer quiet;
  if (!fs::exists(path)) fail("{}: no such distribution cache", path);
  const FileLock lock(lock_path_of(path), fmt::format("the distribution cache {}", path), FileLock::Mode::kShared);
  verify_cache_file(path);
  h5::File f(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "{}: cannot open", path));
  return read_provenance_from(f, path);
}

DistributionCacheReader::DistributionCacheReader(const std::string& path, int64_t target_vocab)
    : path_(path), target_vocab_(target_vocab) {
  h5::ErrorSilencer quiet;
  if (!fs::exists(path)) fail("{}: no such distribution cache (run `fusellm teach` first)", path);
  auto impl = std::make_unique<Impl>();
  impl->lock.emplace(lock_path_of(path), fmt::format("the distribution cache {}", path), FileLock::Mode::kShared);
  verify_cache_file(path);
  impl->file = h5::File(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                                     "{}: cannot open the distribution cache", path));
  prov_ = read_provenance_from(impl->file, path);
  const int64_t S = h5::read_attr_i64(impl->file, "segments_done", path);
  const int64_t R = h5::read_attr_i64(impl->file, "rows_done", path);
  complete_ = h5::read_attr_i64(impl->file, "complete", path) != 0;
  segment_ids_ = read_all<int64_t>(impl->file, "segment_ids", H5T_NATIVE_INT64, hsize_t(S), path);
  doc_ = read_all<int64_t>(impl->file, "doc", H5T_NATIVE_INT64, hsize_t(S), path);
  piece_ = read_all<int32_t>(impl->file, "piece", H5T_NATIVE_INT32, hsize_t(S), path);
  ce_ = read_all<double>(impl->file, "ce", H5T_NATIVE_DOUBLE, hsize_t(S), path);
  ce_tokens_ = read_all<int64_t>(impl->file, "ce_tokens", H5T_NATIVE_INT64, hsize_t(S), path);
  bytes_ = read_all<int64_t>(impl->file, "bytes", H5T_NATIVE_INT64, hsize_t(S), path);
  row_offsets_ = read_all<int64_t>(impl->file, "row_offsets", H5T_NATIVE_INT64, hsize_t(S + 1), path);
  if (row_offsets_.back() != R) fail("{}: row_offsets end at {}, rows_done = {} (damaged cache)", path, row_offsets_.back(), R);
  for (int64_t i = 0; i < S; ++i)
    if (row_offsets_[size_t(i + 1)] < row_offsets_[size_t(i)]) fail("{}: row_offsets decrease at {} (damaged cache)", path, i);
  if (prov_.k < 1) fail("{}: k = {} (damaged cache)", path, prov_.k);
  // What the writer guarantees of each segment (teach.cpp: the teacher's CE on its own tokens).
  for (int64_t i = 0; i < S; ++i) {
    const size_t u = size_t(i);
    // A segment with no scored token (one source token) has CE +Inf (SegmentScores::ce: reward 0).
    const bool no_tokens = ce_tokens_[u] == 0 && ce_[u] == std::numeric_limits<double>::infinity();
    if (!(no_tokens || (std::isfinite(ce_[u]) && ce_[u] >= 0)) || ce_tokens_[u] < 0 || bytes_[u] < 0)
      fail("{}: segment {}: CE {} over {} tokens, {} bytes: not what `fusellm teach` writes (a damaged or altered "
           "cache; delete it and run teach again)",
           path, segment_ids_[u], ce_[u], ce_tokens_[u], bytes_[u]);
  }
  auto open = [&](const char* n) {
    h5::Dataset d(h5::check_id(H5Dopen2(impl->file, n, H5P_DEFAULT), "{}: no dataset '{}'", path, n));
    if (extent0(d) < hsize_t(R)) fail("{}: '{}' has {} rows, expected {} (damaged cache)", path, n, extent0(d), R);
    return d;
  };
  impl->ids = open("ids");
  impl->probs = open("probs");
  impl->tids = open("target_ids");
  impl->status = open("status");
  {
    const std::string enc = h5::read_attr_string(impl->probs, "encoding", path);
    if (enc != "fp16") fail("{}: probs encoding '{}', expected 'fp16'", path, enc);
  }
  impl_ = impl.release();
}

DistributionCacheReader::~DistributionCacheReader() { delete impl_; }

std::optional<int64_t> DistributionCacheReader::find(int64_t segment_id) const {
  // Segment ids are written in increasing order; fall back to a scan if a cache is not.
  auto it = std::lower_bound(segment_ids_.begin(), segment_ids_.end(), segment_id);
  if (it != segment_ids_.end() && *it == segment_id) return int64_t(it - segment_ids_.begin());
  for (size_t i = 0; i < segment_ids_.size(); ++i)
    if (segment_ids_[i] == segment_id) return int64_t(i);
  return std::nullopt;
}

TeacherRows DistributionCacheReader::read(int64_t segment_id) const {
  const auto i = find(segment_id);
  if (!i) fail("{}: segment {} is not in the cache ({} segments{})", path_, segment_id, segments(),
               complete_ ? "" : "; the teach run did not finish: run it again to continue");
  return read_index(*i);
}

TeacherRows DistributionCacheReader::read_index(int64_t i) const {
  if (i < 0 || i >= segments()) fail("{}: segment index {} out of range [0, {})", path_, i, segments());
  h5::ErrorSilencer quiet;
  TeacherRows s;
  const size_t u = size_t(i);
  s.segment = segment_ids_[u];
  s.doc = doc_[u];
  s.piece = piece_[u];
  s.ce = ce_[u];
  s.ce_tokens = ce_tokens_[u];
  s.bytes = bytes_[u];
  const hsize_t r0 = hsize_t(row_offsets_[u]), n = hsize_t(row_offsets_[u + 1] - row_offsets_[u]);
  const int64_t k = prov_.k;
  s.k = k;
  s.target_ids.resize(n);
  s.status.resize(n);
  read_rows(impl_->tids, H5T_NATIVE_INT32, 1, 1, r0, n, s.target_ids.data(), "target_ids", path_);
  read_rows(impl_->status, H5T_NATIVE_UINT8, 1, 1, r0, n, s.status.data(), "status", path_);
  s.resize_rows(int64_t(n));
  read_rows(impl_->ids, H5T_NATIVE_INT32, 2, k, r0, n, s.ids.data(), "ids", path_);
  read_rows(impl_->probs, H5T_NATIVE_UINT16, 2, k, r0, n, s.probs.data(), "probs", path_);
  check_rows(s);
  return s;
}

void DistributionCacheReader::check_rows(const TeacherRows& s) const {
  // What the writer guarantees (teach.cpp): target ids within the target vocabulary (-1 = an empty
  // slot), probabilities in [0, 1], and each row a (sub-)distribution: its sum is at most 1 up to
  // rounding. The bound: the fp32 top-k softmax (and the alignment's merging) sums k terms, each
  // with a relative error of at most 2^-24; storing each in fp16 (round to nearest, 10 stored
  // mantissa bits) adds a relative error of at most 2^-11 to each term, so to the sum, and at most
  // 2^-25 absolute to a subnormal one. The sum of k fp16 values is exact in double. Hence
  //   sum <= (1 + (k+1) 2^-24)(1 + 2^-11) + k 2^-25  <=  1 + 2^-11 + k 2^-22.
  const int64_t k = prov_.k;
  const double max_sum = 1.0 + std::ldexp(1.0, -11) + double(k) * std::ldexp(1.0, -22);
  auto bad = [&](int64_t t, const std::string& what) {
    fail("{}: segment {}, row {}: {}: not what `fusellm teach` writes (a damaged or altered cache; delete it and run "
         "teach again)",
         path_, s.segment, t, what);
  };
  for (int64_t t = 0; t < int64_t(s.target_ids.size()); ++t) {
    const int32_t tid = s.target_ids[size_t(t)];
    if (tid < 0 || (target_vocab_ > 0 && tid >= target_vocab_))
      bad(t, fmt::format("target token id {} outside the target vocabulary of {}", tid, target_vocab_));
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t id = s.id(t, j);
      const float p = s.prob(t, j);
      if (id < -1 || (target_vocab_ > 0 && id >= target_vocab_))
        bad(t, fmt::format("slot {} holds id {}, outside the target vocabulary of {}", j, id, target_vocab_));
      if (!(p >= 0.f && p <= 1.f)) bad(t, fmt::format("slot {} (id {}) holds probability {}, outside [0, 1]", j, id, p));
      sum += double(p);
    }
    if (sum > max_sum)
      bad(t, fmt::format("its probabilities sum to {:.9g}, more than 1 + fp16 rounding ({:.9g} for k = {})", sum,
                         max_sum, k));
  }
}

}  // namespace fusellm
