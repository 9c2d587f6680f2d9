#pragma once
// Added and special tokens (tokenizer.json "added_tokens"), as tokenizers' `AddedVocabulary`:
// they are split out of the input before the model sees it; non-normalized ones are matched on
// the raw text, normalized ones on the normalized pieces, leftmost-longest.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fusellm/tokenizer/normalized_string.hpp"

namespace fusellm::tok {

class Model;
class Normalizer;

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  bool operator==(const AddedToken&) const = default;
};

// Leftmost-longest multi-pattern search over bytes (the aho-corasick crate's
// MatchKind::LeftmostLongest; among equal patterns the first added wins).
class LongestMatchTrie {
 public:
  void clear();
  void add(std::string_view pattern, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // First match at or after `from`: (begin, end, value), or begin == npos.
  struct Hit {
    std::size_t b, e;
    int32_t value;
  };
  Hit find(std::string_view s, std::size_t from) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t value = -1;
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  // One `add_tokens`/`add_special_tokens` call with a single token, as the library does for each
  // entry of "added_tokens" in file order; returns the id the token got. Call refresh() after
  // the last one (the library rebuilds its match sets after each; only the last build counts).
  int32_t add(const AddedToken& token, const Model& model);
  // `refresh_added_tokens`: the match sets, normalized tokens normalized with normalizer. A
  // normalized token whose normalized form is empty is an Error.
  void refresh(const Model& model, const Normalizer* normalizer);

  std::optional<int32_t> token_to_id(std::string_view content) const;  // added tokens only
  const AddedToken* token(int32_t id) const;
  bool is_special(std::string_view content) const { return special_set_.count(std::string(content)) != 0; }
  bool is_special_id(int32_t id) const;
  const std::unordered_map<std::string, int32_t>& map() const { return map_; }
  std::size_t size() const { return map_.size(); }

  // `extract_and_normalize`: splits text on added tokens, normalizing the pieces in between.
  void extract_and_normalize(const Normalizer* normalizer, std::string_view text, PreTokenizedString& out) const;

 private:
  void split_with_indices(NormalizedString&& s, const LongestMatchTrie& trie, std::vector<Split>& out) const;

  std::unordered_map<std::string, int32_t> map_;
  std::unordered_map<int32_t, AddedToken> map_r_;
  std::vector<AddedToken> added_, special_;
  std::unordered_set<std::string> special_set_;
  LongestMatchTrie trie_, normalized_trie_;
};

}  // namespace fusellm::tok
