// tokenizer.json normalizers. Each class names the tokenizers type it reproduces.
#include "fusellm/tokenizer/normalizers.hpp"

#include <vector>

#include "fusellm/tokenizer/byte_level.hpp"
#include "fusellm/tokenizer/regex.hpp"

namespace fusellm::tok {

namespace {

struct Unicode final : Normalizer {  // NFC, NFD, NFKC, NFKD
  enum Form { C, D, KC, KD } form;
  explicit Unicode(Form f) : form(f) {}
  void normalize(NormalizedString& s) const override {
    switch (form) {
      case C: s.nfc(); break;
      case D: s.nfd(); break;
      case KC: s.nfkc(); break;
      case KD: s.nfkd(); break;
    }
  }
};

struct Lowercase final : Normalizer {
  void normalize(NormalizedString& s) const override { s.lowercase(); }
};

struct Strip final : Normalizer {
  bool left, right;
  Strip(bool l, bool r) : left(l), right(r) {}
  void normalize(NormalizedString& s) const override { s.strip(left, right); }
};

struct StripAccents final : Normalizer {  // removes every combining mark (M*)
  void normalize(NormalizedString& s) const override {
    s.filter([](char32_t c) { return !is_combining_mark(c); });
  }
};

struct Replace final : Normalizer {
  Regex re;
  std::string content;
  Replace(const std::string& pattern, std::string content_) : re(pattern), content(std::move(content_)) {}
  void normalize(NormalizedString& s) const override {
    thread_local std::vector<Match> m;
    m.clear();
    find_matches(re, s.get(), false, m);
    s.replace(m, content);
  }
};

struct Prepend final : Normalizer {
  std::string prefix;
  explicit Prepend(std::string p) : prefix(std::move(p)) {}
  void normalize(NormalizedString& s) const override { s.prepend(prefix); }
};

struct ByteLevelNormalizer final : Normalizer {  // normalizers::ByteLevel: bytes -> GPT-2 chars
  void normalize(NormalizedString& s) const override {
    const auto& t = byte_level_table();
    s.expand([&](const std::string& str, std::size_t& i, char32_t* out) {
      const std::size_t n = utf8_len_from_lead(static_cast<unsigned char>(str[i]));
      for (std::size_t k = 0; k < n; ++k) out[k] = t.chr[static_cast<unsigned char>(str[i + k])];
      i += n;
      return int(n);
    });
  }
};

struct Bert final : Normalizer {  // BertNormalizer
  bool clean_text, chinese, strip_accents, lowercase;
  void normalize(NormalizedString& s) const override {
    if (clean_text) {
      // bert.rs `do_clean_text`: drops NUL, U+FFFD and `is_control` chars (the library's
      // `is_other`, Unicode 8.0 tables: unassigned code points are kept), then whitespace -> ' '.
      s.filter([](char32_t c) {
        const bool control = !(c == '\t' || c == '\n' || c == '\r') && is_other_unicode8(c);
        return !(c == 0 || c == 0xFFFD || control);
      });
      s.map([](char32_t c) { return (c == '\t' || c == '\n' || c == '\r' || is_whitespace(c)) ? char32_t(' ') : c; });
    }
    if (chinese) {
      // (' ', 0), (c, 1), (' ', 1): the spaces and the char all take the char's alignment.
      s.expand([](const std::string& str, std::size_t& i, char32_t* out) {
        const char32_t c = next_char(str, i);
        if (!is_cjk_ideograph(c)) {
          out[0] = c;
          return 1;
        }
        out[0] = ' ';
        out[1] = c;
        out[2] = ' ';
        return 3;
      });
    }
    if (strip_accents) {
      s.nfd();
      s.filter([](char32_t c) { return !is_mark_nonspacing_unicode8(c); });
    }
    if (lowercase) s.lowercase();
  }
};

struct Sequence final : Normalizer {
  std::vector<std::unique_ptr<Normalizer>> parts;
  void normalize(NormalizedString& s) const override {
    for (const auto& p : parts) p->normalize(s);
  }
};

// {"String": "..."} or {"Regex": "..."} -> a pattern for Regex (a String is escaped).
std::string pattern_of(const json& j, const Ctx& c) {
  const json& p = need_field(j, "pattern", c);
  const Ctx pc = c.child("pattern");
  if (!p.is_object() || p.size() != 1)
    pc.fail("expected {{\"String\": ...}} or {{\"Regex\": ...}}, found {}", p.is_object() ? p.dump() : json_kind(p));
  if (p.contains("String")) return escape_regex(get_string(p, "String", pc));
  if (p.contains("Regex")) return get_string(p, "Regex", pc);
  pc.fail("expected {{\"String\": ...}} or {{\"Regex\": ...}}, found {}", p.dump());
}

}  // namespace

std::string regex_pattern_field(const json& j, const Ctx& c) { return pattern_of(j, c); }

std::unique_ptr<Normalizer> make_normalizer(const json& j, const Ctx& c) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, c);
  try {
    if (type == "NFC") return std::make_unique<Unicode>(Unicode::C);
    if (type == "NFD") return std::make_unique<Unicode>(Unicode::D);
    if (type == "NFKC") return std::make_unique<Unicode>(Unicode::KC);
    if (type == "NFKD") return std::make_unique<Unicode>(Unicode::KD);
    if (type == "Lowercase") return std::make_unique<Lowercase>();
    if (type == "StripAccents") return std::make_unique<StripAccents>();
    if (type == "Strip") return std::make_unique<Strip>(get_bool(j, "strip_left", c), get_bool(j, "strip_right", c));
    if (type == "Replace") return std::make_unique<Replace>(pattern_of(j, c), get_string(j, "content", c));
    if (type == "Prepend") return std::make_unique<Prepend>(get_string(j, "prepend", c));
    if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
    if (type == "BertNormalizer") {
      auto b = std::make_unique<Bert>();
      b->clean_text = get_bool(j, "clean_text", c, true);
      b->chinese = get_bool(j, "handle_chinese_chars", c, true);
      b->lowercase = get_bool(j, "lowercase", c, true);
      b->strip_accents = get_bool(j, "strip_accents", c, b->lowercase);
      return b;
    }
    if (type == "Sequence") {
      auto s = std::make_unique<Sequence>();
      s->parts = sequence_parts(j, "normalizers", c, "a normalizer", make_normalizer);
      return s;
    }
  } catch (const Error& e) {
    rethrow_in(c, e);
  }
  c.fail("unsupported type \"{}\" (supported: {})", type,
         join_quoted({"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "Replace", "Prepend",
                      "ByteLevel", "BertNormalizer", "Sequence"}));
}

}  // namespace fusellm::tok
