#!/usr/bin/env python3
"""Fixtures for `fusellm eval`: lm-evaluation-harness itself (lm_eval 0.4.5, its Python API
simple_evaluate with an HFLM: device cpu, batch size 1, float32, max_length 128) run on the two
demo checkpoints (examples/demo/llama: SentencePiece-style BPE whose post-processor adds <s>;
examples/demo/neox: byte-level BPE, no BOS of its own, so transformers' GPTNeoXTokenizerFast
gives <|endoftext|> as BOS and EOS) and on local task files only (nothing downloaded:
HF_DATASETS_OFFLINE=1, HF_HUB_OFFLINE=1; every task is a YAML written to a temporary directory
with `dataset_path: json` and `dataset_kwargs: {data_files: ...}`):

  corpus          tests/fixtures/eval/corpus.jsonl (written here, from CORPUS below): output_type
                  loglikelihood_rolling, word_perplexity / byte_perplexity / bits_per_byte; with
                  max_length 128 the long documents take several rolling windows
  arc_sample, openbookqa_sample, hellaswag_sample, boolq_sample
                  examples/eval/*.jsonl with the harness's own templates (arc_easy.yaml,
                  openbookqa.yaml, hellaswag.yaml + its utils.process_docs, super_glue/boolq
                  default.yaml, acc_norm added to boolq): acc, acc_norm
  bbh_sample      examples/eval/bbh_sample.jsonl with bbh/cot_zeroshot's template and its
                  strict-match filter, max_gen_toks 32, until BBH's ("</s>", "Q:", "<|im_end|>")
  bbh_sample_nl   the same file, until ["\\n"] (the tiny models write newlines, so the stop cut
                  is exercised)

Writes tests/fixtures/eval/:
  corpus.jsonl            the corpus
  expected_<model>.json   {"results": the harness's results for every task,
                           "samples": per task, per doc_id: the loglikelihood(s) (rolling: one;
                           multiple choice: one per choice) or the generation and filtered answer}
  answers.json            BBH's strict-match RegexFilter and exact_match (the template's
                          regexes_to_ignore, ignore_case) on hand-written generations, so the
                          answer extraction is checked on strings that do hold an answer

Checked by tests/integration/test_eval_cli.cpp (acc, acc_norm and exact_match equal; the
perplexity metrics within 1e-4 relative; generations equal) and tests/unit/eval/test_answer_match.cpp.

    /tmp/refenv/bin/python tests/reference/gen_eval.py

Pinned: tests/reference/requirements.txt (lm_eval 0.4.5 with datasets 3.0.1, pyarrow 17.0.0,
pandas 2.2.3 on numpy 1.26.4). Deterministic (CPU, greedy, no sampling).
"""
import json, os, shutil, sys, tempfile

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import datasets
import lm_eval
import tokenizers
import torch
import transformers
from importlib.metadata import version

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
assert tokenizers.__version__ == "0.20.3", tokenizers.__version__
assert version("lm_eval") == "0.4.5", version("lm_eval")
assert datasets.__version__ == "3.0.1", datasets.__version__

from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval")
SAMPLES = os.path.join(ROOT, "examples", "eval")
MODELS = {"llama": "examples/demo/llama", "neox": "examples/demo/neox"}
MAX_LENGTH = 128
MAX_GEN_TOKS = 32

# Written for fusellm: prose, a man-page excerpt in the demo's style, code, non-ASCII text, odd
# white space (leading, trailing, tabs, blank lines, a form feed) for the word count.
CORPUS = [
    "Knowledge fusion combines the generative distributions of several source language models "
    "into one target model. Each source reads the same text with its own tokenizer; the tokens "
    "are aligned, the distributions mapped onto the target's vocabulary, and the target is "
    "trained to match the fused distribution while it also learns from the text itself. The "
    "sources may differ in architecture and size, and none of them needs to be kept after the "
    "training: the target alone carries what the sources knew. This paragraph is long enough "
    "to take more than one window of one hundred and twenty-eight tokens, so that the rolling "
    "windows of the harness are exercised: the first window predicts every token from the "
    "prefix token, and each later window predicts the next tokens from the ones just before "
    "them.\n\nA second paragraph follows, separated by a blank line, to end the document.",
    "NAME\n    ls - list directory contents\nSYNOPSIS\n    ls [OPTION]... [FILE]...\n"
    "DESCRIPTION\n    List information about the FILEs (the current directory by default).\n"
    "    Sort entries alphabetically if none of -cftuvSUX nor --sort is specified.\n",
    "  leading spaces, a\ttab, trailing spaces  \n\n\nand blank lines\x0cform feed  ",
    "Unicode: café, naïve, Größe, 東京, Ελληνικά — and an emoji 🙂 count more bytes than characters.",
    "def rolling(ids, n):\n    for i in range(0, len(ids), n):\n        yield ids[i:i + n]\n",
    "short",
]

MC_TASKS = {
    "arc_sample": dict(
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_target="{{choices.label.index(answerKey)}}",
        doc_to_choice="{{choices.text}}",
    ),
    "openbookqa_sample": dict(
        doc_to_text="question_stem",
        doc_to_target="{{choices.label.index(answerKey.lstrip())}}",
        doc_to_choice="{{choices.text}}",
    ),
    "hellaswag_sample": dict(
        process_docs="!function utils.process_docs",
        doc_to_text="{{query}}",
        doc_to_target="{{label}}",
        doc_to_choice="choices",
    ),
    "boolq_sample": dict(
        doc_to_text="{{passage}}\nQuestion: {{question}}?\nAnswer:",
        doc_to_target="label",
        doc_to_choice='["no", "yes"]',
    ),
}
BBH_REGEX = ("((?<=The answer is )(.*)(?=.)|(?<=the answer is )(.*)(?=.)|"
             "(?<=The answer: )(.*)(?=.)|(?<=The final answer: )(.*)(?=.))")
BBH_IGNORE = ["\\.$", ",", "\\\\", "\n", '"']  # bbh/cot_zeroshot/_cot_zeroshot_template_yaml


def q(s):
    return json.dumps(s)  # a YAML double-quoted scalar (JSON strings are valid YAML)


def data_block(path):
    return f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {q(path)}\ntest_split: test\n"


def write_tasks(tmp):
    corpus = os.path.join(OUT, "corpus.jsonl")
    with open(os.path.join(tmp, "corpus.yaml"), "w") as f:
        f.write("task: corpus\n" + data_block(corpus) + "output_type: loglikelihood_rolling\n"
                'doc_to_text: ""\ndoc_to_target: text\nmetric_list:\n  - metric: word_perplexity\n'
                "  - metric: byte_perplexity\n  - metric: bits_per_byte\n")
    hs = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "hellaswag", "utils.py")
    shutil.copy(hs, os.path.join(tmp, "utils.py"))
    for name, t in MC_TASKS.items():
        lines = [f"task: {name}", data_block(os.path.join(SAMPLES, name + ".jsonl")).rstrip("\n"),
                 "output_type: multiple_choice"]
        for k, v in t.items():
            lines.append(f"{k}: {v}" if k == "process_docs" or v.startswith("[") else f"{k}: {q(v)}")
        lines.append("metric_list:\n  - metric: acc\n  - metric: acc_norm")
        with open(os.path.join(tmp, name + ".yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
    for name, until in [("bbh_sample", ["</s>", "Q:", "<|im_end|>"]), ("bbh_sample_nl", ["\n"])]:
        with open(os.path.join(tmp, name + ".yaml"), "w") as f:
            f.write(f"task: {name}\n" + data_block(os.path.join(SAMPLES, "bbh_sample.jsonl")) +
                    "output_type: generate_until\n"
                    f"doc_to_text: {q('Q: {{input}}' + chr(10) + 'A: Let' + chr(39) + 's think step by step.')}\n"
                    'doc_to_target: "{{target}}"\n'
                    "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
                    f"    ignore_case: true\n    regexes_to_ignore: {q(BBH_IGNORE)}\n"
                    f"generation_kwargs:\n  until: {q(until)}\n  do_sample: false\n  temperature: 0.0\n"
                    f"  max_gen_toks: {MAX_GEN_TOKS}\n"
                    "filter_list:\n  - name: strict-match\n    filter:\n      - function: regex\n"
                    f"        regex_pattern: {q(BBH_REGEX)}\n      - function: take_first\n"
                    "num_fewshot: 0\n")
    return ["corpus", *MC_TASKS, "bbh_sample", "bbh_sample_nl"]


def sample_record(task, s):
    if task == "corpus":
        return {"doc_id": s["doc_id"], "loglikelihood": s["resps"][0][0]}
    if task.startswith("bbh"):
        return {"doc_id": s["doc_id"], "generation": s["resps"][0][0], "answer": s["filtered_resps"][0],
                "target": s["target"]}
    return {"doc_id": s["doc_id"], "loglikelihoods": [r[0][0] for r in s["resps"]], "target": s["target"]}


def evaluate(model_dir, tmp, tasks):
    lm = HFLM(pretrained=os.path.join(ROOT, model_dir), device="cpu", batch_size=1, dtype="float32",
              max_length=MAX_LENGTH)
    tm = TaskManager(include_path=tmp, include_defaults=False)
    out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm, num_fewshot=0, log_samples=True,
                                  random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    results = {t: {k: v for k, v in out["results"][t].items() if k != "alias"} for t in tasks}
    samples = {t: [sample_record(t, s) for s in sorted(out["samples"][t], key=lambda s: s["doc_id"])] for t in tasks}
    return {"results": results, "samples": samples, "n-samples": out["n-samples"],
            "prefix_token_id": lm.prefix_token_id, "max_length": lm.max_length}


def answers():
    gens = ["So the answer is (B).", "Let's see. the answer is False.", "The answer: apple fig pear.",
            "The final answer: True.\nQ: next", "no answer here", "The answer is 42", "the answer is ,\"A\\\".",
            "The answer is xy", "First the answer is (A). Then The answer is (C).", "The answer is True.\n"]
    targets = ["(B)", "False", "apple fig pear", "True", "x", "42", "a", "x", "(A)", "True"]
    filt = RegexFilter(regex_pattern=BBH_REGEX, group_select=0)
    extracted = [r[0] for r in filt.apply([[g] for g in gens], None)]
    em = [float(exact_match_hf_evaluate([a], [t], regexes_to_ignore=BBH_IGNORE, ignore_case=True)["exact_match"])
          for a, t in zip(extracted, targets)]
    return [{"generation": g, "target": t, "answer": a, "exact_match": e}
            for g, t, a, e in zip(gens, targets, extracted, em)]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for text in CORPUS:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        tasks = write_tasks(tmp)
        for name, d in MODELS.items():
            res = evaluate(d, tmp, tasks)
            with open(os.path.join(OUT, f"expected_{name}.json"), "w") as f:
                json.dump(res, f, indent=1, ensure_ascii=False)
            for t in tasks:
                print(name, t, {k: v for k, v in res["results"][t].items() if "stderr" not in k})
    with open(os.path.join(OUT, "answers.json"), "w") as f:
        json.dump(answers(), f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    sys.exit(main())
