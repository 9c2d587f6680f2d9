// TorchZipFile: libzip over the file's memory map, data.pkl through the non-executing pickle
// reader, and each tensor bound to the bytes of its storage entry.
#include "fusellm/io/torch_zip.hpp"

#include <zip.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "fusellm/core/error.hpp"
#include "fusellm/io/torch_pickle.hpp"

namespace fusellm {

namespace {

static_assert(std::endian::native == std::endian::little, "fusellm reads little-endian storages in place");

// data.pkl of a 70B model is well under 1 MB; a larger one is not a state dict.
constexpr zip_uint64_t kMaxPickleBytes = 256u << 20;

// A libzip source over the memory map that records where libzip last read: libzip 1.7 has no call
// that gives an entry's data offset, but opening a STORED entry and reading one byte makes libzip
// (after it has checked the local header against the central directory) read exactly that byte
// at the data offset, which is then where the storage begins in the map.
struct MapSource {
  std::span<const std::byte> bytes;
  zip_uint64_t pos = 0, last_read_at = 0, last_read_len = 0;
  zip_error_t error{};
};

zip_int64_t map_source(void* user, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
  auto* s = static_cast<MapSource*>(user);
  switch (cmd) {
    case ZIP_SOURCE_OPEN: s->pos = 0; return 0;
    case ZIP_SOURCE_READ: {
      const zip_uint64_t n = std::min<zip_uint64_t>(len, s->bytes.size() - s->pos);
      s->last_read_at = s->pos, s->last_read_len = len;
      if (n) std::memcpy(data, s->bytes.data() + s->pos, n);
      s->pos += n;
      return zip_int64_t(n);
    }
    case ZIP_SOURCE_CLOSE: case ZIP_SOURCE_FREE: return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = s->bytes.size();
      st->valid |= ZIP_STAT_SIZE;
      return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_SEEK: {
      const zip_int64_t p = zip_source_seek_compute_offset(s->pos, s->bytes.size(), data, len, &s->error);
      if (p < 0) return -1;
      s->pos = zip_uint64_t(p);
      return 0;
    }
    case ZIP_SOURCE_TELL: return zip_int64_t(s->pos);
    case ZIP_SOURCE_SUPPORTS: return ZIP_SOURCE_SUPPORTS_SEEKABLE;
    default: zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0); return -1;
  }
}

struct ZipDiscard {
  void operator()(zip_t* z) const { zip_discard(z); }  // read-only: close without writing
};
struct ZipFileClose {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using Zip = std::unique_ptr<zip_t, ZipDiscard>;
using ZipEntry = std::unique_ptr<zip_file_t, ZipFileClose>;

// The legacy format is a pickle (PROTO 0x80) of a magic number, not a zip ("PK").
void refuse_legacy(const MappedFile& f) {
  if (f.size() == 0 || f.bytes()[0] != std::byte{0x80}) return;
  fail("{}: a PyTorch checkpoint in the legacy format (torch < 1.6, or _use_new_zipfile_serialization=False), "
       "a bare pickle that fusellm does not read; convert it once with torch >= 1.13: python -c \"import torch; "
       "torch.save(torch.load('{}', weights_only=True), 'NEW.bin')\" and put NEW.bin in its place, or save the model "
       "with transformers' save_pretrained(DIR, safe_serialization=True)",
       f.path(), f.path());
}

zip_t* try_open(MapSource& src, int flags, zip_error_t& err) {
  zip_source_t* s = zip_source_function_create(map_source, &src, &err);
  if (!s) return nullptr;
  zip_t* z = zip_open_from_source(s, flags, &err);
  if (!z) zip_source_free(s);
  return z;
}

// libzip says "Not a zip archive" both for a damaged end of central directory and for an entry
// that runs past the end; reopened without the consistency check, the entry can be named.
std::string out_of_bounds_entry(MapSource& src) {
  zip_error_t err;
  zip_error_init(&err);
  const Zip z(try_open(src, ZIP_RDONLY, err));
  zip_error_fini(&err);
  if (!z) return "";
  const zip_int64_t n = zip_get_num_entries(z.get(), 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    if (zip_stat_index(z.get(), zip_uint64_t(i), 0, &st) == 0 && st.comp_size > src.bytes.size())
      return fmt::format("entry '{}' is out of bounds: the central directory gives it {} bytes, more than the whole "
                         "file ({} bytes)",
                         st.name, st.comp_size, src.bytes.size());
  }
  return "";
}

Zip open_zip(MapSource& src, const std::string& path) {
  zip_error_t err;
  zip_error_init(&err);
  // ZIP_CHECKCONS: libzip compares every local header with its central-directory record and
  // checks that the entries lie inside the archive, before anything here trusts an offset.
  zip_t* z = try_open(src, ZIP_RDONLY | ZIP_CHECKCONS, err);
  if (z) return Zip(z);
  const std::string why = zip_error_strerror(&err);
  zip_error_fini(&err);
  if (const std::string entry = out_of_bounds_entry(src); !entry.empty()) fail("{}: {}", path, entry);
  fail("{}: not a readable zip archive (libzip: {}); PyTorch checkpoints since torch 1.6 are zip archives: is the "
       "file truncated or damaged?",
       path, why);
}

std::vector<std::byte> read_entry(zip_t* z, zip_uint64_t index, const std::string& path, const char* name,
                                  zip_uint64_t limit) {
  zip_stat_t st;
  if (zip_stat_index(z, index, 0, &st) != 0) fail("{}: entry '{}': {}", path, name, zip_strerror(z));
  if (st.size > limit) fail("{}: entry '{}' has {} bytes, more than the {} allowed", path, name, st.size, limit);
  ZipEntry f(zip_fopen_index(z, index, 0));
  if (!f) fail("{}: entry '{}': {}", path, name, zip_strerror(z));
  std::vector<std::byte> out(st.size);
  if (zip_fread(f.get(), out.data(), st.size) != zip_int64_t(st.size))
    fail("{}: entry '{}': cannot read its {} bytes: {}", path, name, st.size, zip_file_strerror(f.get()));
  return out;
}

// The archive's top-level folder: the one whose data.pkl is the state dict (torch names it after
// the file, "archive" since torch 2.x).
std::string archive_prefix(zip_t* z, const std::string& path) {
  std::vector<std::string> found;
  const zip_int64_t n = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const std::string name = zip_get_name(z, zip_uint64_t(i), 0);
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash) == "/data.pkl") found.push_back(name.substr(0, slash));
  }
  if (found.size() != 1)
    fail("{}: a zip archive but not a PyTorch checkpoint: {} '<folder>/data.pkl' entries, expected one", path,
         found.size());
  return found[0];
}

bool contiguous(const TorchTensorRef& t) {
  int64_t expect = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] != 1 && t.stride[i] != expect) return false;  // a size-1 dimension's stride is free
    if (__builtin_mul_overflow(expect, t.shape[i], &expect)) return false;  // a hostile size; no such storage
  }
  return true;
}

// Binds the storages and tensors of one archive.
class TorchZipReader {
 public:
  TorchZipReader(zip_t* z, MapSource& src, const std::string& path, std::string prefix)
      : z_(z), src_(src), path_(path), prefix_(std::move(prefix)) {}
  std::span<const std::byte> storage(const std::string& key, std::map<std::string, std::vector<std::byte>>& copies,
                                     size_t& mapped);

 private:
  zip_t* z_;
  MapSource& src_;
  const std::string& path_;
  std::string prefix_;
  std::map<std::string, std::span<const std::byte>> seen_;
  std::span<const std::byte> in_place(zip_uint64_t index, const std::string& name, zip_uint64_t size);
};

std::span<const std::byte> TorchZipReader::in_place(zip_uint64_t index, const std::string& name, zip_uint64_t size) {
  ZipEntry f(zip_fopen_index(z_, index, ZIP_FL_COMPRESSED));
  if (!f) fail("{}: entry '{}': {}", path_, name, zip_strerror(z_));
  std::byte first;
  src_.last_read_len = 0;
  if (zip_fread(f.get(), &first, 1) != 1)
    fail("{}: entry '{}': cannot read it: {}", path_, name, zip_file_strerror(f.get()));
  const zip_uint64_t at = src_.last_read_at;
  // libzip read more than the one byte (a buffering layer), or not from the map: the caller copies.
  if (src_.last_read_len != 1 || at >= src_.bytes.size() || src_.bytes[at] != first) return {};
  if (size > src_.bytes.size() - at)
    fail("{}: entry '{}' is out of bounds: its {} bytes at offset {} run past the end of the file ({} bytes)", path_,
         name, size, at, src_.bytes.size());
  return src_.bytes.subspan(at, size);
}

std::span<const std::byte> TorchZipReader::storage(const std::string& key,
                                                   std::map<std::string, std::vector<std::byte>>& copies,
                                                   size_t& mapped) {
  if (const auto it = seen_.find(key); it != seen_.end()) return it->second;
  const std::string name = prefix_ + "/data/" + key;
  const zip_int64_t index = zip_name_locate(z_, name.c_str(), 0);
  if (index < 0) fail("{}: storage '{}' is named by data.pkl but the archive has no entry '{}'", path_, key, name);
  zip_stat_t st;
  if (zip_stat_index(z_, zip_uint64_t(index), 0, &st) != 0) fail("{}: entry '{}': {}", path_, name, zip_strerror(z_));
  std::span<const std::byte> bytes;
  const bool stored = st.comp_method == ZIP_CM_STORE && st.encryption_method == ZIP_EM_NONE;
  if (stored && st.size > 0) bytes = in_place(zip_uint64_t(index), name, st.size);
  if (bytes.size() == st.size && st.size > 0) {
    ++mapped;
  } else {
    auto& buf = copies[key] = read_entry(z_, zip_uint64_t(index), path_, name.c_str(), UINT64_MAX);
    bytes = buf;
  }
  return seen_[key] = bytes;
}

}  // namespace

TorchZipFile::TorchZipFile(const std::string& path) : file_(path) {
  refuse_legacy(file_);
  MapSource src{file_.bytes()};
  const Zip zip = open_zip(src, file_.path());
  const std::string prefix = archive_prefix(zip.get(), path);
  if (const zip_int64_t bo = zip_name_locate(zip.get(), (prefix + "/byteorder").c_str(), 0); bo >= 0) {
    const auto order = read_entry(zip.get(), zip_uint64_t(bo), path, "byteorder", 16);
    if (std::string(reinterpret_cast<const char*>(order.data()), order.size()) != "little")
      fail("{}: the storages are big-endian (byteorder entry); fusellm reads little-endian checkpoints", path);
  }
  const std::string pkl_name = prefix + "/data.pkl";
  const auto pkl = read_entry(zip.get(), zip_uint64_t(zip_name_locate(zip.get(), pkl_name.c_str(), 0)), path,
                              pkl_name.c_str(), kMaxPickleBytes);
  TorchZipReader reader(zip.get(), src, path, prefix);
  for (TorchTensorRef& t : parse_torch_pickle(pkl, path)) {
    const size_t esize = dtype_size(t.dtype);
    if (!contiguous(t))
      fail("{}: tensor '{}' is not contiguous (shape {}, stride {}); fusellm reads contiguous tensors only: save "
           "{{k: v.contiguous() for k, v in state_dict.items()}}",
           path, t.name, shape_str(t.shape), shape_str(t.stride));
    const std::span<const std::byte> storage = reader.storage(t.storage_key, copies_, mapped_);
    uint64_t count = 1, end = 0;
    for (int64_t d : t.shape)
      if (__builtin_mul_overflow(count, uint64_t(d), &count)) fail("{}: tensor '{}': too many elements", path, t.name);
    if (__builtin_add_overflow(count, uint64_t(t.offset), &end) || __builtin_mul_overflow(end, esize, &end) ||
        end > storage.size())
      fail("{}: tensor '{}' ({} elements of {} from element {}) runs past the end of its storage '{}' ({} bytes): the "
           "storage is shorter than its tensor",
           path, t.name, count, dtype_name(t.dtype), t.offset, t.storage_key, storage.size());
    TensorInfo info{t.name, t.dtype, t.shape, storage.subspan(size_t(t.offset) * esize, count * esize), path};
    if (!tensors_.emplace(t.name, std::move(info)).second) fail("{}: tensor '{}' appears twice in data.pkl", path, t.name);
  }
}

}  // namespace fusellm
