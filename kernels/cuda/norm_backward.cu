// RMSNorm / LayerNorm backward on the GPU (norm_backward.cuh states the math). Four launches:
// row statistics (one warp per row), the weight (and bias) gradients' per-chunk partial sums,
// their fixed-order total, and dx elementwise. RMSNorm is LayerNorm without centring (mu = 0,
// mean(g) = 0), which leaves every expression below bit-for-bit the RMSNorm one (x - 0 = x,
// g - 0 = g), so both share the kernels.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "cuda/norm_backward.cuh"

namespace fusellm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // statistics: 8 warps, one row each
constexpr int kChunkRows = 64;    // rows per partial sum of dw / db
constexpr int kSumWarps = 8;      // partial sums: 32 columns x 8 row lanes
constexpr int kStats = 4;         // per row: mu, r, mean(g), mean(g xhat)
constexpr int kMaxGridY = 65535;

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

int64_t chunks_of(int64_t rows) { return (rows + kChunkRows - 1) / kChunkRows; }

// Per row: mu (0 for RMSNorm), r, mean(g) (0 for RMSNorm) and mean(g xhat), with the CPU
// reference's arithmetic per element (layernorm_backward.cpp / rmsnorm_backward.cpp); only the
// order of the row sums differs (a warp's tree instead of SIMD lanes).
template <bool Center>
__global__ void norm_row_stats_kernel(const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                                      int64_t lddy, float* stats, int64_t rows, int64_t n) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const float* xr = x + row * ldx;
  const float* dyr = dy + row * lddy;
  float mu = 0.f;
  if (Center) {
    float s = 0.f;
    for (int64_t c = lane; c < n; c += kWarp) s += xr[c];
    mu = warp_sum(s) / float(n);
  }
  float ss = 0.f;
  for (int64_t c = lane; c < n; c += kWarp) ss += (xr[c] - mu) * (xr[c] - mu);
  const float inv = 1.f / sqrtf(warp_sum(ss) / float(n) + eps);
  float sum_g = 0.f, sum_gx = 0.f;
  for (int64_t c = lane; c < n; c += kWarp) {
    const float g = dyr[c] * w[c];
    sum_g += g;
    sum_gx += g * (xr[c] - mu) * inv;
  }
  sum_g = warp_sum(sum_g);
  sum_gx = warp_sum(sum_gx);
  if (lane == 0) {
    float* st = stats + row * kStats;
    st[0] = mu;
    st[1] = inv;
    st[2] = Center ? sum_g / float(n) : 0.f;
    st[3] = sum_gx / float(n);
  }
}

// partial[chunk][c] = sum over the chunk's rows of dy xhat, partial[chunk][n + c] = of dy (fp64,
// as the CPU's per-thread partials), in a fixed order: row lane ty sums rows ty, ty + 8, ...,
// then the 8 row lanes are added in order.
__global__ void norm_weight_partials_kernel(const float* x, int64_t ldx, const float* dy, int64_t lddy,
                                            const float* stats, double* partial, int64_t rows, int64_t n,
                                            bool with_bias) {
  __shared__ double sw[kSumWarps][kWarp], sb[kSumWarps][kWarp];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kWarp + tx, chunk = blockIdx.y;
  const int64_t r0 = chunk * kChunkRows, r1 = r0 + kChunkRows < rows ? r0 + kChunkRows : rows;
  double aw = 0.0, ab = 0.0;
  if (c < n)
    for (int64_t r = r0 + ty; r < r1; r += kSumWarps) {
      const float* st = stats + r * kStats;
      const float d = dy[r * lddy + c];
      const float xhat = (x[r * ldx + c] - st[0]) * st[1];
      aw += double(d * xhat);
      ab += double(d);
    }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty != 0 || c >= n) return;
  double tw = 0.0, tb = 0.0;
  for (int k = 0; k < kSumWarps; ++k) tw += sw[k][tx], tb += sb[k][tx];
  partial[chunk * 2 * n + c] = tw;
  if (with_bias) partial[chunk * 2 * n + n + c] = tb;
}

// dw[c] += sum of the chunks' partials in chunk order (db likewise).
__global__ void norm_weight_total_kernel(const double* partial, int64_t chunks, int64_t n, float* dw, float* db) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n) return;
  double tw = 0.0, tb = 0.0;
  for (int64_t k = 0; k < chunks; ++k) {
    tw += partial[k * 2 * n + c];
    if (db) tb += partial[k * 2 * n + n + c];
  }
  dw[c] += float(tw);
  if (db) db[c] += float(tb);
}

// dx (+)= r (dy w - mean(g) - xhat mean(g xhat)), the CPU's expression (mean(g) = 0: RMSNorm's).
__global__ void norm_dx_kernel(const float* x, int64_t ldx, const float* w, const float* dy, int64_t lddy,
                               const float* stats, float* dx, int64_t lddx, int64_t rows, int64_t n,
                               bool accumulate) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= n) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* st = stats + r * kStats;
    const float xhat = (x[r * ldx + c] - st[0]) * st[1];
    const float d = st[1] * (dy[r * lddy + c] * w[c] - st[2] - xhat * st[3]);
    float* out = dx + r * lddx + c;
    *out = accumulate ? *out + d : d;
  }
}

void norm_backward(bool center, const float* x, int64_t ldx, const float* w, float eps, const float* dy,
                   int64_t lddy, float* dx, int64_t lddx, float* dw, float* db, int64_t rows, int64_t n,
                   bool accumulate, void* workspace, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  const int64_t chunks = chunks_of(rows);
  double* partial = static_cast<double*>(workspace);
  float* stats = reinterpret_cast<float*>(partial + chunks * 2 * n);
  const unsigned stat_blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  if (center)
    norm_row_stats_kernel<true><<<stat_blocks, kRowsPerBlock * kWarp, 0, stream>>>(x, ldx, w, eps, dy, lddy, stats,
                                                                                    rows, n);
  else
    norm_row_stats_kernel<false><<<stat_blocks, kRowsPerBlock * kWarp, 0, stream>>>(x, ldx, w, eps, dy, lddy,
                                                                                     stats, rows, n);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  const dim3 pgrid(unsigned((n + kWarp - 1) / kWarp), unsigned(chunks));
  norm_weight_partials_kernel<<<pgrid, dim3(kWarp, kSumWarps), 0, stream>>>(x, ldx, dy, lddy, stats, partial, rows,
                                                                            n, db != nullptr);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  const unsigned col_blocks = unsigned((n + 255) / 256);
  norm_weight_total_kernel<<<col_blocks, 256, 0, stream>>>(partial, chunks, n, dw, db);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  const dim3 dgrid(col_blocks, unsigned(std::min<int64_t>(rows, kMaxGridY)));
  norm_dx_kernel<<<dgrid, 256, 0, stream>>>(x, ldx, w, dy, lddy, stats, dx, lddx, rows, n, accumulate);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t norm_backward_workspace_bytes(int64_t rows, int64_t cols) {
  return size_t(chunks_of(rows) * 2 * cols) * sizeof(double) + size_t(rows * kStats) * sizeof(float);
}

void rmsnorm_backward(const float* x, int64_t ldx, const float* w, float eps, const float* dy, int64_t lddy,
                      float* dx, int64_t lddx, float* dw, int64_t rows, int64_t cols, bool accumulate,
                      void* workspace, cudaStream_t stream) {
  norm_backward(false, x, ldx, w, eps, dy, lddy, dx, lddx, dw, nullptr, rows, cols, accumulate, workspace, stream);
}

void layernorm_backward(const float* x, int64_t ldx, const float* w, float eps, const float* dy, int64_t lddy,
                        float* dx, int64_t lddx, float* dw, float* db, int64_t rows, int64_t cols,
                        bool accumulate, void* workspace, cudaStream_t stream) {
  norm_backward(true, x, ldx, w, eps, dy, lddy, dx, lddx, dw, db, rows, cols, accumulate, workspace, stream);
}

}  // namespace fusellm::cuda
