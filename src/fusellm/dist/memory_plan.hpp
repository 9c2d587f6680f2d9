#pragma once
// The device memory each rank of the MPI job needs (`fusellm plan`; issue 15 item 5): a pure
// function from the job's shapes (its models' configs, [train], [topology], [distill], [corpus])
// to one table per role, each line a formula over those shapes, so that a user sees before
// anything runs whether a layout fits a GPU, and which line to shrink when it does not.
//
// Notation of the formulas (memory_plan.cpp states each line's):
//   P     the student's parameters (its ParamTable's total: a tied head counted once)
//   S     [topology].student_ranks;  P/S rounded up as ZeRO-1 cuts it (dist/shard_layout.hpp)
//   T     target tokens per micro-batch: [train].micro_batch x [corpus].max_len (packed sequences
//         are full); Ts: source tokens of one segment, [corpus].max_len - margin (a teacher runs
//         one segment at a time: Teacher::rows, StagePipeline::run_segments)
//   h, L, H, KV, D, I, V   hidden size, layers, heads, kv heads, head dim, MLP width, vocabulary
//   Q = (H + 2 KV) D  the fused q|k|v width;  G = 2 I (gated MLP, [gate | up]) or I (plain)
//   w, a  bytes of a weight and of an activation: 4 for [train].dtype "fp32", 2 for "bf16"
//   k     [distill].top_k;  r = 6 k + 5 (+ 4 with per-position CE) bytes per row position
//         (rows_message.hpp: ids 4 k, probs 2 k, target id 4, status 1, position CE 4)
//
// Mixed precision ("bf16") is accounted as Megatron-LM's distributed optimizer does: bf16 weights,
// fp32 gradients, and per rank the 1/S shard of the fp32 master weights and AdamW's m and v
// (12 bytes per parameter of the shard); "fp32": fp32 weights and gradients, the shard of m and v
// (8 bytes). [topology].zero_stage 2 keeps the 1/S shard of the gradients instead of all of them.
// Activations are in the compute dtype; logits are fp32.
//
// What it does not count (not_counted()): allocator fragmentation and caching, the CUDA context
// (a few hundred MB per process), NCCL's and MPI's buffers, cuBLAS/cuDNN workspaces, the
// tokenizers, the vocabulary mapping and the aligner's DTW workspace (at most 256 MiB, align/
// align_tokens.hpp), message headers (96 bytes + 60 per segment), the per-token integer vectors
// and RoPE tables (a few bytes per token).
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/job/job_config.hpp"
#include "fusellm/model/arch.hpp"

namespace fusellm::dist {

struct MemoryLine {
  std::string what;     // "weights"
  std::string formula;  // "P x w = 2835584 x 4"
  int64_t bytes = 0;
};

// One role's table: every rank of it needs the same (the students alike; a teacher source's
// replicas alike, stage by stage).
struct RoleMemory {
  std::string role;        // "student", "teacher \"neox\" stage 1 of 2"
  std::vector<int> ranks;  // world ranks with this role (dist/topology.hpp's order)
  std::vector<MemoryLine> lines;
  int64_t total() const;
  // The line named `what`; Error naming the role and its lines when there is none.
  const MemoryLine& line(std::string_view what) const;
};

struct MemoryPlan {
  int world_size = 0;
  std::vector<RoleMemory> roles;  // the students first, then each source's stages in job order
  int64_t largest() const;        // the largest total of a rank
};

// Each model's shapes, as its config.json gives them (model/arch.hpp).
struct JobShapes {
  model::Arch target;
  std::vector<model::Arch> sources;  // one per [[source]], in the job's order
};

// The per-rank tables of `job` (its topology must be valid: dist::Topology::of checks it).
MemoryPlan plan_memory(const JobConfig& job, const JobShapes& shapes);

// What the plan leaves out, one phrase each (printed under the table).
const std::vector<std::string>& not_counted();

// Published configs by name, for a job whose checkpoints are not on this machine (the paper's
// 7B models): "llama2-7b" (meta-llama/Llama-2-7b-hf), "open-llama-7b-v2"
// (openlm-research/open_llama_7b_v2), "mpt-7b" (mosaicml/mpt-7b).
std::vector<std::string> shape_presets();
// The Arch of preset `name`; Error listing the presets when there is none.
model::Arch preset_arch(const std::string& name);
// The job's shapes: each model from `given` (key: a [[source]] name, or "target" for a target with
// its own path; value: a preset name or a checkpoint directory), else from its directory's
// config.json. A target that starts from a source (init_from) has that source's shapes. Errors
// name the model and say how to give its shapes.
JobShapes job_shapes(const JobConfig& job, const std::map<std::string, std::string>& given = {});

// "40GiB", "40 GB", "512MiB", "1.5TiB", "1073741824": bytes (KB/MB/GB/TB are powers of 1000,
// KiB/MiB/GiB/TiB of 1024, case-insensitive); Error naming the text otherwise.
int64_t parse_memory_size(std::string_view text);
// "10.82 MiB", "12.55 GiB", "512 B": binary units, two decimals.
std::string format_bytes(int64_t bytes);

}  // namespace fusellm::dist
