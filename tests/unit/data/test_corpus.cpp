// Corpus readers (train/corpus.hpp): JSONL/text/directory, blank documents skipped and counted,
// invalid UTF-8 replaced and counted, JSONL errors with file:line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"
#include "error_of.hpp"

namespace fs = std::filesystem;
using namespace fusellm;

namespace {
struct TempDir {
  fs::path p;
  TempDir() {
    p = fs::temp_directory_path() / ("fusellm_corpus_" + std::to_string(::getpid()) + "_" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~TempDir() { fs::remove_all(p); }
  std::string write(const std::string& name, const std::string& bytes) const {
    fs::create_directories((p / name).parent_path());
    std::ofstream(p / name, std::ios::binary) << bytes;
    return (p / name).string();
  }
};
using fusellm::testing::error_of;
}  // namespace

TEST(Corpus, SanitizeUtf8) {
  int64_t n = 0;
  EXPECT_EQ(sanitize_utf8("héllo ✓ 😀", &n), "héllo ✓ 😀");
  EXPECT_EQ(n, 0);
  EXPECT_EQ(sanitize_utf8("a\xFF" "b", &n), "a\uFFFD" "b");
  EXPECT_EQ(n, 1);
  // A truncated 3-byte sequence is one maximal subpart: one replacement (as Python's "replace").
  EXPECT_EQ(sanitize_utf8("a\xE2\x9C" "b", &n), "a\uFFFD" "b");
  EXPECT_EQ(n, 1);
  // Surrogates and overlongs are invalid, byte by byte.
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80", &n), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(n, 3);
  EXPECT_EQ(sanitize_utf8("\xC0\xAF", &n), "\uFFFD\uFFFD");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(sanitize_utf8("x\xF0\x9F\x98", &n), "x\uFFFD");  // truncated at the end
  EXPECT_EQ(n, 1);
  size_t first = 0;
  EXPECT_EQ(sanitize_utf8("ok \xE2\x9C then \xFF", &n, &first), "ok \uFFFD then \uFFFD");
  EXPECT_EQ(first, 3u);
  sanitize_utf8("valid", &n, &first);
  EXPECT_EQ(first, std::string::npos);
}

TEST(Corpus, Blank) {
  EXPECT_TRUE(is_blank(""));
  EXPECT_TRUE(is_blank(" \t\r\n "));
  EXPECT_TRUE(is_blank("\u00A0\u3000\u2003\uFEFF"));
  EXPECT_FALSE(is_blank("  a "));
  EXPECT_FALSE(is_blank("\u00A0x"));
}

TEST(Corpus, JsonlSkipsAndCounts) {
  TempDir d;
  const std::string content =
      "{\"text\": \"first\"}\n"
      "{\"text\": \"\"}\n"
      "\n"
      "{\"text\": \"  \\n\\t \"}\n"
      "{\"text\": \"bad \xFF byte\", \"id\": 3}\r\n"
      "{\"text\": \"last\"}";
  const std::string f = d.write("c.jsonl", content);
  CorpusStats st;
  const auto docs = read_corpus(f, CorpusFormat::Auto, "text", &st);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "first");
  EXPECT_EQ(docs[0].line, 1);
  EXPECT_EQ(docs[1].text, "bad \uFFFD byte");
  EXPECT_EQ(docs[1].line, 5);
  EXPECT_EQ(docs[1].index, 1);
  EXPECT_EQ(docs[2].text, "last");
  EXPECT_EQ(docs[2].line, 6);
  EXPECT_EQ(st.documents, 3);
  EXPECT_EQ(st.skipped_blank, 2);
  EXPECT_EQ(st.invalid_utf8_docs, 1);
  EXPECT_EQ(st.replaced_sequences, 1);
  // Where the replaced byte is: the file, the line and the byte offset in the file.
  EXPECT_EQ(st.first_invalid_utf8, f + ":5: byte offset " + std::to_string(content.find('\xFF')));
}

TEST(Corpus, JsonlErrorsNameFileAndLine) {
  TempDir d;
  const std::string a = d.write("a.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
  std::string e = error_of([&] { read_corpus(a); });
  EXPECT_NE(e.find(a + ":2:"), std::string::npos) << e;
  const std::string b = d.write("b.jsonl", "{\"text\": \"ok\"}\n\n{\"body\": \"x\"}\n");
  e = error_of([&] { read_corpus(b); });
  EXPECT_NE(e.find(b + ":3:"), std::string::npos) << e;
  EXPECT_NE(e.find("\"text\""), std::string::npos) << e;
  const std::string c = d.write("c.jsonl", "{\"text\": 5}\n");
  e = error_of([&] { read_corpus(c); });
  EXPECT_NE(e.find(c + ":1:"), std::string::npos) << e;
  EXPECT_NE(e.find("expected a string"), std::string::npos) << e;
  const std::string g = d.write("g.jsonl", "[1, 2]\n");
  e = error_of([&] { read_corpus(g); });
  EXPECT_NE(e.find(g + ":1:"), std::string::npos) << e;
  // Another text field, as [corpus].text_field names it.
  const std::string h = d.write("h.jsonl", "{\"body\": \"x\"}\n");
  EXPECT_EQ(read_corpus(h, CorpusFormat::Auto, "body").at(0).text, "x");
}

TEST(Corpus, TextFileAndDirectoryInOrder) {
  TempDir d;
  d.write("dir/b.txt", "document b\n");
  d.write("dir/a.jsonl", "{\"text\": \"a1\"}\n{\"text\": \"a2\"}\n");
  d.write("dir/sub/c.txt", "c \xC3");  // truncated: replaced
  d.write("dir/empty.txt", " \n\n");
  d.write("dir/.hidden.txt", "never");
  d.write("dir/notes.md", "never");
  CorpusStats st;
  const auto docs = read_corpus((d.p / "dir").string(), CorpusFormat::Auto, "text", &st);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].text, "a1");
  EXPECT_EQ(docs[1].text, "a2");
  EXPECT_EQ(docs[2].text, "document b\n");
  EXPECT_EQ(docs[2].line, 0);
  EXPECT_EQ(docs[3].text, "c \uFFFD");
  for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(docs[i].index, int64_t(i));
  EXPECT_EQ(st.files, 4);
  EXPECT_EQ(st.skipped_blank, 1);
  EXPECT_EQ(st.invalid_utf8_docs, 1);
  EXPECT_EQ(st.first_invalid_utf8, (d.p / "dir/sub/c.txt").string() + ": byte offset 2");
  // Deterministic: the same again.
  const auto again = read_corpus((d.p / "dir").string());
  ASSERT_EQ(again.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(again[i].text, docs[i].text);
  // A single text file is one document.
  EXPECT_EQ(read_corpus(d.write("one.txt", "x\n\ny")).size(), 1u);
  EXPECT_NE(error_of([&] { read_corpus((d.p / "missing.jsonl").string()); }).find("does not exist"), std::string::npos);
}
