// tokenizers' `AddedVocabulary`: id assignment (`add_tokens`), the two match sets
// (`refresh_added_tokens`) and the splitting (`find_matches`, `split_with_indices`,
// `extract_and_normalize`).
#include "fusellm/tokenizer/added_vocabulary.hpp"

#include <algorithm>

#include "fusellm/tokenizer/model.hpp"
#include "fusellm/tokenizer/normalizers.hpp"

namespace fusellm::tok {

// ---- LongestMatchTrie ------------------------------------------------------------------------
void LongestMatchTrie::clear() {
  nodes_.assign(1, Node{});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
}

int32_t LongestMatchTrie::child(int32_t node, unsigned char b) const {
  const auto& nx = nodes_[node].next;
  auto it = std::lower_bound(nx.begin(), nx.end(), b, [](const auto& p, unsigned char x) { return p.first < x; });
  return (it != nx.end() && it->first == b) ? it->second : -1;
}

void LongestMatchTrie::add(std::string_view pattern, int32_t value) {
  if (pattern.empty()) return;  // refused earlier (AddedVocabulary::refresh)
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (char ch : pattern) {
    const auto b = static_cast<unsigned char>(ch);
    int32_t nx = child(node, b);
    if (nx < 0) {
      nx = int32_t(nodes_.size());
      nodes_.emplace_back();
      auto& v = nodes_[node].next;
      auto it = std::lower_bound(v.begin(), v.end(), b, [](const auto& p, unsigned char x) { return p.first < x; });
      v.insert(it, {b, nx});
    }
    node = nx;
  }
  if (nodes_[node].value < 0) nodes_[node].value = value;  // the first of equal patterns wins
}

LongestMatchTrie::Hit LongestMatchTrie::find(std::string_view s, std::size_t from) const {
  for (std::size_t p = from; p < s.size(); ++p) {
    if (!first_byte_[static_cast<unsigned char>(s[p])]) continue;
    int32_t node = 0;
    std::size_t best_end = 0;
    int32_t best = -1;
    for (std::size_t q = p; q < s.size(); ++q) {
      node = child(node, static_cast<unsigned char>(s[q]));
      if (node < 0) break;
      if (nodes_[node].value >= 0) {
        best = nodes_[node].value;
        best_end = q + 1;
      }
    }
    if (best >= 0) return {p, best_end, best};
  }
  return {std::string_view::npos, 0, -1};
}

// ---- AddedVocabulary ------------------------------------------------------------------------
int32_t AddedVocabulary::add(const AddedToken& token, const Model& model) {
  if (token.special && !token.content.empty() && !special_set_.count(token.content)) {
    special_.push_back(token);
    special_set_.insert(token.content);
  }
  auto existing = map_.find(token.content);
  const bool ignored = token.content.empty() ||
                       (existing != map_.end() && map_r_.count(existing->second) && map_r_[existing->second] == token);
  if (!ignored) {
    int32_t id;
    if (existing != map_.end()) {
      id = existing->second;
    } else if (auto mid = model.token_to_id(token.content)) {
      id = *mid;
    } else {
      const auto vs = static_cast<int64_t>(model.vocab_size());
      if (map_.empty()) {
        id = int32_t(vs);
      } else {
        int64_t mx = 0;
        for (const auto& [k, v] : map_) mx = std::max<int64_t>(mx, v);
        id = int32_t((mx >= vs || vs == 0) ? mx + 1 : vs);
      }
    }
    map_[token.content] = id;
    map_r_[id] = token;
    if (!special_set_.count(token.content)) added_.push_back(token);
  }
  if (auto id = token_to_id(token.content)) return *id;
  if (auto id = model.token_to_id(token.content)) return *id;
  return -1;
}

void AddedVocabulary::refresh(const Model& model, const Normalizer* normalizer) {
  trie_.clear();
  normalized_trie_.clear();
  auto id_of = [&](const std::string& content) -> int32_t {
    if (auto it = map_.find(content); it != map_.end()) return it->second;
    if (auto id = model.token_to_id(content)) return *id;
    return -1;
  };
  auto add_one = [&](const AddedToken& t) {
    const int32_t id = id_of(t.content);
    if (id < 0 || t.content.empty()) return;
    if (!t.normalized) {
      trie_.add(t.content, id);
    } else {
      NormalizedString n(t.content, 0, t.content.size());
      if (normalizer) normalizer->normalize(n);
      // The library would match an empty pattern at every byte (and fail inside multi-byte
      // chars): a token that normalizes to nothing is refused instead.
      if (n.get().empty())
        fail("token \"{}\" (normalized: true) normalizes to an empty string; it would split the text "
             "everywhere (set \"normalized\": false or remove it)",
             t.content);
      normalized_trie_.add(n.get(), id);
    }
  };
  for (const auto& t : special_) add_one(t);
  for (const auto& t : added_) add_one(t);
}

std::optional<int32_t> AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = map_.find(std::string(content));
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

const AddedToken* AddedVocabulary::token(int32_t id) const {
  auto it = map_r_.find(id);
  return it == map_r_.end() ? nullptr : &it->second;
}

bool AddedVocabulary::is_special_id(int32_t id) const {
  const AddedToken* t = token(id);
  return t && special_set_.count(t->content);
}

namespace {
// The `regex` crate's \w$ / ^\w / \s*$ / ^\s* as the single_word, lstrip and rstrip rules use them.
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return is_regex_word(next_char(s, i));
}
bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = 0;
  return is_regex_word(next_char(s, i));
}
std::size_t space_leftmost_at_end(std::string_view s) {
  std::size_t e = s.size();
  while (e > 0) {
    std::size_t i = e - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    std::size_t j = i;
    if (!is_whitespace(next_char(s, j))) break;
    e = i;
  }
  return e;
}
std::size_t space_rightmost_at_start(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t j = i;
    if (!is_whitespace(next_char(s, j))) break;
    i = j;
  }
  return i;
}
}  // namespace

void AddedVocabulary::split_with_indices(NormalizedString&& s, const LongestMatchTrie& trie,
                                         std::vector<Split>& out) const {
  const std::string& text = s.get();
  if (text.empty()) return;  // a single empty piece, which the caller drops
  auto whole = [&] {
    // One piece covering everything; slicing recomputes its original_shift as the library does.
    s.reslice_whole();
    out.push_back(Split{std::move(s), false, {}, {}});
  };
  if (trie.empty()) return whole();
  auto first_hit = trie.find(text, 0);
  if (first_hit.b == std::string_view::npos) return whole();
  auto emit = [&](int32_t id, std::size_t b, std::size_t e) {
    if (b >= e) return;  // empty pieces are dropped by `PreTokenizedString::split`
    NormalizedString piece = s.slice(b, e);
    Split sp{std::move(piece), false, {}, {}};
    if (id >= 0) {
      sp.has_tokens = true;
      sp.added_value = sp.normalized.get();
      sp.tokens.push_back({id, 0, uint32_t(sp.normalized.size())});
    }
    out.push_back(std::move(sp));
  };
  std::size_t start_offset = 0, from = 0;
  for (bool first = true;; first = false) {
    const auto hit = first ? first_hit : trie.find(text, from);
    if (hit.b == std::string_view::npos) break;
    from = hit.e;  // the search resumes after the match itself, whatever lstrip/rstrip take
    std::size_t start = hit.b, stop = hit.e;
    const AddedToken* t = token(hit.value);
    if (t && t->single_word) {
      const bool start_space = start == 0 || !ends_with_word(std::string_view(text).substr(0, start));
      const bool stop_space = stop == text.size() || !starts_with_word(std::string_view(text).substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t && t->lstrip) start = std::max(space_leftmost_at_end(std::string_view(text).substr(0, start)), start_offset);
    if (t && t->rstrip) stop += space_rightmost_at_start(std::string_view(text).substr(stop));
    if (start_offset < start) emit(-1, start_offset, start);
    if (start > stop)  // lstrip pushed the start past a previous token's rstrip: the library panics
      fail("added tokens: token \"{}\" matched at bytes {}..{} overlaps the whitespace a previous token took; "
           "the tokenizers library fails here too",
           t ? t->content : std::string(), hit.b, hit.e);
    emit(hit.value, start, stop);
    start_offset = stop;
  }
  if (start_offset != text.size()) emit(-1, start_offset, text.size());
}

void AddedVocabulary::extract_and_normalize(const Normalizer* normalizer, std::string_view text,
                                            PreTokenizedString& out) const {
  out.splits.clear();
  std::vector<Split> first;
  split_with_indices(NormalizedString(text, 0, text.size()), trie_, first);
  out.splits.reserve(first.size());
  for (auto& sp : first) {
    if (sp.has_tokens) {
      out.splits.push_back(std::move(sp));
      continue;
    }
    if (normalizer) normalizer->normalize(sp.normalized);
    split_with_indices(std::move(sp.normalized), normalized_trie_, out.splits);
  }
}

}  // namespace fusellm::tok
