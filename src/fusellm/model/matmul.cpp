// Linear layer, nn.Linear / F.linear:   y[M, N] = x[M, K] W[N, K]^T + b[N]   (y += ... when
// accumulating: the residual stream is updated in place, no temporary), and parallel_gemm, the
// same split for any transposition (the backward pass's dx = dy W and dW += dy^T x).
//
// Threading: the output is cut into a pm x pn grid of blocks, one per OpenMP thread, and each
// thread runs a single-threaded OpenBLAS sgemm on its block, then adds the bias while the block
// is still in cache. Debian's OpenBLAS is the pthread build: letting it spawn its own pool next
// to OpenMP's would oversubscribe the cores (both pools spin-wait between calls), so the forward
// pass holds OpenBLAS at one thread (BlasThreadsGuard), parallel_gemm does the same, and OpenMP
// owns every core.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

int num_threads() { return std::max(1, omp_get_max_threads()); }

BlasThreadsGuard::BlasThreadsGuard() : previous_(openblas_get_num_threads()) {
  if (previous_ != 1) openblas_set_num_threads(1);
}
BlasThreadsGuard::~BlasThreadsGuard() {
  if (previous_ != 1) openblas_set_num_threads(previous_);
}

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits [0, n) into `parts` ranges whose boundaries are multiples of `align` (sgemm kernels
// work in register tiles of 8-16 columns); returns the range of part i.
std::pair<int64_t, int64_t> split(int64_t n, int parts, int i, int64_t align) {
  const int64_t chunk = ceil_div(ceil_div(n, parts), align) * align;
  const int64_t b = std::min(n, chunk * i), e = std::min(n, chunk * (i + 1));
  return {b, e};
}

// The pm x pn grid (pm * pn <= threads) minimizing what each thread packs: its rows of x
// (block_m * K) plus its rows of W (block_n * K), i.e. block_m + block_n. Tiny problems stay on
// one thread: a parallel region costs more than they do.
std::pair<int, int> grid(int64_t M, int64_t N, int64_t K, int threads) {
  if (threads <= 1 || M * N * K < (int64_t(1) << 18)) return {1, 1};
  std::pair<int, int> best{1, 1};
  int64_t best_cost = -1;
  for (int pm = 1; pm <= threads; ++pm) {
    if (threads % pm) continue;
    const int pn = threads / pm;
    if (pm > 1 && M / pm < 8) continue;
    if (pn > 1 && N / pn < 16) continue;
    const int64_t cost = ceil_div(M, pm) + ceil_div(N, pn);
    if (best_cost < 0 || cost < best_cost) best_cost = cost, best = {pm, pn};
  }
  return best;
}

// C[m0:m1, n0:n1] = op(A) op(B) (+ C when beta = 1) for one block, single-threaded sgemm. A is
// [M, K] (or [K, M] when ta), B is [K, N] (or [N, K] when tb), all row-major.
void gemm_block(const Gemm& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t m = m1 - m0, n = n1 - n0;
  if (m <= 0 || n <= 0) return;
  const float* a = g.ta ? g.a + m0 : g.a + m0 * g.lda;
  const float* b = g.tb ? g.b + n0 * g.ldb : g.b + n0;
  cblas_sgemm(CblasRowMajor, g.ta ? CblasTrans : CblasNoTrans, g.tb ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(g.k), 1.f, a, int(g.lda), b, int(g.ldb), g.beta, g.c + m0 * g.ldc + n0, int(g.ldc));
}

void add_bias(std::span<const float> b, MatView y, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (b.empty()) return;
  const float* bb = b.data() + n0;
  for (int64_t r = m0; r < m1; ++r) {
    float* yr = y.row(r) + n0;
#pragma omp simd
    for (int64_t c = 0; c < n1 - n0; ++c) yr[c] += bb[c];
  }
}

// Runs f(m0, m1, n0, n1) on each block of the M x N output's grid, one block per OpenMP thread.
// A team smaller than asked for (called from inside a parallel region) takes the blocks in turn:
// the blocks, hence the result, do not depend on the team.
template <class F>
void on_grid(int64_t M, int64_t N, int64_t K, F&& f) {
  // Plain variables, not a structured binding: clang cannot capture those into an OpenMP region.
  const std::pair<int, int> g = grid(M, N, K, omp_in_parallel() ? 1 : num_threads());
  const int pm = g.first, pn = g.second;
  if (pm * pn == 1) return f(int64_t(0), M, int64_t(0), N);
#pragma omp parallel num_threads(pm * pn)
  for (int blk = omp_get_thread_num(); blk < pm * pn; blk += omp_get_num_threads()) {
    const auto [m0, m1] = split(M, pm, blk / pn, 8);
    const auto [n0, n1] = split(N, pn, blk % pn, 16);
    f(m0, m1, n0, n1);
  }
}

}  // namespace

void linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate) {
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || (!b.empty() && int64_t(b.size()) != w.rows))
    fail("linear: shapes do not agree: x [{}, {}], W [{}, {}], b [{}], y [{}, {}]", x.rows, x.cols, w.rows, w.cols,
         b.size(), y.rows, y.cols);
  const int64_t M = x.rows, N = w.rows, K = x.cols;
  if (M == 0 || N == 0) return;
  const Gemm g{false, true, K, x.p, x.ld, w.p, w.ld, accumulate ? 1.f : 0.f, y.p, y.ld};
  on_grid(M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_block(g, m0, m1, n0, n1);  // the bias is added while the block is still in cache
    add_bias(b, y, m0, m1, n0, n1);
  });
}

void parallel_gemm(const Gemm& g, int64_t M, int64_t N) {
  if (M == 0 || N == 0) return;
  BlasThreadsGuard blas_one_thread;
  on_grid(M, N, g.k, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { gemm_block(g, m0, m1, n0, n1); });
}

}  // namespace fusellm::model
