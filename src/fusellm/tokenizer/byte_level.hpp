#pragma once
// GPT-2's byte <-> printable-char table (`bytes_to_unicode`), shared by the ByteLevel
// pre-tokenizer, normalizer, post-processor and decoder: printable Latin-1 bytes (33..126,
// 161..172, 174..255) stand for themselves, the other 68 bytes for U+0100.. in byte order.
#include <array>
#include <cstdint>
#include <string>

namespace fusellm::tok {

struct ByteLevelTable {
  std::array<char32_t, 256> chr{};          // byte -> char
  std::array<std::string, 256> utf8{};      // byte -> that char in UTF-8
  std::array<int16_t, 324> byte_of{};       // char (< 324) -> byte, or -1

  ByteLevelTable() {
    byte_of.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      chr[b] = printable ? char32_t(b) : char32_t(256 + n++);
      byte_of[chr[b]] = int16_t(b);
      std::string& s = utf8[b];
      const char32_t c = chr[b];
      if (c < 0x80) {
        s.push_back(char(c));
      } else {
        s.push_back(char(0xC0 | (c >> 6)));
        s.push_back(char(0x80 | (c & 0x3F)));
      }
    }
  }
  // The byte a char stands for, or -1.
  int byte(char32_t c) const { return c < byte_of.size() ? byte_of[c] : -1; }
};

const ByteLevelTable& byte_level_table();

}  // namespace fusellm::tok
