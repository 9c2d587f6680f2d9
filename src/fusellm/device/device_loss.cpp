// The loss on the GPU (device_loss.hpp) over kernels/cuda/fused_classifier.cuh; without CUDA,
// make() says there is none.
#include "fusellm/device/device_loss.hpp"

#include "fusellm/core/error.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include "cuda/fused_classifier.cuh"
#include "cuda/scale.cuh"
#include "fusellm/model/cuda/cuda_backend.hpp"
#endif

namespace fusellm::device {

#ifdef FUSELLM_HAVE_CUDA
namespace {

class CudaLoss final : public DeviceLoss {
 public:
  explicit CudaLoss(const model::CudaBackend& be) : be_(be), classifier_(be.stream()) {}

  SequenceLoss sequence(std::span<float> z, int64_t vocab, std::span<const int32_t> gold,
                        std::span<const int32_t> target_ids, std::span<const float> target_probs, int64_t k,
                        float lambda, float scale) override {
    const int64_t T = int64_t(gold.size());
    if (int64_t(z.size()) != T * vocab || int64_t(target_ids.size()) != T * k ||
        target_probs.size() != target_ids.size())
      fail("device loss: logits of {} values, {} gold ids, {} target ids and {} probabilities for T = {}, V = {}, "
           "k = {}", z.size(), T, target_ids.size(), target_probs.size(), T, vocab, k);
    if (T == 0) return {};
    cuda::FusedTargets t;
    t.gold = model::in_backend_memory(gold, gold_, be_).data();
    t.target_ids = model::in_backend_memory(target_ids, ids_, be_).data();
    t.target_probs = model::in_backend_memory(target_probs, probs_, be_).data();
    t.k = k;
    classifier_.enqueue(z.data(), T, vocab, t, {lambda, cuda::LossReduction::kMean});
    const cuda::FusedLossTotals r = classifier_.finish();
    cuda::scale(z.data(), int64_t(z.size()), scale, be_.stream());
    return {r.loss, r.clm, r.fusion};
  }

 private:
  const model::CudaBackend& be_;
  cuda::FusedClassifier classifier_;
  model::GrowingBuffer gold_, ids_, probs_;  // the host's gold ids and targets, copied in
};

}  // namespace
#endif

std::unique_ptr<DeviceLoss> DeviceLoss::make(const model::TrainableModel& model) {
#ifdef FUSELLM_HAVE_CUDA
  if (const auto* gpu = dynamic_cast<const model::CudaBackend*>(&model.backend()))
    return std::make_unique<CudaLoss>(*gpu);
#else
  (void)model;
#endif
  return nullptr;
}

}  // namespace fusellm::device
