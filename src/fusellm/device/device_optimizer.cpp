// The optimizer on the GPU (device_optimizer.hpp) over kernels/cuda/adamw.cuh; without CUDA,
// make() says there is none.
#include "fusellm/device/device_optimizer.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <limits>
#include <vector>

#include "cuda/adamw.hpp"
#include "cuda/bf16_convert.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#endif

namespace fusellm::device {

#ifdef FUSELLM_HAVE_CUDA
namespace {

constexpr unsigned long long kAllFinite = std::numeric_limits<unsigned long long>::max();

class CudaOptimizer final : public DeviceOptimizer {
 public:
  CudaOptimizer(model::TrainableModel& m, const model::CudaBackend& be, const AdamWOptions& o)
      : m_(m), be_(be), hyper_(cuda::adamw_hyper(o)), P_(m.parameter_table().total()) {
    m1_ = cuda::dev_alloc<float>(size_t(P_));
    m2_ = cuda::dev_alloc<float>(size_t(P_));
    // fp32: the passes' copy is the master itself (updated in place); bf16: a master of its own,
    // the passes' copy its rounding.
    if (m.decoder().weight_dtype() == DType::BF16) {
      own_master_ = cuda::dev_alloc<float>(size_t(P_));
      bf16_ = cuda::dev_alloc<__nv_bfloat16>(size_t(P_));
    }
    const std::vector<int64_t> b = cuda::no_decay_bounds(m.parameter_table());
    bounds_ = cuda::to_device(b);
    n_bounds_ = int64_t(b.size());
    ws_ = cuda::dev_alloc<double>(size_t(cuda::kGradSqSumWorkspace));
    sq_ = cuda::dev_alloc<double>(1);
    norm_ = cuda::dev_alloc<double>(1);
    coef_ = cuda::dev_alloc<float>(1);
    bad_ = cuda::dev_alloc<unsigned long long>(1);
    // The weights are on the device already (the passes' copy, uploaded at load); m and v start at
    // zero, as AdamW creates them.
    if (own_master_) upload_master();
    be_.zero(m1_.get(), size_t(P_) * sizeof(float));
    be_.zero(m2_.get(), size_t(P_) * sizeof(float));
  }

  double clip(double max_norm) override {
    cuda::grad_sq_sum(sq_.get(), m_.device_gradients().data(), P_, ws_.get(), be_.stream());
    cuda::clip_coef(coef_.get(), norm_.get(), sq_.get(), max_norm, be_.stream());
    double norm = 0;
    be_.copy_out(&norm, norm_.get(), sizeof norm);
    return norm;
  }

  std::string step(double lr) override {
    ++t_;
    be_.copy_in(bad_.get(), &kAllFinite, sizeof kAllFinite);
    cuda::AdamWRange r;
    r.params = master(), r.grads = m_.device_gradients().data(), r.m = m1_.get(), r.v = m2_.get();
    r.params_bf16 = bf16_.get(), r.offset = 0, r.n = P_;
    r.no_decay_bounds = bounds_.get(), r.n_bounds = n_bounds_, r.first_nonfinite = bad_.get();
    cuda::adamw_step(r, cuda::adamw_scalars(hyper_, lr, t_), coef_.get(), 1.f, be_.stream());
    refresh_passes_copy();
    host_current_ = false;
    unsigned long long bad = kAllFinite;
    be_.copy_out(&bad, bad_.get(), sizeof bad);
    return bad == kAllFinite ? std::string() : tensor_at(int64_t(bad));
  }

  // Nothing to copy when no step ran since the last to_host or from_host (a checkpoint of the last
  // step, then the export).
  void to_host(AdamW& host) override {
    if (host_current_ && &host == current_in_) return;
    const std::span<float> p = m_.parameter_buffer();
    be_.copy_out(p.data(), master(), p.size_bytes());
    for (const ParamEntry& e : m_.parameter_table().entries()) {
      std::vector<float> m(static_cast<size_t>(e.size)), v(static_cast<size_t>(e.size));
      be_.copy_out(m.data(), m1_.get() + e.offset, m.size() * sizeof(float));
      be_.copy_out(v.data(), m2_.get() + e.offset, v.size() * sizeof(float));
      host.set_state(e.name, std::move(m), std::move(v));
    }
    host.set_steps(t_);
    host_current_ = true, current_in_ = &host;
  }

  void from_host(const AdamW& host) override {
    upload_master();
    be_.zero(m1_.get(), size_t(P_) * sizeof(float));
    be_.zero(m2_.get(), size_t(P_) * sizeof(float));
    for (const ParamEntry& e : m_.parameter_table().entries())
      if (const AdamW::State* s = host.find(e.name)) {
        if (int64_t(s->m.size()) != e.size || int64_t(s->v.size()) != e.size)
          fail("optimizer state of '{}': {} and {} values for a tensor of {}", e.name, s->m.size(), s->v.size(),
               e.size);
        be_.copy_in(m1_.get() + e.offset, s->m.data(), s->m.size() * sizeof(float));
        be_.copy_in(m2_.get() + e.offset, s->v.data(), s->v.size() * sizeof(float));
      }
    t_ = host.steps();
    if (bf16_) m_.parameters_changed();  // the passes' copy rounded from the host's at the next forward
    be_.sync();               // the host vectors above may go once this returns
    host_current_ = true, current_in_ = &host;
  }

 private:
  float* master() { return own_master_ ? own_master_.get() : m_.device_parameters().data(); }
  void upload_master() {
    const std::span<float> p = m_.parameter_buffer();
    be_.copy_in(master(), p.data(), p.size_bytes());
  }

  // The weights the passes read (Decoder::device_parameters) in bf16 mode: the rounding of the
  // master that adamw_step wrote beside it (in fp32 they are the master, already updated).
  void refresh_passes_copy() {
    if (bf16_) cuda::bf16_to_f32(m_.device_parameters().data(), bf16_.get(), P_, be_.stream());
  }

  std::string tensor_at(int64_t flat) const {
    for (const ParamEntry& e : m_.parameter_table().entries())
      if (flat >= e.offset && flat < e.offset + e.size) return e.name;
    return "element " + std::to_string(flat);
  }

  model::TrainableModel& m_;
  const model::CudaBackend& be_;
  cuda::AdamWHyper hyper_;
  int64_t P_ = 0, t_ = 0, n_bounds_ = 0;
  cuda::DevPtr<float> own_master_, m1_, m2_, coef_;
  cuda::DevPtr<__nv_bfloat16> bf16_;
  cuda::DevPtr<int64_t> bounds_;
  cuda::DevPtr<double> ws_, sq_, norm_;
  cuda::DevPtr<unsigned long long> bad_;
  // The host's copies (parameter_buffer() and *current_in_) hold this state: no step since.
  bool host_current_ = false;
  const AdamW* current_in_ = nullptr;
};

}  // namespace
#endif

std::unique_ptr<DeviceOptimizer> DeviceOptimizer::make(model::TrainableModel& model, const AdamWOptions& options) {
#ifdef FUSELLM_HAVE_CUDA
  if (const auto* gpu = dynamic_cast<const model::CudaBackend*>(&model.backend()))
    return std::make_unique<CudaOptimizer>(model, *gpu, options);
#else
  (void)model, (void)options;
#endif
  return nullptr;
}

}  // namespace fusellm::device
