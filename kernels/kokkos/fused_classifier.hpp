#pragma once
// Fused classifier: given logits z [T, V], gold next-token ids g [T] and the fused sparse targets
// P [T, k] (fusion.hpp), one kernel computes the log-softmax, the FuseLLM objective per position
// and in total, and writes the gradient of the objective into the logits in place (llm.c's
// fused_classifier, which "never materializes the full normalized logits"; here, moreover, the
// dense V-wide targets are never built: the original builds three dense [B, 2048, V] bf16 tensors
// per step in its collator).
//
// Per position i with g_i >= 0 (g_i < 0 is padding / ignore_index, like PyTorch's -100), with
// q_i = softmax(z_i), lse_i = logsumexp(z_i) and S_i = sum_v P[i, v] (the kept mass):
//
//     CLM_i    = -log q_i(g_i)              = lse_i - z_i[g_i]                    (paper eq. 1)
//     Fusion_i = -sum_v P[i,v] log q_i(v)   = sum_j P_ij (lse_i - z_i[id_ij])     (paper eq. 4)
//     L_i      = lambda CLM_i + (1 - lambda) Fusion_i                             (paper eq. 5)
//
//     dL_i/dz_i = lambda (q_i - onehot(g_i)) + (1 - lambda) (S_i q_i - P[i, :])
//               = (lambda + (1 - lambda) S_i) q_i - lambda onehot(g_i) - (1 - lambda) P[i, :]
//
// which is DESIGN.md's softmax(z_i) - (lambda onehot(t_i) + (1 - lambda) P_t[i, :]) when S_i = 1;
// the general form is what is written, so rows that keep less than all the mass (top-k with a tail,
// empty rows: S_i = 0) get the exact gradient of the soft-label cross-entropy they define. A tail
// ("other" bucket) is ignored: it names no target id.
//
// Reduction: kMean divides the summed losses and every gradient row by N = #{i : g_i >= 0} (as
// F.cross_entropy(reduction="mean", ignore_index=-100) does for both terms); kSum does not.
// Padding rows get loss 0 and a zero gradient. N = 0 gives loss 0 and an all-zero gradient (PyTorch
// gives NaN; nothing to learn is not an error here).
//
// Passes and bytes (per logit, fp32): the k + 1 sparse logits are gathered first; pass 1 reads z
// once and keeps the online max and sum of exp (fusion_row_math.hpp: one exp per logit) and, on
// the host, leaves e = exp(z - m_b) in place (m_b: the running max of z's block); pass 2 reads the
// row again and writes g = c q in place (q = e exp(m_b - lse): one multiply per logit; on a GPU,
// where arithmetic is cheap, pass 1 only reads and pass 2 recomputes q = exp(z - lse)); then k + 1
// scalar fix-ups subtract the one-hot and P. So the kernel *issues* 12 (GPU) or 16 (host: the e
// written in pass 1) bytes per logit. A row is 4 V bytes (128 KiB at V = 32000): it stays in L2
// between the two passes (one thread per row on the CPU, so the row is in that core's L2; one team
// per row on a GPU, L2 is shared), so the memory traffic that must happen is 8 bytes per logit:
// read once, written back once (in place, so no write-allocate read either). That 8 B/logit is
// the bound benchmarks/bench_fused_classifier.cpp compares against the machine's copy bandwidth.
// Fewer bytes would need the gradient consumed by the matmul that produced the logits (a fused
// linear-cross-entropy), which is out of this kernel's scope.
//
// The loss-only variant (evaluation) is pass 1 plus the gathers: 4 bytes per logit, no write.
//
// Errors (fusellm::Error naming the position): logits not [T, V] with T = #gold ids = #target
// rows, gold id >= V, target id < -1 or >= V, target probability NaN/Inf/negative (checked before
// the logits are touched), NaN/+Inf logits or a non-finite loss at a position (e.g. the gold logit is
// -Inf); in the last two cases the logits buffer holds a partly written gradient.
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

#include "fusellm/core/error.hpp"
#include "kokkos/fusion_row_math.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::kernels {

enum class LossReduction { kMean, kSum };

struct FusedClassifierParams {
  float lambda = 0.9f;  // weight of the CLM term (paper: 0.9)
  LossReduction reduction = LossReduction::kMean;
  int team_size = 0;  // 0: 1 on the host, 128 on a GPU
};

template <class MemSpace>
struct FusedLoss {
  double loss = 0.0;     // lambda * clm + (1 - lambda) * fusion, reduced
  double clm = 0.0;      // reduced CLM term
  double fusion = 0.0;   // reduced fusion term
  int64_t tokens = 0;    // N, positions with gold >= 0
  Kokkos::View<float*, MemSpace> clm_position;     // [T] CLM_i (0 on padding)
  Kokkos::View<float*, MemSpace> fusion_position;  // [T] Fusion_i (0 on padding)
};

template <class ExecSpace, bool kWriteGrad>
struct FusedClassifierFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  static constexpr bool kHost = kOnHost<ExecSpace>;

  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace> logits;  // [T, V] in: z, out: dL/dz
  Kokkos::View<const int32_t*, MemSpace> gold;                  // [T]
  Kokkos::View<const int32_t**, Kokkos::LayoutRight, MemSpace> tid;  // [T, k]
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> tp;     // [T, k]
  Kokkos::View<float*, MemSpace> clm_out, fus_out;                   // [T]
  float lambda;
  float scale;  // 1/N (mean) or 1 (sum)

  // long: one team owns one row of logits and makes its passes over it in order (max, sum,
  // CLM and fusion terms, gradient written in place); the passes share the row's reductions.
  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team, int64_t& first_bad) const {
    const int64_t row = team.league_rank();
    const int64_t V = int64_t(logits.extent(1));
    float* z = &logits(row, 0);
    const int32_t g = gold(row);
    if (g < 0) {
      if constexpr (kWriteGrad) {
        if constexpr (kHost) {
          int64_t b, e;
          host_thread_range(V, team.team_rank(), team.team_size(), b, e);
          for (int64_t v = b; v < e; ++v) z[v] = 0.f;
        } else {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, V), [&](const int64_t v) { z[v] = 0.f; });
        }
      }
      Kokkos::single(Kokkos::PerTeam(team), [&]() {
        clm_out(row) = 0.f;
        fus_out(row) = 0.f;
      });
      return;
    }

    // Sparse gathers first (k + 1 loads; every thread computes the same): pass 1 may overwrite z.
    // With them, CLM_i = lse - z[g] and Fusion_i = S_i lse - sum_j P_ij z[id_ij].
    const float zg = z[g];
    double pz = 0.0, mass = 0.0;
    const int64_t k = int64_t(tid.extent(1));
    for (int64_t j = 0; j < k; ++j) {
      const int32_t id = tid(row, j);
      if (id < 0) continue;
      const float p = tp(row, j);
      pz += double(p) * double(z[id]);
      mass += double(p);
    }

    // Pass 1: online max / sum of exp (one read of the row). On the host, when computing the
    // gradient, it also leaves e = exp(z - m_b) in place (see host_range_max_sumexp<true>), so
    // that pass 2 is a multiply per logit instead of an exp.
    float m, s;
    float block_max[kHost && kWriteGrad ? kMaxStoredBlocks : 1];
    bool stored = false;
    if constexpr (kHost && kWriteGrad) {
      const int64_t per = (V + team.team_size() - 1) / team.team_size();
      stored = (per + kBlock - 1) / kBlock <= kMaxStoredBlocks;  // the same on every thread
      if (stored) {
        team.team_barrier();  // every thread has gathered before any overwrites
        team_row_max_sumexp<kHost, member_type, true>(team, z, V, 1.f, m, s, block_max);
      } else {
        team_row_max_sumexp<kHost>(team, z, V, 1.f, m, s);
      }
    } else {
      team_row_max_sumexp<kHost>(team, z, V, 1.f, m, s);
    }
    const float lse = m + ::logf(s);
    if (!is_finite(lse)) {
      const int64_t code = error_code(row, 0, kNonFiniteLogit);
      if (code < first_bad) first_bad = code;
      return;
    }
    const float clm = lse - zg;
    const float fus = float(mass * double(lse) - pz);
    if (!is_finite(clm) || !is_finite(fus)) {
      const int64_t code = error_code(row, 0, kNonFiniteLoss);
      if (code < first_bad) first_bad = code;
      return;
    }
    Kokkos::single(Kokkos::PerTeam(team), [&]() {
      clm_out(row) = clm;
      fus_out(row) = fus;
    });

    if constexpr (kWriteGrad) {
      // Pass 2: g_v = c q_v = c exp(z_v - lse), in place (read + write of the row).
      const float c = scale * (lambda + (1.f - lambda) * float(mass));
      team.team_barrier();  // all gathers above are done before z is overwritten
      if constexpr (kHost) {
        int64_t b, e;
        host_thread_range(V, team.team_rank(), team.team_size(), b, e);
        if (stored) {
          // z holds e = exp(z - m_b) per block b: q = e exp(m_b - lse).
          for (int64_t b0 = b; b0 < e; b0 += kBlock) {
            const float f = c * fast_exp(block_max[(b0 - b) / kBlock] - lse);
            const int64_t b1 = b0 + kBlock < e ? b0 + kBlock : e;
            for (int64_t v = b0; v < b1; ++v) z[v] *= f;
          }
        } else {
          for (int64_t v = b; v < e; ++v) z[v] = c * fast_exp(z[v] - lse);
        }
      } else {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, V),
                             [&](const int64_t v) { z[v] = c * fast_exp(z[v] - lse); });
      }
      team.team_barrier();
      // Fix-ups, by one thread in slot order (a repeated id is then just subtracted twice).
      Kokkos::single(Kokkos::PerTeam(team), [&]() {
        z[g] -= scale * lambda;
        for (int64_t j = 0; j < k; ++j) {
          const int32_t id = tid(row, j);
          if (id >= 0) z[id] -= scale * (1.f - lambda) * tp(row, j);
        }
      });
    }
  }
};

// Checks gold ids and targets before the logits are touched: returns the first bad (row, slot,
// kind) code or kNoError.
template <class ExecSpace>
struct FusedTargetsCheckFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  Kokkos::View<const int32_t*, MemSpace> gold;
  Kokkos::View<const int32_t**, Kokkos::LayoutRight, MemSpace> tid;
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> tp;
  int64_t V;
  KOKKOS_INLINE_FUNCTION void operator()(const int64_t i, int64_t& first_bad) const {
    int64_t code = kNoError;
    if (gold(i) >= V) code = error_code(i, 0, kGoldOutOfRange);
    for (int64_t j = int64_t(tid.extent(1)) - 1; j >= 0; --j) {
      const int32_t id = tid(i, j);
      const float p = tp(i, j);
      if (id < -1 || id >= V)
        code = error_code(i, j, kIdOutOfRange) < code ? error_code(i, j, kIdOutOfRange) : code;
      else if (id >= 0 && (!is_finite(p) || p < 0.f))
        code = error_code(i, j, kBadProb) < code ? error_code(i, j, kBadProb) : code;
    }
    if (code < first_bad) first_bad = code;
  }
};

namespace detail {

// long: the host side of the kernel: every shape and range check of the inputs, named in the
// error, then one launch; the checks read best as one list.
template <class ExecSpace, bool kWriteGrad, class MemSpace>
FusedLoss<MemSpace> run_fused_classifier(
    const ExecSpace& exec, const Kokkos::View<float**, Kokkos::LayoutRight, MemSpace>& logits,
    const Kokkos::View<const int32_t*, MemSpace>& gold, const SparseRows<MemSpace>& targets,
    const FusedClassifierParams& params, const char* what) {
  const int64_t T = int64_t(logits.extent(0)), V = int64_t(logits.extent(1));
  if (int64_t(gold.extent(0)) != T)
    fail("{}: {} gold ids for {} logit rows", what, gold.extent(0), T);
  if (targets.rows() != T)
    fail("{}: {} fused target rows for {} logit rows", what, targets.rows(), T);
  if (!(params.lambda >= 0.f && params.lambda <= 1.f))
    fail("{}: lambda = {} must lie in [0, 1]", what, params.lambda);
  if (V < 1) fail("{}: empty vocabulary", what);

  FusedLoss<MemSpace> out;
  out.clm_position = Kokkos::View<float*, MemSpace>("fused_classifier.clm", T);
  out.fusion_position = Kokkos::View<float*, MemSpace>("fused_classifier.fusion", T);
  if (T == 0) return out;

  Kokkos::View<const int32_t**, Kokkos::LayoutRight, MemSpace> tid = targets.ids;
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> tp = targets.probs;
  int64_t bad = kNoError;
  Kokkos::parallel_reduce("fusellm::fused_classifier::check",
                          Kokkos::RangePolicy<ExecSpace>(exec, 0, T),
                          FusedTargetsCheckFunctor<ExecSpace>{gold, tid, tp, V},
                          Kokkos::Min<int64_t>(bad));
  if (bad != kNoError) {
    const auto e = decode_error(bad);
    if (e.kind == kGoldOutOfRange) {
      int32_t g;
      Kokkos::deep_copy(g, Kokkos::subview(gold, e.row));
      fail("{}: gold id {} at position {} is outside the vocabulary [0, {})", what, g, e.row, V);
    }
    int32_t id;
    float p;
    Kokkos::deep_copy(id, Kokkos::subview(tid, e.row, e.slot));
    Kokkos::deep_copy(p, Kokkos::subview(tp, e.row, e.slot));
    if (e.kind == kIdOutOfRange)
      fail("{}: fused target id {} at position {} (slot {}) is outside the vocabulary [0, {})",
           what, id, e.row, e.slot, V);
    fail("{}: fused target probability {} at position {} (slot {}) is not a finite non-negative "
         "number",
         what, p, e.row, e.slot);
  }

  int64_t n = 0;
  Kokkos::parallel_reduce(
      "fusellm::fused_classifier::count", Kokkos::RangePolicy<ExecSpace>(exec, 0, T),
      KOKKOS_LAMBDA(const int64_t i, int64_t& c) { c += gold(i) >= 0 ? 1 : 0; }, n);
  out.tokens = n;
  const float scale =
      params.reduction == LossReduction::kMean ? (n > 0 ? 1.f / float(n) : 0.f) : 1.f;

  FusedClassifierFunctor<ExecSpace, kWriteGrad> f{logits,           gold,
                                                  tid,              tp,
                                                  out.clm_position, out.fusion_position,
                                                  params.lambda,    scale};
  bad = kNoError;
  Kokkos::parallel_reduce(
      kWriteGrad ? "fusellm::fused_classifier" : "fusellm::fused_loss",
      Kokkos::TeamPolicy<ExecSpace>(exec, T, row_team_size<ExecSpace>(params.team_size)), f,
      Kokkos::Min<int64_t>(bad));
  if (bad != kNoError) {
    const auto e = decode_error(bad);
    if (e.kind == kNonFiniteLogit) {
      Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> cl = logits;
      fail("{}: non-finite logit at position {} ({})", what, e.row,
           describe_nonfinite_row(cl, e.row));
    }
    fail("{}: loss at position {} is not finite (the logit of a target id is -Inf)", what, e.row);
  }

  auto clm = out.clm_position;
  auto fus = out.fusion_position;
  double sc = 0.0, sf = 0.0;
  Kokkos::parallel_reduce(
      "fusellm::fused_classifier::sum_clm", Kokkos::RangePolicy<ExecSpace>(exec, 0, T),
      KOKKOS_LAMBDA(const int64_t i, double& a) { a += double(clm(i)); }, sc);
  Kokkos::parallel_reduce(
      "fusellm::fused_classifier::sum_fusion", Kokkos::RangePolicy<ExecSpace>(exec, 0, T),
      KOKKOS_LAMBDA(const int64_t i, double& a) { a += double(fus(i)); }, sf);
  const double div = params.reduction == LossReduction::kMean ? (n > 0 ? double(n) : 1.0) : 1.0;
  out.clm = sc / div;
  out.fusion = sf / div;
  out.loss = double(params.lambda) * out.clm + (1.0 - double(params.lambda)) * out.fusion;
  return out;
}

}  // namespace detail

// Loss and gradient: `logits` [T, V] is overwritten with dL/dz (L reduced per params.reduction).
template <class ExecSpace, class MemSpace = typename ExecSpace::memory_space>
FusedLoss<MemSpace> fused_classifier(const ExecSpace& exec,
                                     const Kokkos::View<float**, Kokkos::LayoutRight, MemSpace>& logits,
                                     const Kokkos::View<const int32_t*, MemSpace>& gold,
                                     const SparseRows<MemSpace>& targets,
                                     const FusedClassifierParams& params = {}) {
  return detail::run_fused_classifier<ExecSpace, true>(exec, logits, gold, targets, params,
                                                       "fused classifier");
}

// Loss only (evaluation): `logits` is read, not written.
template <class ExecSpace, class MemSpace = typename ExecSpace::memory_space>
FusedLoss<MemSpace> fused_loss(const ExecSpace& exec,
                               const Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace>& logits,
                               const Kokkos::View<const int32_t*, MemSpace>& gold,
                               const SparseRows<MemSpace>& targets,
                               const FusedClassifierParams& params = {}) {
  // The functor's View is non-const for the gradient variant; with kWriteGrad = false it only
  // reads. Kokkos has no const_cast for Views, so rebuild an unmanaged non-const handle.
  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> u(
      const_cast<float*>(logits.data()), logits.extent(0), logits.extent(1));
  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace> w = u;
  return detail::run_fused_classifier<ExecSpace, false>(exec, w, gold, targets, params,
                                                        "fused loss");
}

}  // namespace fusellm::kernels
