#pragma once
// Greedy generation with stop sequences, as lm-evaluation-harness's HFLM.generate_until runs it
// (lm_eval/models/huggingface.py, 0.4.5; batch size 1, do_sample false):
//
//   the context is encoded without special tokens and left-truncated to max_length - max_gen_toks;
//   the EOS text is appended to the stop sequences (`until`);
//   each step appends argmax of the last logits (torch.argmax: the first maximum); generation
//   ends after max_gen_toks tokens, on a stop id (generation_config.json's eos_token_id), or once
//   the generated text holds a stop sequence (MultiTokenEOSCriteria, which looks at a few last
//   tokens; the cut below makes the result the same either way);
//   the text is decode(generated, skip_special_tokens=True), cut before the first occurrence of
//   each stop sequence in turn (s.split(term)[0]).
//
// No KV cache: each step runs the whole sequence again. Right for the small models and tasks
// fusellm evaluates; a long generation costs O(n^2).
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/eval/eval_model.hpp"

namespace fusellm::eval {

struct Generation {
  std::string text;             // after the cut
  std::vector<int32_t> tokens;  // generated ids, the stop id included
};

Generation generate_until(const EvalModel& m, const std::string& context, std::vector<std::string> until,
                          int64_t max_gen_toks, const std::string& where);

}  // namespace fusellm::eval
