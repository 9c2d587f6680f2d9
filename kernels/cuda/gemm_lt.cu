// LtGemm (gemm_lt.hpp states the math, the column-major mapping and the alignment rules): every
// cuBLASLt call checked (FUSELLM_CUBLAS_CHECK names the call, the file and the line), shapes and
// alignment checked before anything is enqueued, one plan (descriptor, layouts, algorithm) per
// shape. No kernels of our own: the .cu is for the nvcc build of fusellm_cuda.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "cuda/cublas_check.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gemm_lt.hpp"
#include "fusellm/core/error.hpp"

// A matmul-descriptor attribute from a variable (its size is the attribute's: enums are 32-bit).
#define FUSELLM_LT_DESC_SET(desc, attr, value) \
  FUSELLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &(value), sizeof(value)))
#define FUSELLM_LT_PREF_SET(pref, attr, value) \
  FUSELLM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &(value), sizeof(value)))

namespace fusellm::cuda {
namespace {

struct DescDestroy {
  void operator()(cublasLtMatmulDesc_t d) const { cublasLtMatmulDescDestroy(d); }
};
struct LayoutDestroy {
  void operator()(cublasLtMatrixLayout_t l) const { cublasLtMatrixLayoutDestroy(l); }
};
struct PrefDestroy {
  void operator()(cublasLtMatmulPreference_t p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using Desc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDestroy>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDestroy>;
using Pref = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, PrefDestroy>;

// One operand as the caller gave it (row-major), for the checks and the messages.
struct Operand {
  const char* name;
  const void* p;
  int64_t rows, cols, ld;
  int64_t elem;  // bytes per element: 2 (bf16) or 4 (fp32)
};
using Operands = std::array<Operand, 3>;  // the two inputs, then the output

Operand in(const char* name, LtIn m) { return {name, m.p, m.rows, m.cols, m.ld, 2}; }
template <class T>
Operand out(const char* name, LtMat<T> m) {
  return {name, m.p, m.rows, m.cols, m.ld, int64_t(sizeof(T))};
}

// "LtGemm::forward(x [2048, 2048] ld 2048 bf16, W [...] ..., y [...] ... fp32, bias fp32)"
std::string describe(const char* op, const Operands& o, const float* bias) {
  std::string s = fmt::format("LtGemm::{}(", op);
  for (size_t i = 0; i < o.size(); ++i)
    s += fmt::format("{}{} [{}, {}] ld {} {}", i ? ", " : "", o[i].name, o[i].rows, o[i].cols, o[i].ld,
                     o[i].elem == 2 ? "bf16" : "fp32");
  return s + (bias ? ", bias fp32)" : ")");
}

// The rules of gemm_lt.hpp ("Alignment"): a failure names the operand and the rule.
void check_layout(const char* op, const Operands& o, const float* bias) {
  for (const Operand& x : o) {
    if (x.rows < 0 || x.cols < 0) fail("{}: {} has a negative dimension", describe(op, o, bias), x.name);
    if (x.rows == 0 || x.cols == 0) continue;
    if (x.ld < x.cols)
      fail("{}: {}'s leading dimension {} is below its {} columns", describe(op, o, bias), x.name, x.ld, x.cols);
    if (x.p == nullptr) fail("{}: {} is a null pointer", describe(op, o, bias), x.name);
    if (reinterpret_cast<uintptr_t>(x.p) % 16)
      fail("{}: {} at {} is not 16-byte aligned, which cuBLASLt's bf16 kernels need (refused, not computed)",
           describe(op, o, bias), x.name, x.p);
    if (x.ld * x.elem % 16)
      fail("{}: {}'s leading dimension {} is not a multiple of {} elements (16 bytes), which cuBLASLt's bf16 "
           "kernels need (refused, not computed): pad its rows",
           describe(op, o, bias), x.name, x.ld, 16 / x.elem);
  }
  if (bias && reinterpret_cast<uintptr_t>(bias) % 16)
    fail("{}: the bias at {} is not 16-byte aligned (refused, not computed)", describe(op, o, bias),
         static_cast<const void*>(bias));
}

// One cuBLASLt call in its column-major terms: D [m, n] = op(A) op(B) + beta C (+ bias [m] along
// every column), C = D in place. A is stored [k, m] when ta, else [m, k]; B [n, k] when tb, else [k, n].
struct ColGemm {
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  const void* c = nullptr;
  int64_t ldc = 0;
  cudaDataType_t ctype = CUDA_R_32F;
  const float* bias = nullptr;
  float beta = 0.f;
};
// D [m, n] = op(A) op(B) (+ D when accumulate) over the caller's operands a, b and d (D fp32 unless
// the caller sets ctype).
ColGemm col_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const Operand& a, const Operand& b,
                 const Operand& d, bool accumulate) {
  ColGemm g;
  g.ta = ta, g.tb = tb, g.m = m, g.n = n, g.k = k;
  g.a = a.p, g.lda = a.ld, g.b = b.p, g.ldb = b.ld, g.c = d.p, g.ldc = d.ld;
  g.beta = accumulate ? 1.f : 0.f;
  return g;
}

// The largest power of two, up to 256 (cuBLASLt's default assumption), dividing an address or
// a byte count.
uint32_t pow2_divisor(uintptr_t v) { return v == 0 ? 256u : uint32_t(std::min<uintptr_t>(v & (~v + 1), 256)); }
// What the heuristic may assume of a matrix (CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_*: "required for buffer
// pointer, leading dimension"): the pointer's alignment and its rows' stride in bytes, the lesser.
uint32_t alignment(const void* p, int64_t ld, int64_t elem) {
  return std::min(pow2_divisor(reinterpret_cast<uintptr_t>(p)), pow2_divisor(uintptr_t(ld * elem)));
}
int64_t out_elem(const ColGemm& g) { return g.ctype == CUDA_R_16BF ? 2 : 4; }

using PlanKey = std::array<int64_t, 14>;
PlanKey plan_key(const ColGemm& g) {
  return {g.ta, g.tb, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, int64_t(g.ctype), g.bias != nullptr,
          alignment(g.a, g.lda, 2), alignment(g.b, g.ldb, 2), alignment(g.c, g.ldc, out_elem(g)),
          pow2_divisor(reinterpret_cast<uintptr_t>(g.bias))};
}

Layout layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  FUSELLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld));
  return Layout(l);
}

struct Plan {
  Desc desc;
  Layout a, b, c;  // c serves as C and D
  cublasLtMatmulAlgo_t algo{};
};

Desc matmul_desc(const ColGemm& g) {
  cublasLtMatmulDesc_t d = nullptr;
  FUSELLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  Desc desc(d);
  const cublasOperation_t ta = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  FUSELLM_LT_DESC_SET(d, CUBLASLT_MATMUL_DESC_TRANSA, ta);
  FUSELLM_LT_DESC_SET(d, CUBLASLT_MATMUL_DESC_TRANSB, tb);
  if (g.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    const void* bias = g.bias;  // the heuristic reads its alignment; each call sets its own
    FUSELLM_LT_DESC_SET(d, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    FUSELLM_LT_DESC_SET(d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type);
    FUSELLM_LT_DESC_SET(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  }
  return desc;
}

// The heuristic's best algorithm for the plan within the workspace, for pointers aligned as g's.
cublasLtMatmulAlgo_t best_algo(cublasLtHandle_t h, const Plan& p, const ColGemm& g, size_t workspace,
                               const std::string& what) {
  cublasLtMatmulPreference_t raw = nullptr;
  FUSELLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw));
  const Pref pref(raw);
  const uint64_t max_workspace = workspace;
  const uint32_t align_a = alignment(g.a, g.lda, 2), align_b = alignment(g.b, g.ldb, 2),
                 align_c = alignment(g.c, g.ldc, out_elem(g));
  FUSELLM_LT_PREF_SET(raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, max_workspace);
  FUSELLM_LT_PREF_SET(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
  FUSELLM_LT_PREF_SET(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
  FUSELLM_LT_PREF_SET(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c);
  FUSELLM_LT_PREF_SET(raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, p.desc.get(), p.a.get(), p.b.get(), p.c.get(),
                                                           p.c.get(), pref.get(), 1, &result, &found);
  const bool none = st == CUBLAS_STATUS_SUCCESS && (found < 1 || result.state != CUBLAS_STATUS_SUCCESS);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || none)
    fail("{}: cuBLASLt has no algorithm for it (cublasLtMatmulAlgoGetHeuristic: {}, {} found)", what,
         cublasGetStatusName(st), found);
  cublas_check(int(st), "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  return result.algo;
}

}  // namespace

struct LtGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  mutable std::mutex mutex;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  int64_t queries = 0;

  ~Impl() {
    plans.clear();
    if (handle) cublasLtDestroy(handle);
    if (workspace) cudaFree(workspace);
  }

  // The cached plan of g's shape, made (one heuristic query) when it is new. Caller holds mutex.
  Plan& plan(const ColGemm& g, const char* op, const Operands& o) {
    const PlanKey key = plan_key(g);
    if (auto it = plans.find(key); it != plans.end()) return *it->second;
    if (plans.size() >= kMaxPlans) plans.clear();
    auto p = std::make_unique<Plan>();
    p->desc = matmul_desc(g);
    p->a = layout(CUDA_R_16BF, g.ta ? g.k : g.m, g.ta ? g.m : g.k, g.lda);
    p->b = layout(CUDA_R_16BF, g.tb ? g.n : g.k, g.tb ? g.k : g.n, g.ldb);
    p->c = layout(g.ctype, g.m, g.n, g.ldc);
    ++queries;
    p->algo = best_algo(handle, *p, g, workspace_bytes, describe(op, o, g.bias));
    return *plans.emplace(key, std::move(p)).first->second;
  }

  // Checks (the shapes agree as `formula` says, then gemm_lt.hpp's rules) and enqueues g.
  void run(const char* op, const char* formula, bool agree, const Operands& o, const ColGemm& g,
           cudaStream_t stream) {
    if (!agree) fail("{}: shapes do not agree ({})", describe(op, o, g.bias), formula);
    check_layout(op, o, g.bias);
    if (g.m == 0 || g.n == 0) return;
    if (g.k == 0) {
      if (g.beta == 1.f && !g.bias) return;  // the output stays as it is: right
      fail("{}: a sum over no terms is not computed (zero the output instead)", describe(op, o, g.bias));
    }
    std::lock_guard lock(mutex);
    Plan& p = plan(g, op, o);
    if (g.bias) {
      const void* bias = g.bias;
      FUSELLM_LT_DESC_SET(p.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    }
    const float alpha = 1.f;
    void* d = const_cast<void*>(g.c);
    FUSELLM_CUBLAS_CHECK(cublasLtMatmul(handle, p.desc.get(), &alpha, g.a, p.a.get(), g.b, p.b.get(), &g.beta, g.c,
                                        p.c.get(), d, p.c.get(), &p.algo, workspace, workspace_bytes, stream));
  }

  // y^T [N, M] = op_T(W^T [K, N]) x^T [K, M] (+ bias [N]) (+ y^T).
  void forward(Operand x, Operand w, const float* bias, Operand y, cudaDataType_t ytype, bool accumulate,
               cudaStream_t stream) {
    ColGemm g = col_gemm(true, false, w.rows, x.rows, x.cols, w, x, y, accumulate);
    g.ctype = ytype, g.bias = bias;
    const bool agree = x.cols == w.cols && y.rows == x.rows && y.cols == w.rows;
    run("forward", "y [M, N] = x [M, K] W [N, K]^T", agree, {x, w, y}, g, stream);
  }
};

LtGemm::LtGemm(size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  FUSELLM_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  if (workspace_bytes) FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->workspace, workspace_bytes));
  impl_->workspace_bytes = workspace_bytes;
}
LtGemm::~LtGemm() = default;
LtGemm::LtGemm(LtGemm&&) noexcept = default;
LtGemm& LtGemm::operator=(LtGemm&&) noexcept = default;

void LtGemm::forward(LtIn x, LtIn w, const float* bias, LtMat<float> y, bool accumulate, cudaStream_t stream) {
  impl_->forward(in("x", x), in("W", w), bias, out("y", y), CUDA_R_32F, accumulate, stream);
}

void LtGemm::forward(LtIn x, LtIn w, const float* bias, LtMat<__nv_bfloat16> y, bool accumulate,
                     cudaStream_t stream) {
  impl_->forward(in("x", x), in("W", w), bias, out("y", y), CUDA_R_16BF, accumulate, stream);
}

// dx^T [K, M] = W^T [K, N] dy^T [N, M] (+ dx^T).
void LtGemm::backward_input(LtIn dy, LtIn w, LtMat<float> dx, bool accumulate, cudaStream_t stream) {
  const Operands o{in("dy", dy), in("W", w), out("dx", dx)};
  const bool agree = dy.rows == dx.rows && dy.cols == w.rows && w.cols == dx.cols;
  impl_->run("backward_input", "dx [M, K] = dy [M, N] W [N, K]", agree, o,
             col_gemm(false, false, dx.cols, dx.rows, dy.cols, o[1], o[0], o[2], accumulate), stream);
}

// dW^T [K, N] += x^T [K, M] op_T(dy^T [N, M]).
void LtGemm::backward_weight(LtIn dy, LtIn x, LtMat<float> dw, cudaStream_t stream) {
  const Operands o{in("dy", dy), in("x", x), out("dW", dw)};
  const bool agree = dy.rows == x.rows && dw.rows == dy.cols && dw.cols == x.cols;
  impl_->run("backward_weight", "dW [N, K] += dy [M, N]^T x [M, K]", agree, o,
             col_gemm(false, true, dw.cols, dw.rows, dy.rows, o[1], o[0], o[2], true), stream);
}

int64_t LtGemm::heuristic_queries() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->queries;
}

int64_t LtGemm::plans() const {
  std::lock_guard lock(impl_->mutex);
  return int64_t(impl_->plans.size());
}

}  // namespace fusellm::cuda
