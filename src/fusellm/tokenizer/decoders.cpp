// tokenizer.json decoders. Each class names the tokenizers type it reproduces.
#include "fusellm/tokenizer/decoders.hpp"

#include <algorithm>

#include "fusellm/tokenizer/byte_level.hpp"
#include "fusellm/tokenizer/normalized_string.hpp"
#include "fusellm/tokenizer/normalizers.hpp"
#include "fusellm/tokenizer/regex.hpp"
#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(char(b));
      ++i;
      continue;
    }
    std::size_t need;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    std::size_t k = 1;
    bool ok = true;
    for (; k <= need; ++k) {
      if (i + k >= n) {
        ok = false;
        break;
      }
      const unsigned char cb = p[i + k];
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (cb < l || cb > h) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(s.substr(i, need + 1));
      i += need + 1;
    } else {
      out += "\xEF\xBF\xBD";  // the lead and the valid continuation bytes before the break
      i += k;
    }
  }
  return out;
}

std::string rust_replace(std::string_view s, std::string_view from, std::string_view to, std::size_t count) {
  std::string out;
  std::size_t pos = 0, n = 0;
  if (from.empty()) {
    // The empty pattern matches before every char and at the end: "ab" -> to a to b to.
    for (;;) {
      if (n++ < count) out += to;
      if (pos >= s.size()) break;
      const std::size_t len = std::min(utf8_len_from_lead(static_cast<unsigned char>(s[pos])), s.size() - pos);
      out.append(s, pos, len);
      pos += len;
    }
    return out;
  }
  for (std::size_t at; n < count && (at = s.find(from, pos)) != std::string_view::npos; pos = at + from.size(), ++n) {
    out.append(s, pos, at - pos);
    out += to;
  }
  out.append(s, pos, std::string_view::npos);
  return out;
}

namespace {

struct ByteLevel final : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    // Every token back to bytes (a token with a char outside the table stays as it is).
    const auto& t = byte_level_table();
    std::string bytes;
    for (const std::string& tok : tokens) {
      const std::size_t mark = bytes.size();
      bool ok = true;
      for (std::size_t i = 0; i < tok.size();) {
        const int b = t.byte(next_char(tok, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(char(b));
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += tok;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

struct Metaspace final : Decoder {
  char32_t rep;
  PrependScheme scheme;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& tok = tokens[i];
      for (std::size_t k = 0; k < tok.size();) {
        const std::size_t b = k;
        const char32_t c = next_char(tok, k);
        if (c == rep) {
          if (!(i == 0 && scheme != PrependScheme::Never)) out.push_back(' ');
        } else {
          out.append(tok, b, k - b);
        }
      }
      tokens[i] = std::move(out);
    }
  }
};

struct Replace final : Decoder {
  Regex re;
  std::string content;
  Replace(const std::string& p, std::string c) : re(p), content(std::move(c)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<Match> m;
    for (std::string& tok : tokens) {
      m.clear();
      find_matches(re, tok, false, m);
      std::string out;
      for (const Match& x : m) {
        if (x.is_match)
          out += content;
        else
          out.append(tok, x.b, x.e - x.b);
      }
      tok = std::move(out);
    }
  }
};

// "<0xXX>" -> the byte, as `u8::from_str_radix(&token[3..5], 16)` reads it.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  if (t[3] == '+') return hex(t[4]);
  const int h = hex(t[3]), l = hex(t[4]);
  return (h < 0 || l < 0) ? -1 : h * 16 + l;
}

struct ByteFallback final : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (find_invalid_utf8(pending) == std::string::npos) {
        out.push_back(pending);
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : tokens) {
      const int b = byte_token(t);
      if (b >= 0) {
        pending.push_back(char(b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
};

struct Fuse final : Decoder {
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

struct Strip final : Decoder {
  char32_t content;
  std::size_t start, stop;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& tok : tokens) {
      std::vector<std::pair<std::size_t, std::size_t>> chars;  // byte ranges
      std::vector<char32_t> cs;
      for (std::size_t k = 0; k < tok.size();) {
        const std::size_t b = k;
        cs.push_back(next_char(tok, k));
        chars.emplace_back(b, k);
      }
      std::size_t start_cut = 0;
      for (std::size_t i = 0; i < start && i < cs.size(); ++i) {
        if (cs[i] != content) break;
        start_cut = i + 1;
      }
      std::size_t stop_cut = cs.size();
      for (std::size_t i = 0; i < stop && i < cs.size(); ++i) {
        const std::size_t idx = cs.size() - i - 1;
        if (cs[idx] != content) break;
        stop_cut = idx;
      }
      if (start_cut >= stop_cut) {
        tok.clear();
        continue;
      }
      tok = tok.substr(chars[start_cut].first, chars[stop_cut - 1].second - chars[start_cut].first);
    }
  }
};

struct WordPiece final : Decoder {  // decoders/wordpiece.rs
  std::string prefix;
  bool cleanup;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        // `starts_with(prefix)` then `replacen(prefix, "", 1)`: an empty prefix changes nothing.
        if (t.compare(0, prefix.size(), prefix) == 0)
          t = rust_replace(t, prefix, "", 1);
        else
          t = " " + t;
      }
      if (cleanup) {
        for (auto [from, to] : {std::pair{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"},
                                {" 've", "'ve"}, {" 're", "'re"}})
          t = rust_replace(t, from, to);
      }
    }
  }
};

struct BpeDecoder final : Decoder {  // "BPEDecoder" (decoders/bpe.rs): the word suffix becomes a space
  std::string suffix;
  void decode_chain(std::vector<std::string>& tokens) const override {
    // `token.replace(suffix, r)`: an empty suffix inserts r at every char boundary.
    for (std::size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = rust_replace(tokens[i], suffix, i + 1 == tokens.size() ? "" : " ");
  }
};

struct Sequence final : Decoder {
  std::vector<std::unique_ptr<Decoder>> parts;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts) p->decode_chain(tokens);
  }
};

char32_t one_char(const json& j, std::string_view key, const Ctx& c) {
  const std::string s = get_char(j, key, c);
  std::size_t i = 0;
  return next_char(s, i);
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const Ctx& c) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, c);
  try {
    if (type == "ByteLevel") return std::make_unique<ByteLevel>();
    if (type == "Metaspace") {
      auto m = std::make_unique<Metaspace>();
      m->rep = one_char(j, "replacement", c);
      m->scheme = get_prepend_scheme(j, c);
      return m;
    }
    if (type == "Replace") return std::make_unique<Replace>(regex_pattern_field(j, c), get_string(j, "content", c));
    if (type == "ByteFallback") return std::make_unique<ByteFallback>();
    if (type == "Fuse") return std::make_unique<Fuse>();
    if (type == "Strip") {
      auto s = std::make_unique<Strip>();
      s->content = one_char(j, "content", c);
      s->start = get_uint(j, "start", c, uint64_t(1) << 31);
      s->stop = get_uint(j, "stop", c, uint64_t(1) << 31);
      return s;
    }
    if (type == "WordPiece") {
      auto w = std::make_unique<WordPiece>();
      w->prefix = get_string(j, "prefix", c, "##");
      w->cleanup = get_bool(j, "cleanup", c, true);
      return w;
    }
    if (type == "BPEDecoder") {
      auto b = std::make_unique<BpeDecoder>();
      b->suffix = get_string(j, "suffix", c, "</w>");
      return b;
    }
    if (type == "Sequence") {
      auto s = std::make_unique<Sequence>();
      s->parts = sequence_parts(j, "decoders", c, "a decoder", make_decoder);
      return s;
    }
  } catch (const Error& e) {
    rethrow_in(c, e);
  }
  c.fail("unsupported type \"{}\" (supported: {})", type,
         join_quoted({"ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip", "WordPiece", "BPEDecoder",
                      "Sequence"}));
}

}  // namespace fusellm::tok
