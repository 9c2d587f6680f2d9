#include "fusellm/model/stage_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "fusellm/core/error.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm::model {

namespace {

int64_t held_parameters(const Arch& a, const DecoderParams& params, LayerRange r) {
  int64_t n = 0;
  for (int i = 0; i < params.table.size(); ++i)
    if (holds(a, params, r, i)) n += params.table[i].size;
  return n;
}

}  // namespace

StagePlan plan_stages(const Arch& a, const DecoderParams& params, int64_t stages) {
  const int64_t L = a.layers;
  if (stages < 1 || stages > L)
    fail("{} stages for a model of {} layers (each stage holds at least one layer)", stages, L);
  // cost[i][j]: parameters of the stage holding layers [i, j).
  std::vector<std::vector<int64_t>> cost(size_t(L + 1), std::vector<int64_t>(size_t(L + 1), 0));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = i + 1; j <= L; ++j) cost[i][j] = held_parameters(a, params, {i, j});
  // best[s][j]: the smallest largest stage of layers [0, j) in s stages; cut[s][j]: its last cut.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::vector<std::vector<int64_t>> best(size_t(stages + 1), std::vector<int64_t>(size_t(L + 1), kNone));
  std::vector<std::vector<int64_t>> cut(best.size(), std::vector<int64_t>(size_t(L + 1), 0));
  best[0][0] = 0;
  for (int64_t s = 1; s <= stages; ++s)
    for (int64_t j = s; j <= L; ++j)
      for (int64_t i = s - 1; i < j; ++i) {
        if (best[s - 1][i] == kNone) continue;
        const int64_t m = std::max(best[s - 1][i], cost[i][j]);
        if (m < best[s][j]) best[s][j] = m, cut[s][j] = i;
      }
  StagePlan plan;
  plan.model_layers = L;
  plan.stages.resize(size_t(stages));
  for (int64_t s = stages, j = L; s >= 1; j = cut[s][j], --s) {
    const LayerRange r{cut[s][j], j};
    plan.stages[size_t(s - 1)] = Stage{r, cost[r.first][r.last]};
  }
  return plan;
}

StagePlan plan_stages(const std::string& dir, int64_t stages) {
  const Arch a = read_arch(dir);
  const Checkpoint ck(dir);
  return plan_stages(a, plan_decoder_params(a, ck), stages);
}

std::string StagePlan::describe() const {
  int64_t total = 0;
  for (const Stage& s : stages) total += s.parameters;
  std::string o;
  for (size_t i = 0; i < stages.size(); ++i) {
    const LayerRange r = stages[i].layers;
    const std::string ends = std::string(r.first == 0 ? " + embedding" : "") +
                             (r.last == model_layers ? " + final norm, head" : "");
    o += fmt::format("{}stage {}: layers [{}, {}){}: {:.2f} M parameters ({:.0f}%)", i ? "\n" : "", i, r.first, r.last,
                     ends, double(stages[i].parameters) * 1e-6, 100.0 * double(stages[i].parameters) / double(total));
  }
  return o;
}

}  // namespace fusellm::model
