#pragma once
// Multiple-choice task files (JSON Lines), in the form of the datasets lm-evaluation-harness reads,
// each turned into (context, choices, gold) by the harness's own task template (lm_eval/tasks/,
// 0.4.5). The form is told by the first line's fields and every line must have that form's.
//
//   ARC (arc_easy.yaml, arc_challenge.yaml)
//     {"question": str, "choices": {"text": [str], "label": [str]}, "answerKey": str}
//     context "Question: {question}\nAnswer:", gold = choices.label.index(answerKey)
//   OpenBookQA (openbookqa.yaml), told by "question_stem"
//     {"question_stem": str, "choices": {"text": [str], "label": [str]}, "answerKey": str}
//     context "{question_stem}", gold = choices.label.index(answerKey.lstrip())
//   HellaSwag (hellaswag.yaml, utils.process_docs), told by "endings"
//     {"activity_label": str, "ctx_a": str, "ctx_b": str, "endings": [str], "label": int or "3"}
//     context preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
//     choices preprocess(ending), gold = label; preprocess strips, turns " [title]" into ". ",
//     drops "[...]" spans and halves double spaces
//   BoolQ (super_glue/boolq/default.yaml), told by "passage"
//     {"passage": str, "question": str, "label": 0 or 1} (or "answer": false/true, google/boolq)
//     context "{passage}\nQuestion: {question}?\nAnswer:", choices ["no", "yes"], gold = label
//   normalized, told by "query"
//     {"query": str, "choices": [str], "gold": int}: the context and choices as given
//
// The harness scores choice i as loglikelihood(context, " " + choices[i]) (target_delimiter " ").
// Errors name the file and line: a missing field, an empty choice list, an empty choice, a gold
// index out of range, an answerKey that is not a label.
#include <cstdint>
#include <string>
#include <vector>

namespace fusellm::eval {

struct ChoiceDoc {
  std::string where;  // "file:line"
  std::string context;
  std::vector<std::string> choices;
  int64_t gold = 0;
};

struct ChoiceTask {
  std::string name;    // the file's name without .jsonl
  std::string file;
  std::string format;  // "arc", "openbookqa", "hellaswag", "boolq", "normalized"
  std::vector<ChoiceDoc> docs;
};

ChoiceTask read_choice_task(const std::string& path);

// HellaSwag's utils.preprocess.
std::string hellaswag_preprocess(const std::string& text);

}  // namespace fusellm::eval
