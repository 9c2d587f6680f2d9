#include "fusellm/fusion/fusion.hpp"

namespace fusellm::fusion {

kernels::FusionResult<DeviceMem> fuse(FusionMode mode, const std::vector<DeviceRows>& sources,
                                      const std::vector<std::string>& names,
                                      const DeviceView2<const float>& scores,
                                      const DeviceView1<const int64_t>& seq_offsets, int64_t V) {
  return kernels::fuse(ExecSpace(), mode, sources, names, scores, seq_offsets, V);
}

namespace {

Fused fuse_host(FusionMode mode, std::span<const HostRows> sources,
                std::span<const std::string> names, std::span<const float> scores,
                std::span<const int64_t> seq_offsets, int64_t V) {
  const char* what = kernels::fusion_mode_name(mode);
  std::vector<DeviceRows> d;
  d.reserve(sources.size());
  for (const auto& s : sources) d.push_back(rows_to_device(s));
  const int64_t K = int64_t(sources.size());
  const int64_t cols = mode == FusionMode::kMinCEPerPosition
                           ? (sources.empty() ? 0 : sources[0].rows())
                           : int64_t(seq_offsets.size()) - 1;
  if (cols < 0) fail("{} fusion: sequence offsets must start with 0", what);
  if (int64_t(scores.size()) != K * cols)
    fail("{} fusion: {} scores for {} sources x {} {}", what, scores.size(), K, cols,
         mode == FusionMode::kMinCEPerPosition ? "positions" : "sequences");
  auto r = kernels::fuse(ExecSpace(), mode, d, std::vector<std::string>(names.begin(), names.end()),
                         to_device(scores, K, cols, std::string(what) + " scores"),
                         to_device(seq_offsets, std::string(what) + " offsets"), V);
  Fused f;
  f.rows = rows_to_host(r.rows);
  f.choice = to_std_vector(r.choice);
  if (r.weights.size() > 0) f.weights = to_std_vector(r.weights);
  return f;
}

}  // namespace

Fused fuse_minCE(std::span<const HostRows> sources, std::span<const std::string> names,
                 std::span<const float> scores, std::span<const int64_t> seq_offsets, int64_t V) {
  return fuse_host(FusionMode::kMinCE, sources, names, scores, seq_offsets, V);
}

Fused fuse_avgCE(std::span<const HostRows> sources, std::span<const std::string> names,
                 std::span<const float> scores, std::span<const int64_t> seq_offsets, int64_t V) {
  return fuse_host(FusionMode::kAvgCE, sources, names, scores, seq_offsets, V);
}

Fused fuse_minCE_per_position(std::span<const HostRows> sources, std::span<const std::string> names,
                              std::span<const float> position_ce, int64_t V) {
  return fuse_host(FusionMode::kMinCEPerPosition, sources, names, position_ce, {}, V);
}

}  // namespace fusellm::fusion
