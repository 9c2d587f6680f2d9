#include "fusellm/align/token_normalize.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fusellm/core/error.hpp"
#include "kokkos/align_common.hpp"

namespace fusellm::align {
namespace {

// Inverse of GPT-2's bytes_to_unicode: code point -> byte, -1 where the code point is not in it.
const std::array<int16_t, 324>& byte_decoder() {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      if (printable(b)) t[size_t(b)] = int16_t(b);
      else t[size_t(256 + n++)] = int16_t(b);
    }
    return t;
  }();
  return table;
}

// Decodes one UTF-8 code point at s[i]; returns its length (1 for an invalid byte, cp = -1).
size_t next_code_point(std::string_view s, size_t i, int32_t& cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) { cp = -1; return 1; }
  cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d >> 6) != 0x2) { cp = -1; return 1; }
    cp = (cp << 6) | (d & 0x3F);
  }
  return len;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

// All components of a tokenizer.json part, Sequence members included.
void collect(const nlohmann::json& node, std::vector<const nlohmann::json*>& out) {
  if (!node.is_object()) return;
  out.push_back(&node);
  for (const char* key : {"pretokenizers", "decoders", "normalizers"}) {
    auto it = node.find(key);
    if (it != node.end() && it->is_array())
      for (const auto& sub : *it) collect(sub, out);
  }
}

std::string type_of(const nlohmann::json& c) {
  auto it = c.find("type");
  return it != c.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

bool is_byte_fallback(std::string_view token, NormKind kind, bool added) {
  return kind == NormKind::kMetaspace && !added && token.size() == 6 && token.substr(0, 3) == "<0x" &&
         token[5] == '>' && hex_digit(token[3]) >= 0 && hex_digit(token[4]) >= 0;
}

const char* to_string(NormKind kind) {
  switch (kind) {
    case NormKind::kByteLevel: return "byte_level";
    case NormKind::kMetaspace: return "metaspace";
    case NormKind::kPlain: return "plain";
  }
  return "plain";
}

std::string normalize_token(std::string_view token, NormKind kind, bool added) {
  if (added || kind == NormKind::kPlain) return std::string(token);
  std::string out;
  out.reserve(token.size());
  if (kind == NormKind::kByteLevel) {
    const auto& dec = byte_decoder();
    for (size_t i = 0; i < token.size();) {
      int32_t cp;
      const size_t len = next_code_point(token, i, cp);
      if (cp >= 0 && cp < int32_t(dec.size()) && dec[size_t(cp)] >= 0) out.push_back(char(dec[size_t(cp)]));
      else out.append(token.substr(i, len));
      i += len;
    }
    return out;
  }
  // Metaspace.
  if (is_byte_fallback(token, kind, added)) return std::string(1, char(hex_digit(token[3]) * 16 + hex_digit(token[4])));
  for (size_t i = 0; i < token.size();) {
    if (token.substr(i, 3) == kMetaspace) { out.push_back(' '); i += 3; }
    else out.push_back(token[i++]);
  }
  return out;
}

std::string cost_string(std::string_view normalized) {
  std::string out;
  out.reserve(normalized.size());
  for (char c : normalized)
    if (c != ' ') out.push_back(c);
  return out;
}

TokenVocab TokenVocab::from_tokens(std::string name, NormKind kind, std::vector<std::string> tokens,
                                   std::vector<uint8_t> flags, DummyPrefix dummy_prefix) {
  TokenVocab v;
  v.name = std::move(name);
  v.kind = kind;
  v.dummy_prefix = dummy_prefix;
  v.tokens = std::move(tokens);
  v.flags = std::move(flags);
  v.flags.resize(v.tokens.size(), 0);
  v.normalized.reserve(v.tokens.size());
  for (size_t i = 0; i < v.tokens.size(); ++i)
    v.normalized.push_back(normalize_token(v.tokens[i], kind, v.flags[i] & kTokenAdded));
  return v;
}

TokenVocab TokenVocab::from_tokenizer_json(const std::string& path_in) {
  std::filesystem::path path(path_in);
  if (std::filesystem::is_directory(path)) path /= "tokenizer.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the tokenizer file", path.string());
  nlohmann::json tj;
  try {
    tj = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path.string(), e.what());
  }
  const auto model = tj.find("model");
  if (model == tj.end() || !model->contains("vocab") || !(*model)["vocab"].is_object())
    fail("{}: 'model.vocab' is missing or not an object (alignment reads BPE-style vocabularies)",
         path.string());
  std::vector<std::pair<int64_t, std::string>> entries;
  int64_t n = 0;
  for (const auto& [tok, id] : (*model)["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      fail("{}: model.vocab['{}'] is not a non-negative integer id", path.string(), tok);
    entries.emplace_back(id.get<int64_t>(), tok);
    n = std::max(n, id.get<int64_t>() + 1);
  }
  struct Added { int64_t id; std::string content; bool special; };
  std::vector<Added> added;
  if (auto it = tj.find("added_tokens"); it != tj.end() && it->is_array()) {
    for (const auto& a : *it) {
      if (!a.contains("id") || !a.contains("content"))
        fail("{}: an added_tokens entry lacks 'id' or 'content'", path.string());
      added.push_back({a["id"].get<int64_t>(), a["content"].get<std::string>(),
                       a.value("special", false)});
      n = std::max(n, added.back().id + 1);
    }
  }
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<uint8_t> flags(size_t(n), 0);
  for (auto& [id, tok] : entries) tokens[size_t(id)] = std::move(tok);
  for (auto& a : added) {
    tokens[size_t(a.id)] = a.content;
    flags[size_t(a.id)] = uint8_t(kTokenAdded | (a.special ? kTokenSpecial : 0));
  }

  std::vector<const nlohmann::json*> pre, dec, norm;
  if (tj.contains("pre_tokenizer")) collect(tj["pre_tokenizer"], pre);
  if (tj.contains("decoder")) collect(tj["decoder"], dec);
  if (tj.contains("normalizer")) collect(tj["normalizer"], norm);
  std::vector<const nlohmann::json*> comps = pre;
  comps.insert(comps.end(), dec.begin(), dec.end());
  NormKind kind = NormKind::kPlain;
  bool byte_level = false, metaspace = false;
  for (const auto* c : comps) {
    const std::string t = type_of(*c);
    if (t == "ByteLevel") byte_level = true;
    if (t == "Metaspace") metaspace = true;
    if (t == "Replace" && c->contains("pattern") && (*c)["pattern"].is_object() &&
        (*c)["pattern"].value("String", "") == std::string(kMetaspace))
      metaspace = true;
  }
  if (byte_level) kind = NormKind::kByteLevel;
  else if (metaspace) kind = NormKind::kMetaspace;

  DummyPrefix dummy = DummyPrefix::kNone;
  for (const auto* c : norm)
    if (type_of(*c) == "Prepend" && c->value("prepend", "") == std::string(kMetaspace))
      dummy = DummyPrefix::kAlways;
  for (const auto* c : comps) {
    const std::string t = type_of(*c);
    if (t == "Metaspace") {
      const std::string scheme = c->contains("prepend_scheme") && (*c)["prepend_scheme"].is_string()
                                     ? (*c)["prepend_scheme"].get<std::string>() : "";
      if (scheme == "first" || scheme == "always" || c->value("add_prefix_space", false))
        dummy = DummyPrefix::kIfNoLeadingSpace;
    }
  }
  for (const auto* c : pre)
    if (type_of(*c) == "ByteLevel" && c->value("add_prefix_space", false))
      dummy = DummyPrefix::kIfNoLeadingSpace;
  return from_tokens(path.string(), kind, std::move(tokens), std::move(flags), dummy);
}

bool TokenVocab::special(int64_t id) const {
  return id >= 0 && id < size() && (flags[size_t(id)] & kTokenSpecial);
}

bool TokenVocab::byte_fallback(int64_t id) const {
  return id >= 0 && id < size() && is_byte_fallback(tokens[size_t(id)], kind, flags[size_t(id)] & kTokenAdded);
}

bool TokenVocab::hole(int64_t id) const {
  return id < 0 || id >= size() || (tokens[size_t(id)].empty() && !(flags[size_t(id)] & kTokenAdded));
}

size_t TokenVocab::max_normalized_len() const {
  size_t m = 0;
  for (const auto& s : normalized) m = std::max(m, s.size());
  return m;
}

uint64_t TokenVocab::fingerprint() const {
  uint64_t h = 0xCBF29CE484222325ull;
  auto feed = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
  };
  auto feed_u32 = [&](uint32_t v) {
    const unsigned char b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    feed(b, 4);
  };
  const std::string k = to_string(kind);
  feed(k.data(), k.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    feed_u32(uint32_t(i));
    feed(&flags[i], 1);
    feed_u32(uint32_t(tokens[i].size()));
    feed(tokens[i].data(), tokens[i].size());
  }
  return h;
}

std::string TokenVocab::fingerprint_hex() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fingerprint()));
  return buf;
}

std::pair<size_t, size_t> TokenVocab::edge_runs(std::span<const int32_t> ids) const {
  const size_t n = ids.size();
  size_t lead = 0, trail = 0;
  while (lead < n && special(ids[lead])) ++lead;
  while (trail < n - lead && special(ids[n - 1 - trail])) ++trail;
  return {lead, trail};
}

bool TokenVocab::dummy_inserted(std::string_view text) const {
  if (text.empty()) return false;
  switch (dummy_prefix) {
    case DummyPrefix::kAlways: return true;
    case DummyPrefix::kIfNoLeadingSpace: return text[0] != ' ';
    case DummyPrefix::kNone: return false;
  }
  return false;
}

std::vector<int64_t> TokenVocab::byte_ends(std::span<const int32_t> ids, bool inserted) const {
  for (const int32_t id : ids)
    if (id < 0 || id >= size()) fail("{}: token id {} is outside the vocabulary ({} entries)", name, id, size());
  const size_t n = ids.size();
  const auto [lead, trail] = edge_runs(ids);
  std::vector<int64_t> ends;
  ends.reserve(n);
  int64_t pos = 0;
  for (size_t p = 0; p < n; ++p) {
    if (p < lead || p >= n - trail) {  // BOS/EOS from the post-processor: zero width
      ends.push_back(pos);
      continue;
    }
    const std::string& s = normalized[size_t(ids[p])];
    int64_t len = int64_t(s.size());
    // The dummy prefix is the leading space of the first content token; a tokenizer that emits
    // it as a token of its own ("▁") makes that token zero-width.
    if (p == lead && inserted && !s.empty() && s[0] == ' ') --len;
    pos += len;
    ends.push_back(pos);
  }
  return ends;
}

}  // namespace fusellm::align
