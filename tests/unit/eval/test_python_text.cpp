// eval/python_text: the Python string operations the harness applies, on the cases where a naive
// version differs (edges of re.split, Python-only spaces, non-ASCII case).
#include <gtest/gtest.h>

#include "fusellm/eval/python_text.hpp"

using namespace fusellm::eval;

TEST(PythonText, CountWordsAsReSplit) {
  // len(re.split(r"\s+", s)) in Python 3.11 for each string.
  EXPECT_EQ(py_count_words("a b c"), 3);
  EXPECT_EQ(py_count_words(""), 1);
  EXPECT_EQ(py_count_words("  a  b\t\n c  "), 5);  // ['', 'a', 'b', 'c', '']
  EXPECT_EQ(py_count_words("a\x1c" "b"), 2);      // U+001C is a space to Python
  EXPECT_EQ(py_count_words("a\u00a0b\u3000c"), 3);
  EXPECT_EQ(py_count_words("a\u200bb"), 1);  // ZERO WIDTH SPACE is not
}

TEST(PythonText, StripAndCase) {
  EXPECT_EQ(py_rstrip("Answer: \n\t"), "Answer:");
  EXPECT_EQ(py_lstrip("\u00a0 B"), "B");
  EXPECT_EQ(py_strip("  x y  "), "x y");
  EXPECT_EQ(py_strip(" \n "), "");
  EXPECT_EQ(py_lower("ÄBC Größe"), "äbc größe");
  EXPECT_EQ(py_capitalize("tHE USER"), "The user");
  EXPECT_EQ(py_capitalize(""), "");
}
