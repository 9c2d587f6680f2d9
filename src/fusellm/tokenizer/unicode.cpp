// Character data through ICU. Each predicate reproduces the Rust method the `tokenizers`
// library calls (named in unicode.hpp); ASCII is answered without ICU since it dominates text.
#include "fusellm/tokenizer/unicode.hpp"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include <stdexcept>

namespace fusellm::tok {

std::size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    char32_t c;
    if (b >= 0xC2 && b < 0xE0) {
      len = 2;
      c = b & 0x1F;
    } else if (b >= 0xE0 && b < 0xF0) {
      len = 3;
      c = b & 0x0F;
    } else if (b >= 0xF0 && b < 0xF5) {
      len = 4;
      c = b & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) || (len == 4 && (c < 0x10000 || c > 0x10FFFF)))
      return i;
    i += len;
  }
  return std::string_view::npos;
}

std::size_t count_chars(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char b : s) n += (b & 0xC0) != 0x80;
  return n;
}

bool is_whitespace(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE);
}

bool is_alphabetic(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_ALPHABETIC);
}

static inline uint32_t gc_mask(char32_t c) { return U_MASK(u_charType(static_cast<UChar32>(c))); }

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (gc_mask(c) & (U_GC_ND_MASK | U_GC_NL_MASK | U_GC_NO_MASK)) != 0;
}

bool is_ascii_punctuation(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}


// Whether Unicode `major`.x had assigned c (u_charAge gives 0.0 for a code point still unassigned;
// its category is then Cn, which none of the tests below accepts, and it has no decomposition).
static bool assigned_by(char32_t c, uint8_t major) {
  if (c < 0x80) return true;
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  return age[0] <= major;
}
static bool assigned_by_unicode8(char32_t c) { return assigned_by(c, 8); }
// The Unicode version of the unicode-normalization-alignments 0.1 crate's tables, which the
// library's NFD/NFKD/NFC/NFKC and StripAccents read: 9.0 (U+08D4, new in 9.0, is a combining mark
// there; U+0AFA, new in 10.0, is not; U+11938, new in 13.0, does not decompose). Chars assigned
// later have no decomposition, combining class 0 and compose with nothing there.
static bool in_normalization_tables(char32_t c) { return assigned_by(c, 9); }

bool is_combining_mark(char32_t c) {
  return c >= 0x300 && (gc_mask(c) & U_GC_M_MASK) != 0 && in_normalization_tables(c);
}
bool is_other_unicode8(char32_t c) {
  return (gc_mask(c) & (U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CO_MASK | U_GC_CS_MASK)) != 0 &&
         (c < 0x80 || assigned_by_unicode8(c));
}
bool is_punctuation_unicode8(char32_t c) { return (gc_mask(c) & U_GC_P_MASK) != 0 && assigned_by_unicode8(c); }
bool is_mark_nonspacing_unicode8(char32_t c) {
  return c >= 0x300 && (gc_mask(c) & U_GC_MN_MASK) != 0 && assigned_by_unicode8(c);
}

bool is_regex_word(char32_t c) {
  if (c < 0x80) return is_alphabetic(c) || (c >= '0' && c <= '9') || c == '_';
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_ALPHABETIC) ||
         (gc_mask(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 ||
         u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_JOIN_CONTROL);
}

bool is_cjk_ideograph(char32_t c) {
  // bert.rs `is_chinese_char`, as written there: note 0x2B920 (not 0x2B820, where the CJK
  // Extension E block starts), so U+2B820..U+2B91F get no spaces.
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int to_lowercase(char32_t c, char32_t out[3]) {
  if (c < 0x80) {
    out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
    return 1;
  }
  // The only unconditional multi-character lowercase mapping in SpecialCasing.txt.
  if (c == 0x130) {
    out[0] = 0x69;
    out[1] = 0x307;
    return 2;
  }
  out[0] = static_cast<char32_t>(u_tolower(static_cast<UChar32>(c)));
  return 1;
}

uint8_t combining_class(char32_t c) {
  if (c < 0x300 || !in_normalization_tables(c)) return 0;
  return u_getCombiningClass(static_cast<UChar32>(c));
}

namespace {
const UNormalizer2* instance(bool compat, bool compose) {
  static const UNormalizer2* nfd = [] {
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFDInstance(&e);
    if (U_FAILURE(e)) throw std::runtime_error("ICU: cannot load the NFD data");
    return n;
  }();
  static const UNormalizer2* nfkd = [] {
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFKDInstance(&e);
    if (U_FAILURE(e)) throw std::runtime_error("ICU: cannot load the NFKD data");
    return n;
  }();
  static const UNormalizer2* nfc = [] {
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2* n = unorm2_getNFCInstance(&e);
    if (U_FAILURE(e)) throw std::runtime_error("ICU: cannot load the NFC data");
    return n;
  }();
  return compose ? nfc : compat ? nfkd : nfd;
}
}  // namespace

int decompose(char32_t c, bool compat, char32_t out[18]) {
  // Nothing below U+00A0 decomposes, canonically or otherwise; nor, for the library, a char newer
  // than its tables.
  if (c < 0xA0 || !in_normalization_tables(c)) {
    out[0] = c;
    return 1;
  }
  UChar buf[40];
  UErrorCode e = U_ZERO_ERROR;
  const int32_t len = unorm2_getDecomposition(instance(compat, false), static_cast<UChar32>(c), buf, 40, &e);
  if (U_FAILURE(e) || len < 0) {
    out[0] = c;
    return 1;
  }
  int n = 0;
  for (int32_t i = 0; i < len && n < 18;) {
    UChar32 cp;
    U16_NEXT(buf, i, len, cp);
    out[n++] = static_cast<char32_t>(cp);
  }
  return n;
}

char32_t compose_pair(char32_t a, char32_t b) {
  const UChar32 r = unorm2_composePair(instance(false, true), static_cast<UChar32>(a), static_cast<UChar32>(b));
  return r < 0 || !in_normalization_tables(static_cast<char32_t>(r)) ? 0 : static_cast<char32_t>(r);
}

}  // namespace fusellm::tok
