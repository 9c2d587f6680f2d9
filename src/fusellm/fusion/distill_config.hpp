#pragma once
// The job file's [distill] section: how the sources' distributions are made (top-k, temperature,
// token alignment: align/), fused (MinCE / AvgCE: fusion/) and weighted against the CLM loss
// (paper eq. 5). The enums are the components' own (align::AlignMethod, kernels::FusionMode,
// fusion::ScoreUnit); the fields, defaults and checks are in distill_config.cpp's table, which
// jobs/README.md shows.
#include <cstdint>
#include <optional>

#include "fusellm/align/align_method.hpp"
#include "fusellm/align/original_rules.hpp"
#include "fusellm/core/config_field.hpp"
#include "fusellm/fusion/score_unit.hpp"
#include "kokkos/fusion_mode.hpp"

namespace fusellm {

struct DistillConfig {
  using FusionMode = kernels::FusionMode;
  using ScoreUnit = fusion::ScoreUnit;
  // The alignment kernels hold a row's k slots in registers (kokkos/apply_alignment.hpp's
  // kApplyMaxK, kernels/cuda's kAlignApplyMaxK): the job check refuses more.
  static constexpr int64_t kMaxTopK = 64;

  int64_t top_k = 10;
  double temperature = 1.0;
  align::AlignMethod alignment = align::AlignMethod::kMinED;
  std::optional<FusionMode> fusion = FusionMode::kMinCE;  // nullopt: "none", CLM-only training
  double lambda = 0.9;
  bool keep_tail = false;
  bool onehot_compat = false;
  align::OriginalRules align_compat;  // [distill].align_compat
  ScoreUnit score = ScoreUnit::kNatsPerToken;

  // The rules teach aligns under: align_compat, plus onehot_current when onehot_compat is set.
  align::OriginalRules rules() const {
    align::OriginalRules r = align_compat;
    r.onehot_current = r.onehot_current || onehot_compat;
    return r;
  }
  bool operator==(const DistillConfig&) const = default;
};

// [distill].fusion as the job file spells it: "minCE", "avgCE", "none".
const config::EnumNames<std::optional<kernels::FusionMode>>& fusion_names();
const config::Section<DistillConfig>& distill_section();

}  // namespace fusellm
