// Applying an alignment on the GPU (kernels/cuda/apply_alignment.cu) against the Kokkos CPU path
// (kernels/kokkos/apply_alignment.hpp's ApplyAlignment on Kokkos::DefaultHostExecutionSpace):
// seeded random alignments (every status, documents of length 0 and 1), source rows with empty
// slots, padding ids past the map, many-to-one maps (target ids met twice keep the higher
// probability), ties, unsorted rows; with and without tail buckets, the next-token and
// current-token one-hots, the target model's own rows for empty rows (use_target), output rows
// narrower and wider than the source's, a map that leaves everything unmapped, an empty map, k = 1,
// T = 0; and the errors, which must name the position and leave the outputs unwritten.
//
// The GPU does the CPU's operations in the CPU's order (double sums and divisions, float
// compares), so everything must be bit-equal: ids, statuses, probabilities and tails.
// Skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/apply_alignment.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda_skip.hpp"
#include "error_of.hpp"
#include "fusellm/core/error.hpp"
#include "kokkos/apply_alignment.hpp"

namespace fusellm {
namespace {

using cuda::to_device;
using cuda::to_host;
using testing::expect_error;
using Host = Kokkos::DefaultHostExecutionSpace;
using HM = Host::memory_space;

static_assert(cuda::kAlignFallbackMany == align::kFallbackMany);
static_assert(cuda::kAlignFallbackEmpty == align::kFallbackEmpty);
static_assert(cuda::kAlignApplyMaxK == align::kApplyMaxK);

struct Rows {
  std::vector<int32_t> ids;
  std::vector<float> probs, tail;  // tail empty: none
  int64_t rows = 0, k = 0;
};

struct Input {
  std::vector<int32_t> tgt_ids;
  std::vector<int64_t> doc;  // [D + 1]
  std::vector<int32_t> src_pos;
  std::vector<uint8_t> status;
  std::vector<int32_t> id_map;
  Rows src, target;
  int64_t kout = 0;
  bool out_tail = false, onehot_current = false, use_target = false;
  int64_t T() const { return int64_t(tgt_ids.size()); }
};

struct Out {
  std::vector<int32_t> ids;
  std::vector<float> probs, tail;
  std::vector<uint8_t> status;
};

template <class T>
Kokkos::View<T*, HM> hview(const std::vector<T>& v) {
  Kokkos::View<T*, HM> h("v", v.size());
  for (size_t i = 0; i < v.size(); ++i) h(i) = v[i];
  return h;
}

SparseRows<HM> hrows(const Rows& r) {
  SparseRows<HM> s("rows", r.rows, r.k, !r.tail.empty());
  for (int64_t i = 0; i < r.rows * r.k; ++i) {
    s.ids.data()[i] = r.ids[size_t(i)];
    s.probs.data()[i] = r.probs[size_t(i)];
  }
  for (size_t i = 0; i < r.tail.size(); ++i) s.tail(i) = r.tail[i];
  return s;
}

Out cpu_apply(const Input& in) {
  const int64_t T = in.T();
  align::ApplyAlignment<Host> f;
  f.tgt_ids = hview(in.tgt_ids);
  f.tgt_doc = hview(in.doc);
  f.src_pos = hview(in.src_pos);
  f.status_in = hview(in.status);
  f.id_map = hview(in.id_map);
  f.src = hrows(in.src);
  f.out = SparseRows<HM>("out", T, in.kout, in.out_tail);
  Kokkos::View<uint8_t*, HM> st("st", size_t(T));
  f.status_out = st;
  f.onehot_current = in.onehot_current;
  if (in.use_target) {
    f.target = hrows(in.target);
    f.use_target = true;
  }
  align::apply_alignment(f, int64_t(in.doc.size()) - 1);
  Host().fence();
  Out o;
  o.ids.assign(f.out.ids.data(), f.out.ids.data() + T * in.kout);
  o.probs.assign(f.out.probs.data(), f.out.probs.data() + T * in.kout);
  o.tail.assign(f.out.tail.data(), f.out.tail.data() + f.out.tail.extent(0));
  o.status.assign(st.data(), st.data() + T);
  return o;
}

constexpr int32_t kPoisonId = 0x7f7f7f7f;
constexpr float kPoison = 1e30f;
constexpr uint8_t kPoisonStatus = 0xee;

// Outputs poisoned; downloaded also when apply_alignment throws (then rethrown).
Out gpu_apply(const Input& in, Out* after_error = nullptr) {
  const int64_t T = in.T();
  auto d_tgt = to_device(in.tgt_ids);
  auto d_doc = to_device(in.doc);
  auto d_pos = to_device(in.src_pos);
  auto d_st = to_device(in.status);
  auto d_map = to_device(in.id_map);
  auto d_sids = to_device(in.src.ids);
  auto d_sprobs = to_device(in.src.probs);
  auto d_stail = to_device(in.src.tail);
  auto d_tids = to_device(in.target.ids);
  auto d_tprobs = to_device(in.target.probs);
  auto d_ttail = to_device(in.target.tail);
  auto o_ids = to_device(std::vector<int32_t>(size_t(T * in.kout), kPoisonId));
  auto o_probs = to_device(std::vector<float>(size_t(T * in.kout), kPoison));
  auto o_tail = to_device(std::vector<float>(size_t(T), kPoison));
  auto o_st = to_device(std::vector<uint8_t>(size_t(T), kPoisonStatus));
  cuda::ApplyAlignmentArgs a;
  a.tgt_ids = d_tgt.get();
  a.tgt_doc = d_doc.get();
  a.docs = int64_t(in.doc.size()) - 1;
  a.src_pos = d_pos.get();
  a.status_in = d_st.get();
  a.id_map = d_map.get();
  a.n_map = int64_t(in.id_map.size());
  a.src = {d_sids.get(), d_sprobs.get(), in.src.tail.empty() ? nullptr : d_stail.get(), in.src.rows,
           in.src.k};
  a.out = {o_ids.get(), o_probs.get(), in.out_tail ? o_tail.get() : nullptr, T, in.kout};
  a.status_out = o_st.get();
  a.onehot_current = in.onehot_current;
  a.use_target = in.use_target;
  a.target = {d_tids.get(), d_tprobs.get(), in.target.tail.empty() ? nullptr : d_ttail.get(),
              in.target.rows, in.target.k};
  std::string err;
  try {
    cuda::apply_alignment(a);
  } catch (const Error& e) {
    err = e.what();
  }
  Out o;
  o.ids = to_host(o_ids.get(), size_t(T * in.kout));
  o.probs = to_host(o_probs.get(), size_t(T * in.kout));
  o.tail = to_host(o_tail.get(), in.out_tail ? size_t(T) : 0);
  o.status = to_host(o_st.get(), size_t(T));
  if (!err.empty()) {
    if (after_error) *after_error = o;
    throw Error(err);
  }
  return o;
}

// Bit-equal floats; the first few differences named.
void expect_bits(const std::vector<float>& g, const std::vector<float>& c, int64_t width,
                 const std::string& what, const char* field, size_t& bad) {
  ASSERT_EQ(g.size(), c.size()) << what << " " << field;
  for (size_t i = 0; i < g.size(); ++i)
    if (std::memcmp(&g[i], &c[i], sizeof(float)) != 0 && bad++ < 8)
      ADD_FAILURE() << what << ": " << field << " at position " << i / size_t(width) << " slot "
                    << i % size_t(width) << ": " << g[i] << ", CPU " << c[i];
}

void compare(const Out& g, const Out& c, int64_t kout, const std::string& what) {
  size_t bad = 0;
  const int64_t w = std::max<int64_t>(kout, 1);
  ASSERT_EQ(g.ids.size(), c.ids.size()) << what;
  for (size_t i = 0; i < g.ids.size(); ++i)
    if (g.ids[i] != c.ids[i] && bad++ < 8)
      ADD_FAILURE() << what << ": id at position " << i / size_t(w) << " slot " << i % size_t(w)
                    << ": " << g.ids[i] << ", CPU " << c.ids[i];
  ASSERT_EQ(g.status.size(), c.status.size()) << what;
  for (size_t i = 0; i < g.status.size(); ++i)
    if (g.status[i] != c.status[i] && bad++ < 8)
      ADD_FAILURE() << what << ": status at position " << i << ": " << int(g.status[i]) << ", CPU "
                    << int(c.status[i]);
  expect_bits(g.probs, c.probs, w, what, "prob", bad);
  expect_bits(g.tail, c.tail, 1, what, "tail", bad);
  std::printf("    %-52s T=%-4zu k_out=%-3ld differences=%zu\n", what.c_str(), g.status.size(),
              long(kout), bad);
}

// Rows of k slots: nf filled with distinct ids of [0, n_ids), probabilities descending unless
// `unsorted`, quantized to eighths when `ties`; optionally a tail; with `holes`, empty slots
// anywhere (the target rows of use_target may have them).
Rows random_rows(std::mt19937& rng, int64_t rows, int64_t k, int64_t n_ids, bool tail, bool ties,
                 bool unsorted, bool holes = false) {
  Rows r;
  r.rows = rows;
  r.k = k;
  r.ids.assign(size_t(rows * k), -1);
  r.probs.assign(size_t(rows * k), 0.f);
  std::vector<int32_t> pool(static_cast<size_t>(n_ids));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t v = 0; v < n_ids; ++v) pool[size_t(v)] = int32_t(v);
    std::shuffle(pool.begin(), pool.end(), rng);
    const int64_t nf = rng() % 4 == 0 ? int64_t(rng() % uint32_t(k + 1)) : std::min(k, n_ids);
    std::vector<std::pair<float, int32_t>> e;
    for (int64_t j = 0; j < std::min(nf, n_ids); ++j)
      e.push_back({ties ? float(1 + rng() % 3) / 8.f
                        : std::uniform_real_distribution<float>(0.001f, 0.5f)(rng),
                   pool[size_t(j)]});
    std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    if (unsorted) std::shuffle(e.begin(), e.end(), rng);
    int64_t slot = 0;
    for (const auto& [p, id] : e) {
      if (holes && slot + 1 < k && rng() % 3 == 0) ++slot;  // leave slot empty
      if (slot >= k) break;
      r.ids[size_t(i * k + slot)] = id;
      r.probs[size_t(i * k + slot)] = p;
      ++slot;
    }
    if (tail) r.tail.push_back(std::uniform_real_distribution<float>(0.f, 0.2f)(rng));
  }
  return r;
}

struct Spec {
  int64_t T = 60, docs = 6, S = 40, kin = 8, kout = 8, Vs = 30, n_map = 24, Vt = 12;
  bool src_tail = false, out_tail = false, onehot_current = false, use_target = false;
  bool target_tail = false, ties = false, unsorted = false, all_unmapped = false;
  int64_t kt = 5;
};

Input random_input(std::mt19937& rng, const Spec& s) {
  Input in;
  for (int64_t t = 0; t < s.T; ++t) in.tgt_ids.push_back(int32_t(rng() % uint32_t(s.Vt)));
  // Documents: the first empty, the second of length 1 (when T allows), the rest random cuts.
  std::vector<int64_t> cut{0, 0};
  if (s.T >= 1 && s.docs >= 3) cut.push_back(1);
  while (int64_t(cut.size()) < s.docs) cut.push_back(int64_t(rng() % uint32_t(s.T + 1)));
  std::sort(cut.begin(), cut.end());
  cut.resize(size_t(s.docs));
  cut.push_back(s.T);
  cut[0] = 0;
  in.doc = cut;
  static const uint8_t kStatuses[] = {0, 1, 2, 3, 10, 11, 12, 13};
  for (int64_t t = 0; t < s.T; ++t) {
    const uint8_t st = kStatuses[rng() % 8];
    in.status.push_back(st);
    const bool kept = st < 10;
    in.src_pos.push_back(kept || rng() % 2 ? int32_t(rng() % uint32_t(s.S)) : -1);
  }
  // Many-to-one (Vt < n_map) with unmapped entries; ids in [n_map, Vs) are the padding past the map.
  for (int64_t v = 0; v < s.n_map; ++v)
    in.id_map.push_back(s.all_unmapped || rng() % 4 == 0 ? -1 : int32_t(rng() % uint32_t(s.Vt)));
  in.src = random_rows(rng, s.S, s.kin, s.Vs, s.src_tail, s.ties, s.unsorted);
  in.kout = s.kout;
  in.out_tail = s.out_tail;
  in.onehot_current = s.onehot_current;
  in.use_target = s.use_target;
  if (s.use_target) in.target = random_rows(rng, s.T, s.kt, s.Vt, s.target_tail, s.ties, false, true);
  return in;
}

void check(std::mt19937& rng, const Spec& s, const std::string& what) {
  const Input in = random_input(rng, s);
  compare(gpu_apply(in), cpu_apply(in), in.kout, what);
}

TEST(CudaApplyAlignment, RandomAlignmentsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(61);
  for (bool ties : {false, true})
    for (bool unsorted : {false, true}) {
      Spec s;
      s.ties = ties;
      s.unsorted = unsorted;
      const std::string tag = std::string(ties ? " ties" : "") + (unsorted ? " unsorted" : "");
      check(rng, s, "plain" + tag);
      s.onehot_current = true;
      check(rng, s, "onehot_current" + tag);
      s.onehot_current = false;
      s.src_tail = s.out_tail = true;
      check(rng, s, "tails" + tag);
      s.use_target = true;
      check(rng, s, "tails use_target" + tag);
      s.target_tail = true;
      check(rng, s, "tails use_target target tail" + tag);
      s.src_tail = false;
      check(rng, s, "out tail only, use_target" + tag);
      s.src_tail = true;
      s.out_tail = false;
      check(rng, s, "source tail only, use_target" + tag);
    }
}

TEST(CudaApplyAlignment, WidthsAndMaps) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(62);
  for (int64_t kout : {1, 3, 8, 20, 64}) {
    Spec s;
    s.kout = kout;
    s.src_tail = s.out_tail = kout % 2 == 0;
    s.use_target = kout == 3;
    check(rng, s, "k_in=8 k_out=" + std::to_string(kout));
  }
  Spec one;
  one.kin = one.kout = 1;
  check(rng, one, "k=1");
  Spec wide;
  wide.kin = wide.kout = 64;
  wide.Vs = 200;
  wide.n_map = 150;
  wide.Vt = 40;
  wide.S = 20;
  wide.T = 30;
  check(rng, wide, "k=64");
  Spec none;
  none.all_unmapped = true;  // every kept position falls back (kFallbackEmpty)
  check(rng, none, "all unmapped");
  none.use_target = true;
  check(rng, none, "all unmapped, use_target");
  Spec empty_map;
  empty_map.n_map = 0;  // every source id is past the map
  check(rng, empty_map, "empty map");
  Spec collide;
  collide.Vt = 2;  // nearly every source row collides on two target ids
  collide.src_tail = collide.out_tail = true;
  check(rng, collide, "Vt=2 collisions");
  Spec t1;
  t1.T = 1;
  t1.docs = 1;
  check(rng, t1, "T=1");
  t1.onehot_current = true;
  check(rng, t1, "T=1 onehot_current");
  Spec t0;
  t0.T = 0;
  t0.docs = 2;
  check(rng, t0, "T=0");
  Spec many_docs;
  many_docs.docs = 60;  // most documents of length 0 or 1: the last-position rule everywhere
  check(rng, many_docs, "D=60");
}

TEST(CudaApplyAlignment, ErrorsNamePositionAndLeaveOutputsUnwritten) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(63);
  Spec s;
  s.T = 10;
  s.docs = 2;
  s.S = 7;
  const Input base = random_input(rng, s);
  {
    Input in = base;
    in.status[2] = 1;
    in.src_pos[2] = -1;
    in.status[5] = 0;
    in.src_pos[5] = 7;  // == S
    expect_error([&] { gpu_apply(in); },
                 {"target position 2 is kept (status 1)", "source position -1", "7 source rows"});
    in.src_pos[2] = 3;
    Out after;
    expect_error([&] { gpu_apply(in, &after); }, {"target position 5", "source position 7"});
    for (int32_t x : after.ids) EXPECT_EQ(x, kPoisonId);
    for (float x : after.probs) EXPECT_EQ(x, kPoison);
    for (uint8_t x : after.status) EXPECT_EQ(x, kPoisonStatus);
    in.status[5] = 12;  // not kept: any source position is fine
    EXPECT_EQ(testing::error_of([&] { gpu_apply(in); }), "");
  }
  {
    Input in = base;
    in.doc = {0, 4};
    expect_error([&] { gpu_apply(in); }, {"offsets do not cover its 10 tokens", "from 0 to 4"});
    in.doc = {0, 6, 4, 10};
    expect_error([&] { gpu_apply(in); }, {"offsets decrease at document 1"});
  }
  {
    Input in = base;
    in.src = random_rows(rng, 7, 65, 80, false, false, false);
    expect_error([&] { gpu_apply(in); }, {"top-k of 65 exceeds the supported 64"});
    in = base;
    in.kout = 65;
    expect_error([&] { gpu_apply(in); }, {"65 slots exceed the supported 64"});
    in = base;
    in.use_target = true;
    in.target = random_rows(rng, 9, 3, 12, false, false, false);
    expect_error([&] { gpu_apply(in); }, {"target rows have 9 positions, the target batch 10"});
  }
}

}  // namespace
}  // namespace fusellm
