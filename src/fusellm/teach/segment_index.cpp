#include "fusellm/teach/segment_index.hpp"

#include <hdf5.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"
#include "fusellm/io/file_checksum.hpp"
#include "fusellm/io/hdf5_attribute.hpp"
#include "fusellm/io/hdf5_dataset.hpp"
#include "fusellm/io/hdf5_handle.hpp"
#include "fusellm/io/hdf5_whole_file.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"

namespace fs = std::filesystem;

namespace fusellm {

namespace {

constexpr const char* kFormat = "fusellm segment index v2";  // v2: doc_verbatim

// A dataset of `n` entries, one per segment or per document.
template <class T>
std::vector<T> get(hid_t file, const char* name, size_t n, const std::string& path) {
  std::vector<T> v = h5::read_vector<T>(file, name, path);
  if (v.size() != n) fail("{}: dataset '{}' has {} entries, expected {} (damaged segment index)", path, name, v.size(), n);
  return v;
}

// "name size mtime" of a file, for valid_for.
std::string stamp(const fs::path& p) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  if (ec) return fmt::format("{} missing", p.string());
  const auto t = fs::last_write_time(p, ec).time_since_epoch().count();
  return fmt::format("{} {} {}", p.string(), size, t);
}

// The regular files a tokenizer path stands for: itself, or the files directly in its directory.
std::vector<std::string> tokenizer_stamps(const std::string& path) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {stamp(path)};
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) out.push_back(stamp(e.path()));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string SegmentIndex::valid_for_job(const JobConfig& job, const JobTokenizers& toks) {
  nlohmann::json j;
  j["corpus"] = fs::weakly_canonical(job.corpus.path).string();
  j["format"] = std::string(corpus_format_names().name(job.corpus.format));
  j["text_field"] = job.corpus.text_field;
  std::vector<std::string> files;
  for (const auto& f : corpus_files(job.corpus.path, job.corpus.format)) files.push_back(stamp(f));
  j["files"] = files;
  j["max_tokens"] = Segmenter::max_tokens_of(job.corpus);
  j["target_tokenizer"] = job.target.tokenizer;
  nlohmann::json t = nlohmann::json::object();
  for (const auto& p : toks.paths) t[p] = tokenizer_stamps(p);
  j["tokenizers"] = t;
  return j.dump();
}

int64_t SegmentIndex::doc_of(int64_t id) const {
  if (id < 0 || id >= segments()) fail("segment index: segment {} of {}", id, segments());
  const int64_t d = doc[size_t(id)];
  if (d < 0 || d >= int64_t(doc_file.size()) || doc_file[size_t(d)] < 0 || doc_file[size_t(d)] >= int32_t(files.size()))
    fail("segment index: segment {} names document {} of {} (damaged index)", id, d, doc_file.size());
  return d;
}

std::string SegmentIndex::document_text(int64_t d, const CorpusConfig& corpus) const {
  return read_document_text(corpus, files[size_t(doc_file[size_t(d)])], doc_offset[size_t(d)], doc_line[size_t(d)]);
}

Segment SegmentIndex::segment(int64_t id, const CorpusConfig& corpus) const {
  const int64_t d = doc_of(id);
  return doc_verbatim[size_t(d)] ? segment_in_place(id) : segment_of(id, document_text(d, corpus));
}

Segment SegmentIndex::with_text(int64_t id, std::string text) const {
  const int64_t d = doc[size_t(id)];
  Segment s;
  s.id = id;
  s.doc = d;
  s.piece = piece[size_t(id)];
  s.byte_begin = byte_begin[size_t(id)];
  s.text = std::move(text);
  s.doc_file = doc_file[size_t(d)];
  s.doc_offset = doc_offset[size_t(d)];
  s.doc_line = doc_line[size_t(d)];
  s.doc_verbatim = doc_verbatim[size_t(d)] != 0;
  return s;
}

Segment SegmentIndex::segment_in_place(int64_t id) const {
  const int64_t d = doc_of(id);
  const size_t i = size_t(id);
  if (byte_begin[i] < 0 || byte_end[i] < byte_begin[i])
    fail("segment index: segment {} has bytes [{}, {}) (damaged index)", id, byte_begin[i], byte_end[i]);
  return with_text(id, read_file_range(files[size_t(doc_file[size_t(d)])], byte_begin[i], byte_end[i]));
}

Segment SegmentIndex::segment_of(int64_t id, const std::string& text) const {
  const int64_t d = doc_of(id);
  const size_t i = size_t(id);
  if (byte_begin[i] < 0 || byte_end[i] < byte_begin[i] || byte_end[i] > int64_t(text.size()))
    fail("{}:{}: the document has {} bytes, the segment index says segment {} is bytes [{}, {}): the corpus changed "
         "since the index was written (delete {} to cut it again)",
         files[size_t(doc_file[size_t(d)])], doc_line[size_t(d)], text.size(), id, byte_begin[i], byte_end[i],
         "segment_index.h5");
  return with_text(id, text.substr(size_t(byte_begin[i]), size_t(byte_end[i] - byte_begin[i])));
}

void SegmentIndex::save(const std::string& path) const {
  h5::write_whole_file(path, "the segment index", [&](hid_t f) {
    h5::write_vector(f, "lengths", lengths, H5T_STD_I64LE, path);
    h5::write_vector(f, "doc", doc, H5T_STD_I64LE, path);
    h5::write_vector(f, "piece", piece, H5T_STD_I32LE, path);
    h5::write_vector(f, "byte_begin", byte_begin, H5T_STD_I64LE, path);
    h5::write_vector(f, "byte_end", byte_end, H5T_STD_I64LE, path);
    h5::write_vector(f, "doc_file", doc_file, H5T_STD_I32LE, path);
    h5::write_vector(f, "doc_offset", doc_offset, H5T_STD_I64LE, path);
    h5::write_vector(f, "doc_line", doc_line, H5T_STD_I64LE, path);
    h5::write_vector(f, "doc_verbatim", doc_verbatim, H5T_STD_U8LE, path);
    h5::write_attr_string(f, "format", kFormat, path);
    h5::write_attr_string(f, "files", nlohmann::json(files).dump(), path);
    h5::write_attr_i64(f, "complete", complete ? 1 : 0, path);
    h5::write_attr_string(f, "valid_for", valid_for, path);
  });
}

SegmentIndex SegmentIndex::load(const std::string& path) {
  // Never parsed unverified: an index without its sidecar is not used (it is cut again).
  if (!fs::exists(sidecar_path(path))) fail("{}: no checksum file {}", path, sidecar_path(path));
  const h5::ErrorSilencer quiet;
  h5::File f = h5::open_verified(path, "segment index");
  if (!h5::has_attr(f, "format") || h5::read_attr_string(f, "format", path) != kFormat)
    fail("{}: not a fusellm segment index ('{}' expected in attribute 'format')", path, kFormat);
  SegmentIndex x;
  x.lengths = h5::read_vector<int64_t>(f, "lengths", path);
  const size_t n = x.lengths.size();
  x.doc = get<int64_t>(f, "doc", n, path);
  x.piece = get<int32_t>(f, "piece", n, path);
  x.byte_begin = get<int64_t>(f, "byte_begin", n, path);
  x.byte_end = get<int64_t>(f, "byte_end", n, path);
  x.doc_file = h5::read_vector<int32_t>(f, "doc_file", path);
  x.doc_offset = get<int64_t>(f, "doc_offset", x.doc_file.size(), path);
  x.doc_line = get<int64_t>(f, "doc_line", x.doc_file.size(), path);
  x.doc_verbatim = get<uint8_t>(f, "doc_verbatim", x.doc_file.size(), path);
  x.files = nlohmann::json::parse(h5::read_attr_string(f, "files", path)).get<std::vector<std::string>>();
  x.complete = h5::read_attr_i64(f, "complete", path) != 0;
  x.valid_for = h5::read_attr_string(f, "valid_for", path);
  return x;
}

std::optional<SegmentIndex> load_segment_index(const std::string& path, const std::string& valid_for, int64_t limit) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  std::optional<SegmentIndex> x;
  try {
    x = SegmentIndex::load(path);
  } catch (const std::exception& e) {
    spdlog::warn("segment index {}: not used ({}); the corpus is cut again", path, e.what());
    return std::nullopt;
  }
  if (x->valid_for != valid_for) {
    spdlog::info("segment index {}: written for another corpus, tokenizer or segment bound; the corpus is cut again",
                 path);
    return std::nullopt;
  }
  if (!x->complete && (limit < 0 || limit > x->segments())) {
    spdlog::info("segment index {}: holds the first {} segments only; the corpus is cut again", path, x->segments());
    return std::nullopt;
  }
  if (limit >= 0 && limit < x->segments()) {
    const size_t n = size_t(limit);
    for (auto* v : {&x->lengths, &x->doc, &x->byte_begin, &x->byte_end}) v->resize(n);
    x->piece.resize(n);
    x->complete = false;
  }
  return x;
}

std::string segment_index_path(const JobConfig& job) {
  return (fs::path(job.job.output_dir) / "segment_index.h5").string();
}

}  // namespace fusellm
