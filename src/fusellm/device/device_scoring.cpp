// A teacher's scoring on the GPU (device_scoring.hpp) over kernels/cuda/topk_softmax.cuh and
// kernels/cuda/sequence_ce.cuh; without CUDA, make() says there is none.
#include "fusellm/device/device_scoring.hpp"

#include <mutex>

#include "fusellm/core/error.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include "cuda/sequence_ce.cuh"
#include "cuda/topk_softmax.cuh"
#include "fusellm/model/cuda/cuda_backend.hpp"
#endif

namespace fusellm::device {

#ifdef FUSELLM_HAVE_CUDA
namespace {

class CudaScoring final : public DeviceScoring {
 public:
  CudaScoring(const model::Decoder& model, const model::CudaBackend& be) : model_(model), be_(be) {}

  SegmentScoresOnHost score(std::span<const int32_t> ids, std::span<const int32_t> gold, const TopkSettings& topk,
                            const std::string& source) override {
    const std::lock_guard lock(mutex_);  // one segment at a time through the buffers below
    const int64_t T = int64_t(ids.size()), V = model_.arch().vocab, k = topk.k;
    if (int64_t(gold.size()) != T) fail("device scoring ({}): {} gold ids for {} tokens", source, gold.size(), T);
    SegmentScoresOnHost out;
    out.ids.assign(size_t(T * k), -1);
    out.probs.assign(size_t(T * k), 0.f);
    out.tail.assign(topk.keep_tail ? size_t(T) : 0, 0.f);
    out.ce_position.assign(size_t(T), 0.f);
    if (T == 0) return out;
    const std::span<const float> z = model_.logits_in_backend(ids, {}, logits_);
    auto* d_ids = ids_.get<int32_t>(be_, out.ids.size());
    auto* d_probs = probs_.get<float>(be_, out.probs.size());
    float* d_tail = topk.keep_tail ? tail_.get<float>(be_, size_t(T)) : nullptr;
    cuda::topk_softmax(z.data(), T, V, {int(k), topk.temperature, topk.keep_tail}, d_ids, d_probs, d_tail, source,
                       be_.stream());
    const std::vector<int64_t> offsets = {0, T};
    auto* d_ce = ce_.get<float>(be_, size_t(T));
    auto* d_sum = sum_.get<double>(be_, 1);
    auto* d_count = count_.get<int64_t>(be_, 1);
    cuda::sequence_ce(z.data(), T, V, model::in_backend_memory(gold, gold_, be_).data(),
                      model::in_backend_memory(std::span<const int64_t>(offsets), offsets_, be_).data(), 1, d_ce,
                      d_sum, d_count, source, be_.stream());
    be_.copy_out(out.ids.data(), d_ids, out.ids.size() * sizeof(int32_t));
    be_.copy_out(out.probs.data(), d_probs, out.probs.size() * sizeof(float));
    if (d_tail) be_.copy_out(out.tail.data(), d_tail, out.tail.size() * sizeof(float));
    be_.copy_out(out.ce_position.data(), d_ce, out.ce_position.size() * sizeof(float));
    be_.copy_out(&out.ce_sum, d_sum, sizeof(double));
    be_.copy_out(&out.scored, d_count, sizeof(int64_t));
    return out;
  }

 private:
  const model::Decoder& model_;
  const model::CudaBackend& be_;
  std::mutex mutex_;
  model::GrowingBuffer logits_, ids_, probs_, tail_, ce_, sum_, count_, gold_, offsets_;
};

}  // namespace
#endif

std::unique_ptr<DeviceScoring> DeviceScoring::make(const model::Decoder& model) {
#ifdef FUSELLM_HAVE_CUDA
  if (model.arch().logit_scale != 1.0) return nullptr;
  if (const auto* gpu = dynamic_cast<const model::CudaBackend*>(&model.backend()))
    return std::make_unique<CudaScoring>(model, *gpu);
#else
  (void)model;
#endif
  return nullptr;
}

}  // namespace fusellm::device
