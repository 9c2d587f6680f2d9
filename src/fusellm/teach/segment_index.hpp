#pragma once
// The job's segments (corpus_segments.hpp) without their texts: per segment its document, piece,
// byte range in the document and number of target tokens; per document where it lies in the corpus
// (file, byte offset of its JSONL line, line). Cutting the corpus tokenizes all of it with every
// tokenizer of the job, on every rank of an online job; with the index a restart (a requeued
// Slurm job, a resume) skips that, and a rank holds 40 bytes per segment instead of the corpus's
// text: a teacher reads its micro-batch's segments back from the corpus files.
//
// File: HDF5, <output_dir>/segment_index.h5, with a checksum sidecar (io/file_checksum.hpp),
// written atomically by rank 0 of the job that cut the segments. Datasets (1-D): lengths, doc,
// byte_begin, byte_end (int64) and piece (int32) per segment; doc_file (int32), doc_offset,
// doc_line (int64) and doc_verbatim (uint8: a text file read as it is) per document. Attributes: format, `files` (a JSON array of the corpus files),
// `complete` (1: the whole corpus; 0: the first segments only, a --limit run's) and `valid_for`,
// the provenance string below: an index is used only when it equals the job's.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fusellm/data/corpus_config.hpp"
#include "fusellm/data/segmenter.hpp"

namespace fusellm {

struct JobConfig;
struct JobTokenizers;

struct SegmentIndex {
  std::vector<int64_t> lengths;  // target tokens per segment
  std::vector<int64_t> doc;      // its document
  std::vector<int32_t> piece;    // its piece of that document
  std::vector<int64_t> byte_begin, byte_end;  // its bytes in the document's text
  std::vector<std::string> files;             // the corpus files
  std::vector<int32_t> doc_file;              // per document: index into files
  std::vector<int64_t> doc_offset, doc_line;  // per document: Document::offset and line
  std::vector<uint8_t> doc_verbatim;          // per document: Document::verbatim
  bool complete = false;  // every segment of the corpus (else a prefix of them)
  std::string valid_for;  // provenance (valid_for below)

  int64_t segments() const { return int64_t(lengths.size()); }
  // Segment `id` with its text read from the corpus: a verbatim document's bytes alone
  // (segment_in_place), else its whole text (read_document_text) cut to the recorded bytes,
  // which must fit it: Error naming the file and line when the corpus no longer matches.
  Segment segment(int64_t id, const CorpusConfig& corpus) const;
  // The same in steps, for a reader that keeps documents: segment `id`'s document, that
  // document's text, and the segment cut from it.
  int64_t doc_of(int64_t id) const;  // Error when id or its document is not one
  std::string document_text(int64_t d, const CorpusConfig& corpus) const;
  Segment segment_of(int64_t id, const std::string& text) const;
  Segment segment_in_place(int64_t id) const;  // a verbatim document's (doc_verbatim)
  void save(const std::string& path) const;  // atomic, then the checksum sidecar
  static SegmentIndex load(const std::string& path);

  // What an index is valid for: the corpus path, format and text field, every corpus file's size
  // and modification time, the segment bound, and the size and modification time of every file of
  // every tokenizer of the job (a changed tokenizer or corpus makes it stale; it is then cut again).
  static std::string valid_for_job(const JobConfig& job, const JobTokenizers& toks);

 private:
  Segment with_text(int64_t id, std::string text) const;  // segment `id`'s fields around `text`
};

// The index at `path` if it exists, is intact, matches `valid_for` and covers `limit` segments
// (< 0: the whole corpus); nullopt otherwise, with a log line saying why (a damaged one too: it is
// cut again and rewritten).
std::optional<SegmentIndex> load_segment_index(const std::string& path, const std::string& valid_for, int64_t limit);

std::string segment_index_path(const JobConfig& job);  // <output_dir>/segment_index.h5

}  // namespace fusellm
