#pragma once
// The BPE model (tokenizer.json "model": {"type": "BPE"}), as tokenizers' `models::bpe`:
// a word becomes one symbol per char (or byte-fallback tokens <0xXX>, or unk), then pairs are
// merged by rank with a priority queue over a linked list of symbols (`Word::merge_all`);
// results are cached per word.
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fusellm/tokenizer/model.hpp"

namespace fusellm::tok {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Open-addressing map (id_a, id_b) -> (rank, new_id).
class MergeMap {
 public:
  struct Entry {
    uint64_t key;
    uint32_t rank;
    int32_t new_id;
  };
  void reserve(std::size_t n);
  void insert(int32_t a, int32_t b, uint32_t rank, int32_t new_id);  // later insert wins
  const Entry* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(a, b);
    for (std::size_t i = slot(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  std::size_t slot(uint64_t key) const { return std::size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Entry> slots_;
  std::size_t mask_ = 0, size_ = 0;
  unsigned shift_ = 63;  // 64 - log2(capacity): the top bits of the product pick the slot
};

class Bpe final : public Model {
 public:
  Bpe(const json& j, const Ctx& c);
  ~Bpe() override;

  void tokenize(std::string_view word, std::vector<Token>& out) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  const std::string* id_to_token(int32_t id) const override;
  std::size_t vocab_size() const override { return vocab_.size(); }
  std::string describe() const override;

  bool byte_fallback() const { return byte_fallback_; }

 private:
  void load_vocab(const json& j, const Ctx& c);   // "vocab": {token: id}, and the id -> token table
  void load_merges(const json& j, const Ctx& c);  // "merges": strings or pairs, in rank order
  void build_lookups();
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    uint32_t len;
  };
  void merge_word(std::string_view word, std::vector<Symbol>& syms) const;
  void merge_all(std::vector<Symbol>& syms) const;
  int32_t char_id(std::string_view ch, char32_t c) const;

  Vocab vocab_;
  std::vector<std::string> vocab_r_;
  std::vector<uint8_t> has_r_;
  MergeMap merges_;
  std::optional<std::string> unk_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> tokens, -1 when absent
  std::vector<int32_t> bmp_char_id_;     // single-char tokens of the BMP (no prefix/suffix case)

  // Word cache, as the library's (which holds words of any length, so a whole document when
  // there is no pre-tokenizer): sharded, bounded in entries and bytes, never evicts.
  struct CacheShard {
    std::mutex m;
    std::unordered_map<std::string, std::vector<Token>, StringHash, std::equal_to<>> map;
    std::size_t bytes = 0;
  };
  static constexpr std::size_t kShards = 16, kShardCapacity = 8192, kShardBytes = std::size_t(2) << 20;
  mutable std::array<CacheShard, kShards> cache_;
};

}  // namespace fusellm::tok
