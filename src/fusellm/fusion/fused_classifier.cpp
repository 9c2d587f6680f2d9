#include "fusellm/fusion/fused_classifier.hpp"

namespace fusellm::fusion {

kernels::FusedLoss<DeviceMem> fused_classifier(const DeviceView2<float>& logits,
                                               const DeviceView1<const int32_t>& gold,
                                               const DeviceRows& targets,
                                               const FusedClassifierParams& params) {
  return kernels::fused_classifier(ExecSpace(), logits, gold, targets, params);
}

kernels::FusedLoss<DeviceMem> fused_loss(const DeviceView2<const float>& logits,
                                         const DeviceView1<const int32_t>& gold,
                                         const DeviceRows& targets,
                                         const FusedClassifierParams& params) {
  return kernels::fused_loss(ExecSpace(), logits, gold, targets, params);
}

namespace {

FusedLossResult to_result(const kernels::FusedLoss<DeviceMem>& r) {
  FusedLossResult out;
  out.loss = r.loss;
  out.clm = r.clm;
  out.fusion = r.fusion;
  out.tokens = r.tokens;
  out.clm_position = to_std_vector(r.clm_position);
  out.fusion_position = to_std_vector(r.fusion_position);
  return out;
}

// Templates so that the branch not taken is not compiled (the types differ on a GPU build).
template <class HostView>
DeviceView2<float> logits_to_device(const HostView& h) {
  if constexpr (kDeviceIsHost) {
    return h;
  } else {
    DeviceView2<float> d("fused classifier logits", h.extent(0), h.extent(1));
    Kokkos::deep_copy(d, h);
    return d;
  }
}

}  // namespace

FusedLossResult fused_classifier(std::span<float> logits, int64_t T, int64_t V,
                                 std::span<const int32_t> gold, const HostRows& targets,
                                 const FusedClassifierParams& params) {
  if (int64_t(logits.size()) != T * V)
    fail("fused classifier: {} logits for [T, V] = [{}, {}]", logits.size(), T, V);
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      h(logits.data(), T, V);
  auto d = logits_to_device(h);
  auto r = kernels::fused_classifier(ExecSpace(), d, to_device(gold, "fused classifier gold"),
                                     rows_to_device(targets), params);
  if constexpr (!kDeviceIsHost) Kokkos::deep_copy(h, d);
  return to_result(r);
}

FusedLossResult fused_loss(std::span<const float> logits, int64_t T, int64_t V,
                           std::span<const int32_t> gold, const HostRows& targets,
                           const FusedClassifierParams& params) {
  return to_result(kernels::fused_loss(ExecSpace(), to_device(logits, T, V, "fused loss logits"),
                                       to_device(gold, "fused loss gold"), rows_to_device(targets),
                                       params));
}

}  // namespace fusellm::fusion
