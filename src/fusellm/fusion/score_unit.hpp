#pragma once
// What a source's score is measured in (fusion/sequence_ce.hpp computes both). Both are "lower
// is better"; the reward of MinCE/AvgCE is exp(-score).
namespace fusellm::fusion {

enum class ScoreUnit {
  kNatsPerToken,  // the paper's CE (metric_ce): mean over the source's own tokens
  kNatsPerByte,   // summed CE / UTF-8 bytes: does not favour tokenizers with short tokens
};

}  // namespace fusellm::fusion
