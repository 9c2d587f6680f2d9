#include "fusellm/align/vocab_mapping.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "fusellm/align/align_device.hpp"
#include "fusellm/align/align_spaces.hpp"
#include "fusellm/align/original_host.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/io/hdf5_attribute.hpp"
#include "fusellm/io/hdf5_dataset.hpp"
#include "fusellm/io/hdf5_handle.hpp"
#include "fusellm/io/hdf5_whole_file.hpp"
#include "fusellm/io/xxhash64.hpp"
#include "kokkos/vocab_mapping.hpp"

namespace fusellm::align {

// Every one of the n source ids unmapped: the state both mapping builders start from.
void detail::set_unmapped(VocabMapping& m, int64_t n) {
  m.exact.assign(size_t(n), -1);
  m.full.assign(size_t(n), -1);
  m.dist.assign(size_t(n), -1);
  m.kind.assign(size_t(n), kMapUnmapped);
}

// Explicit (source id, target id) pairs win over both the exact and the MinED mapping.
void detail::apply_overrides(VocabMapping& m, std::span<const std::pair<int32_t, int32_t>> overrides,
                             int64_t target_size) {
  const int64_t n = int64_t(m.full.size());
  for (const auto& [s, t] : overrides) {
    if (s < 0 || s >= n) fail("vocab mapping override: source id {} is outside [0, {})", s, n);
    if (t < 0 || t >= target_size) fail("vocab mapping override: target id {} is outside [0, {})", t, target_size);
    m.exact[size_t(s)] = m.full[size_t(s)] = t;
    m.kind[size_t(s)] = kMapOverride;
    m.dist[size_t(s)] = 0;
  }
}

namespace {

constexpr const char* kFormat = "fusellm vocab mapping v1";
constexpr const char* kAlgorithm =
    "exact normalized-string match (lowest id), else MinED: byte Levenshtein, ties to the lowest "
    "target id; byte-fallback <0xHH> only where no regular token has that byte; specials by literal "
    "among target specials; normalization "
    "src/fusellm/align/token_normalize.hpp";

// ---- HDF5 (io/hdf5_*: attributes UTF-8 NUL-terminated strings and I64LE; 1-D datasets chunked
// and deflated) ---------------------------------------------------------------------------------

constexpr h5::DatasetLayout kLayout{.chunk = hsize_t(1) << 16, .deflate = 4};

}  // namespace

std::vector<int32_t> mapping_candidates(const TokenVocab& tgt) {
  // A byte-fallback entry `<0xHH>` normalizes to the byte 0xHH, the same bytes as a regular
  // token of one ASCII character ("2", "\n"), and sits at a lower id (SentencePiece puts the
  // 256 of them right after the control tokens). The original compares token strings and so
  // maps "2" to "2"; a byte-fallback entry is the answer only for a byte no regular token spells
  // (a lone UTF-8 lead byte, a control character the vocabulary lacks).
  std::unordered_set<std::string_view> regular;
  for (int64_t j = 0; j < tgt.size(); ++j)
    if (!tgt.special(j) && !tgt.hole(j) && !tgt.byte_fallback(j)) regular.insert(tgt.normalized[size_t(j)]);
  std::vector<int32_t> out;
  for (int64_t j = 0; j < tgt.size(); ++j) {
    if (tgt.special(j) || tgt.hole(j)) continue;
    if (tgt.byte_fallback(j) && regular.count(tgt.normalized[size_t(j)])) continue;
    out.push_back(int32_t(j));
  }
  return out;
}

// Only the rules that change the mapping are recorded (and compared when a cache is loaded).
static std::string mapping_rules(const OriginalRules& rules) {
  OriginalRules r;
  r.strings = rules.strings;
  r.specials = rules.specials;
  return r.to_string();
}

namespace {

// The target side of the mapping: exact lookups (first = lowest id) and the MinED candidates
// sorted by (length, id), with len_begin[L] the first candidate of length L.
struct TargetIndex {
  std::unordered_map<std::string_view, int32_t> special, exact;
  std::vector<int32_t> cands;
  std::vector<int64_t> len_begin;
  size_t max_len = 0;
};

TargetIndex index_target(const TokenVocab& tgt) {
  TargetIndex x;
  const std::vector<int32_t> cands_by_id = mapping_candidates(tgt);
  x.cands = cands_by_id;
  for (int64_t j = 0; j < tgt.size(); ++j)
    if (tgt.special(j)) x.special.emplace(tgt.normalized[size_t(j)], int32_t(j));
  for (const int32_t j : cands_by_id) {
    const std::string_view s = tgt.normalized[size_t(j)];
    x.exact.emplace(s, j);
    x.max_len = std::max(x.max_len, s.size());
  }
  std::stable_sort(x.cands.begin(), x.cands.end(), [&](int32_t a, int32_t b) {
    return tgt.normalized[size_t(a)].size() < tgt.normalized[size_t(b)].size();
  });
  x.len_begin.assign(x.max_len + 2, 0);
  for (int32_t c : x.cands) ++x.len_begin[tgt.normalized[size_t(c)].size() + 1];
  for (size_t L = 1; L < x.len_begin.size(); ++L) x.len_begin[L] += x.len_begin[L - 1];
  return x;
}

// Maps every source token with an exact target match (specials only to specials); returns the
// others (the MinED queries), refusing long tokens on both sides.
std::vector<int32_t> map_exact(VocabMapping& m, const TokenVocab& src, const TokenVocab& tgt, const TargetIndex& x) {
  std::vector<int32_t> queries;
  size_t max_query_len = 0;
  const auto set_exact = [&](int64_t i, int32_t j) {
    m.exact[size_t(i)] = m.full[size_t(i)] = j;
    m.kind[size_t(i)] = kMapExact;
    m.dist[size_t(i)] = 0;
  };
  for (int64_t i = 0; i < src.size(); ++i) {
    const std::string_view s = src.normalized[size_t(i)];
    if (src.special(i)) {
      if (auto it = x.special.find(s); it != x.special.end()) set_exact(i, it->second);
      continue;
    }
    if (src.hole(i)) continue;
    if (auto it = x.exact.find(s); it != x.exact.end()) {
      set_exact(i, it->second);
      continue;
    }
    queries.push_back(int32_t(i));
    max_query_len = std::max(max_query_len, s.size());
  }
  if (max_query_len > size_t(kAlignMaxLongBytes) && x.max_len > size_t(kAlignMaxLongBytes))
    fail("vocab mapping {} -> {}: both vocabularies have tokens longer than {} bytes ({} and {}); "
         "MinED supports that on one side only", src.name, tgt.name, kAlignMaxLongBytes, max_query_len, x.max_len);
  return queries;
}

// The MinED kernel (kernels/kokkos/vocab_mapping.hpp) over the queries; fills full/dist/kind.
template <class ExecSpace>
void map_mined(VocabMapping& m, const TokenVocab& src, const TokenVocab& tgt, const TargetIndex& x,
               const std::vector<int32_t>& queries) {
  if (queries.empty() || x.cands.empty()) return;
  using Mem = typename ExecSpace::memory_space;
  VocabMappingMinED<ExecSpace> f;
  f.src = detail::strings_to_device<Mem>(src.normalized);
  f.tgt = detail::strings_to_device<Mem>(tgt.normalized);
  f.queries = detail::to_device<Mem>(queries);
  f.cand_ids = detail::to_device<Mem>(x.cands);
  f.len_begin = detail::to_device<Mem>(x.len_begin);
  f.out_id = Kokkos::View<int32_t*, Mem>("fusellm::align::mined.id", queries.size());
  f.out_dist = Kokkos::View<int32_t*, Mem>("fusellm::align::mined.dist", queries.size());
  vocab_mapping_mined(f, int64_t(queries.size()));
  auto ids = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), f.out_id);
  auto dists = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), f.out_dist);
  for (size_t q = 0; q < queries.size(); ++q) {
    if (ids(q) < 0) continue;
    const size_t i = size_t(queries[q]);
    m.full[i] = ids(q);
    m.dist[i] = dists(q);
    m.kind[i] = kMapMinED;
  }
}

}  // namespace

template <class ExecSpace>
VocabMapping VocabMapping::build(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab,
                                 std::span<const std::pair<int32_t, int32_t>> overrides, const OriginalRules& rules) {
  const auto start = std::chrono::steady_clock::now();
  VocabMapping m;
  if (rules.changes_mapping()) m = detail::build_mapping_host(src, tgt, source_model_vocab, overrides, rules);
  m.rules = mapping_rules(rules);
  m.source_name = src.name;
  m.target_name = tgt.name;
  m.source_fingerprint = src.fingerprint_hex();
  m.target_fingerprint = tgt.fingerprint_hex();
  m.source_vocab = src.size();
  m.target_vocab = tgt.size();
  if (!rules.changes_mapping()) {
    detail::set_unmapped(m, std::max(src.size(), source_model_vocab));
    const TargetIndex x = index_target(tgt);
    map_mined<ExecSpace>(m, src, tgt, x, map_exact(m, src, tgt, x));
    detail::apply_overrides(m, overrides, tgt.size());
  }
  m.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

VocabMapping VocabMapping::build(const TokenVocab& src, const TokenVocab& tgt, int64_t source_model_vocab,
                                 std::span<const std::pair<int32_t, int32_t>> overrides, const OriginalRules& rules) {
  return build<Kokkos::DefaultExecutionSpace>(src, tgt, source_model_vocab, overrides, rules);
}

#define FUSELLM_ALIGN_INSTANTIATE(S)                                                                  \
  template VocabMapping VocabMapping::build<S>(const TokenVocab&, const TokenVocab&, int64_t,         \
                                               std::span<const std::pair<int32_t, int32_t>>,          \
                                               const OriginalRules&);
FUSELLM_ALIGN_FOR_EACH_SPACE(FUSELLM_ALIGN_INSTANTIATE)
#undef FUSELLM_ALIGN_INSTANTIATE

void VocabMapping::save(const std::string& path) const {
  h5::write_whole_file(path, "the vocab mapping file", [&](hid_t file) {
    h5::write_vector(file, "exact", exact, H5T_STD_I32LE, path, kLayout);
    h5::write_vector(file, "full", full, H5T_STD_I32LE, path, kLayout);
    h5::write_vector(file, "dist", dist, H5T_STD_I32LE, path, kLayout);
    h5::write_vector(file, "kind", kind, H5T_STD_U8LE, path, kLayout);
    h5::write_attr_string(file, "format", kFormat, path);
    h5::write_attr_string(file, "algorithm", kAlgorithm, path);
    h5::write_attr_string(file, "source_name", source_name, path);
    h5::write_attr_string(file, "target_name", target_name, path);
    h5::write_attr_string(file, "source_fingerprint", source_fingerprint, path);
    h5::write_attr_string(file, "target_fingerprint", target_fingerprint, path);
    h5::write_attr_string(file, "rules", rules, path);
    h5::write_attr_i64(file, "source_vocab", source_vocab, path);
    h5::write_attr_i64(file, "target_vocab", target_vocab, path);
    h5::write_attr_i64(file, "source_model_vocab", size(), path);
    h5::write_attr_i64(file, "build_milliseconds", int64_t(build_seconds * 1000.0), path);
    h5::write_attr_string(file, "created_by", "fusellm src/fusellm/align/vocab_mapping.cpp", path);
  });
}

VocabMapping VocabMapping::load(const std::string& path) {
  // A file without a sidecar (an older fusellm's, or a save killed before it) is used unverified.
  const h5::ErrorSilencer quiet;
  h5::File file = with_context(fmt::format("vocab mapping {} (delete it to rebuild)", path),
                               [&] { return h5::open_verified(path, "vocab mapping"); });
  if (!h5::has_attr(file, "format")) fail("{}: attribute 'format' is missing (not a fusellm vocab mapping?)", path);
  if (h5::read_attr_string(file, "format", path) != kFormat)
    fail("{}: attribute 'format' is not '{}'", path, kFormat);
  VocabMapping m;
  m.exact = h5::read_vector<int32_t>(file, "exact", path);
  m.full = h5::read_vector<int32_t>(file, "full", path);
  m.dist = h5::read_vector<int32_t>(file, "dist", path);
  m.kind = h5::read_vector<uint8_t>(file, "kind", path);
  m.source_name = h5::read_attr_string(file, "source_name", path);
  m.target_name = h5::read_attr_string(file, "target_name", path);
  m.source_fingerprint = h5::read_attr_string(file, "source_fingerprint", path);
  m.target_fingerprint = h5::read_attr_string(file, "target_fingerprint", path);
  // Files written before the rules existed were built under fusellm's rules.
  m.rules = h5::has_attr(file, "rules") ? h5::read_attr_string(file, "rules", path) : std::string("none");
  m.source_vocab = h5::read_attr_i64(file, "source_vocab", path);
  m.target_vocab = h5::read_attr_i64(file, "target_vocab", path);
  m.build_seconds = double(h5::read_attr_i64(file, "build_milliseconds", path)) / 1000.0;
  const size_t n = m.full.size();
  if (m.exact.size() != n || m.dist.size() != n || m.kind.size() != n)
    fail("{}: datasets exact/full/dist/kind have different lengths ({}, {}, {}, {})", path, m.exact.size(), n,
         m.dist.size(), m.kind.size());
  if (int64_t(n) < m.source_vocab)
    fail("{}: {} entries, fewer than the source vocabulary ({})", path, n, m.source_vocab);
  for (size_t i = 0; i < n; ++i)
    if (m.full[i] >= m.target_vocab || m.exact[i] >= m.target_vocab)
      fail("{}: entry {} maps to target id {} outside the target vocabulary ({})", path, i,
           std::max(m.full[i], m.exact[i]), m.target_vocab);
  return m;
}

void VocabMapping::check(const TokenVocab& src, const TokenVocab& tgt, const std::string& where) const {
  const std::string w = where.empty() ? std::string("vocab mapping") : where;
  if (src.fingerprint_hex() != source_fingerprint)
    fail("{}: built for source tokenizer '{}' (fingerprint {}), but source '{}' has fingerprint {} "
         "({} tokens): the mapping belongs to another tokenizer; delete it to rebuild",
         w, source_name, source_fingerprint, src.name, src.fingerprint_hex(), src.size());
  if (tgt.fingerprint_hex() != target_fingerprint)
    fail("{}: source '{}' was mapped onto target tokenizer '{}' (fingerprint {}), but the target '{}' "
         "has fingerprint {} ({} tokens): the mapping belongs to another target; delete it to rebuild",
         w, src.name, target_name, target_fingerprint, tgt.name, tgt.fingerprint_hex(), tgt.size());
}

VocabMapping VocabMapping::load_for(const std::string& path, const TokenVocab& src, const TokenVocab& tgt) {
  VocabMapping m = load(path);
  m.check(src, tgt, path);
  return m;
}

VocabMapping VocabMapping::load_or_build(const std::string& path, const TokenVocab& src, const TokenVocab& tgt,
                                         int64_t source_model_vocab,
                                         std::span<const std::pair<int32_t, int32_t>> overrides,
                                         const OriginalRules& rules) {
  if (!path.empty() && std::filesystem::exists(path)) {
    VocabMapping m = load_for(path, src, tgt);
    if (m.rules != mapping_rules(rules))
      fail("{}: built under the alignment rules '{}', but the job asks for '{}'; delete it to rebuild", path,
           m.rules, mapping_rules(rules));
    if (m.size() < source_model_vocab)
      fail("{}: {} entries, but source '{}' has vocab_size {}; delete it to rebuild", path, m.size(), src.name,
           source_model_vocab);
    return m;
  }
  VocabMapping m = build(src, tgt, source_model_vocab, overrides, rules);
  if (!path.empty()) m.save(path);
  return m;
}

uint64_t VocabMapping::fingerprint() const {
  uint64_t h = xxh64(exact.data(), exact.size() * sizeof(int32_t));
  h = xxh64(full.data(), full.size() * sizeof(int32_t), h);
  h = xxh64(dist.data(), dist.size() * sizeof(int32_t), h);
  return xxh64(kind.data(), kind.size(), h);
}

MapCoverage VocabMapping::coverage() const {
  MapCoverage c;
  double dsum = 0.0;
  for (int64_t i = 0; i < size(); ++i) {
    if (i >= source_vocab) { ++c.padding; continue; }
    ++c.tokens;
    switch (kind[size_t(i)]) {
      case kMapExact: ++c.exact; break;
      case kMapMinED: ++c.mined; dsum += dist[size_t(i)]; break;
      case kMapOverride: ++c.overridden; break;
      default: ++c.unmapped; break;
    }
  }
  c.mean_mined_distance = c.mined > 0 ? dsum / double(c.mined) : 0.0;
  return c;
}

}  // namespace fusellm::align
