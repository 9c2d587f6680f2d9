#pragma once
// The job file (TOML, DESIGN.md section 5). One section per component, as torchtitan's
// JobConfig: every setting lives here with a documented default, none only in code. jobs/README.md
// documents each field at length; this table is the summary the parser implements.
//
//   section        field           type                 default             meaning
//   [job]          name            string               "fusellm"           run name (logs, default output_dir)
//                  seed            integer              42                  seeds the sampler and every RNG
//                  output_dir      path                 "runs/<name>"       metrics and the default checkpoint dir
//   [[source]]     name            string               path's last part    unique; [target].init_from refers to it
//   (0 or more)    path            path (required)      -                   HF checkpoint dir (config.json, safetensors)
//                  replicas        integer >= 1         1                   copies of this teacher (data parallel)
//                  tokenizer       path                 = path              dir with tokenizer.json / tokenizer.model
//   [target]       path            path                 -                   HF checkpoint dir of the student ...
//                  init_from       string               -                   ... or the name of a [[source]] (exactly one)
//                  tokenizer       path                 = the model's       the target tokenizer
//   [corpus]       path            path (required)      -                   .jsonl, .txt, or a directory of them
//                  format          "auto"|"jsonl"|"text" "auto"             auto: by extension (.jsonl/.json, else text)
//                  text_field      string               "text"              the JSONL field holding the document
//                  max_len         integer              2048                target tokens per packed sequence
//                  margin          integer              48                  segments hold <= max_len - margin tokens
//                  document_mask   boolean              false               mask attention across packed documents
//   [distill]      top_k           integer >= 1         10                  logits kept per source position
//                  temperature     float > 0            1.0                 softmax temperature over the top k
//                  alignment       "mined"|"em"|"bytespan" "mined"          token alignment (paper sec. 3.3; bytespan beyond)
//                  fusion          "minCE"|"avgCE"|"none" "minCE"           fusion function (paper eq. 3); none = CLM only
//                  lambda          float in [0, 1]      0.9                 L = lambda L_CLM + (1 - lambda) L_Fusion
//                  keep_tail       boolean              false               keep the tail mass as an "other" bucket
//                  onehot_compat   boolean              false               one-hot of the current token (the original)
//                  align_compat    string               "none"              the original's alignment rules: "all" or
//                                                                           names (align/original_rules.hpp) joined by ',
//                  score           "ce"|"bpb"           "ce"                per-source score for MinCE/AvgCE
//   [optim]        lr              float > 0            1e-5                peak learning rate
//                  betas           [float, float]       [0.9, 0.95]         AdamW betas
//                  eps             float >= 0           1e-8                AdamW eps
//                  weight_decay    float >= 0           0.1                 decoupled (not on biases / norm weights)
//                  clip            float >= 0           1.0                 max global grad norm; 0 = no clipping
//                  schedule        "cosine"|"linear"|"constant" "cosine"    each with linear warmup
//                  warmup_ratio    float in [0, 1)      0.008               warmup = ceil(ratio * total steps)
//                  warmup_steps    integer >= 0         -                   instead of warmup_ratio (not both)
//                  min_lr_ratio    float in [0, 1]      0.0                 floor of cosine / linear, times lr
//   [train]        micro_batch     integer >= 1         1                   sequences per student rank per forward
//                  global_batch    integer >= 1         128                 sequences per optimizer step
//                  epochs          integer >= 1         1                   passes over the corpus
//                  max_steps       integer >= 1         -                   stop (and end the schedule) here
//                  log_interval    integer >= 1         10                  steps between metric lines
//                  dtype           "fp32"|"bf16"        "fp32"              student compute type (master weights fp32)
//   [checkpoint]   dir             path                 "<output_dir>/checkpoints"
//                  interval        integer >= 0         500                 steps between checkpoints; 0 = only at the end
//                  keep            integer >= 0         3                   complete checkpoints kept; 0 = all
//                  resume          boolean              true                continue from <dir>/latest when present
//   [topology]     teacher_ranks   integer or [integer] each source's replicas   ranks per teacher group, one per source
//                  student_ranks   integer >= 1         1                   data-parallel student ranks (ZeRO-1)
//                  prefetch        integer >= 1         2                   micro-batches a teacher runs ahead
//   [cache]        dir             path                 - (online)          offline mode: teachers' distribution caches
//
// Relative paths are taken relative to the directory of the job file, so a job runs the same
// from any working directory (a Slurm script's included).
//
// Every mistake is refused before any work, naming the file, the line and the field: an unknown
// section or field (with a "did you mean" by edit distance), a wrong type (expected and found),
// a missing required field or path, and inconsistent settings (naming each field involved). Every
// integer is at most 2^31 - 1 (seed aside) and every float finite (TOML allows inf and nan).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/align/original_rules.hpp"

#include "fusellm/optim/lr_schedule.hpp"

namespace fusellm {

enum class CorpusFormat { Auto, JSONL, Text };
enum class AlignmentKind { MinED, EM, ByteSpan };
enum class FusionKind { MinCE, AvgCE, None };
enum class ScoreKind { CE, BPB };
enum class TrainDType { F32, BF16 };

std::string_view corpus_format_name(CorpusFormat f);  // the job file's spelling: "auto", ...
std::string_view alignment_name(AlignmentKind a);     // "mined", "em", "bytespan"
std::string_view fusion_name(FusionKind f);           // "minCE", "avgCE", "none"
std::string_view score_name(ScoreKind s);             // "ce", "bpb"
std::string_view train_dtype_name(TrainDType d);      // "fp32", "bf16"

struct JobSection {
  std::string name = "fusellm";
  int64_t seed = 42;
  std::string output_dir;  // resolved; default <job dir>/runs/<name>
  bool operator==(const JobSection&) const = default;
};

struct SourceConfig {
  std::string name;
  std::string path;
  int64_t replicas = 1;
  std::string tokenizer;  // resolved; defaults to path
  bool operator==(const SourceConfig&) const = default;
};

struct TargetConfig {
  std::string path;       // empty when init_from is set
  std::string init_from;  // a source name, or empty
  std::string tokenizer;  // resolved; defaults to path or the init_from source's tokenizer
  bool operator==(const TargetConfig&) const = default;
};

struct CorpusConfig {
  std::string path;
  CorpusFormat format = CorpusFormat::Auto;
  std::string text_field = "text";
  int64_t max_len = 2048;
  int64_t margin = 48;
  bool document_mask = false;
  bool operator==(const CorpusConfig&) const = default;
};

struct DistillConfig {
  int64_t top_k = 10;
  double temperature = 1.0;
  AlignmentKind alignment = AlignmentKind::MinED;
  FusionKind fusion = FusionKind::MinCE;
  double lambda = 0.9;
  bool keep_tail = false;
  bool onehot_compat = false;
  align::OriginalRules align_compat;  // [distill].align_compat
  ScoreKind score = ScoreKind::CE;
  // The rules teach aligns under: align_compat, plus onehot_current when onehot_compat is set.
  align::OriginalRules rules() const {
    align::OriginalRules r = align_compat;
    r.onehot_current = r.onehot_current || onehot_compat;
    return r;
  }
  bool operator==(const DistillConfig&) const = default;
};

struct OptimConfig {
  double lr = 1e-5;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double clip = 1.0;
  ScheduleKind schedule = ScheduleKind::Cosine;
  double warmup_ratio = 0.008;
  std::optional<int64_t> warmup_steps;
  double min_lr_ratio = 0.0;
  bool operator==(const OptimConfig&) const = default;
};

struct TrainConfig {
  int64_t micro_batch = 1;
  int64_t global_batch = 128;
  int64_t epochs = 1;
  std::optional<int64_t> max_steps;
  int64_t log_interval = 10;
  TrainDType dtype = TrainDType::F32;
  bool operator==(const TrainConfig&) const = default;
};

struct CheckpointConfig {
  std::string dir;  // resolved; default <output_dir>/checkpoints
  int64_t interval = 500;
  int64_t keep = 3;
  bool resume = true;
  bool operator==(const CheckpointConfig&) const = default;
};

struct TopologyConfig {
  std::vector<int64_t> teacher_ranks;  // one per source; default: each source's replicas
  int64_t student_ranks = 1;
  int64_t prefetch = 2;
  bool operator==(const TopologyConfig&) const = default;
};

struct CacheConfig {
  std::string dir;  // empty: online mode
  bool operator==(const CacheConfig&) const = default;
};

struct JobConfig {
  JobSection job;
  std::vector<SourceConfig> sources;
  TargetConfig target;
  CorpusConfig corpus;
  DistillConfig distill;
  OptimConfig optim;
  TrainConfig train;
  CheckpointConfig checkpoint;
  TopologyConfig topology;
  CacheConfig cache;

  std::string file;  // where it was read from
  std::string text;  // the file as read

  // Micro-batches each student rank accumulates per optimizer step.
  int64_t grad_accum_steps() const { return train.global_batch / (train.micro_batch * topology.student_ranks); }
  // Target tokens per optimizer step (packed sequences are full).
  int64_t global_batch_tokens() const { return train.global_batch * corpus.max_len; }
  // Ranks the MPI job needs: every teacher group, then the students.
  int64_t world_size() const;
  const SourceConfig* find_source(std::string_view name) const;

  // The complete job as TOML: every field, defaults included, paths resolved. Parsing it gives
  // back the same settings; a checkpoint stores it, so a run says exactly what it ran.
  std::string to_toml() const;

  // Settings equal (file and text aside).
  bool same_settings(const JobConfig& o) const;
};

struct JobParseOptions {
  // Check that every input path exists (sources, target, tokenizers, corpus). Off only in tests
  // of other mistakes.
  bool check_paths = true;
};

// Reads, parses and validates a job file; Error on any mistake, before any work.
JobConfig load_job(const std::string& path, const JobParseOptions& opt = {});
// The same from text; `file` names it in errors and anchors relative paths.
JobConfig parse_job(std::string_view text, const std::string& file, const JobParseOptions& opt = {});

// Levenshtein distance over bytes ("did you mean" suggestions).
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace fusellm
