#pragma once
// Zero-shot multiple choice as lm-evaluation-harness scores it (ConfigurableTask.construct_requests
// and process_results for output_type multiple_choice, lm_eval/api/task.py, 0.4.5):
//
//   ll_i     = loglikelihood(context, " " + choice_i)        (target_delimiter " ")
//   acc      = 1 if argmax_i ll_i == gold                     (np.argmax: the first maximum)
//   acc_norm = 1 if argmax_i ll_i / len(choice_i) == gold     (len in code points, without the " ")
//
// and the task's acc/acc_norm are the means over documents, their stderr the sample standard
// deviation over sqrt(n) (metrics.mean_stderr). One forward pass per (document, choice).
#include <vector>

#include "fusellm/eval/choice_task.hpp"
#include "fusellm/eval/eval_model.hpp"

namespace fusellm::eval {

struct ChoiceResult {
  std::vector<double> loglikelihoods;  // one per choice
  int64_t pred = 0;                    // argmax of loglikelihoods
  int64_t pred_norm = 0;               // argmax of loglikelihood / length
  double acc = 0, acc_norm = 0;
};

ChoiceResult score_choices(const EvalModel& m, const ChoiceDoc& doc);

}  // namespace fusellm::eval
