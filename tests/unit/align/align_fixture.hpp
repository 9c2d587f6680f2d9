#pragma once
// Reader for the fixtures of tests/reference/gen_align.py (tests/fixtures/align/<pair>.{json,bin})
// and the deterministic source top-k rows both sides generate (align_reference.source_rows).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "fusellm/align/align_tokens.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::align::testing {

class AlignFixture {
 public:
  explicit AlignFixture(const std::string& stem) : dir_(stem.substr(0, stem.find_last_of('/'))) {
    std::ifstream j(stem + ".json");
    if (!j) fail("{}.json: missing (run python3 tests/reference/gen_align.py)", stem);
    meta = nlohmann::json::parse(j);
    std::ifstream b(stem + ".bin", std::ios::binary);
    bin_.assign(std::istreambuf_iterator<char>(b), {});
  }
  nlohmann::json meta;

  std::string path(const std::string& rel) const { return dir_ + "/" + rel; }

  template <class T>
  std::vector<T> get(const std::string& name) const {
    const auto& a = meta.at("arrays").at(name);
    const std::string dt = a.at("dtype");
    const size_t n = a.at("count"), off = a.at("offset");
    std::vector<T> out(n);
    auto read = [&](auto tag) {
      using S = decltype(tag);
      if (off + n * sizeof(S) > bin_.size()) fail("fixture array '{}' runs past the .bin", name);
      for (size_t i = 0; i < n; ++i) {
        S v;
        std::memcpy(&v, bin_.data() + off + i * sizeof(S), sizeof(S));
        out[i] = T(v);
      }
    };
    if (dt == "i32") read(int32_t{});
    else if (dt == "i64") read(int64_t{});
    else if (dt == "u8") read(uint8_t{});
    else if (dt == "u16") read(uint16_t{});
    else if (dt == "f32") read(float{});
    else fail("fixture array '{}': unknown dtype {}", name, dt);
    return out;
  }

 private:
  std::string dir_;
  std::vector<char> bin_;
};

// ---- align_reference.source_rows, bit for bit -------------------------------------------------
inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t fixture_rand(uint64_t seed, uint64_t doc, uint64_t pos, uint64_t counter) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ doc);
  h = splitmix64(h ^ pos);
  return splitmix64(h ^ counter);
}

// Rows for one document's source ids, appended to ids/probs ([n, k] row-major).
inline void source_rows(uint64_t seed, uint64_t doc, const int32_t* doc_ids, int64_t n, int k, int64_t model_vocab,
                        std::vector<int32_t>& ids, std::vector<float>& probs) {
  for (int64_t p = 0; p < n; ++p) {
    uint64_t counter = 0;
    std::vector<int64_t> chosen;
    const uint64_t r0 = fixture_rand(seed, doc, uint64_t(p), counter++);
    const int width = (r0 % 100 < 3) ? k - 1 : k;
    if (p + 1 < n && (r0 >> 8) % 10 < 6) chosen.push_back(doc_ids[p + 1]);
    while (int(chosen.size()) < width) {
      const int64_t c = int64_t(fixture_rand(seed, doc, uint64_t(p), counter++) % uint64_t(model_vocab));
      if (std::find(chosen.begin(), chosen.end(), c) == chosen.end()) chosen.push_back(c);
    }
    std::vector<std::pair<uint64_t, int64_t>> wc;
    uint64_t total = 0;
    for (int64_t c : chosen) {
      const uint64_t w = 1 + fixture_rand(seed, doc, uint64_t(p), counter++) % 1000;
      total += w;
      wc.emplace_back(w, c);
    }
    std::sort(wc.begin(), wc.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (int slot = 0; slot < k; ++slot) {
      if (slot < int(wc.size())) {
        ids.push_back(int32_t(wc[size_t(slot)].second));
        probs.push_back(float(double(wc[size_t(slot)].first) / double(total)));
      } else {
        ids.push_back(-1);
        probs.push_back(0.0f);
      }
    }
  }
}

// The fixture's documents as the aligner reads them: the source and the target tokenization of
// each document, with its text.
inline std::pair<DocBatch, DocBatch> doc_batches(const AlignFixture& fx, const TokenVocab& src, const TokenVocab& tgt) {
  const int64_t D = fx.meta["docs"];
  const auto text_bytes = fx.get<uint8_t>("text_bytes");
  const auto text_off = fx.get<int64_t>("text_offsets");
  const auto src_ids = fx.get<int32_t>("src_ids"), tgt_ids = fx.get<int32_t>("tgt_ids");
  const auto src_off = fx.get<int64_t>("src_offsets"), tgt_off = fx.get<int64_t>("tgt_offsets");
  DocBatch s, t;
  for (int64_t d = 0; d < D; ++d) {
    const std::string_view text(reinterpret_cast<const char*>(text_bytes.data()) + text_off[size_t(d)],
                                size_t(text_off[size_t(d) + 1] - text_off[size_t(d)]));
    s.add(src, std::span<const int32_t>(src_ids.data() + src_off[size_t(d)], src_ids.data() + src_off[size_t(d) + 1]), text);
    t.add(tgt, std::span<const int32_t>(tgt_ids.data() + tgt_off[size_t(d)], tgt_ids.data() + tgt_off[size_t(d) + 1]), text);
  }
  return {std::move(s), std::move(t)};
}

// source_rows of every document of the fixture, in order ([source tokens, k] row-major).
inline void all_source_rows(const AlignFixture& fx, int k, int64_t model_vocab, std::vector<int32_t>& ids,
                            std::vector<float>& probs) {
  const int64_t D = fx.meta["docs"];
  const auto src_ids = fx.get<int32_t>("src_ids");
  const auto src_off = fx.get<int64_t>("src_offsets");
  for (int64_t d = 0; d < D; ++d)
    source_rows(fx.meta["seed"].get<uint64_t>(), uint64_t(d), src_ids.data() + src_off[size_t(d)],
                src_off[size_t(d) + 1] - src_off[size_t(d)], k, model_vocab, ids, probs);
}

// The fixture's alignment `name` (doc-local lo and span per target position, -1 where none) as
// the global [lo, hi) source positions Aligner::align returns; doc_src0[p] is the first source
// position of target position p's document.
inline std::pair<std::vector<int32_t>, std::vector<int32_t>> expected_lo_hi(const AlignFixture& fx, const std::string& name,
                                                                           const std::vector<int32_t>& doc_src0) {
  auto lo = fx.get<int32_t>(name + ".lo");
  const auto span = fx.get<int32_t>(name + ".span");
  std::vector<int32_t> hi(lo.size(), -1);
  for (size_t p = 0; p < lo.size(); ++p) {
    if (lo[p] < 0) continue;
    lo[p] += doc_src0[p];
    hi[p] = lo[p] + span[p];
  }
  return {lo, hi};
}

inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xCBF29CE484222325ull) {
  const auto* b = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
  return h;
}

}  // namespace fusellm::align::testing
