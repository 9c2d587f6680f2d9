// The memory plan (dist/memory_plan.hpp) against sizes computed here by hand from the models'
// config numbers: the tiny job (jobs/tiny.toml over examples/demo/{llama,neox}) line by line,
// exactly; the same with pipeline stages, replicas and two students; bf16 with CLM only; and the
// paper's setting (jobs/paper.toml with the published 7B shapes) against the published parameter
// counts and a 40 GiB GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "error_of.hpp"
#include "fusellm/dist/memory_plan.hpp"
#include "fusellm/job/job_config.hpp"

using namespace fusellm;
using namespace fusellm::dist;
using fusellm::testing::error_of;

namespace {

const std::string kDir = FUSELLM_SOURCE_DIR;

JobConfig tiny(std::vector<std::string> sets = {}) {
  return load_job(kDir + "/jobs/tiny.toml", {.overrides = std::move(sets)});
}

// examples/demo/llama/config.json: a Llama (RMSNorm without bias, no biases, gated SiLU MLP, untied).
constexpr int64_t V = 8192, h = 128, L = 4, H = 4, KV = 2, D = 32, I = 352;
// examples/demo/neox/config.json: GPT-NeoX (LayerNorm with bias, biases everywhere, plain GELU MLP,
// parallel residual, untied embed_out).
constexpr int64_t nV = 8192, nh = 128, nL = 4, nH = 4, nD = 32, nI = 512;

// Llama: embed V h; per layer attn_norm h, q H D h, k and v KV D h each, o h H D, mlp_norm h,
// gate, up, down I h each; final norm h; lm_head V h.
constexpr int64_t kLlamaLayer = h + H * D * h + 2 * KV * D * h + h * H * D + h + 3 * I * h;
constexpr int64_t kLlamaP = V * h + L * kLlamaLayer + h + V * h;
// NeoX: embed_in V h; per layer two LayerNorms (w, b) 4h, query_key_value 3h h + 3h, dense h h + h,
// dense_h_to_4h I h + I, dense_4h_to_h h I + h; final LayerNorm 2h; embed_out V h.
constexpr int64_t kNeoxLayer = 4 * nh + 3 * nh * nh + 3 * nh + nh * nh + nh + nI * nh + nI + nh * nI + nh;
constexpr int64_t kNeoxP = nV * nh + nL * kNeoxLayer + 2 * nh + nV * nh;

// tiny.toml: micro_batch 2, max_len 256, margin 16, top_k 10, minCE (no per-position CE),
// prefetch 2 (the default), two sources.
constexpr int64_t T = 2 * 256, Ts = 256 - 16, k = 10, r = 6 * k + 5, prefetch = 2, K = 2;

void expect_lines(const RoleMemory& role, const std::vector<std::pair<std::string, int64_t>>& want) {
  ASSERT_EQ(role.lines.size(), want.size()) << role.role;
  int64_t total = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(role.lines[i].what, want[i].first) << role.role;
    EXPECT_EQ(role.lines[i].bytes, want[i].second)
        << role.role << ": " << want[i].first << " (" << role.lines[i].formula << ")";
    total += want[i].second;
  }
  EXPECT_EQ(role.total(), total) << role.role;
}

}  // namespace

TEST(MemoryPlan, TheShapesAreTheDemoModelsConfigs) {
  const JobShapes s = job_shapes(tiny());
  ASSERT_EQ(s.sources.size(), 2u);
  const model::Arch& a = s.target;  // init_from = "llama"
  EXPECT_EQ(a.family, s.sources[0].family);
  EXPECT_EQ(std::vector<int64_t>({a.vocab, a.hidden, a.layers, a.heads, a.kv_heads, a.head_dim, a.intermediate}),
            std::vector<int64_t>({V, h, L, H, KV, D, I}));
  const model::Arch& n = s.sources[1];
  EXPECT_EQ(std::vector<int64_t>({n.vocab, n.hidden, n.layers, n.heads, n.kv_heads, n.head_dim, n.intermediate}),
            std::vector<int64_t>({nV, nh, nL, nH, nH, nD, nI}));
  EXPECT_TRUE(n.parallel_residual);
  EXPECT_FALSE(n.gated_mlp);
}

TEST(MemoryPlan, TinyJobLineByLine) {
  const JobConfig job = tiny();
  const MemoryPlan plan = plan_memory(job, job_shapes(job));
  EXPECT_EQ(plan.world_size, 3);
  ASSERT_EQ(plan.roles.size(), 3u);
  const int64_t a = 4, w = 4, P = kLlamaP;  // fp32
  EXPECT_EQ(P, 2835584);
  const RoleMemory& st = plan.roles[0];
  EXPECT_EQ(st.role, "student");
  EXPECT_EQ(st.ranks, std::vector<int>({0}));
  expect_lines(st, {
                       {"weights", P * w},
                       {"gradients", P * 4},
                       // 2 micro-batches a step: the second adds part by part, with the embedding's
                       // scratch V h and the larger of the head's (final norm h, lm_head V h) and a layer's
                       {"gradient of one part", 4 * (V * h + std::max(h + V * h, kLlamaLayer))},
                       {"optimizer state", 8 * P},  // m, v; one student: the whole of them
                       // per layer x_in h, qkv (H + 2 KV) D, att H D, x_mid h, [gate | up] 2 I; x_final h
                       {"saved activations", a * T * (L * (h + (H + 2 * KV) * D + H * D + h + 2 * I) + h)},
                       {"logits and their gradient", 4 * T * V},
                       {"fused-target rows in flight", prefetch * K * T * r},
                       // forward x, xn h each, act I; backward xn, dxn, dx h each, h, dh I each, dgu 2 I,
                       // datt H D, dqkv (H + 2 KV) D
                       {"layer working set", a * T * (2 * h + I + 3 * h + 2 * I + 2 * I + H * D + (H + 2 * KV) * D)},
                   });
  const RoleMemory& tl = plan.roles[1];
  EXPECT_EQ(tl.role, "teacher \"llama\" stage 0 of 1");
  EXPECT_EQ(tl.ranks, std::vector<int>({1}));
  expect_lines(tl, {
                       {"weights", P * w},
                       // x, xn h each, qkv (H + 2 KV) D, att H D, mlp 2 I, for one segment of Ts tokens
                       {"forward working set", a * Ts * (2 * h + (H + 2 * KV) * D + H * D + 2 * I)},
                       {"logits", 4 * Ts * V},
                       {"rows buffered for the students", prefetch * 1 * T * r},
                   });
  const RoleMemory& tn = plan.roles[2];
  EXPECT_EQ(tn.ranks, std::vector<int>({2}));
  EXPECT_EQ(kNeoxP, 2890496);
  expect_lines(tn, {
                       {"weights", kNeoxP * w},
                       {"forward working set", a * Ts * (2 * nh + 3 * nH * nD + nH * nD + nI)},  // plain MLP: I
                       {"logits", 4 * Ts * nV},
                       {"rows buffered for the students", prefetch * 1 * T * r},
                   });
  EXPECT_EQ(plan.largest(), st.total());
  // 83.58 MiB: what the CLI test looks for.
  EXPECT_EQ(format_bytes(st.total()), "83.58 MiB");
}

// Two students, the neox teacher in 2 replicas x 2 stages: ZeRO-1 halves the optimizer state,
// stages split the weights (the cut that minimizes the largest stage), hidden states flow
// between stages, and each replica serves the students S / gcd(S, replicas) = 1 of them.
TEST(MemoryPlan, StagesReplicasAndTwoStudents) {
  const JobConfig job = tiny({"topology.student_ranks=2", "source[1].replicas=2", "source[1].stages=2",
                              "distill.fusion=minCE-position"});
  const MemoryPlan plan = plan_memory(job, job_shapes(job));
  EXPECT_EQ(plan.world_size, 7);
  ASSERT_EQ(plan.roles.size(), 4u);  // student, llama, neox stage 0, neox stage 1
  const int64_t r_ce = r + 4;       // per-position MinCE: the rows carry the CE of every position
  EXPECT_EQ(plan.roles[0].ranks, std::vector<int>({0, 1}));
  EXPECT_EQ(plan.roles[0].line("optimizer state").bytes, 8 * ((kLlamaP + 1) / 2));
  // Global batch 4 = 2 students x micro-batch 2: one micro-batch a step, nothing added part by part.
  EXPECT_NE(error_of([&] { (void)plan.roles[0].line("gradient of one part"); }), "");
  EXPECT_EQ(plan.roles[0].line("fused-target rows in flight").bytes, prefetch * K * T * r_ce);
  // One llama replica serves both students.
  EXPECT_EQ(plan.roles[1].line("rows buffered for the students").bytes, prefetch * 2 * T * r_ce);
  // Stage cuts of neox's 4 layers: [0, 2) with the embedding, [2, 4) with the final norm and the
  // head: max(V h + 2 layer, 2 layer + 2h + V h) is the smallest largest stage (cuts at 1 or 3
  // leave 3 layers with an end's V h).
  const int64_t s0 = nV * nh + 2 * kNeoxLayer, s1 = 2 * kNeoxLayer + 2 * nh + nV * nh;
  const RoleMemory& n0 = plan.roles[2];
  const RoleMemory& n1 = plan.roles[3];
  EXPECT_EQ(n0.role, "teacher \"neox\" stage 0 of 2");
  EXPECT_EQ(n0.ranks, std::vector<int>({3, 5}));  // replica 0's stage 0, replica 1's stage 0
  EXPECT_EQ(n1.ranks, std::vector<int>({4, 6}));
  const int64_t a = 4, fwd = a * Ts * (2 * nh + 3 * nH * nD + nH * nD + nI);
  const int64_t hidden = 2 * Ts * (4 * nh + 8);  // window 2 messages of [Ts, h] fp32 + the ids
  expect_lines(n0, {{"weights", s0 * 4}, {"forward working set", fwd}, {"hidden states to the next stage", hidden}});
  expect_lines(n1, {{"weights", s1 * 4},
                    {"forward working set", fwd},
                    {"hidden states from the previous stage", hidden},
                    {"logits", 4 * Ts * nV},
                    {"rows buffered for the students", prefetch * (2 / std::gcd(2, 2)) * T * r_ce}});
}

// bf16: bf16 weights and activations, fp32 gradients, the fp32 master weights with m and v in the
// optimizer state; CLM only: no rows, and the teacher ranks hold nothing.
TEST(MemoryPlan, Bf16AndClmOnly) {
  const JobConfig job = tiny({"train.dtype=bf16", "distill.fusion=none", "distill.lambda=1.0"});
  const MemoryPlan plan = plan_memory(job, job_shapes(job));
  const RoleMemory& st = plan.roles[0];
  const int64_t P = kLlamaP, a = 2;
  EXPECT_EQ(st.line("weights").bytes, 2 * P);
  EXPECT_EQ(st.line("gradients").bytes, 4 * P);
  EXPECT_EQ(st.line("optimizer state").bytes, 12 * P);
  EXPECT_EQ(st.line("saved activations").bytes, a * T * (L * (2 * h + (H + 2 * KV) * D + H * D + 2 * I) + h));
  EXPECT_EQ(st.line("logits and their gradient").bytes, 4 * T * V);  // fp32 whatever the dtype
  EXPECT_EQ(st.line("fused-target rows in flight").bytes, 0);
  for (size_t i = 1; i < plan.roles.size(); ++i) {
    EXPECT_EQ(plan.roles[i].total(), 0) << plan.roles[i].role;
    EXPECT_NE(plan.roles[i].role.find("idle"), std::string::npos) << plan.roles[i].role;
  }
  EXPECT_NE(error_of([&] { (void)st.line("logits"); }).find("no line \"logits\""), std::string::npos);
}

// ZeRO-2 ([topology].zero_stage = 2): the gradients are the rank's 1/S shard, and every
// micro-batch (one per step here) goes part by part through one part's scratch.
TEST(MemoryPlan, ZeroStageTwoShardsTheGradients) {
  const JobConfig job = tiny({"topology.student_ranks=2", "topology.zero_stage=2"});
  EXPECT_EQ(job.grad_accum_steps(), 1);
  const RoleMemory st = plan_memory(job, job_shapes(job)).roles[0];
  EXPECT_EQ(st.line("gradients").bytes, 4 * ((kLlamaP + 1) / 2));
  EXPECT_EQ(st.line("gradient of one part").bytes, 4 * (V * h + std::max(h + V * h, kLlamaLayer)));
  EXPECT_EQ(st.line("optimizer state").bytes, 8 * ((kLlamaP + 1) / 2));
  EXPECT_NE(error_of([] { (void)tiny({"topology.zero_stage=3"}); }).find("zero_stage"), std::string::npos);
}

// Activation recomputation ([train].recompute_every = N): floor(L / N) layers keep x_in [T, h]
// alone, and one layer's buffers hold the one being run again (decoder.hpp's Recomputed).
TEST(MemoryPlan, RecomputationKeepsTheInputsOnly) {
  const int64_t a = 4, Q = (H + 2 * KV) * D, full = 2 * h + Q + H * D + 2 * I, rerun = 4 * h + Q + H * D + 2 * I + I;
  for (const int64_t every : {1, 2, 3, 5}) {
    SCOPED_TRACE(every);
    const JobConfig job = tiny({"train.recompute_every=" + std::to_string(every)});
    const MemoryPlan plan = plan_memory(job, job_shapes(job));
    const RoleMemory& st = plan.roles[0];
    const int64_t R = L / every;  // L = 4: 4, 2, 1, 0 layers run again
    EXPECT_EQ(st.line("saved activations").bytes, a * T * ((L - R) * full + R * h + h));
    if (R > 0)
      EXPECT_EQ(st.line("recomputed layer").bytes, a * T * rerun);
    else
      EXPECT_NE(error_of([&] { (void)st.line("recomputed layer"); }), "");
  }
  EXPECT_NE(error_of([] { (void)tiny({"train.recompute_every=-1"}); }).find("recompute_every"), std::string::npos);
}

// The paper's setting: a 7B student (Llama-2 7B) with ZeRO-1, then ZeRO-2 (paper.toml's), over 8
// ranks at bf16, sequence 2048, one micro-batch of one sequence, three 7B teachers on one rank each.
TEST(MemoryPlan, PaperSettingOn40GiB) {
  // paper.toml shards the gradients (zero_stage 2); ZeRO-1 first, as an override.
  const JobConfig job = load_job(kDir + "/jobs/paper.toml", {.check_paths = false, .overrides = {"topology.zero_stage=1"}});
  const JobShapes shapes =
      job_shapes(job, {{"llama2_7b", "llama2-7b"}, {"openllama_7b", "open-llama-7b-v2"}, {"mpt_7b", "mpt-7b"}});
  const MemoryPlan plan = plan_memory(job, shapes);
  EXPECT_EQ(plan.world_size, 11);
  // Published parameter counts (transformers' num_parameters()).
  const int64_t P = 6738415616, P_mpt = 6649286656;
  const int64_t h7 = 4096, L7 = 32, I7 = 11008, V7 = 32000, T7 = 2048, Ts7 = 2048 - 48;
  const RoleMemory& st = plan.roles[0];
  EXPECT_EQ(st.ranks.size(), 8u);
  EXPECT_EQ(st.line("weights").bytes, 2 * P);            // 13.5 GB
  EXPECT_EQ(st.line("gradients").bytes, 4 * P);          // 27.0 GB
  EXPECT_EQ(st.line("optimizer state").bytes, 12 * (P / 8));  // P divides by 8: 10.1 GB
  // 16 micro-batches a step: the embedding's scratch V h and a layer's (MHA q, k, v, o 4 h h; gate,
  // up, down 3 I h; two norms 2 h), larger than the head's (h + V h): 1.3 GB.
  EXPECT_EQ(job.grad_accum_steps(), 16);
  EXPECT_EQ(st.line("gradient of one part").bytes, 4 * (V7 * h7 + 4 * h7 * h7 + 3 * I7 * h7 + 2 * h7));
  // recompute_every = 1: every layer keeps x_in [T, h] alone and runs again in one layer's buffers
  // (MHA: q, k, v 3h wide; att h; [gate | up] 2 I; h [T, I]).
  EXPECT_EQ(job.train.recompute_every, 1);
  EXPECT_EQ(st.line("saved activations").bytes, 2 * T7 * (L7 * h7 + h7));  // 0.55 GB
  EXPECT_EQ(st.line("recomputed layer").bytes, 2 * T7 * (4 * h7 + 3 * h7 + h7 + 2 * I7 + I7));
  EXPECT_EQ(st.line("logits and their gradient").bytes, 4 * T7 * V7);
  EXPECT_EQ(st.line("fused-target rows in flight").bytes, 2 * 3 * T7 * (6 * 10 + 5));
  const int64_t gib40 = parse_memory_size("40GiB");
  // Weights and fp32 gradients alone are 40.4 GB: ZeRO-1 does not fit a 7B student on 40 GiB at
  // sequence 2048 (the original trained with DeepSpeed sharding more than the optimizer state).
  EXPECT_GT(st.total(), gib40);
  EXPECT_GT(st.total(), int64_t(49) << 30);
  EXPECT_LT(st.total(), int64_t(50) << 30);
  // ZeRO-2 shards the gradients too (4 P / 8: 3.4 GB): the student then fits, with 12 GiB to spare.
  const JobConfig z2 = load_job(kDir + "/jobs/paper.toml", {.check_paths = false});
  EXPECT_EQ(z2.topology.zero_stage, 2);
  const RoleMemory st2 = plan_memory(z2, shapes).roles[0];
  EXPECT_EQ(st2.line("gradients").bytes, 4 * (P / 8));
  EXPECT_EQ(st2.total(), st.total() - 4 * P + 4 * (P / 8));
  EXPECT_LT(st2.total(), int64_t(28) << 30);
  ASSERT_EQ(plan.roles.size(), 4u);
  for (size_t i = 1; i < 4; ++i) EXPECT_LT(plan.roles[i].total(), gib40) << plan.roles[i].role;
  EXPECT_EQ(plan.roles[1].line("weights").bytes, 2 * P);
  EXPECT_EQ(plan.roles[3].line("weights").bytes, 2 * P_mpt);  // tied: the embedding once
  EXPECT_EQ(plan.roles[3].line("logits").bytes, 4 * Ts7 * 50432);
  // One teacher replica serves all 8 students.
  EXPECT_EQ(plan.roles[1].line("rows buffered for the students").bytes, 2 * 8 * T7 * (6 * 10 + 5));
}

TEST(MemoryPlan, ShapesThatCannotBeRead) {
  const JobConfig paper = load_job(kDir + "/jobs/paper.toml", {.check_paths = false});
  const std::string e = error_of([&] { (void)job_shapes(paper, {{"llama2_7b", "llama2-7b"}}); });
  EXPECT_NE(e.find("[[source]] 'openllama_7b' (/FILL_IN/open_llama_7b_v2)"), std::string::npos) << e;
  EXPECT_NE(e.find("--shapes openllama_7b=PRESET"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { (void)job_shapes(tiny(), {{"nope", "llama2-7b"}}); }).find("no [[source]] named 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of([] { (void)preset_arch("gpt5"); }).find("presets: llama2-7b, open-llama-7b-v2, mpt-7b"),
            std::string::npos);
  // A directory instead of a preset: the shrunk Llama-2 fixture (hidden 16).
  const JobShapes s = job_shapes(tiny(), {{"neox", kDir + "/tests/fixtures/torch_bin/llama2_7b_f32/safetensors"}});
  EXPECT_EQ(s.sources[1].hidden, 16);
}

TEST(MemoryPlan, MemorySizes) {
  EXPECT_EQ(parse_memory_size("40GiB"), int64_t(40) << 30);
  EXPECT_EQ(parse_memory_size("40 gib"), int64_t(40) << 30);
  EXPECT_EQ(parse_memory_size("80GB"), int64_t(80'000'000'000));
  EXPECT_EQ(parse_memory_size("1.5TiB"), int64_t(3) << 39);
  EXPECT_EQ(parse_memory_size("512MiB"), int64_t(512) << 20);
  EXPECT_EQ(parse_memory_size("4096"), 4096);
  for (const char* bad : {"", "GiB", "40Gx", "-1GiB", "0", "inf", "40 G iB x"})
    EXPECT_NE(error_of([&] { (void)parse_memory_size(bad); }).find("memory size"), std::string::npos) << bad;
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(int64_t(3) << 29), "1.50 GiB");
}
