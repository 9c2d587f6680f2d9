#include "fusellm/dist/memory_plan.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <numeric>

#include "fusellm/core/error.hpp"
#include "fusellm/dist/shard_layout.hpp"
#include "fusellm/dist/stage_pipeline.hpp"
#include "fusellm/dist/topology.hpp"
#include "fusellm/model/decoder.hpp"
#include "fusellm/model/decoder_params.hpp"
#include "fusellm/model/stage_plan.hpp"

namespace fusellm::dist {
namespace {

// The shapes one model's lines are written in (memory_plan.hpp's notation).
struct Dims {
  int64_t h, L, H, D, I, V, Q, G;
  bool parallel, gated;
  static Dims of(const model::Arch& a) {
    return {a.hidden, a.layers, a.heads, a.head_dim, a.intermediate, a.vocab, (a.heads + 2 * a.kv_heads) * a.head_dim,
            a.gated_mlp ? 2 * a.intermediate : a.intermediate, a.parallel_residual, a.gated_mlp};
  }
};

// What every role's lines share: the job's sizes.
struct JobDims {
  int64_t w = 4, a = 4;  // bytes of a weight, of an activation
  int64_t T = 0, Ts = 0, k = 0, r = 0, prefetch = 0, S = 1, K = 0, recompute = 0, accum = 1, zero = 1;
  bool bf16 = false, fuses = false;
  static JobDims of(const JobConfig& job) {
    JobDims d;
    d.bf16 = job.train.dtype == DType::BF16;
    d.w = d.a = d.bf16 ? 2 : 4;
    d.T = job.train.micro_batch * job.corpus.max_len;
    d.recompute = job.train.recompute_every;
    d.accum = job.grad_accum_steps();
    d.zero = job.topology.zero_stage;
    d.Ts = job.corpus.max_segment_tokens();
    d.k = job.distill.top_k;
    // rows_message.hpp: ids 4 k, probs 2 k, target id 4, status 1; position CE 4 with MinCE per position.
    d.r = 6 * d.k + 5 + (job.distill.fusion == kernels::FusionMode::kMinCEPerPosition ? 4 : 0);
    d.prefetch = job.topology.prefetch;
    d.S = job.topology.student_ranks;
    // train_step.hpp's fuses_teachers (not linked here): fusion "none" or lambda = 1 reads no rows.
    d.fuses = job.distill.fusion.has_value() && job.distill.lambda != 1.0;
    d.K = d.fuses ? int64_t(job.sources.size()) : 0;
    return d;
  }
};

MemoryLine saved_activations_line(const JobDims& j, const Dims& m) {
  const int64_t R = j.recompute > 0 ? m.L / j.recompute : 0, kept = m.L - R;
  if (R == 0)
    return {"saved activations",
            fmt::format("a T (L (2h + Q + H D + G) + h) = {} x {} x ({} x ({} + {} + {} + {}) + {})", j.a, j.T, m.L,
                        2 * m.h, m.Q, m.H * m.D, m.G, m.h),
            j.a * j.T * (m.L * (2 * m.h + m.Q + m.H * m.D + m.G) + m.h)};
  return {"saved activations",
          fmt::format("a T ((L - R) (2h + Q + H D + G) + R h + h), R = floor(L / {}) = {}: {} x {} x ({} x ({} + {} + "
                      "{} + {}) + {} x {} + {})",
                      j.recompute, R, j.a, j.T, kept, 2 * m.h, m.Q, m.H * m.D, m.G, R, m.h, m.h),
          j.a * j.T * (kept * (2 * m.h + m.Q + m.H * m.D + m.G) + R * m.h + m.h)};
}

// The student: every line of a data-parallel rank training the target with ZeRO-1.
std::vector<MemoryLine> student_lines(const JobDims& j, const model::Arch& target) {
  const Dims m = Dims::of(target);
  const model::DecoderParams dp = model::plan_decoder_params(target, model::base_prefix(target));
  const int64_t P = dp.table.total(), shard = ShardLayout::of(P, int(j.S)).shard;
  std::vector<MemoryLine> out;
  // The whole model on every rank, in the compute dtype.
  out.push_back({"weights", fmt::format("P x w = {} x {}", P, j.w), P * j.w});
  // fp32 gradients of the whole model: the micro-batches accumulate into them before the
  // reduce-scatter (zero1.hpp), in fp32 whatever the dtype (Megatron-LM's fp32 grad accumulation).
  // One buffer: no copy of the sum so far is kept aside (the next line). ZeRO-2: the rank's shard
  // of them alone (sharded_gradients.hpp).
  if (j.zero == 2)
    out.push_back({"gradients", fmt::format("4 x ceil(P / S) = 4 x {} (ZeRO-2: 1/{} shard)", shard, j.S), 4 * shard});
  else
    out.push_back({"gradients", fmt::format("P x 4 = {} x 4", P), P * 4});
  // A step's later micro-batches add their gradient part by part (model/decoder.hpp's
  // GradientAdd::kPerPart), and ZeRO-2's every micro-batch: the embeddings' scratch over the pass
  // and one layer's (or the head's).
  if (j.accum > 1 || j.zero == 2) {
    const model::DecoderRegions& R = dp.regions;
    const int64_t E = model::embedding_part(R).size(), Hp = model::head_part(R).size(),
                  Lp = model::layer_part(R, 0).size();
    out.push_back({"gradient of one part",
                   fmt::format("4 (embeddings + max(head, layer)) = 4 x ({} + max({}, {}))", E, Hp, Lp),
                   4 * (E + std::max(Hp, Lp))});
  }
  // ZeRO-1: this rank's shard of AdamW's m and v (and, bf16, of the fp32 master weights).
  const int64_t per = j.bf16 ? 12 : 8;
  out.push_back({"optimizer state",
                 fmt::format("{} x ceil(P / S) = {} x {} ({}AdamW m, v; fp32, 1/{} shard)", per, per, shard,
                             j.bf16 ? "master weights, " : "", j.S),
                 per * shard});
  // decoder.hpp's SavedActivations: per layer x_in [T, h], qkv [T, Q], att [T, H D], x_mid [T, h],
  // gate_up [T, G]; then x_final [T, h]. With [train].recompute_every = N, R = floor(L / N) layers
  // keep x_in alone and run again in backward, in one layer's buffers (decoder.hpp's Recomputed:
  // the layer's five and x, xn [T, h], h [T, I]).
  out.push_back(saved_activations_line(j, m));
  if (j.recompute > 0 && m.L / j.recompute > 0)
    out.push_back({"recomputed layer", fmt::format("a T (4h + Q + H D + G + I) = {} x {} x ({} + {} + {} + {} + {})",
                                                   j.a, j.T, 4 * m.h, m.Q, m.H * m.D, m.G, m.I),
                   j.a * j.T * (4 * m.h + m.Q + m.H * m.D + m.G + m.I)});
  // One [T, V] fp32 buffer: the fused classifier writes dL/dz over the logits (train_step.hpp).
  out.push_back({"logits and their gradient", fmt::format("4 T V = 4 x {} x {}", j.T, m.V), 4 * j.T * m.V});
  // Credits (teacher_server.hpp): at most `prefetch` micro-batches per source not yet consumed.
  out.push_back({"fused-target rows in flight",
                 fmt::format("prefetch K T r = {} x {} x {} x {}", j.prefetch, j.K, j.T, j.r),
                 j.prefetch * j.K * j.T * j.r});
  // The forward's workspace with save (decoder.cpp open_pass: the residual stream x, xn, the MLP's
  // activation [T, I]) and the backward's temporaries of one layer (decoder_backward.cpp: xn, dxn,
  // dx [T, h], dxn2 [T, h] with a parallel residual, h, dh [T, I], dgu [T, 2 I] when gated,
  // datt [T, H D], dqkv [T, Q]).
  const int64_t fwd = 2 * m.h + m.I;
  const int64_t bwd = 3 * m.h + (m.parallel ? m.h : 0) + 2 * m.I + (m.gated ? 2 * m.I : 0) + m.H * m.D + m.Q;
  out.push_back({"layer working set",
                 fmt::format("a T (forward 2h + I, backward {}h + {}I + H D + Q) = {} x {} x ({} + {})",
                             m.parallel ? 4 : 3, m.gated ? 4 : 2, j.a, j.T, fwd, bwd),
                 j.a * j.T * (fwd + bwd)});
  return out;
}

// One stage of a teacher replica of source `j`.
std::vector<MemoryLine> teacher_lines(const JobDims& jd, const model::Arch& a, const model::Stage& st, int stage,
                                      int stages, int replicas) {
  const Dims m = Dims::of(a);
  const bool first = stage == 0, last = stage == stages - 1;
  std::vector<MemoryLine> out;
  out.push_back({"weights", fmt::format("P_stage x w = {} x {}", st.parameters, jd.w), st.parameters * jd.w});
  // No saved activations: Decoder::layers runs one layer at a time over one segment in the
  // workspace (decoder.cpp open_pass without save: x, xn [Ts, h], qkv [Ts, Q], att [Ts, H D], mlp [Ts, G]).
  out.push_back({"forward working set",
                 fmt::format("a Ts (2h + Q + H D + G) = {} x {} x ({} + {} + {} + {})", jd.a, jd.Ts, 2 * m.h, m.Q,
                             m.H * m.D, m.G),
                 jd.a * jd.Ts * (2 * m.h + m.Q + m.H * m.D + m.G)});
  // hidden_message.hpp: [Ts, h] fp32 and the segment's ids (4 Ts source + 4 Tt <= 4 Ts target); at
  // most `window` messages without their credit (stage_pipeline.hpp), on each side.
  const int64_t window = StagePipeline::Options{}.window, hidden = jd.Ts * (4 * m.h + 8);
  const std::string hf = fmt::format("window Ts (4h + 8) = {} x {} x {}", window, jd.Ts, 4 * m.h + 8);
  if (!first) out.push_back({"hidden states from the previous stage", hf, window * hidden});
  if (!last) out.push_back({"hidden states to the next stage", hf, window * hidden});
  if (!last) return out;
  out.push_back({"logits", fmt::format("4 Ts V = 4 x {} x {}", jd.Ts, m.V), 4 * jd.Ts * m.V});
  // Rows messages kept until the student took them: `prefetch` per student this replica serves,
  // which are S / gcd(S, replicas) of them (topology.hpp: micro-batch id goes to student id % S and
  // replica id % replicas).
  const int64_t served = jd.S / std::gcd(jd.S, int64_t(replicas));
  out.push_back({"rows buffered for the students",
                 fmt::format("prefetch (S / gcd(S, replicas)) T r = {} x {} x {} x {}", jd.prefetch, served, jd.T,
                             jd.r),
                 jd.prefetch * served * jd.T * jd.r});
  return out;
}

std::vector<RoleMemory> teacher_roles(const JobConfig& job, const JobDims& jd, const Topology& topo, int j,
                                      const model::Arch& a) {
  const int stages = topo.stages(j), replicas = topo.replicas(j);
  JobDims tjd = jd;  // the source's own dtype ([[source]].dtype), not the student's
  tjd.w = tjd.a = job.sources[size_t(j)].dtype == DType::BF16 ? 2 : 4;
  const model::StagePlan plan = model::plan_stages(a, model::plan_decoder_params(a, model::base_prefix(a)), stages);
  std::vector<RoleMemory> out;
  for (int s = 0; s < stages; ++s) {
    RoleMemory r;
    r.role = fmt::format("teacher \"{}\" stage {} of {}{}", job.sources[size_t(j)].name, s, stages,
                         jd.fuses ? "" : " (idle: the job trains on CLM only)");
    for (int rep = 0; rep < replicas; ++rep) r.ranks.push_back(topo.teacher_rank(j, rep, s));
    if (jd.fuses) r.lines = teacher_lines(tjd, a, plan.stages[size_t(s)], s, stages, replicas);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

int64_t RoleMemory::total() const {
  int64_t t = 0;
  for (const MemoryLine& l : lines) t += l.bytes;
  return t;
}

const MemoryLine& RoleMemory::line(std::string_view what) const {
  for (const MemoryLine& l : lines)
    if (l.what == what) return l;
  std::vector<std::string> names;
  for (const MemoryLine& l : lines) names.push_back(l.what);
  fail("memory plan of {}: no line \"{}\" (lines: {})", role, what, fmt::join(names, ", "));
}

int64_t MemoryPlan::largest() const {
  int64_t m = 0;
  for (const RoleMemory& r : roles) m = std::max(m, r.total());
  return m;
}

MemoryPlan plan_memory(const JobConfig& job, const JobShapes& shapes) {
  if (shapes.sources.size() != job.sources.size())
    fail("memory plan: {} source shapes for the {} [[source]] tables of {}", shapes.sources.size(), job.sources.size(),
         job.file);
  const Topology topo = Topology::of(job, int(job.world_size()));
  const JobDims jd = JobDims::of(job);
  MemoryPlan plan;
  plan.world_size = topo.world_size();
  RoleMemory student;
  student.role = "student";
  for (int r = 0; r < topo.student_ranks(); ++r) student.ranks.push_back(r);
  student.lines = student_lines(jd, shapes.target);
  plan.roles.push_back(std::move(student));
  for (int j = 0; j < topo.sources(); ++j)
    for (RoleMemory& r : teacher_roles(job, jd, topo, j, shapes.sources[size_t(j)])) plan.roles.push_back(std::move(r));
  return plan;
}

const std::vector<std::string>& not_counted() {
  static const std::vector<std::string> n = {
      "allocator fragmentation and caching",
      "the CUDA context (a few hundred MB per process)",
      "NCCL's and MPI's buffers, cuBLAS/cuDNN workspaces",
      "the tokenizers, the vocabulary mapping and the aligner's DTW workspace (at most 256 MiB)",
      "message headers (96 bytes + 60 per segment), token ids, RoPE tables (a few bytes per token)",
      "the process itself (code, libraries, the host's copies while loading)",
      "with [train].dtype bf16 on a GPU today: the weights the passes read are held as fp32 values (4 bytes, "
      "not the 2 counted) beside their bf16 copy (2 bytes), and the GEMMs' bf16 operand scratch; a bf16 "
      "[[source]]'s weights likewise (fp32 values rounded to bf16: 4 bytes, not 2)",
  };
  return n;
}

namespace {

// The fields of the published config.json files that the families' parsers read (the rest are
// generation defaults and metadata); sizes as published on the Hugging Face hub.
struct Preset {
  const char* name;
  const char* config;
};
const std::vector<Preset>& presets() {
  static const std::vector<Preset> p = {
      {"llama2-7b",  // meta-llama/Llama-2-7b-hf
       R"({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
           "num_hidden_layers": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-05, "vocab_size": 32000, "tie_word_embeddings": false, "hidden_act": "silu",
           "rope_scaling": null})"},
      {"open-llama-7b-v2",  // openlm-research/open_llama_7b_v2
       R"({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
           "num_hidden_layers": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-06, "vocab_size": 32000,
           "tie_word_embeddings": false, "hidden_act": "silu"})"},
      {"mpt-7b",  // mosaicml/mpt-7b
       R"({"model_type": "mpt", "d_model": 4096, "n_heads": 32, "n_layers": 32, "expansion_ratio": 4,
           "max_seq_len": 2048, "vocab_size": 50432, "no_bias": true, "norm_type": "low_precision_layernorm",
           "learned_pos_emb": true, "embedding_fraction": 1.0, "logit_scale": null,
           "attn_config": {"alibi": true, "alibi_bias_max": 8, "attn_type": "multihead_attention",
                           "clip_qkv": null, "prefix_lm": false, "qk_ln": false, "softmax_scale": null}})"},
  };
  return p;
}

// A model's shapes from `spec`: a preset's name, else a checkpoint directory's config.json.
model::Arch arch_of(const std::string& spec) {
  for (const Preset& p : presets())
    if (spec == p.name) return preset_arch(spec);
  return model::read_arch(spec);
}

std::string shapes_hint(const std::string& key) {
  return fmt::format("give its shapes with `fusellm plan --shapes {}=PRESET` (presets: {}) or `--shapes {}=DIR` "
                     "(a directory with its config.json)",
                     key, fmt::join(shape_presets(), ", "), key);
}

// Model `key` ([[source]] name or "target") from `given`, else from `dir`.
model::Arch model_shapes(const std::string& what, const std::string& key, const std::string& dir,
                         const std::map<std::string, std::string>& given) {
  const auto it = given.find(key);
  const bool from_flag = it != given.end();
  const std::string spec = from_flag ? it->second : dir;
  try {
    return arch_of(spec);
  } catch (const Error& e) {
    throw Error(fmt::format("{}{}: {}; {}", what, from_flag ? fmt::format(": --shapes {}={}", key, spec) : "", e.what(),
                            shapes_hint(key)));
  }
}

}  // namespace

std::vector<std::string> shape_presets() {
  std::vector<std::string> n;
  for (const Preset& p : presets()) n.push_back(p.name);
  return n;
}

model::Arch preset_arch(const std::string& name) {
  for (const Preset& p : presets()) {
    if (name != p.name) continue;
    const HFConfig c(nlohmann::json::parse(p.config), fmt::format("preset {}", name));
    return c.get_string("model_type") == "mpt" ? model::mpt_arch(c) : model::llama_arch(c);
  }
  fail("no model shapes preset \"{}\" (presets: {})", name, fmt::join(shape_presets(), ", "));
}

JobShapes job_shapes(const JobConfig& job, const std::map<std::string, std::string>& given) {
  for (const auto& [key, spec] : given)
    if (key != "target" && !job.find_source(key))
      fail("--shapes {}={}: the job {} has no [[source]] named '{}' (nor is it \"target\")", key, spec, job.file, key);
  JobShapes s;
  for (const SourceConfig& src : job.sources)
    s.sources.push_back(
        model_shapes(fmt::format("[[source]] '{}' ({})", src.name, src.path), src.name, src.path, given));
  if (!job.target.init_from.empty()) {
    for (size_t i = 0; i < job.sources.size(); ++i)
      if (job.sources[i].name == job.target.init_from) s.target = s.sources[i];
  } else {
    s.target = model_shapes(fmt::format("[target] ({})", job.target.path), "target", job.target.path, given);
  }
  return s;
}

int64_t parse_memory_size(std::string_view text) {
  static const std::vector<std::pair<std::string, double>> units = {
      {"", 1.0},         {"b", 1.0},           {"kb", 1e3},          {"mb", 1e6},
      {"gb", 1e9},       {"tb", 1e12},         {"kib", 0x1p10},      {"mib", 0x1p20},
      {"gib", 0x1p30},   {"tib", 0x1p40},
  };
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  std::string unit;
  for (const char* c = end; c != text.data() + text.size(); ++c)
    if (*c != ' ') unit += char(std::tolower(static_cast<unsigned char>(*c)));
  for (const auto& [name, scale] : units)
    if (ec == std::errc() && unit == name && std::isfinite(v) && v > 0 && v * scale < 0x1p62)
      return int64_t(std::llround(v * scale));
  fail("memory size \"{}\": expected a positive number and a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 40GiB",
       text);
}

std::string format_bytes(int64_t bytes) {
  const double b = double(bytes);
  if (bytes >= (int64_t(1) << 30)) return fmt::format("{:.2f} GiB", b / 0x1p30);
  if (bytes >= (int64_t(1) << 20)) return fmt::format("{:.2f} MiB", b / 0x1p20);
  if (bytes >= (int64_t(1) << 10)) return fmt::format("{:.2f} KiB", b / 0x1p10);
  return fmt::format("{} B", bytes);
}

}  // namespace fusellm::dist
