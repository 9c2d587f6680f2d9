#pragma once
// The job file (TOML, DESIGN.md section 5). One section per component, as torchtitan's
// JobConfig: every setting lives in a section with a documented default, none only in code.
// A JobConfig is the aggregate of the components' sections:
//
//   [job], [[source]], [target], [train], [topology],
//   [comm]                                             here (job/job_fields.cpp)
//   [corpus], [cache]                                  data/corpus_config.hpp
//   [distill]                                          fusion/distill_config.hpp
//   [optim]                                            optim/optim_config.hpp
//   [checkpoint]                                       ckpt/checkpoint_config.hpp
//
// Each section's field table (core/config_field.hpp) names every field once, with its type,
// default, the member it binds, its check and its meaning; one list of those tables
// (job_fields.hpp) drives parsing, `--set` overrides, to_toml(), same_settings() and the field
// reference (`fusellm job-fields`, pasted into jobs/README.md and checked by a test).
//
// Relative paths are taken relative to the directory of the job file (of a --set: the working
// directory), so a job runs the same from any working directory (a Slurm script's included).
//
// Every mistake is refused before any work, naming the file, the line and the field (or the
// --set flag): an unknown section or field (with a "did you mean" by edit distance), a wrong
// type (expected and found), a missing required field or path, and inconsistent settings (naming
// each field involved). Every integer is at most 2^31 - 1 (seed aside) and every float finite
// (TOML allows inf and nan).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/ckpt/checkpoint_config.hpp"
#include "fusellm/core/config_origins.hpp"
#include "fusellm/core/did_you_mean.hpp"
#include "fusellm/core/device.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/data/corpus_config.hpp"
#include "fusellm/fusion/distill_config.hpp"
#include "fusellm/optim/optim_config.hpp"

namespace fusellm {

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
  int64_t stages = 1;     // pipeline stages per replica (ranks per replica)
  std::string tokenizer;  // resolved; defaults to path
  DType dtype = DType::F32;  // its forward pass: F32 or BF16 ("fp32", "bf16")
  bool operator==(const SourceConfig&) const = default;
};

struct TargetConfig {
  std::string path;       // empty when init_from is set
  std::string init_from;  // a source name, or empty
  std::string tokenizer;  // resolved; defaults to path or the init_from source's tokenizer
  bool operator==(const TargetConfig&) const = default;
};

struct TrainConfig {
  int64_t micro_batch = 1;
  int64_t global_batch = 128;
  int64_t epochs = 1;
  std::optional<int64_t> max_steps;
  int64_t log_interval = 10;
  DType dtype = DType::F32;  // F32 or BF16 ("fp32", "bf16")
  Device device = Device::kAuto;
  int64_t recompute_every = 0;  // activation recomputation: every N-th layer (0: none)
  bool operator==(const TrainConfig&) const = default;
};

struct TopologyConfig {
  std::vector<int64_t> teacher_ranks;  // one per source; default: each source's replicas x stages
  int64_t student_ranks = 1;
  int64_t zero_stage = 1;  // 1: ZeRO-1 (dist/zero1.hpp); 2: the gradients sharded too (dist/sharded_gradients.hpp)
  int64_t prefetch = 2;
  bool operator==(const TopologyConfig&) const = default;
};

// How the MPI job waits and how it notices a rank that died or stopped answering (issue 12):
// every blocking wait of the transports (dist/transport.hpp) and the heartbeat
// (dist/mpi/heartbeat.hpp). The defaults leave a 7B step, or a long checkpoint write, far inside
// the timeout, while a silent rank ends the job within dead_after_seconds.
struct CommConfig {
  int64_t timeout_seconds = 1800;
  int64_t heartbeat_seconds = 5;
  int64_t dead_after_seconds = 30;
  bool operator==(const CommConfig&) const = default;
};

// [train].dtype as the job file spells it: "fp32", "bf16".
std::string_view train_dtype_name(DType d);
// [train].device as the job file spells it: "auto", "cpu", "cuda"; and back (BadValue listing them).
std::string_view device_name(Device d);
Device device_from_name(std::string_view name);

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
  CommConfig comm;
  CacheConfig cache;

  std::string file;  // where it was read from
  std::string text;  // the file as read
  // Where each setting came from (its line, or its --set flag); absent: a default. Messages about
  // a setting after parsing name its line from here.
  config::FieldOrigins origins;

  // Micro-batches each student rank accumulates per optimizer step.
  int64_t grad_accum_steps() const { return train.global_batch / (train.micro_batch * topology.student_ranks); }
  // Target tokens per optimizer step (packed sequences are full).
  int64_t global_batch_tokens() const { return train.global_batch * corpus.max_len; }
  // Ranks the MPI job needs: the students and every teacher group (order: dist/topology.hpp).
  int64_t world_size() const;
  const SourceConfig* find_source(std::string_view name) const;
  // Where a setting came from, for messages that send the user to it: "job.toml:12", the --set
  // flag, or the job file when the setting has its default. `index`: the [[source]] table's.
  std::string where(std::string_view section, std::string_view key, size_t index = 0) const {
    const std::string w = origins.where(section, key, index);
    return w.empty() ? file : w;
  }
  // "<where>: [train].device", what an error about the device names (device/compute_backend.hpp).
  std::string device_setting() const { return where("train", "device") + ": [train].device"; }

  // The complete job as TOML: every field, defaults included, paths resolved, --set overrides
  // applied. Parsing it gives back the same settings; a checkpoint stores it, so a run says
  // exactly what it ran.
  std::string to_toml() const;

  // Settings equal (file, text and origins aside).
  bool same_settings(const JobConfig& o) const;
};

struct JobParseOptions {
  // Check that every input path exists (sources, target, tokenizers, corpus). Off only in tests
  // of other mistakes.
  bool check_paths = true;
  // "section.key=value" (or "source[i].key=value"), applied over the file's settings, each
  // parsed with its field's own type and checks; errors name the flag ("--set <override>").
  std::vector<std::string> overrides;
};

// Reads, parses and validates a job file; Error on any mistake, before any work.
JobConfig load_job(const std::string& path, const JobParseOptions& opt = {});
// The same from text; `file` names it in errors and anchors relative paths.
JobConfig parse_job(std::string_view text, const std::string& file, const JobParseOptions& opt = {});

}  // namespace fusellm
