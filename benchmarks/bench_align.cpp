// Token alignment + application to the source's top-k rows (EM, MinED, byte spans), and the
// vocabulary-mapping build, against the Python reference (benchmarks/bench_align.py; both driven
// by benchmarks/run_align_bench.sh):
//
//   OMP_PROC_BIND=false OMP_NUM_THREADS=2 build/benchmarks/bench_align align [PAIR] [--reps N]
//       the held-out documents of tests/fixtures/align/PAIR (default bytelevel_to_sp_bpe),
//       k = 6 source rows regenerated as the test does; Kokkos::Serial (one core) and
//       Kokkos::OpenMP (OMP_NUM_THREADS threads); best of N of align() + apply();
//       reports target tokens/s. Vocabularies are uploaded once (not timed), as in the pipeline.
//   OMP_PROC_BIND=false OMP_NUM_THREADS=2 build/benchmarks/bench_align mapping SRC.json TGT.json [--reps N]
//       VocabMapping::build on Serial and OpenMP, seconds, and the coverage.
// Output: one JSON object per line (the run script joins them with the Python side).
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <string>

#include "../tests/unit/align/align_fixture.hpp"
#include "fusellm/align/align_tokens.hpp"

using namespace fusellm;
using namespace fusellm::align;
using Clock = std::chrono::steady_clock;

namespace {

// CPU time of the calling thread: what one core spent, unaffected by a loaded machine's
// descheduling (the Serial runs and the Python reference are single-threaded).
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class ExecSpace>
void bench_align(const std::string& pair, const TokenVocab& src, const TokenVocab& tgt, const DocBatch& s,
                 const DocBatch& t, const VocabMapping& map, const std::vector<int32_t>& rid,
                 const std::vector<float>& rpr, int k, int reps) {
  using Mem = typename ExecSpace::memory_space;
  SparseRows<Kokkos::HostSpace> h("src", s.tokens(), k);
  std::memcpy(h.ids.data(), rid.data(), rid.size() * 4);
  std::memcpy(h.probs.data(), rpr.data(), rpr.size() * 4);
  SparseRows<Mem> rows;
  rows.ids = Kokkos::create_mirror_view_and_copy(Mem(), h.ids);
  rows.probs = Kokkos::create_mirror_view_and_copy(Mem(), h.probs);
  Aligner<ExecSpace> aligner(src, tgt, &map);
  for (const AlignMethod m : {AlignMethod::kEM, AlignMethod::kMinED, AlignMethod::kByteSpan}) {
    double best = 1e30, best_align = 0.0, best_cpu = 1e30;
    int64_t kept = 0;
    for (int r = 0; r < reps; ++r) {
      Kokkos::fence();
      const double c0 = thread_cpu_seconds();
      const auto t0 = Clock::now();
      const Alignment al = aligner.align(s, t, m);
      const auto t1 = Clock::now();
      const auto out = aligner.apply(al, t, rows, m);
      Kokkos::fence();
      const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
      best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
      if (dt < best) {
        best = dt;
        best_align = std::chrono::duration<double>(t1 - t0).count();
      }
      kept = 0;
      for (uint8_t st : al.status) kept += align_kept(st);
    }
    std::printf("{\"bench\": \"align\", \"impl\": \"fusellm\", \"pair\": \"%s\", \"method\": \"%s\", \"space\": \"%s\", "
                "\"threads\": %d, \"docs\": %lld, \"target_tokens\": %lld, \"kept\": %lld, \"seconds\": %.6f, "
                "\"align_seconds\": %.6f, \"tokens_per_s\": %.1f, \"thread_cpu_seconds\": %.6f}\n",
                pair.c_str(), to_string(m), ExecSpace::name(), int(ExecSpace::concurrency()),
                static_cast<long long>(s.docs()), static_cast<long long>(t.tokens()), static_cast<long long>(kept), best,
                best_align, double(t.tokens()) / best, best_cpu);
    std::fflush(stdout);
  }
}

int run_align(int argc, char** argv) {
  std::string pair = "bytelevel_to_sp_bpe";
  int reps = 5;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else pair = argv[i];
  }
  testing::AlignFixture fx(std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/align/" + pair);
  const auto& meta = fx.meta;
  const TokenVocab src = TokenVocab::from_tokenizer_json(fx.path(meta["source"]["tokenizer"]));
  const TokenVocab tgt = TokenVocab::from_tokenizer_json(fx.path(meta["target"]["tokenizer"]));
  const int64_t D = meta["docs"];
  const auto batches = testing::doc_batches(fx, src, tgt);
  const DocBatch &s = batches.first, &t = batches.second;
  const int64_t model_vocab = meta["source"]["model_vocab"];
  const VocabMapping map = VocabMapping::build(src, tgt, model_vocab);
  const int k = meta["k"];
  std::vector<int32_t> rid;
  std::vector<float> rpr;
  testing::all_source_rows(fx, k, model_vocab, rid, rpr);
  bench_align<Kokkos::Serial>(pair, src, tgt, s, t, map, rid, rpr, k, reps);
#if defined(KOKKOS_ENABLE_OPENMP)
  bench_align<Kokkos::OpenMP>(pair, src, tgt, s, t, map, rid, rpr, k, reps);
#endif
  return 0;
}

template <class ExecSpace>
void bench_mapping(const TokenVocab& src, const TokenVocab& tgt, int reps) {
  double best = 1e30, best_cpu = 1e30;
  VocabMapping m;
  for (int r = 0; r < reps; ++r) {
    const double c0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    m = VocabMapping::build<ExecSpace>(src, tgt);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
  }
  const MapCoverage c = m.coverage();
  std::printf("{\"bench\": \"mapping\", \"impl\": \"fusellm\", \"space\": \"%s\", \"threads\": %d, "
              "\"source_vocab\": %lld, \"target_vocab\": %lld, \"exact\": %lld, \"mined\": %lld, \"unmapped\": %lld, "
              "\"mean_mined_distance\": %.3f, \"seconds\": %.4f, \"thread_cpu_seconds\": %.4f}\n",
              ExecSpace::name(), int(ExecSpace::concurrency()), static_cast<long long>(src.size()),
              static_cast<long long>(tgt.size()), static_cast<long long>(c.exact), static_cast<long long>(c.mined),
              static_cast<long long>(c.unmapped), c.mean_mined_distance, best, best_cpu);
  std::fflush(stdout);
}

int run_mapping(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_align mapping SRC_TOKENIZER.json TGT_TOKENIZER.json [--reps N]\n");
    return 2;
  }
  int reps = 3;
  for (int i = 4; i < argc; ++i)
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
  const TokenVocab src = TokenVocab::from_tokenizer_json(argv[2]);
  const TokenVocab tgt = TokenVocab::from_tokenizer_json(argv[3]);
  bench_mapping<Kokkos::Serial>(src, tgt, reps);
#if defined(KOKKOS_ENABLE_OPENMP)
  bench_mapping<Kokkos::OpenMP>(src, tgt, reps);
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  try {
    if (argc > 1 && !std::strcmp(argv[1], "mapping")) return run_mapping(argc, argv);
    if (argc > 1 && !std::strcmp(argv[1], "align")) return run_align(argc, argv);
    std::fprintf(stderr, "usage: bench_align align [PAIR] [--reps N] | mapping SRC.json TGT.json [--reps N]\n");
    return 2;
  } catch (const fusellm::Error& e) {
    std::fprintf(stderr, "bench_align: %s\n", e.what());
    return 1;
  }
}
