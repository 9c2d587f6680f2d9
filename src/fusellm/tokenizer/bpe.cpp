// BPE, as tokenizers' `models::bpe::BPE` (`merge_word`, `Word::merge_all`, the word cache) and
// its deserializer (vocab, merges in "a b" or ["a", "b"] form, options).
#include "fusellm/tokenizer/bpe.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace fusellm::tok {

// ---- MergeMap ---------------------------------------------------------------------------------
void MergeMap::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - unsigned(__builtin_ctzll(cap));
  size_ = 0;
}

void MergeMap::insert(int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
  if (slots_.empty() || (size_ + 1) * 2 > slots_.size()) {
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<std::size_t>(size_ + 1, old.size()));
    for (const Entry& e : old)
      if (e.key != kEmpty) insert(int32_t(e.key >> 32), int32_t(uint32_t(e.key)), e.rank, e.new_id);
  }
  const uint64_t key = pack(a, b);
  for (std::size_t i = slot(key);; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) {  // a repeated merge: the later rank wins, as collecting into a HashMap
      e.rank = rank;
      e.new_id = new_id;
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, new_id};
      ++size_;
      return;
    }
  }
}

// ---- loading --------------------------------------------------------------------------------
Bpe::Bpe(const json& j, const Ctx& c) {
  // dropout: random merges would make encodings irreproducible; only "off" is accepted.
  if (const json* d = find_field(j, "dropout"); d && !d->is_null()) {
    if (!d->is_number()) c.fail("field \"dropout\": expected a number or null, found {}", json_kind(*d));
    if (d->get<double>() != 0.0)
      c.fail("field \"dropout\": {} is not supported (BPE dropout makes encodings random; only null or 0)", d->dump());
  }
  if (const json* u = find_field(j, "unk_token"); u && !u->is_null()) unk_ = get_string(j, "unk_token", c);
  prefix_ = get_string(j, "continuing_subword_prefix", c, "");
  suffix_ = get_string(j, "end_of_word_suffix", c, "");
  fuse_unk_ = get_bool(j, "fuse_unk", c, false);
  byte_fallback_ = get_bool(j, "byte_fallback", c, false);
  ignore_merges_ = get_bool(j, "ignore_merges", c, false);
  load_vocab(j, c);
  load_merges(j, c);
  build_lookups();
}

void Bpe::load_vocab(const json& j, const Ctx& c) {
  const json& v = need_field(j, "vocab", c);
  const Ctx vc = c.child("vocab");
  if (!v.is_object()) vc.fail("expected an object {{token: id}}, found {}", json_kind(v));
  vocab_.reserve(v.size());
  int64_t max_id = -1;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const json& id = it.value();
    if (!(id.is_number_unsigned() || (id.is_number_integer() && id.get<int64_t>() >= 0)) ||
        id.get<uint64_t>() > uint64_t(INT32_MAX))
      vc.fail("token \"{}\": expected an id in [0, {}], found {}", it.key(), INT32_MAX, id.dump());
    const auto x = int32_t(id.get<uint64_t>());
    vocab_.emplace(it.key(), x);
    max_id = std::max<int64_t>(max_id, x);
  }
  // ids index a table; a vocabulary whose ids are mostly holes is a broken file (and would cost
  // gigabytes), not a tokenizer
  if (max_id >= 2 * int64_t(vocab_.size()) + 65536)
    vc.fail("id {} is implausibly large for a vocabulary of {} tokens", max_id, vocab_.size());
  vocab_r_.assign(std::size_t(max_id + 1), std::string());
  has_r_.assign(std::size_t(max_id + 1), 0);
  for (const auto& [tok, id] : vocab_) {
    if (!has_r_[id]) {
      vocab_r_[id] = tok;
      has_r_[id] = 1;
    }
  }
}

void Bpe::load_merges(const json& j, const Ctx& c) {
  const json* mj = find_field(j, "merges");
  const Ctx mc = c.child("merges");
  if (!mj || mj->is_null()) c.fail("missing field \"merges\"");
  if (!mj->is_array()) mc.fail("expected an array, found {}", json_kind(*mj));
  merges_.reserve(mj->size());
  uint32_t rank = 0;
  for (std::size_t i = 0; i < mj->size(); ++i) {
    const json& m = (*mj)[i];
    const Ctx ic = mc.index(i);
    std::string a, b;
    if (m.is_string()) {
      const std::string& line = m.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;  // header line of merges.txt, not a merge
      const auto sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        ic.fail("expected \"<left> <right>\" (two tokens separated by one space), found \"{}\"", line);
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      ic.fail("expected \"<left> <right>\" or [\"<left>\", \"<right>\"], found {}", m.dump());
    }
    auto ia = vocab_.find(a);
    if (ia == vocab_.end()) ic.fail("merge \"{} {}\": \"{}\" is not in the vocabulary", a, b, a);
    auto ib = vocab_.find(b);
    if (ib == vocab_.end()) ic.fail("merge \"{} {}\": \"{}\" is not in the vocabulary", a, b, b);
    if (b.size() < prefix_.size() || b.compare(0, prefix_.size(), prefix_) != 0)
      ic.fail("merge \"{} {}\": \"{}\" does not start with the continuing_subword_prefix \"{}\"", a, b, b, prefix_);
    const std::string merged = a + b.substr(prefix_.size());
    auto in = vocab_.find(merged);
    if (in == vocab_.end()) ic.fail("merge \"{} {}\": the merged token \"{}\" is not in the vocabulary", a, b, merged);
    merges_.insert(ia->second, ib->second, rank, in->second);
    ++rank;
  }
}

// Byte-fallback ids (<0xNN>) and, without prefix/suffix, a direct table char -> id for the BMP.
void Bpe::build_lookups() {
  for (int bt = 0; bt < 256; ++bt) {
    auto it = vocab_.find(fmt::format("<0x{:02X}>", bt));
    byte_ids_[bt] = it == vocab_.end() ? -1 : it->second;
  }
  if (prefix_.empty() && suffix_.empty()) {
    bmp_char_id_.assign(0x10000, -1);
    for (const auto& [tok, id] : vocab_) {
      if (tok.empty() || tok.size() > 3) continue;
      std::size_t i = 0;
      const char32_t ch = next_char(tok, i);
      if (i == tok.size() && ch < 0x10000) bmp_char_id_[ch] = id;
    }
  }
}

Bpe::~Bpe() = default;

std::optional<int32_t> Bpe::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || std::size_t(id) >= vocab_r_.size() || !has_r_[id]) return nullptr;
  return &vocab_r_[id];
}

std::string Bpe::describe() const {
  std::string s = fmt::format("BPE, {} tokens, {} merges", vocab_.size(), merges_.size());
  if (byte_fallback_) s += ", byte_fallback";
  if (unk_) s += fmt::format(", unk \"{}\"{}", *unk_, fuse_unk_ ? " (fused)" : "");
  if (ignore_merges_) s += ", ignore_merges";
  if (!prefix_.empty()) s += fmt::format(", continuing_subword_prefix \"{}\"", prefix_);
  if (!suffix_.empty()) s += fmt::format(", end_of_word_suffix \"{}\"", suffix_);
  return s;
}

// ---- encoding -------------------------------------------------------------------------------
int32_t Bpe::char_id(std::string_view ch, char32_t c) const {
  if (c < 0x10000 && !bmp_char_id_.empty()) return bmp_char_id_[c];
  auto it = vocab_.find(ch);
  return it == vocab_.end() ? -1 : it->second;
}

void Bpe::merge_word(std::string_view w, std::vector<Symbol>& syms) const {
  // tokenizers' `BPE::merge_word`: one symbol per char (with the subword prefix on all but the
  // first, the word suffix on the last); unknown chars become byte-fallback tokens when all of
  // their bytes exist, else unk (fused into the previous unk when fuse_unk).
  syms.clear();
  auto add = [&](int32_t id, uint32_t len) {
    const auto n = int32_t(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back(Symbol{id, n - 1, -1, len});
  };
  bool have_unk = false;
  int32_t unk_id = -1;
  uint32_t unk_len = 0;
  const bool affixes = !prefix_.empty() || !suffix_.empty();
  std::string s;
  std::size_t i = 0;
  while (i < w.size()) {
    const std::size_t b = i;
    const char32_t c = next_char(w, i);
    const auto byte_len = uint32_t(i - b);
    std::string_view piece = w.substr(b, byte_len);
    int32_t id;
    if (!affixes) {
      id = char_id(piece, c);
    } else {
      s.clear();
      if (b != 0) s += prefix_;
      s += piece;
      if (i == w.size()) s += suffix_;
      piece = s;
      auto it = vocab_.find(piece);
      id = it == vocab_.end() ? -1 : it->second;
    }
    if (id >= 0) {
      if (have_unk) {
        add(unk_id, unk_len);
        have_unk = false;
      }
      add(id, byte_len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char ch : piece) all = all && byte_ids_[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        for (char ch : piece) add(byte_ids_[static_cast<unsigned char>(ch)], 1);
        continue;
      }
    }
    if (unk_) {
      if (have_unk && fuse_unk_) {
        unk_len += byte_len;
      } else {
        if (have_unk) add(unk_id, unk_len);
        auto it = vocab_.find(*unk_);
        if (it == vocab_.end())
          fail("BPE: the unk_token \"{}\" is not in the vocabulary (needed for \"{}\")", *unk_, std::string(piece));
        unk_id = it->second;
        unk_len = byte_len;
        have_unk = true;
      }
    }
  }
  if (have_unk) add(unk_id, unk_len);
  merge_all(syms);
}

void Bpe::merge_all(std::vector<Symbol>& syms) const {
  // tokenizers' `Word::merge_all`: a min-queue on (rank, position); a popped entry is stale when
  // its left symbol was merged away or the pair there no longer merges into the same token.
  const auto n = syms.size();
  if (n < 2) return;
  if (n == 2) {
    if (const auto* m = merges_.find(syms[0].id, syms[1].id)) {
      syms[0].id = m->new_id;
      syms[0].len += syms[1].len;
      syms.pop_back();
    }
    return;
  }
  // Queue entries keyed by (rank << 32 | pos): one integer comparison orders them by rank, then
  // by position, as the library's `Merge` ordering does.
  struct Item {
    uint64_t key;
    int32_t new_id;
  };
  struct Later {  // std heaps keep the "largest" on top: make that the smallest key
    bool operator()(const Item& a, const Item& b) const { return a.key > b.key; }
  };
  auto key_of = [](uint32_t rank, int32_t pos) { return (uint64_t(rank) << 32) | uint32_t(pos); };
  thread_local std::vector<Item> heap;
  heap.clear();
  const Later later;
  auto push = [&](const Item& it) {
    heap.push_back(it);
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (std::size_t k = 0; k + 1 < n; ++k)
    if (const auto* m = merges_.find(syms[k].id, syms[k + 1].id)) heap.push_back({key_of(m->rank, int32_t(k)), m->new_id});
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Item top = heap.back();
    heap.pop_back();
    const auto pos = int32_t(uint32_t(top.key));
    Symbol& cur = syms[pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = syms[next_pos];
    const auto* m = merges_.find(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next > -1 && std::size_t(right.next) < n) syms[right.next].prev = pos;
    if (cur.prev >= 0) {
      if (const auto* pm = merges_.find(syms[cur.prev].id, cur.id)) push({key_of(pm->rank, cur.prev), pm->new_id});
    }
    if (cur.next >= 0 && std::size_t(cur.next) < n) {
      if (const auto* nm = merges_.find(cur.id, syms[cur.next].id)) push({key_of(nm->rank, pos), nm->new_id});
    }
  }
  syms.erase(std::remove_if(syms.begin(), syms.end(), [](const Symbol& s) { return s.len == 0; }), syms.end());
}

void Bpe::tokenize(std::string_view word, std::vector<Token>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back({it->second, 0, uint32_t(word.size())});
      return;
    }
  }
  const std::size_t h = StringHash{}(word);
  CacheShard& shard = cache_[(h >> 7) % kShards];
  {
    std::unique_lock<std::mutex> lock(shard.m, std::try_to_lock);
    if (lock.owns_lock()) {
      auto it = shard.map.find(word);
      if (it != shard.map.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
  }
  thread_local std::vector<Symbol> syms;
  merge_word(word, syms);
  const std::size_t first = out.size();
  uint32_t pos = 0;
  for (const Symbol& s : syms) {
    out.push_back({s.id, pos, pos + s.len});
    pos += s.len;
  }
  const std::size_t cost = word.size() + (out.size() - first) * sizeof(Token) + 64;
  std::unique_lock<std::mutex> lock(shard.m, std::try_to_lock);
  if (lock.owns_lock() && shard.map.size() < kShardCapacity && shard.bytes + cost <= kShardBytes) {
    shard.map.emplace(std::string(word), std::vector<Token>(out.begin() + first, out.end()));
    shard.bytes += cost;
  }
}

std::unique_ptr<Model> make_model(const json& j, const Ctx& c) {
  if (j.is_null()) c.fail("expected a model, found null");
  need_object(j, c);
  std::string type;
  if (const json* t = find_field(j, "type"); t && !t->is_null()) {
    type = type_of(j, c);
  } else if (j.contains("merges")) {
    type = "BPE";  // files from before the "type" field
  } else {
    c.fail("missing field \"type\"");
  }
  if (type == "BPE") return std::make_unique<Bpe>(j, c);
  c.fail("unsupported type \"{}\" (supported: \"BPE\"; WordPiece, Unigram and WordLevel models are not implemented)",
         type);
}

}  // namespace fusellm::tok
