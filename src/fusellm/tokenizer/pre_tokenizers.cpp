// tokenizer.json pre-tokenizers. Each class names the tokenizers type it reproduces.
#include "fusellm/tokenizer/pre_tokenizers.hpp"

#include <vector>

#include "fusellm/tokenizer/byte_level.hpp"
#include "fusellm/tokenizer/normalizers.hpp"
#include "fusellm/tokenizer/regex.hpp"

namespace fusellm::tok {

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable t;
  return t;
}

void byte_level_map(NormalizedString& s) {
  // tokenizers' ByteLevel::pre_tokenize builds (char, change) with change 0 for the first byte of
  // each char and 1 for the others: all of them end up with the char's alignment.
  const auto& t = byte_level_table();
  s.expand([&](const std::string& str, std::size_t& i, char32_t* out) {
    const std::size_t n = utf8_len_from_lead(static_cast<unsigned char>(str[i]));
    for (std::size_t k = 0; k < n; ++k) out[k] = t.chr[static_cast<unsigned char>(str[i + k])];
    i += n;
    return int(n);
  });
}

namespace {

thread_local std::vector<Match> t_matches;

std::vector<Match>& matches_buffer() {
  t_matches.clear();
  return t_matches;
}

struct ByteLevel final : PreTokenizer {
  bool add_prefix_space, use_regex;
  Regex re{kGpt2Pattern};
  ByteLevel(bool aps, bool ur) : add_prefix_space(aps), use_regex(ur) {}
  bool is_byte_level() const override { return true; }
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString&& n, std::vector<NormalizedString>& out) {
      if (add_prefix_space && (n.get().empty() || n.get()[0] != ' ')) n.prepend(" ");
      if (!use_regex) {
        out.push_back(std::move(n));
        return;
      }
      auto& m = matches_buffer();
      find_matches(re, n.get(), false, m);
      n.split(m, SplitBehavior::Isolated, out);
    });
    p.normalize([](NormalizedString& n) { byte_level_map(n); });
  }
};

struct Metaspace final : PreTokenizer {
  std::string replacement;  // one char, UTF-8
  char32_t rep_char;
  PrependScheme scheme;
  bool split;
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString&& n, std::vector<NormalizedString>& out) {
      auto& m = matches_buffer();
      find_matches_pred(n.get(), [](char32_t c) { return c == ' '; }, m);
      n.replace(m, replacement);
      const bool starts = n.get().compare(0, replacement.size(), replacement) == 0;
      if (scheme == PrependScheme::Always && !starts) n.prepend(replacement);
      if (scheme == PrependScheme::First && !starts && n.original_shift() == 0) n.prepend(replacement);
      if (!split) {
        out.push_back(std::move(n));
        return;
      }
      auto& m2 = matches_buffer();
      const char32_t rc = rep_char;
      find_matches_pred(n.get(), [rc](char32_t c) { return c == rc; }, m2);
      n.split(m2, SplitBehavior::MergedWithNext, out);
    });
  }
};

struct SplitPre final : PreTokenizer {  // "Split"
  Regex re;
  SplitBehavior behavior;
  bool invert;
  SplitPre(const std::string& pattern, SplitBehavior b, bool inv) : re(pattern), behavior(b), invert(inv) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString&& n, std::vector<NormalizedString>& out) {
      auto& m = matches_buffer();
      find_matches(re, n.get(), invert, m);
      n.split(m, behavior, out);
    });
  }
};

// Pre-tokenizers that split on a char predicate with one behavior.
template <class Pred>
struct PredSplit final : PreTokenizer {
  Pred pred;
  SplitBehavior behavior;
  PredSplit(Pred p, SplitBehavior b) : pred(p), behavior(b) {}
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString&& n, std::vector<NormalizedString>& out) {
      auto& m = matches_buffer();
      find_matches_pred(n.get(), pred, m);
      n.split(m, behavior, out);
    });
  }
};
template <class Pred>
std::unique_ptr<PreTokenizer> pred_split(Pred p, SplitBehavior b) {
  return std::make_unique<PredSplit<Pred>>(p, b);
}

struct Whitespace final : PreTokenizer {
  // The `regex` crate's \w+|[^\w\s]+ (Unicode \w includes Join_Control, unlike Oniguruma's),
  // matched by hand; what is not matched (whitespace) is removed.
  void pre_tokenize(PreTokenizedString& p) const override {
    p.split([&](NormalizedString&& n, std::vector<NormalizedString>& out) {
      auto& m = matches_buffer();
      const std::string& s = n.get();
      if (s.empty()) {
        m.push_back({0, 0, true});
      } else {
        std::size_t prev = 0, i = 0;
        while (i < s.size()) {
          const std::size_t b = i;
          const char32_t c = next_char(s, i);
          const bool word = is_regex_word(c);
          if (!word && is_whitespace(c)) continue;
          std::size_t e = i;
          while (e < s.size()) {
            std::size_t k = e;
            const char32_t d = next_char(s, k);
            if (word ? !is_regex_word(d) : (is_regex_word(d) || is_whitespace(d))) break;
            e = k;
          }
          if (prev != b) m.push_back({uint32_t(prev), uint32_t(b), true});  // inverted: gaps match
          m.push_back({uint32_t(b), uint32_t(e), false});
          prev = i = e;
        }
        if (prev != s.size()) m.push_back({uint32_t(prev), uint32_t(s.size()), true});
      }
      n.split(m, SplitBehavior::Removed, out);
    });
  }
};

struct Sequence final : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  bool is_byte_level() const override {
    for (const auto& p : parts)
      if (p->is_byte_level()) return true;
    return false;
  }
  void pre_tokenize(PreTokenizedString& p) const override {
    for (const auto& part : parts) part->pre_tokenize(p);
  }
};

// `is_bert_punc`: char::is_ascii_punctuation or unicode_categories' is_punctuation.
bool is_bert_punctuation(char32_t c) { return is_ascii_punctuation(c) || (c >= 0x80 && is_punctuation_unicode8(c)); }

SplitBehavior behavior_of(const std::string& s, const Ctx& c) {
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  c.fail("field \"behavior\": unknown value \"{}\" (supported: {})", s,
         join_quoted({"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"}));
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Ctx& c) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, c);
  try {
    if (type == "ByteLevel")
      return std::make_unique<ByteLevel>(get_bool(j, "add_prefix_space", c, true), get_bool(j, "use_regex", c, true));
    if (type == "Metaspace") {
      auto m = std::make_unique<Metaspace>();
      m->replacement = get_char(j, "replacement", c);
      std::size_t i = 0;
      m->rep_char = next_char(m->replacement, i);
      m->scheme = get_prepend_scheme(j, c);
      m->split = get_bool(j, "split", c, true);
      return m;
    }
    if (type == "Split") {
      const std::string pattern = regex_pattern_field(j, c);
      const SplitBehavior b = behavior_of(get_string(j, "behavior", c), c);
      return std::make_unique<SplitPre>(pattern, b, get_bool(j, "invert", c, false));
    }
    if (type == "Digits") {
      const bool individual = get_bool(j, "individual_digits", c, false);
      return pred_split([](char32_t ch) { return is_numeric(ch); },
                        individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous);
    }
    if (type == "Whitespace") return std::make_unique<Whitespace>();
    if (type == "WhitespaceSplit")
      return pred_split([](char32_t ch) { return is_whitespace(ch); }, SplitBehavior::Removed);
    if (type == "Punctuation") {
      const SplitBehavior b = behavior_of(get_string(j, "behavior", c, "Isolated"), c);
      return pred_split([](char32_t ch) { return is_bert_punctuation(ch); }, b);
    }
    if (type == "CharDelimiterSplit") {
      const std::string d = get_char(j, "delimiter", c);
      std::size_t i = 0;
      const char32_t dc = next_char(d, i);
      return pred_split([dc](char32_t ch) { return ch == dc; }, SplitBehavior::Removed);
    }
    if (type == "BertPreTokenizer") {
      auto s = std::make_unique<Sequence>();
      s->parts.push_back(pred_split([](char32_t ch) { return is_whitespace(ch); }, SplitBehavior::Removed));
      s->parts.push_back(pred_split([](char32_t ch) { return is_bert_punctuation(ch); }, SplitBehavior::Isolated));
      return s;
    }
    if (type == "Sequence") {
      auto s = std::make_unique<Sequence>();
      s->parts = sequence_parts(j, "pretokenizers", c, "a pre-tokenizer", make_pre_tokenizer);
      return s;
    }
  } catch (const Error& e) {
    rethrow_in(c, e);
  }
  c.fail("unsupported type \"{}\" (supported: {})", type,
         join_quoted({"ByteLevel", "Metaspace", "Split", "Digits", "Whitespace", "WhitespaceSplit", "Punctuation",
                      "CharDelimiterSplit", "BertPreTokenizer", "Sequence"}));
}

}  // namespace fusellm::tok
