#pragma once
// Generation task files (JSON Lines), in the form of BBH (lukaemon/bbh) or normalized:
//
//   BBH   {"input": str, "target": str}: prompt "Q: {input}\nA: Let's think step by step."
//         (bbh/cot_zeroshot's doc_to_text; the task's description line is not added)
//   normalized {"prompt": str, "target": str}: the prompt as given
//
// Each document is generated greedily (eval/generate.hpp) and scored by BBH's strict-match answer
// extraction and exact match (eval/answer_match.hpp). The form is told by the first line.
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/eval/eval_model.hpp"

namespace fusellm::eval {

struct GenerationDoc {
  std::string where;  // "file:line"
  std::string prompt;
  std::string target;
};

struct GenerationTask {
  std::string name;
  std::string file;
  std::string format;  // "bbh" or "normalized"
  std::vector<GenerationDoc> docs;
};

GenerationTask read_generation_task(const std::string& path);

struct GenerationResult {
  std::string generation;  // the text after the stop-sequence cut
  std::string answer;      // the strict-match filter's answer
  double exact_match = 0;
};

// BBH's default stop sequences (bbh/*/_*_template_yaml generation_kwargs.until).
std::vector<std::string> bbh_until();

GenerationResult score_generation(const EvalModel& m, const GenerationDoc& doc, const std::vector<std::string>& until,
                                  int64_t max_gen_toks);

}  // namespace fusellm::eval
