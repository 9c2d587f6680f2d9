#pragma once
// Unicode helpers for the tokenizer stages: UTF-8 walking, the character classes the Rust
// `tokenizers` library tests with Rust's `char` methods (is_whitespace, is_alphanumeric,
// is_numeric, ...), and the pieces of canonical/compatibility normalization that the
// `unicode-normalization-alignments` crate composes (decomposition, combining class, pairwise
// composition). The character data comes from ICU (Debian's libicu-dev).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fusellm::tok {

// ---- UTF-8 ---------------------------------------------------------------------------------
inline std::size_t utf8_len_from_lead(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}
inline std::size_t utf8_len(char32_t c) {
  return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
}
// Decodes the character starting at s[i] (s must be valid UTF-8) and advances i past it.
inline char32_t next_char(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  auto cont = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t c;
  if (b0 < 0xE0) {
    c = (static_cast<char32_t>(b0 & 0x1F) << 6) | cont(1);
    i += 2;
  } else if (b0 < 0xF0) {
    c = (static_cast<char32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    i += 3;
  } else {
    c = (static_cast<char32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    i += 4;
  }
  return c;
}
inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}
inline std::string utf8(char32_t c) {
  std::string s;
  append_utf8(s, c);
  return s;
}
// Byte index of the first invalid UTF-8 sequence in s (overlong forms, surrogates and code
// points above U+10FFFF are invalid, as for Rust's `str`), or npos when s is valid.
std::size_t find_invalid_utf8(std::string_view s);
std::size_t count_chars(std::string_view s);

// ---- character classes, as Rust's `char` methods define them ------------------------------
bool is_whitespace(char32_t c);    // char::is_whitespace: the White_Space property
bool is_alphabetic(char32_t c);    // char::is_alphabetic: the Alphabetic property
bool is_numeric(char32_t c);       // char::is_numeric: general category Nd, Nl or No
inline bool is_alphanumeric(char32_t c) { return is_alphabetic(c) || is_numeric(c); }
bool is_ascii_punctuation(char32_t c);
// The library's normalization forms and StripAccents read the unicode-normalization-alignments
// crate, whose tables hold Unicode 9.0: is_combining_mark, combining_class, decompose and
// compose_pair answer as those tables do (a char assigned after 9.0 is no mark, has class 0, no
// decomposition and no composition). Checked over every code point by
// tests/unit/tokenizer/test_unicode_normalizers.cpp.
bool is_combining_mark(char32_t c);  // general category M* (Mn, Mc, Me) of a char of Unicode 9.0
bool is_regex_word(char32_t c);      // the `regex` crate's Unicode \w
bool is_cjk_ideograph(char32_t c);   // BertNormalizer's "chinese character" blocks

// BertNormalizer's and the Punctuation/BertPreTokenizer's category tests come from the
// `unicode_categories` 0.1 crate, whose tables hold Unicode 8.0 and list no unassigned (Cn) code
// point: `is_other` is Cc, Cf, Co or Cs of a char that Unicode 8.0 assigned (the U+08E2 format
// char, new in 9.0, is kept; unassigned code points are kept), `is_mark_nonspacing` Mn and
// `is_punctuation` P* of such a char (U+08D4..U+08E1 and U+061D, new later, are neither).
// Checked over every code point by tests/unit/tokenizer/test_unicode_normalizers.cpp.
bool is_other_unicode8(char32_t c);
bool is_mark_nonspacing_unicode8(char32_t c);
bool is_punctuation_unicode8(char32_t c);

// char::to_lowercase: the full lowercase mapping without context (U+0130 gives two chars).
// Writes up to 3 code points into out and returns how many.
int to_lowercase(char32_t c, char32_t out[3]);

// ---- normalization pieces ----------------------------------------------------------------
uint8_t combining_class(char32_t c);
// Full canonical (compat=false) or compatibility (compat=true) decomposition of one code point,
// Hangul syllables included; writes into out (at most 18 code points) and returns the count.
int decompose(char32_t c, bool compat, char32_t out[18]);
// The primary composite of a+b, or 0 when there is none (composition exclusions honoured).
char32_t compose_pair(char32_t a, char32_t b);

}  // namespace fusellm::tok
