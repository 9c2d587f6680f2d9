#include "fusellm/data/corpus.hpp"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/io/hf_config.hpp"

namespace fusellm {

namespace fs = std::filesystem;

std::string sanitize_utf8(std::string_view s, int64_t* replaced, size_t* first_invalid) {
  static constexpr char kFFFD[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  int64_t n_rep = 0;
  size_t first = std::string_view::npos;
  const auto note = [&](size_t at) {
    if (n_rep++ == 0) first = at;
  };
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.push_back(char(c));
      ++i;
      continue;
    }
    // Expected length and the allowed range of the second byte (Unicode Table 3-7).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0) {  // a continuation byte or C0, C1, F5..FF: one replacement for the byte
      out += kFFFD;
      note(i);
      ++i;
      continue;
    }
    // The maximal subpart: as many bytes as continue a valid sequence.
    size_t j = 1;
    while (j < len && i + j < n) {
      const unsigned char b = p[i + j];
      const bool ok = j == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++j;
    }
    if (j == len) {
      out.append(s.substr(i, len));
    } else {
      out += kFFFD;
      note(i);
    }
    i += j;
  }
  if (replaced) *replaced = n_rep;
  if (first_invalid) *first_invalid = first;
  return out;
}

bool is_blank(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
      continue;
    }
    auto starts = [&](std::string_view pre) { return s.substr(i, pre.size()) == pre; };
    if (starts("\xC2\xA0") || starts("\xC2\x85")) {  // NBSP, NEL
      i += 2;
      continue;
    }
    if (starts("\xE3\x80\x80") || starts("\xEF\xBB\xBF") || starts("\xE1\x9A\x80") ||  // U+3000, BOM, U+1680
        starts("\xE2\x80\xA8") || starts("\xE2\x80\xA9") || starts("\xE2\x80\xAF") ||  // U+2028/9, U+202F
        starts("\xE2\x81\x9F")) {                                                     // U+205F
      i += 3;
      continue;
    }
    // U+2000..U+200B
    if (i + 2 < s.size() && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        static_cast<unsigned char>(s[i + 2]) >= 0x80 && static_cast<unsigned char>(s[i + 2]) <= 0x8B) {
      i += 3;
      continue;
    }
    return false;
  }
  return true;
}

namespace {
bool is_jsonl_name(const fs::path& p) {
  const auto e = p.extension().string();
  return e == ".jsonl" || e == ".json";
}
bool wanted(const fs::path& p, CorpusFormat f) {
  const auto e = p.extension().string();
  if (f == CorpusFormat::JSONL) return is_jsonl_name(p);
  if (f == CorpusFormat::Text) return e == ".txt";
  return is_jsonl_name(p) || e == ".txt";
}
}  // namespace

std::vector<std::string> corpus_files(const std::string& path, CorpusFormat format) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("corpus '{}' does not exist", path);
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::follow_directory_symlink, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) fail("corpus '{}': cannot list: {}", path, ec.message());
    const auto name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && wanted(it->path(), format)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) fail("corpus '{}': a directory with no .jsonl, .json or .txt file", path);
  return out;
}

CorpusReader::CorpusReader(const std::string& path, CorpusFormat format, std::string text_field)
    : path_(path), format_(format), field_(std::move(text_field)), files_(corpus_files(path, format)) {
  stats_.files = int64_t(files_.size());
}
CorpusReader CorpusReader::from_config(const CorpusConfig& corpus) {
  return CorpusReader(corpus.path, corpus.format, corpus.text_field);
}
CorpusReader::~CorpusReader() = default;
CorpusReader::CorpusReader(CorpusReader&&) noexcept = default;
CorpusReader& CorpusReader::operator=(CorpusReader&&) noexcept = default;

bool CorpusReader::open_next_file() {
  in_.reset();
  if (file_i_ >= files_.size()) return false;
  const std::string& f = files_[file_i_];
  jsonl_ = is_jsonl_file(f, format_);
  in_ = std::make_unique<std::ifstream>(f, std::ios::binary);
  if (!*in_) fail("{}: cannot open the corpus file", f);
  line_ = 0;
  offset_ = 0;
  return true;
}

namespace {

// The text field of a JSONL line (a '\r' before its '\n' already gone), its invalid UTF-8
// replaced: `rep` counts the replacements in the raw line, `bad` is where the first one is.
std::string jsonl_text(const std::string& raw, const std::string& field, const std::string& f, int64_t line,
                       int64_t& rep, size_t& bad) {
  const std::string clean = sanitize_utf8(raw, &rep, &bad);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(clean);
  } catch (const nlohmann::json::exception& e) {
    fail("{}:{}: not a JSON value: {}", f, line, e.what());
  }
  if (!j.is_object()) fail("{}:{}: expected a JSON object with a \"{}\" field, found {}", f, line, field, j.type_name());
  auto it = j.find(field);
  if (it == j.end()) fail("{}:{}: no \"{}\" field (the job's [corpus].text_field)", f, line, field);
  if (!it->is_string()) fail("{}:{}: field \"{}\": expected a string, found {}", f, line, field, it->type_name());
  // Escapes (\u...) can still make invalid text only as lone surrogates, which the parser
  // refuses; the replaced raw bytes are what we count.
  std::string text = it->get<std::string>();
  if (rep > 0) {
    int64_t rep2 = 0;
    text = sanitize_utf8(text, &rep2);
  }
  return text;
}

}  // namespace

bool is_jsonl_file(const std::string& file, CorpusFormat format) {
  return format == CorpusFormat::JSONL || (format == CorpusFormat::Auto && is_jsonl_name(file));
}

std::string read_document_text(const CorpusConfig& corpus, const std::string& file, int64_t offset, int64_t line) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open the corpus file", file);
  std::string raw;
  int64_t rep = 0;
  size_t bad = 0;
  if (!is_jsonl_file(file, corpus.format)) {
    raw.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return sanitize_utf8(raw, &rep, &bad);
  }
  in.seekg(offset);
  if (!in || !std::getline(in, raw)) fail("{}:{}: cannot read the line at byte offset {}", file, line, offset);
  if (!raw.empty() && raw.back() == '\r') raw.pop_back();
  return jsonl_text(raw, corpus.text_field, file, line, rep, bad);
}

std::string read_file_range(const std::string& file, int64_t begin, int64_t end) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open the corpus file", file);
  std::string out(size_t(std::max<int64_t>(end - begin, 0)), '\0');
  in.seekg(begin);
  if (!in.read(out.data(), std::streamsize(out.size())))
    fail("{}: cannot read bytes [{}, {}) (the file is shorter: it changed since it was cut)", file, begin, end);
  return out;
}

bool CorpusReader::next(Document& doc) {
  for (;;) {
    if (!in_ && !open_next_file()) return false;
    const std::string& f = files_[file_i_];
    const size_t fi = file_i_;  // the text branch moves on before the document is returned
    std::string raw;
    int64_t line = 0;
    if (jsonl_) {
      if (!std::getline(*in_, raw)) {
        ++file_i_;
        in_.reset();
        continue;
      }
      line = ++line_;
      const int64_t line_offset = offset_;
      offset_ += int64_t(raw.size()) + 1;  // and the '\n'
      if (!raw.empty() && raw.back() == '\r') raw.pop_back();
      if (is_blank(raw)) continue;  // a blank line is no document
      int64_t rep = 0;
      size_t bad = 0;
      doc.text = jsonl_text(raw, field_, f, line, rep, bad);
      doc.line = line;
      doc.offset = line_offset;
      doc.verbatim = false;
      if (is_blank(doc.text)) {
        ++stats_.skipped_blank;
        continue;
      }
      if (rep > 0) note_invalid(f, line, line_offset + int64_t(bad), rep);
    } else {
      raw.assign(std::istreambuf_iterator<char>(*in_), std::istreambuf_iterator<char>());
      ++file_i_;
      in_.reset();
      int64_t rep = 0;
      size_t bad = 0;
      doc.text = sanitize_utf8(raw, &rep, &bad);
      doc.line = 0;
      doc.offset = 0;
      doc.verbatim = rep == 0;
      if (is_blank(doc.text)) {
        ++stats_.skipped_blank;
        continue;
      }
      if (rep > 0) note_invalid(f, 0, int64_t(bad), rep);
    }
    doc.file = f;
    doc.file_index = int32_t(fi);
    doc.index = stats_.documents++;
    stats_.bytes += int64_t(doc.text.size());
    return true;
  }
}

void CorpusReader::note_invalid(const std::string& file, int64_t line, int64_t offset, int64_t replaced) {
  // A handful of warnings find a corrupted file; thousands would bury the log (all are counted).
  constexpr int64_t kShown = 5;
  const std::string where =
      line > 0 ? fmt::format("{}:{}: byte offset {}", file, line, offset) : fmt::format("{}: byte offset {}", file, offset);
  if (stats_.invalid_utf8_docs == 0) stats_.first_invalid_utf8 = where;
  if (stats_.invalid_utf8_docs < kShown)
    spdlog::warn("{}: invalid UTF-8 in a corpus document: {} sequence(s) replaced by U+FFFD{}", where, replaced,
                 stats_.invalid_utf8_docs + 1 == kShown ? " (further documents with invalid UTF-8 are only counted)" : "");
  ++stats_.invalid_utf8_docs;
  stats_.replaced_sequences += replaced;
}

std::vector<Document> read_corpus(const std::string& path, CorpusFormat format, const std::string& text_field,
                                  CorpusStats* stats) {
  CorpusReader r(path, format, text_field);
  std::vector<Document> out;
  Document d;
  while (r.next(d)) out.push_back(d);
  if (stats) *stats = r.stats();
  return out;
}

}  // namespace fusellm
