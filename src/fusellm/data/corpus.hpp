#pragma once
// The corpus as the job names it (DESIGN.md section 5, [corpus]): a JSONL file whose lines are
// objects with a text field, a plain text file (one document), or a directory of those (every
// .jsonl/.json/.txt below it, hidden entries skipped, in byte order of their paths). Documents come
// out in a deterministic order, numbered from 0, so every rank and every restart sees the same
// stream (DESIGN.md 2.0).
//
// Documents that are empty or whitespace only are skipped and counted (the original drops them
// too: its tokenizers give nothing to learn from). Invalid UTF-8 is replaced, each maximal invalid
// subpart by one U+FFFD (as Python's `errors="replace"` and the WHATWG decoder do), and counted;
// the first few such documents are named in a warning (file, line, byte offset in the file), and
// the stats keep where the first replacement is, so a corrupted file can be found.
// JSONL errors (not JSON, not an object, no text field, a field that is not a string) name the
// file and the line.
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/data/corpus_config.hpp"

namespace fusellm {

struct Document {
  int64_t index = 0;     // position in the corpus stream (skipped documents take no number)
  std::string file;      // where it came from
  int32_t file_index = 0;  // `file`'s position among the reader's files (corpus_files)
  int64_t line = 0;      // JSONL: 1-based line; text files: 0
  int64_t offset = 0;    // JSONL: byte offset of its line in `file`; text files: 0
  bool verbatim = false; // text files: `text` is the file's bytes as they are (no invalid UTF-8 replaced)
  std::string text;      // valid UTF-8
};

struct CorpusStats {
  int64_t files = 0;
  int64_t documents = 0;           // returned
  int64_t skipped_blank = 0;       // empty or whitespace-only documents
  int64_t invalid_utf8_docs = 0;   // documents in which something was replaced
  int64_t replaced_sequences = 0;  // U+FFFD inserted
  // Where the first replaced sequence is: "file:line: byte offset N" (JSONL) or "file: byte
  // offset N" (text), N counted from the start of the file; "" when nothing was replaced.
  std::string first_invalid_utf8;
  int64_t bytes = 0;               // UTF-8 bytes of the returned documents
};

// `s` with every maximal invalid UTF-8 subpart replaced by U+FFFD; `replaced` counts them and
// `first_invalid` gets the byte index of the first (npos when there is none).
std::string sanitize_utf8(std::string_view s, int64_t* replaced = nullptr, size_t* first_invalid = nullptr);
// Empty, or only white space (ASCII and the Unicode space separators, NBSP, ZWSP, BOM).
bool is_blank(std::string_view s);
// The files a corpus path stands for, in order (a file: itself; a directory: see above).
std::vector<std::string> corpus_files(const std::string& path, CorpusFormat format = CorpusFormat::Auto);

class CorpusReader {
 public:
  explicit CorpusReader(const std::string& path, CorpusFormat format = CorpusFormat::Auto,
                        std::string text_field = "text");
  static CorpusReader from_config(const CorpusConfig& corpus);
  ~CorpusReader();
  CorpusReader(CorpusReader&&) noexcept;
  CorpusReader& operator=(CorpusReader&&) noexcept;

  // The next document, false at the end. Error (file:line) on a malformed JSONL line.
  bool next(Document& doc);
  const CorpusStats& stats() const { return stats_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  bool open_next_file();
  std::string path_;
  CorpusFormat format_;
  std::string field_;
  std::vector<std::string> files_;
  size_t file_i_ = 0;
  bool jsonl_ = false;
  std::unique_ptr<std::ifstream> in_;
  int64_t line_ = 0;
  int64_t offset_ = 0;  // bytes of the current file before the current JSONL line
  CorpusStats stats_;
  void note_invalid(const std::string& file, int64_t line, int64_t offset, int64_t replaced);
};

// Whether `file` of a corpus is read as JSONL (else: one text document).
bool is_jsonl_file(const std::string& file, CorpusFormat format);
// A document's text read again from where the reader found it (Document::file, offset, line), as
// the reader reads it: the JSONL line's text field or the whole text file, invalid UTF-8 replaced.
// Errors name the file and the line.
std::string read_document_text(const CorpusConfig& corpus, const std::string& file, int64_t offset, int64_t line);
// Bytes [begin, end) of a text file whose document is Document::verbatim (no need to read it whole).
std::string read_file_range(const std::string& file, int64_t begin, int64_t end);

// Every document at once (tests, small corpora).
std::vector<Document> read_corpus(const std::string& path, CorpusFormat format = CorpusFormat::Auto,
                                  const std::string& text_field = "text", CorpusStats* stats = nullptr);

}  // namespace fusellm
