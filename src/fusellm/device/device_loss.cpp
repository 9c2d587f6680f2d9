// The loss on the GPU (device_loss.hpp) over kernels/cuda/fused_classifier.cuh; without CUDA,
// make() says there is none.
#include "fusellm/device/device_loss.hpp"

#include "fusellm/core/error.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include "cuda/device_buffer.hpp"
#include "cuda/fused_classifier.cuh"
#include "cuda/scale.cuh"
#include "fusellm/model/cuda/cuda_backend.hpp"
#endif

namespace fusellm::device {

#ifdef FUSELLM_HAVE_CUDA
namespace {

// A device copy of host values, grown to fit and never shrunk.
template <class T>
struct Staged {
  cuda::DevPtr<T> dev;
  size_t capacity = 0;
  const T* put(std::span<const T> v, const model::CudaBackend& be) {
    if (capacity < v.size()) {
      be.sync();  // nothing queued may still read the old block
      dev = cuda::dev_alloc<T>(v.size());
      capacity = v.size();
    }
    be.copy_in(dev.get(), v.data(), v.size_bytes());
    return dev.get();
  }
};

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
    t.gold = gold_.put(gold, be_);
    t.target_ids = ids_.put(target_ids, be_);
    t.target_probs = probs_.put(target_probs, be_);
    t.k = k;
    classifier_.enqueue(z.data(), T, vocab, t, {lambda, cuda::LossReduction::kMean});
    const cuda::FusedLossTotals r = classifier_.finish();
    cuda::scale(z.data(), int64_t(z.size()), scale, be_.stream());
    return {r.loss, r.clm, r.fusion};
  }

 private:
  const model::CudaBackend& be_;
  cuda::FusedClassifier classifier_;
  Staged<int32_t> gold_, ids_;
  Staged<float> probs_;
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
