// tokenizer.json post-processors. Each class names the tokenizers type it reproduces.
#include "fusellm/tokenizer/post_processors.hpp"

#include <algorithm>
#include <map>

#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

void byte_level_trim_offsets(EncodingDraft& e, bool add_prefix_space) {
  constexpr char32_t kSpace = 0x120;  // "Ġ", the byte-level char of ' '
  auto is_space = [](char32_t c) { return c == kSpace || is_whitespace(c); };
  for (std::size_t i = 0; i < e.ids.size(); ++i) {
    const std::string& tok = e.tokens[i];
    auto& off = e.offsets[i];
    std::vector<char32_t> chars;
    for (std::size_t k = 0; k < tok.size();) chars.push_back(next_char(tok, k));
    std::size_t lead = 0, trail = 0;
    while (lead < chars.size() && is_space(chars[lead])) ++lead;
    while (trail < chars.size() && is_space(chars[chars.size() - 1 - trail])) ++trail;
    if (lead == 0 && trail == 0) continue;
    if (lead > 0) {
      const bool is_first = i == 0 || off.first == 0;
      if (is_first && add_prefix_space && lead == 1) lead = 0;
      off.first = std::min<int64_t>(off.first + int64_t(lead), off.second);
    }
    if (trail > 0 && off.second >= int64_t(trail)) off.second = std::max<int64_t>(off.second - int64_t(trail), off.first);
  }
}

namespace {

struct ByteLevelPost final : PostProcessor {
  bool trim, add_prefix_space;
  void process(EncodingDraft& e, bool) const override {
    if (trim) byte_level_trim_offsets(e, add_prefix_space);
  }
  std::string describe() const override { return trim ? "ByteLevel(trim_offsets)" : "ByteLevel"; }
};

struct SpecialToken {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
};

struct Template final : PostProcessor {
  // Pieces of the "single" template: a special token name, or the sequence ("A").
  struct Piece {
    bool is_sequence;
    std::string name;
  };
  std::vector<Piece> single;
  std::map<std::string, SpecialToken> specials;
  void process(EncodingDraft& e, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    EncodingDraft out;
    for (const Piece& p : single) {
      if (p.is_sequence) {
        for (std::size_t i = 0; i < e.ids.size(); ++i)
          out.push(e.ids[i], std::move(e.tokens[i]), e.offsets[i], e.special[i]);
        continue;
      }
      const SpecialToken& st = specials.at(p.name);
      for (std::size_t k = 0; k < st.ids.size(); ++k) out.push(st.ids[k], st.tokens[k], {0, 0}, true);
    }
    e = std::move(out);
  }
  std::string describe() const override {
    std::string s = "TemplateProcessing \"";
    for (std::size_t i = 0; i < single.size(); ++i) s += (i ? " " : "") + (single[i].is_sequence ? "$A" : single[i].name);
    return s + "\"";
  }
};

// RobertaProcessing / BertProcessing: cls A sep, RoBERTa trimming offsets like ByteLevel.
struct ClsSep final : PostProcessor {
  std::string cls, sep;
  int32_t cls_id, sep_id;
  bool trim = false, add_prefix_space = false;
  std::string name;
  void process(EncodingDraft& e, bool add_special_tokens) const override {
    if (trim) byte_level_trim_offsets(e, add_prefix_space);
    if (!add_special_tokens) return;
    EncodingDraft out;
    out.push(cls_id, cls, {0, 0}, true);
    for (std::size_t i = 0; i < e.ids.size(); ++i) out.push(e.ids[i], std::move(e.tokens[i]), e.offsets[i], e.special[i]);
    out.push(sep_id, sep, {0, 0}, true);
    e = std::move(out);
  }
  std::string describe() const override { return name; }
};

struct Sequence final : PostProcessor {
  std::vector<std::unique_ptr<PostProcessor>> parts;
  void process(EncodingDraft& e, bool add_special_tokens) const override {
    for (const auto& p : parts) p->process(e, add_special_tokens);
  }
  std::string describe() const override {
    std::string s = "Sequence[";
    for (std::size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : "") + parts[i]->describe();
    return s + "]";
  }
};

// ["[CLS]", 101]
std::pair<std::string, int32_t> token_pair(const json& j, std::string_view key, const Ctx& c) {
  const json& v = need_field(j, key, c);
  if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !(v[1].is_number_unsigned() || v[1].is_number_integer()) ||
      v[1].get<int64_t>() < 0 || v[1].get<int64_t>() > INT32_MAX)
    c.fail("field \"{}\": expected [\"<token>\", <id>], found {}", key, v.dump());
  return {v[0].get<std::string>(), int32_t(v[1].get<int64_t>())};
}

std::unique_ptr<PostProcessor> make_template(const json& j, const Ctx& c) {
  auto t = std::make_unique<Template>();
  const Ctx sc = c.child("special_tokens");
  if (const json* st = find_field(j, "special_tokens"); st && !st->is_null()) {
    if (!st->is_object()) sc.fail("expected an object, found {}", json_kind(*st));
    for (auto it = st->begin(); it != st->end(); ++it) {
      const Ctx ec = sc.child(it.key());
      need_object(it.value(), ec);
      SpecialToken s;
      const json& ids = need_field(it.value(), "ids", ec);
      const json& toks = need_field(it.value(), "tokens", ec);
      if (!ids.is_array() || !toks.is_array()) ec.fail("fields \"ids\" and \"tokens\" must be arrays");
      if (ids.size() != toks.size())
        ec.fail("\"ids\" has {} entries but \"tokens\" has {} (they must be of the same length)", ids.size(), toks.size());
      for (std::size_t k = 0; k < ids.size(); ++k) {
        if (!(ids[k].is_number_unsigned() || ids[k].is_number_integer()) || ids[k].get<int64_t>() < 0 ||
            ids[k].get<int64_t>() > INT32_MAX)
          ec.fail("ids[{}]: expected a token id, found {}", k, ids[k].dump());
        if (!toks[k].is_string()) ec.fail("tokens[{}]: expected a string, found {}", k, json_kind(toks[k]));
        s.ids.push_back(int32_t(ids[k].get<int64_t>()));
        s.tokens.push_back(toks[k].get<std::string>());
      }
      t->specials.emplace(it.key(), std::move(s));
    }
  }
  const json& single = need_field(j, "single", c);
  const Ctx tc = c.child("single");
  if (!single.is_array()) tc.fail("expected an array of template pieces, found {}", json_kind(single));
  for (std::size_t i = 0; i < single.size(); ++i) {
    const json& p = single[i];
    const Ctx pc = tc.index(i);
    if (p.is_object() && p.contains("SpecialToken")) {
      const std::string id = get_string(p["SpecialToken"], "id", pc.child("SpecialToken"));
      if (!t->specials.count(id)) pc.fail("special token \"{}\" is not in \"special_tokens\"", id);
      t->single.push_back({false, id});
    } else if (p.is_object() && p.contains("Sequence")) {
      const std::string id = get_string(p["Sequence"], "id", pc.child("Sequence"));
      if (id != "A" && id != "B") pc.fail("sequence id must be \"A\" or \"B\", found \"{}\"", id);
      t->single.push_back({true, id});
    } else {
      pc.fail("expected {{\"SpecialToken\": ...}} or {{\"Sequence\": ...}}, found {}", p.dump());
    }
  }
  return t;
}

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const json& j, const Ctx& c) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, c);
  if (type == "ByteLevel") {
    auto p = std::make_unique<ByteLevelPost>();
    p->trim = get_bool(j, "trim_offsets", c, true);
    p->add_prefix_space = get_bool(j, "add_prefix_space", c, true);
    return p;
  }
  if (type == "TemplateProcessing") return make_template(j, c);
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto p = std::make_unique<ClsSep>();
    std::tie(p->cls, p->cls_id) = token_pair(j, "cls", c);
    std::tie(p->sep, p->sep_id) = token_pair(j, "sep", c);
    if (type == "RobertaProcessing") {
      p->trim = get_bool(j, "trim_offsets", c, true);
      p->add_prefix_space = get_bool(j, "add_prefix_space", c, true);
    }
    p->name = type;
    return p;
  }
  if (type == "Sequence") {
      c.check_depth();
    const json& arr = need_field(j, "processors", c);
    if (!arr.is_array()) c.fail("field \"processors\": expected an array, found {}", json_kind(arr));
    auto s = std::make_unique<Sequence>();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      const Ctx ic = c.child("processors").index(i);
      auto p = make_post_processor(arr[i], ic);
      if (!p) ic.fail("expected a post-processor, found null");
      s->parts.push_back(std::move(p));
    }
    return s;
  }
  c.fail("unsupported type \"{}\" (supported: {})", type,
         join_quoted({"TemplateProcessing", "ByteLevel", "RobertaProcessing", "BertProcessing", "Sequence"}));
}

}  // namespace fusellm::tok
