#include "fusellm/train/trainer.hpp"

#include <Kokkos_Core.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "fusellm/ckpt/checkpoint_store.hpp"
#include "fusellm/io/file_lock.hpp"
#include "fusellm/io/xxhash64.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/fusion/fused_classifier.hpp"
#include "fusellm/fusion/fusion.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/model/llama_train.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/data/distribution_cache.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/lr_schedule.hpp"
#include "fusellm/data/packer.hpp"
#include "fusellm/train/segment_source.hpp"
#include "fusellm/teach/teach.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

bool needs_caches(const JobConfig& job) {
  return job.distill.fusion.has_value() && job.distill.lambda != 1.0;
}

std::vector<int64_t> permutation(std::mt19937_64& rng, int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(rng() % uint64_t(i + 1))]);
  return p;
}

// Model FLOPs of one trained token (forward + backward = 3 x forward, 2 FLOPs per multiply-add),
// PaLM's accounting (Chowdhery et al. 2022, appendix B): 6 per weight of every matrix product
// (the embedding lookup is none, the output head is one) plus causal attention's two products,
// 6 * layers * heads * head_dim * T per token at sequence length T. Achieved model TFLOP/s over
// the hardware's peak is MFU.
double model_flops_per_token(const model::Arch& a, int64_t T) {
  const double Hd = double(a.hidden), qd = double(a.heads * a.head_dim), kvd = double(a.kv_heads * a.head_dim);
  const double per_layer = Hd * qd * 2 + Hd * kvd * 2 + 3 * Hd * double(a.intermediate);
  const double matmul = double(a.layers) * per_layer + Hd * double(a.vocab);
  return 6 * matmul + 6 * double(a.layers) * qd * double(T);
}

// A micro-batch's sequences as one forward pass: their tokens concatenated, and doc_ids that give
// each sequence (and, with document masks, each of its documents) an attention block of its own
// with positions from 0.
struct Concatenated {
  std::vector<int32_t> ids, doc_ids;
};
Concatenated concatenate(std::span<const PackedSequence> batch) {
  Concatenated c;
  int32_t next_doc = 0;
  for (const PackedSequence& ps : batch) {
    c.ids.insert(c.ids.end(), ps.ids.begin(), ps.ids.end());
    if (ps.doc_ids.empty()) {
      c.doc_ids.insert(c.doc_ids.end(), ps.ids.size(), next_doc++);
    } else {
      for (int32_t d : ps.doc_ids) c.doc_ids.push_back(next_doc + d);
      next_doc += ps.doc_ids.back() + 1;
    }
  }
  return c;
}

// A sequence and its targets as the --dump file holds them (tests/reference/train_reference.py).
nlohmann::json dump_sequence(const PackedSequence& ps, const fusion::HostRows& targets) {
  const int64_t T = ps.tokens();
  std::vector<std::vector<int32_t>> tid(static_cast<size_t>(T));
  std::vector<std::vector<float>> tpr(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < targets.k(); ++c) {
      tid[size_t(t)].push_back(targets.ids(t, c));
      tpr[size_t(t)].push_back(targets.probs(t, c));
    }
  return {{"ids", ps.ids}, {"gold", ps.gold}, {"doc_ids", ps.doc_ids}, {"target_ids", tid}, {"target_probs", tpr}};
}

// "job.toml:12: [optim].lr" (the line where the field is written), for messages that send the
// user to a setting.
std::string job_field(const JobConfig& job, const char* section, const char* key) {
  const std::string w = job.origins.where(section, key);
  return fmt::format("{}: [{}].{}", w.empty() ? job.file : w, section, key);
}

// The directories this run writes: each must be writable (found now, not at the first save hours
// later), and no other run may use them at the same time (two runs on one output_dir deleted each
// other's temporary checkpoint files). Locks <output_dir>/fusellm.lock, and
// <[checkpoint].dir>/fusellm.lock when the checkpoints live outside the output directory.
std::vector<FileLock> claim_run_dirs(const JobConfig& job, const TrainOptions& opt) {
  require_writable_dir(job.job.output_dir, job_field(job, "job", "output_dir"));
  require_writable_dir(job.checkpoint.dir, job_field(job, "checkpoint", "dir"));
  if (!opt.export_dir.empty()) require_writable_dir(opt.export_dir, "the export directory (--export)");
  std::vector<FileLock> locks;
  const fs::path out = fs::weakly_canonical(job.job.output_dir), ck = fs::weakly_canonical(job.checkpoint.dir);
  locks.emplace_back((out / "fusellm.lock").string(), fmt::format("the output directory {}", job.job.output_dir));
  const auto rel = ck.lexically_relative(out);
  if (rel.empty() || *rel.begin() == "..")
    locks.emplace_back((ck / "fusellm.lock").string(), fmt::format("the checkpoint directory {}", job.checkpoint.dir));
  return locks;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}

}  // namespace

std::string target_dir(const JobConfig& job) {
  if (!job.target.path.empty()) return job.target.path;
  if (const SourceConfig* s = job.find_source(job.target.init_from)) return s->path;
  fail("{}: [target]: neither path nor a known init_from", job.file);
}

TrainResult train(const JobConfig& job, const TrainOptions& opt) {
  std::optional<Kokkos::ScopeGuard> kokkos;  // first: outlives every View below
  if (!Kokkos::is_initialized() && !opt.init_kokkos) fail("train: Kokkos is not initialized");
  if (job.train.dtype != DType::F32)
    fail("{}: [train].dtype = \"{}\": this trainer runs fp32 only", job.file, train_dtype_name(job.train.dtype));
  if (job.topology.student_ranks != 1)
    fail("{}: [topology].student_ranks = {}: this trainer is single-process (1)", job.file, job.topology.student_ranks);
  const bool fusing = needs_caches(job);
  if (fusing) check_offline_caches(job, opt.require_complete_caches);
  const std::vector<FileLock> locks = claim_run_dirs(job, opt);
  if (!Kokkos::is_initialized()) kokkos.emplace();

  TrainResult res;
  // ---- model and data ---------------------------------------------------------------------------------
  const std::string tdir = target_dir(job);
  // The inner error names the file (tdir/config.json, a safetensors shard): the context names
  // only the job's field, not tdir again.
  const std::string what =
      job.target.init_from.empty() ? "[target]" : fmt::format("[target] (init_from '{}')", job.target.init_from);
  model::TrainableLlama model =
      with_context(fmt::format("{}: {}", job.file, what), [&] { return model::TrainableLlama::load(tdir); });
  const int64_t V = model.arch().vocab;
  SegmentSource data = fusing ? SegmentSource::from_caches(job, opt.limit, V) : SegmentSource::from_corpus(job, opt.limit, V);
  if (data.segments() == 0) fail("{}: the corpus gives no segment to train on", job.file);
  const std::vector<std::string>& names = data.source_names();
  const Packer packer(data.lengths(), job.corpus.max_len);
  const Packer::SegmentGetter segment = [&](int64_t i) -> const PackInput& { return data.get(i); };
  const int64_t nseq = packer.sequences();
  res.segments = data.segments();
  res.sequences = nseq;
  const int64_t K = int64_t(names.size());
  // What a checkpoint's sampler position refers to (TrainState::data_fingerprint).
  const uint64_t data_fp = [&] {
    const std::vector<int64_t>& L = data.lengths();
    const uint64_t fp = xxh64(L.data(), L.size() * sizeof(int64_t), uint64_t(job.corpus.max_len));
    return fp == 0 ? 1 : fp;  // 0 means "not recorded"
  }();
  const double flops_per_token = model_flops_per_token(model.arch(), job.corpus.max_len);

  // ---- optimizer, schedule ----------------------------------------------------------------------------
  const int64_t G = job.train.global_batch;
  const int64_t max_steps = opt.max_steps > 0 ? opt.max_steps : job.train.max_steps.value_or(-1);
  const int64_t total_seq = job.train.epochs * nseq;
  const int64_t total_steps = max_steps > 0 ? max_steps : std::max<int64_t>(1, (total_seq + G - 1) / G);
  res.total_steps = total_steps;
  LrSchedule sched;
  sched.kind = job.optim.schedule;
  sched.base_lr = job.optim.lr;
  sched.total_steps = total_steps;
  sched.warmup_steps = warmup_steps_for(total_steps, job.optim.warmup_ratio, job.optim.warmup_steps);
  sched.min_lr_ratio = job.optim.min_lr_ratio;
  AdamW adamw({job.optim.beta1, job.optim.beta2, job.optim.eps, job.optim.weight_decay});

  TrainState st;
  std::mt19937_64 rng(uint64_t(job.job.seed));
  CheckpointStore store(job.checkpoint.dir, job.checkpoint.keep);
  // The newest checkpoint that exists and holds this run's history: the one resumed from, then
  // each one saved. What a stopped run names, so the user is never sent to one that was not written.
  std::string last_good;
  if (job.checkpoint.resume) {
    if (auto ck = store.load_latest()) {
      last_good = ck->path;
      for (const auto& w : ck->warnings) spdlog::warn("train: {}", w);
      for (auto& p : model.parameters()) {
        const Tensor* t = ck->find_model(p.name);
        if (!t) fail("{}: has no tensor {} (a checkpoint of another model?)", ck->path, p.name);
        if (t->shape() != p.value.shape())
          fail("{}: tensor {} is {}, the target's is {}", ck->path, p.name, shape_str(t->shape()), shape_str(p.value.shape()));
        std::copy(t->data(), t->data() + t->size(), p.value.data());
      }
      if (ck->state.data_fingerprint != 0 && ck->state.data_fingerprint != data_fp)
        fail("{}: written for other training data ({} packed sequences per epoch, data fingerprint {:016x}); the "
             "data now gives {} sequences (fingerprint {:016x}): the caches were taught again or extended, or "
             "[corpus].max_len or --limit changed, so its sampler position would point elsewhere. Train from the "
             "same data, or start afresh with another [checkpoint].dir",
             ck->path, ck->state.data_sequences, ck->state.data_fingerprint, nseq, data_fp);
      ck->restore_optimizer(adamw);
      st = ck->state;
      if (!(st.schedule == sched))
        spdlog::warn("train: {}: the checkpoint's schedule ({} steps, warmup {}) differs from the job's ({} steps, "
                     "warmup {}); continuing with the job's",
                     ck->path, st.schedule.total_steps, st.schedule.warmup_steps, sched.total_steps, sched.warmup_steps);
      if (st.job_toml != job.to_toml()) spdlog::warn("train: {}: written by a different job; continuing with this one", ck->path);
      rng_from_text(rng, st.rng_state);
      res.start_step = st.step;
      spdlog::info("train: resumed from {} (step {}, {} tokens seen)", ck->path, st.step, st.tokens_seen);
    }
  }
  st.schedule = sched;
  st.data_sequences = nseq;
  st.data_fingerprint = data_fp;
  // rng: the state at the start of the sampler's epoch; the epoch's permutation is drawn from it.
  std::mt19937_64 epoch_rng_start = rng;
  std::vector<int64_t> perm = permutation(rng, nseq);

  std::vector<ParamGrad> pg;
  for (auto& p : model.parameters()) pg.push_back({p.name, p.value.span(), p.grad.span(), hf_trainer_decays(p.name)});

  fs::create_directories(job.job.output_dir);
  res.metrics_path = (fs::path(job.job.output_dir) / "metrics.jsonl").string();
  std::ofstream metrics(res.metrics_path, std::ios::app);
  if (!metrics) fail("{}: cannot open for writing", res.metrics_path);
  std::ofstream dump;
  if (!opt.dump_path.empty()) {
    dump.open(opt.dump_path);
    if (!dump) fail("{}: cannot open for writing", opt.dump_path);
  }
  const bool tty = opt.progress && ::isatty(2);
  if (dump.is_open())  // what a reference implementation needs besides the steps (tests/reference/train_reference.py)
    dump << nlohmann::json{{"header", true}, {"target", tdir}, {"lambda", fusing ? job.distill.lambda : 1.0},
                           {"beta1", job.optim.beta1}, {"beta2", job.optim.beta2}, {"eps", job.optim.eps},
                           {"weight_decay", job.optim.weight_decay}, {"clip", job.optim.clip},
                           {"start_step", st.step}}.dump()
         << "\n";

  auto save = [&] {
    CheckpointContents c;
    for (const auto& p : model.parameters()) c.model.push_back({p.name, p.value.shape(), p.value.span()});
    c.add_optimizer(adamw);
    c.state = st;
    c.state.optim_steps = adamw.steps();
    c.state.rng_state = rng_to_text(epoch_rng_start);
    c.state.job_toml = job.to_toml();
    res.last_checkpoint = store.save(c);
    last_good = res.last_checkpoint;
  };
  auto last_good_text = [&] {
    return last_good.empty() ? fmt::format("no last good checkpoint: this run wrote no checkpoint yet (a rerun starts "
                                           "again from [target] {})", tdir)
                             : fmt::format("the last good checkpoint is {}", last_good);
  };

  fusion::FusedClassifierParams fcp;
  fcp.lambda = fusing ? float(job.distill.lambda) : 1.0f;
  fcp.reduction = fusion::LossReduction::kMean;

  const auto t0 = Clock::now();
  auto t_interval = t0;
  int64_t interval_tokens = 0;
  std::vector<int64_t> wins(size_t(K), 0);
  std::vector<double> weight_sum(size_t(K), 0.0);  // AvgCE: the sources' weights, summed over sequences
  int64_t interval_seqs = 0;
  const int64_t run_steps = opt.stop_after > 0 ? opt.stop_after : total_steps;
  int64_t done_this_run = 0;

  // A packed sequence's targets: the K sources' rows fused by MinCE / AvgCE over the sequence's
  // CE (the winner and the weights counted for the metrics), or none when training CLM only.
  auto targets_of = [&](const PackedSequence& ps) {
    const int64_t T = ps.tokens();
    if (!fusing) return fusion::HostRows("clm", T, 1);
    std::vector<float> scores(static_cast<size_t>(K));
    for (int64_t j = 0; j < K; ++j) scores[size_t(j)] = float(ps.ce[size_t(j)]);
    const std::vector<int64_t> offs{0, T};
    fusion::Fused f = job.distill.fusion == fusion::FusionMode::kMinCE ? fusion::fuse_minCE(ps.rows, names, scores, offs, V)
                                                               : fusion::fuse_avgCE(ps.rows, names, scores, offs, V);
    if (!f.choice.empty() && f.choice[0] >= 0 && f.choice[0] < K) ++wins[size_t(f.choice[0])];
    for (size_t j = 0; j < f.weights.size() && j < size_t(K); ++j) weight_sum[j] += f.weights[j];
    return f.rows;
  };

  while (st.step < total_steps && done_this_run < run_steps) {
    // The sequences of this step.
    std::vector<int64_t> seqs;
    while (int64_t(seqs.size()) < G) {
      if (max_steps <= 0 && st.sampler_epoch * nseq + st.sampler_position >= total_seq) break;
      if (st.sampler_position >= nseq) {
        ++st.sampler_epoch;
        st.sampler_position = 0;
        epoch_rng_start = rng;
        perm = permutation(rng, nseq);
      }
      seqs.push_back(perm[size_t(st.sampler_position++)]);
    }
    if (seqs.empty()) break;
    const int64_t step = st.step + 1;  // 1-based, as logged
    model.zero_grad();
    double loss = 0, clm = 0, fus = 0;
    int64_t step_tokens = 0;
    nlohmann::json dstep;
    if (dump.is_open()) dstep = {{"step", step}, {"sequences", nlohmann::json::array()}};
    // What to look at when this step's loss is not finite: the weights the run started from (its
    // first step), else the settings that let the updates grow the weights until the logits overflow.
    const std::string look_at =
        step == res.start_step + 1
            ? fmt::format("the weights this run started from ({}: `fusellm score` shows whether they give finite "
                          "logits)", last_good.empty() ? tdir : last_good)
            : fmt::format("{} = {:g} and {} = {:g} (the updates grew the weights until the logits overflowed: lower "
                          "the learning rate, or clip the gradients)",
                          job_field(job, "optim", "lr"), job.optim.lr, job_field(job, "optim", "clip"), job.optim.clip);
    const int64_t MB = job.train.micro_batch;
    for (size_t b0 = 0; b0 < seqs.size(); b0 += size_t(MB)) {
      // One micro-batch: its packed sequences run as one forward pass over their concatenation,
      // each sequence its own attention block with positions from 0 (doc_ids), which is what
      // separate passes compute; the loss stays a per-sequence mean.
      const size_t b1 = std::min(seqs.size(), b0 + size_t(MB));
      std::vector<PackedSequence> batch;
      for (size_t b = b0; b < b1; ++b) batch.push_back(packer.build(seqs[b], segment, job.corpus.document_mask));
      const Concatenated in = concatenate(batch);
      Tensor logits = model.forward(in.ids, in.doc_ids);
      if (step == opt.inject_nan_step && b0 == 0) std::fill_n(logits.data(), V, std::numeric_limits<float>::quiet_NaN());
      int64_t off = 0;
      for (size_t b = b0; b < b1; ++b) {
        const PackedSequence& ps = batch[b - b0];
        const int64_t si = seqs[b];
        const int64_t T = ps.tokens();
        const std::span<float> z = logits.span().subspan(size_t(off * V), size_t(T * V));
        off += T;
        const fusion::HostRows targets = targets_of(ps);
        if (dump.is_open()) dstep["sequences"].push_back(dump_sequence(ps, targets));
        // The classifier refuses NaN/Inf logits or a non-finite position loss itself.
        const auto r = [&] {
          try {
            return fusion::fused_classifier(z, T, V, ps.gold, targets, fcp);
          } catch (const Error& e) {
            fail("train: step {}: the {} loss is not finite (sequence {}: {}); stopped. Look at {}; {}", step,
                 fusing ? "CLM (and Fusion)" : "CLM", si, e.what(), look_at, last_good_text());
          }
        }();
        if (!std::isfinite(r.clm))
          fail("train: step {}: the CLM loss is {} (sequence {}); stopped. Look at {}; {}", step, r.clm, si, look_at,
               last_good_text());
        if (fusing && !std::isfinite(r.fusion))
          fail("train: step {}: the Fusion loss is {} (sequence {}); stopped. Look at {}; {}", step, r.fusion, si,
               look_at, last_good_text());
        const float scale = 1.0f / float(seqs.size());
        for (float& g : z) g *= scale;
        loss += r.loss;
        clm += r.clm;
        fus += r.fusion;
        step_tokens += T;
      }
      model.backward(logits.span());
    }
    const double n = double(seqs.size());
    loss /= n, clm /= n, fus /= n;
    const double gnorm = clip_grad_norm(pg, job.optim.clip);
    if (!std::isfinite(gnorm))
      fail("train: step {}: the gradient norm is {} (loss {}); stopped. Look at {}; {}", step, gnorm, loss, look_at,
           last_good_text());
    const double lr = sched.lr(st.step);
    // The loss of the next step would notice overflowed weights only after this step's checkpoint
    // (and, at the last step, the export) had been written full of Inf: the update checks itself.
    if (const std::string bad = adamw.step(pg, lr); !bad.empty())
      fail("train: step {}: the update at learning rate {:g} made the weights or AdamW moments of {} Inf or NaN; "
           "stopped, no checkpoint of this step was written. Look at {} = {:g} (lower it), then {} = {:g} and {} = "
           "{:g}; {}",
           step, lr, bad, job_field(job, "optim", "lr"), job.optim.lr, job_field(job, "optim", "clip"), job.optim.clip,
           job_field(job, "optim", "weight_decay"), job.optim.weight_decay, last_good_text());
    st.step = step;
    st.tokens_seen += step_tokens;
    ++done_this_run;
    interval_tokens += step_tokens;
    interval_seqs += int64_t(seqs.size());
    res.steps.push_back({step, loss, clm, fus, lr, gnorm, st.tokens_seen});
    if (dump.is_open()) {
      dstep["loss"] = loss, dstep["clm"] = clm, dstep["fusion"] = fus, dstep["lr"] = lr, dstep["grad_norm"] = gnorm;
      dump << dstep.dump() << "\n";
    }

    const bool last = st.step >= total_steps || done_this_run >= run_steps;
    if (st.step % job.train.log_interval == 0 || last) {
      const auto now = Clock::now();
      const double sec = std::chrono::duration<double>(now - t_interval).count();
      const double tps = sec > 0 ? double(interval_tokens) / sec : 0.0;
      nlohmann::json m = {{"step", st.step}, {"tokens", st.tokens_seen}, {"loss", loss}, {"clm", clm},
                          {"fusion", fus}, {"lr", lr}, {"grad_norm", gnorm}, {"tokens_per_s", tps},
                          {"model_tflops", tps * flops_per_token * 1e-12}, {"epoch", st.sampler_epoch}};
      if (fusing && job.distill.fusion == fusion::FusionMode::kMinCE) {
        nlohmann::json w = nlohmann::json::object();
        for (int64_t j = 0; j < K; ++j)
          w[names[size_t(j)]] = interval_seqs > 0 ? double(wins[size_t(j)]) / double(interval_seqs) : 0.0;
        m["win_rate"] = w;
      }
      if (fusing && job.distill.fusion == fusion::FusionMode::kAvgCE) {
        nlohmann::json w = nlohmann::json::object();
        for (int64_t j = 0; j < K; ++j)
          w[names[size_t(j)]] = interval_seqs > 0 ? weight_sum[size_t(j)] / double(interval_seqs) : 0.0;
        m["avg_weight"] = w;
      }
      metrics << m.dump() << "\n";
      metrics.flush();
      if (opt.progress) {
        const double elapsed = std::chrono::duration<double>(now - t0).count();
        const double eta = done_this_run > 0 ? elapsed / double(done_this_run) * double(std::min(total_steps - st.step, run_steps - done_this_run)) : 0;
        std::string wr;
        if (m.contains("win_rate"))
          for (auto& [k, v] : m["win_rate"].items()) wr += fmt::format(" {}:{:.2f}", k, v.get<double>());
        if (tty) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "step %lld/%lld  loss %.4f (clm %.4f, fusion %.4f)  lr %.3g  grad_norm %.3g  %.0f tok/s%s%s  eta %s\n",
                     (long long)st.step, (long long)total_steps, loss, clm, fus, lr, gnorm, tps,
                     wr.empty() ? "" : "  win", wr.c_str(), fmt_duration(eta).c_str());
      }
      t_interval = now;
      interval_tokens = 0;
      interval_seqs = 0;
      std::fill(wins.begin(), wins.end(), 0);
      std::fill(weight_sum.begin(), weight_sum.end(), 0.0);
    }
    if (tty) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      const int64_t left = std::min(total_steps - st.step, run_steps - done_this_run);
      const int width = 30;
      const int filled = int(double(width) * double(st.step) / double(total_steps));
      std::fprintf(stderr, "\r\033[K[%s%s] %lld/%lld eta %s", std::string(size_t(filled), '#').c_str(),
                   std::string(size_t(width - filled), '.').c_str(), (long long)st.step, (long long)total_steps,
                   fmt_duration(elapsed / double(done_this_run) * double(left)).c_str());
      std::fflush(stderr);
    }
    if (job.checkpoint.interval > 0 && st.step % job.checkpoint.interval == 0) save();
  }
  if (tty) std::fprintf(stderr, "\n");
  // The end of the run (or --stop-after) always leaves a checkpoint of its last step.
  if (done_this_run > 0 && (job.checkpoint.interval <= 0 || st.step % job.checkpoint.interval != 0)) save();
  res.end_step = st.step;
  res.segments_read = data.reads();
  if (!opt.export_dir.empty()) {
    std::vector<SafetensorsEntry> ents;
    for (const auto& p : model.parameters()) ents.push_back({p.name, p.value.shape(), p.value.span()});
    export_hf(ents, tdir, job.target.tokenizer.empty() ? tdir : job.target.tokenizer, opt.export_dir);
  }
  return res;
}

}  // namespace fusellm
