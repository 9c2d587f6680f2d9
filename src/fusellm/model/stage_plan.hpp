#pragma once
// A source's layers cut into pipeline stages (DESIGN.md section 2, "Pipeline-parallel teachers";
// `[[source]].stages`): S contiguous ranges of layers, stage 0 also holding the embeddings and the
// last stage the final norm and the head (decoder_params.hpp's LayerRange), balanced by the
// parameters each stage holds, which is what decides whether a stage fits one rank's memory (and,
// forward only, roughly its share of the work per token: every parameter is one multiply-add per
// token, the head's included).
//
// The cut minimizes the largest stage (an exact dynamic program over the cut points, as
// Megatron-LM's and torchtitan's uniform splits would not do for a head as large as several
// layers); among equal cuts the earliest cut points win, so every rank computes the same plan.
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/model/decoder_params.hpp"

namespace fusellm::model {

struct Stage {
  LayerRange layers;       // resolved
  int64_t parameters = 0;  // held by the stage (the tied embedding counts on both ends)
};

struct StagePlan {
  int64_t model_layers = 0;
  std::vector<Stage> stages;
  // One line per stage: "stage 1: layers [2, 4) + final norm, head: 1.20 M parameters (52%)".
  std::string describe() const;
};

// Splits the model planned by `params` into `stages` stages; Error unless 1 <= stages <= layers.
StagePlan plan_stages(const Arch& a, const DecoderParams& params, int64_t stages);
// The same from a checkpoint directory: reads config.json and the tensor headers, no weights.
StagePlan plan_stages(const std::string& dir, int64_t stages);

}  // namespace fusellm::model
