// The tokenizer.json pipeline (tokenizers' `TokenizerImpl`): loading the parts, then
// `encode_single_sequence` (extract_and_normalize, do_pre_tokenize, do_tokenize,
// `into_encoding` with char offsets, post_process) and `decode`.
#include "fusellm/tokenizer/hf_tokenizer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_set>

#include "fusellm/tokenizer/unicode.hpp"

namespace fusellm::tok {

namespace {
std::string part_name(const json& j, const char* what) {
  if (j.is_null()) return "";
  if (j.is_object() && j.contains("type") && j["type"].is_string()) {
    std::string s = std::string(what) + " " + j["type"].get<std::string>();
    for (const char* key : {"normalizers", "pretokenizers", "processors", "decoders"}) {
      if (j.contains(key) && j[key].is_array()) {
        s += "[";
        bool first = true;
        for (const auto& x : j[key]) {
          if (!first) s += ", ";
          first = false;
          s += x.is_object() && x.contains("type") && x["type"].is_string() ? x["type"].get<std::string>() : "?";
        }
        s += "]";
      }
    }
    return s;
  }
  return std::string(what) + " ?";
}
}  // namespace

HFTokenizer::HFTokenizer(const json& j, const std::string& origin) : origin_(origin) {
  const Ctx root{origin, ""};
  if (!j.is_object()) throw Error(origin + ": expected a JSON object at the top level, found " + json_kind(j));
  if (const json* v = find_field(j, "version"); v && !v->is_null()) {
    if (!v->is_string() || v->get<std::string>() != "1.0")
      throw Error(origin + ": version: unknown tokenizer.json version " + v->dump() + " (supported: \"1.0\")");
  }
  for (const char* k : {"truncation", "padding"})
    if (const json* v = find_field(j, k); v && !v->is_null())
      spdlog::warn("{}: \"{}\" is set; fusellm ignores it and encodes whole texts", origin, k);

  const json null_json;
  auto field = [&](const char* k) -> const json& {
    const json* v = find_field(j, k);
    return v ? *v : null_json;
  };
  normalizer_ = make_normalizer(field("normalizer"), root.child("normalizer"));
  pre_tokenizer_ = make_pre_tokenizer(field("pre_tokenizer"), root.child("pre_tokenizer"));
  if (!find_field(j, "model")) throw Error(origin + ": model: missing (a tokenizer.json needs a \"model\")");
  model_ = make_model(field("model"), root.child("model"));
  post_processor_ = make_post_processor(field("post_processor"), root.child("post_processor"));
  decoder_ = make_decoder(field("decoder"), root.child("decoder"));

  // added_tokens, one `add_tokens`/`add_special_tokens` call each, in file order.
  if (const json* at = find_field(j, "added_tokens"); at && !at->is_null()) {
    const Ctx ac = root.child("added_tokens");
    if (!at->is_array()) ac.fail("expected an array, found {}", json_kind(*at));
    for (std::size_t i = 0; i < at->size(); ++i) {
      const json& e = (*at)[i];
      const Ctx ec = ac.index(i);
      need_object(e, ec);
      AddedToken t;
      t.content = get_string(e, "content", ec);
      if (find_invalid_utf8(t.content) != std::string::npos) ec.fail("content is not valid UTF-8");
      t.special = get_bool(e, "special", ec, false);
      t.single_word = get_bool(e, "single_word", ec, false);
      t.lstrip = get_bool(e, "lstrip", ec, false);
      t.rstrip = get_bool(e, "rstrip", ec, false);
      t.normalized = get_bool(e, "normalized", ec, !t.special);
      const json& idj = need_field(e, "id", ec);
      if (!(idj.is_number_unsigned() || idj.is_number_integer()) || idj.get<int64_t>() < 0 ||
          idj.get<int64_t>() > INT32_MAX)
        ec.fail("\"{}\": id {} is out of range (expected an integer in [0, {}])", t.content, idj.dump(), INT32_MAX);
      const auto want = int32_t(idj.get<int64_t>());
      if (t.content.empty()) {
        // `AddedVocabulary::add_tokens` skips a token whose content is empty: no id, never matched.
        spdlog::warn("{}: {}: an added token with an empty \"content\" is ignored (as the tokenizers library "
                     "does); id {} stays unassigned",
                     origin, ec.part, want);
        continue;
      }
      const int32_t got = added_.add(t, *model_);
      if (got != want)
        ec.fail("\"{}\": id {} is out of range: the tokenizers library gives this token id {} (the model has {} "
                "tokens; new added tokens take the next free ids in file order)",
                t.content, want, got, model_->vocab_size());
    }
  }
  try {
    added_.refresh(*model_, normalizer_.get());
  } catch (const Error& e) {
    root.child("added_tokens").fail("{}", e.what());
  }

  // get_vocab_size(with_added_tokens=true): the union of the model's and the added tokens.
  vocab_size_ = int64_t(model_->vocab_size());
  for (const auto& [content, id] : added_.map())
    if (!model_->token_to_id(content)) ++vocab_size_;

  summary_ = model_->describe();
  if (pre_tokenizer_ && pre_tokenizer_->is_byte_level()) summary_.insert(3, " (byte-level)");
  if (added_.size()) summary_ += fmt::format(", {} added tokens", added_.size());
  for (const auto& [json_key, label] : {std::pair{"normalizer", "normalizer"}, {"pre_tokenizer", "pre-tokenizer"},
                                        {"post_processor", "post-processor"}, {"decoder", "decoder"}}) {
    const std::string s = part_name(field(json_key), label);
    if (!s.empty()) summary_ += "; " + s;
  }
}

namespace {

// `into_encoding` with OffsetType::Char: byte offsets in the input, then the
// BytesToCharOffsetConverter (a byte maps to the index of the char containing it); and back to
// byte offsets for Encoding.byte_offsets. ASCII text needs no tables.
class CharOffsets {
 public:
  explicit CharOffsets(std::string_view text) : size_(text.size()) {
    ascii_ = std::all_of(text.begin(), text.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
    if (ascii_) return;
    char_of_byte_.resize(text.size());
    uint32_t ci = 0;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = utf8_len_from_lead(static_cast<unsigned char>(text[i]));
      byte_of_char_.push_back(uint32_t(i));
      for (std::size_t k = 0; k < n; ++k) char_of_byte_[i + k] = ci;
      ++ci;
      i += n;
    }
    byte_of_char_.push_back(uint32_t(text.size()));
  }
  std::pair<int64_t, int64_t> to_chars(std::size_t b, std::size_t e) const {
    if (ascii_) return {int64_t(b), int64_t(e)};
    if (b >= size_) return {int64_t(b), int64_t(e)};  // start not in the map: kept as is
    const int64_t s = char_of_byte_[b];
    if (e < size_) return {s, char_of_byte_[e]};
    const int64_t last = (e >= 1 && e - 1 < size_) ? char_of_byte_[e - 1] : s + 1;
    return {s, last + 1};
  }
  std::pair<int64_t, int64_t> to_bytes(int64_t cb, int64_t ce) const {
    if (ascii_) return {cb, ce};
    const auto nchars = int64_t(byte_of_char_.size() - 1);
    auto to_byte = [&](int64_t c) { return c <= 0 ? 0 : c >= nchars ? int64_t(size_) : int64_t(byte_of_char_[c]); };
    return {to_byte(cb), to_byte(ce)};
  }

 private:
  std::size_t size_;
  bool ascii_ = true;
  std::vector<uint32_t> char_of_byte_, byte_of_char_;
};

}  // namespace

Encoding HFTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const auto bad = find_invalid_utf8(text); bad != std::string_view::npos)
    fail("tokenizer encode: the input is not valid UTF-8 (byte {})", bad);
  if (text.size() >= UINT32_MAX / 2) fail("tokenizer encode: input of {} bytes is too large", text.size());

  PreTokenizedString pts;
  added_.extract_and_normalize(normalizer_.get(), text, pts);
  if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pts);
  for (Split& sp : pts.splits) {
    if (sp.has_tokens) continue;
    model_->tokenize(sp.normalized.get(), sp.tokens);
    sp.has_tokens = true;
  }

  const CharOffsets offsets(text);

  EncodingDraft d;
  std::size_t n = 0;
  for (const Split& sp : pts.splits) n += sp.tokens.size();
  d.ids.reserve(n + 4);
  d.tokens.reserve(n + 4);
  d.offsets.reserve(n + 4);
  d.special.reserve(n + 4);
  for (const Split& sp : pts.splits) {
    for (const Token& t : sp.tokens) {
      const auto [ob, oe] = sp.normalized.to_original(t.b, t.e);
      std::string value;
      if (!sp.added_value.empty()) {
        value = sp.added_value;
      } else if (const std::string* s = model_->id_to_token(t.id)) {
        value = *s;
      }
      d.push(t.id, std::move(value), offsets.to_chars(ob, oe), !sp.added_value.empty() && added_.is_special_id(t.id));
    }
  }
  if (post_processor_) post_processor_->process(d, add_special_tokens);

  // Encoding.tokens holds vocabulary strings: an added token matched with lstrip/rstrip keeps
  // the whitespace it took in the library's token value (used above for offset trimming), here
  // it is reported as its content.
  for (std::size_t k = 0; k < d.ids.size(); ++k)
    if (const AddedToken* a = added_.token(d.ids[k])) d.tokens[k] = a->content;

  Encoding out;
  out.ids = std::move(d.ids);
  out.tokens = std::move(d.tokens);
  out.special = std::move(d.special);
  out.char_offsets = std::move(d.offsets);
  out.byte_offsets.reserve(out.char_offsets.size());
  for (const auto& [cb, ce] : out.char_offsets) out.byte_offsets.push_back(offsets.to_bytes(cb, ce));
  return out;
}

std::string HFTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    std::string t;
    if (const AddedToken* a = added_.token(id)) {
      t = a->content;
    } else if (const std::string* s = model_->id_to_token(id)) {
      t = *s;
    } else {
      continue;  // unknown ids are skipped, as the library does
    }
    if (skip_special_tokens && added_.is_special(t)) continue;
    tokens.push_back(std::move(t));
  }
  if (!decoder_) {
    std::string s;
    for (std::size_t i = 0; i < tokens.size(); ++i) s += (i ? " " : "") + tokens[i];
    return s;
  }
  decoder_->decode_chain(tokens);
  std::string s;
  for (const auto& t : tokens) s += t;
  return s;
}

std::optional<int32_t> HFTokenizer::token_to_id(std::string_view token) const {
  if (auto id = added_.token_to_id(token)) return id;
  return model_->token_to_id(token);
}

std::string HFTokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* a = added_.token(id)) return a->content;
  if (const std::string* s = model_->id_to_token(id)) return *s;
  return "";
}

std::string HFTokenizer::describe() const { return summary_; }

}  // namespace fusellm::tok
