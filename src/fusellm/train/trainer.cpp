#include "fusellm/train/trainer.hpp"

#include <Kokkos_Core.hpp>

#include <cmath>
#include <filesystem>
#include <optional>

#include <spdlog/spdlog.h>

#include "fusellm/core/error.hpp"
#include "fusellm/core/stop_signal.hpp"
#include "fusellm/device/compute_backend.hpp"
#include "fusellm/device/device_optimizer.hpp"
#include "fusellm/io/file_lock.hpp"
#include "fusellm/model/export_hf.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/lr_schedule.hpp"
#include "fusellm/teach/teach.hpp"
#include "fusellm/dist/rank_status.hpp"
#include "fusellm/dist/start_position.hpp"
#include "fusellm/dist/sharded_gradients.hpp"
#include "fusellm/dist/zero1.hpp"
#include "fusellm/train/checkpointing.hpp"
#include "fusellm/train/sharded_checkpoint.hpp"
#include "fusellm/job/sampler.hpp"
#include "fusellm/train/segment_source.hpp"
#include "fusellm/train/train_step.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

// "job.toml:12: [optim].lr" (where the field was set: its line, or its --set flag), for messages
// that send the user to a setting.
std::string job_field(const JobConfig& job, const char* section, const char* key) {
  return fmt::format("{}: [{}].{}", job.where(section, key), section, key);
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

model::TrainableModel load_target(const JobConfig& job, const std::string& tdir) {
  // The inner error names the file (tdir/config.json, a safetensors shard): the context names
  // only the job's field, not tdir again.
  const std::string what =
      job.target.init_from.empty() ? "[target]" : fmt::format("[target] (init_from '{}')", job.target.init_from);
  const model::Backend& backend = device::compute_backend(job.train.device, job.device_setting(), job.train.dtype);
  model::TrainableModel m =
      with_context(fmt::format("{}: {}", job.file, what), [&] { return model::TrainableModel::load(tdir, backend); });
  m.set_recompute_every(job.train.recompute_every);
  m.set_weight_dtype(job.train.dtype);
  return m;
}

// Offline: the caches; online in one process: the Teachers run here; CLM only: the corpus.
SegmentSource open_data(const JobConfig& job, const TrainOptions& opt, int64_t vocab) {
  SegmentSource data = !fuses_teachers(job)    ? SegmentSource::from_corpus(job, opt.limit, vocab)
                       : job.cache.dir.empty() ? SegmentSource::from_teachers(job, opt.limit, vocab)
                                               : SegmentSource::from_caches(job, opt.limit, vocab);
  if (data.segments() == 0) fail("{}: the corpus gives no segment to train on", job.file);
  return data;
}

LrSchedule schedule_of(const JobConfig& job, int64_t total_steps) {
  LrSchedule s;
  s.kind = job.optim.schedule;
  s.base_lr = job.optim.lr;
  s.total_steps = total_steps;
  s.warmup_steps = warmup_steps_for(total_steps, job.optim.warmup_ratio, job.optim.warmup_steps);
  s.min_lr_ratio = job.optim.min_lr_ratio;
  return s;
}

// The step's gradients summed over the data-parallel ranks, llm.c's "reduce" between backward and
// the grad norm. One process holds them whole: nothing to do. The MPI job all-reduces them here,
// or reduce-scatters them into its ZeRO-1 shards.
void reduce_gradients(std::span<const ParamGrad> /*grads*/) {}

// One run of the loop: setup (the model, the data and its sampler, the optimizer, a resume), then
// per step: sample, forward/backward, reduce, clip, update, metrics, checkpoint; then the export.
class Run {
 public:
  Run(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer, DataParallel* dp);
  TrainResult run();

 private:
  bool root() const { return !dp_ || dp_->students->rank() == 0; }
  void resume();
  StepTerms step(const StepBatches& batches);
  StepTerms forward_backward(int64_t step, const StepBatches& mine, std::span<const int64_t> ids, int64_t sequences);
  void sum_over_students(StepTerms& t, double& stopping) const;
  double reduce_and_clip();
  void update(int64_t step, double lr);
  void save();
  void note_stop();
  void finish();
  [[noreturn]] void stop(int64_t step, const std::string& what) const;
  std::string look_at(int64_t step) const;
  std::string last_good_text() const;

  const JobConfig& job_;
  const TrainOptions& opt_;
  TrainObserver* observer_;
  DataParallel* dp_;  // nullptr: one process
  const std::string tdir_;
  model::TrainableModel model_;
  SegmentSource data_;
  Sampler sampler_;
  const StepSettings settings_;
  const LrSchedule sched_;
  AdamW adamw_;
  const TrainCheckpointStore store_;
  std::vector<ParamGrad> grads_;   // one process: every tensor
  // A student of the MPI job: with [topology].zero_stage 2 its shard of the gradients (before
  // zero1_, which steps over it), then its shard of the optimizer state.
  std::optional<dist::ShardedGradients> sharded_grads_;
  std::optional<dist::Zero1> zero1_;
  // One process with the student on a GPU: the optimizer there too (adamw_ then holds the host's
  // copy of its state, filled before a checkpoint).
  std::unique_ptr<device::DeviceOptimizer> on_device_;
  std::unique_ptr<device::DeviceLoss> loss_on_device_;  // the student on a GPU: the loss there
  RunPosition at_;
  int64_t run_steps_ = 0, done_ = 0;  // this run's steps: at most, done
  int64_t micro_batch_ = 0;           // micro-batches of this run so far (their ids)
  // A stop signal (core/stop_signal.hpp) that every student has agreed to act on after this step:
  // the signal's number on a rank that received it, -1 on one that learned of it from another.
  int stop_after_step_ = 0;
  // The newest checkpoint that exists and holds this run's history: the one resumed from, then
  // each one saved. What a stopped run names, so the user is never sent to one that was not written.
  std::string last_good_;
  TrainResult res_;
};

Run::Run(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer, DataParallel* dp)
    : job_(job), opt_(opt), observer_(observer), dp_(dp), tdir_(target_dir(job)), model_(load_target(job, tdir_)),
      data_(dp ? dp->data(model_.arch().vocab) : open_data(job, opt, model_.arch().vocab)),
      sampler_(data_.lengths(), SamplerSettings::of(job, opt.max_steps)),
      settings_(StepSettings::of(job, data_.source_names(), model_.arch().vocab)),
      sched_(schedule_of(job, sampler_.total_steps())),
      adamw_({job.optim.beta1, job.optim.beta2, job.optim.eps, job.optim.weight_decay}),
      store_(job.checkpoint.dir, job.checkpoint.keep),
      run_steps_(opt.stop_after > 0 ? opt.stop_after : sampler_.total_steps()) {
  res_.segments = data_.segments();
  res_.sequences = sampler_.sequences();
  res_.total_steps = sampler_.total_steps();
  if (dp_ && job.topology.zero_stage == 2) {
    sharded_grads_.emplace(*dp_->students, model_.num_parameters());
    model_.send_gradients_to([this](int64_t begin, std::span<const float> g) { sharded_grads_->add(begin, g); });
  }
  if (dp_)
    zero1_.emplace(*dp_->students, model_.parameter_table(), model_.parameter_buffer(),
                   sharded_grads_ ? sharded_grads_->shard() : model_.gradient_buffer(), adamw_.options());
  else
    for (auto& p : model_.parameters())
      grads_.push_back({p.name, p.value.span(), p.grad.span(), hf_trainer_decays(p.name)});
  if (!dp_) on_device_ = device::DeviceOptimizer::make(model_, adamw_.options());
  loss_on_device_ = device::DeviceLoss::make(model_);
  resume();
}

// The newest checkpoint, if any; a student of the MPI job then tells every rank where the run
// starts (the teachers walk the schedule from there).
void Run::resume() {
  std::optional<Resumed> r = zero1_ ? resume_sharded(store_, job_, sched_, *zero1_, sampler_)
                                    : resume_latest(store_, job_, sched_, model_, adamw_, sampler_);
  if (r) {
    if (on_device_)
      on_device_->from_host(adamw_);  // the weights, m and v to the device
    else
      model_.parameters_changed();
    last_good_ = r->path;
    at_ = r->position;
    res_.start_step = at_.step;
  }
  if (dp_) dist::share_start_position(*dp_->world, dist::start_position_of(sampler_, at_.step));
}

TrainResult Run::run() {
  fs::create_directories(job_.job.output_dir);
  res_.metrics_path = (fs::path(job_.job.output_dir) / "metrics.jsonl").string();
  std::optional<Metrics> metrics;  // student rank 0's
  if (root())
    metrics.emplace(MetricsSettings{res_.metrics_path, settings_.sources, settings_.fusion, job_.train.log_interval,
                                    res_.total_steps, run_steps_,
                                    model_flops_per_token(model_.arch(), job_.corpus.max_len), opt_.progress});
  if (observer_) observer_->on_start({job_, tdir_, settings_.lambda, at_.step});
  while (at_.step < res_.total_steps && done_ < run_steps_) {
    const StepBatches batches = sampler_.next();
    if (batches.empty()) break;
    const StepTerms terms = step(batches);
    const bool end = at_.step >= res_.total_steps || done_ >= run_steps_;
    if (metrics) metrics->record(res_.steps.back(), terms, sampler_.epoch(), done_, end || stop_after_step_ != 0);
    if (job_.checkpoint.interval > 0 && at_.step % job_.checkpoint.interval == 0) save();
    if (stop_after_step_ != 0 && !end) {
      note_stop();
      break;
    }
  }
  if (metrics) metrics->finish();
  finish();
  return res_;
}

// The students agreed on a stop signal (Run::step) and the run is not at its end: finish() writes
// the checkpoint of this step and no export.
void Run::note_stop() {
  res_.stopped_by = stop_after_step_ > 0 ? signal_name(stop_after_step_) : "a stop signal (on another student)";
  if (root())
    spdlog::warn("train: {} after step {}: writing a checkpoint of this step and stopping (exit status {}: requeue "
                 "the job; the next run resumes from it)",
                 res_.stopped_by, at_.step, kExitRequeue);
}

// One optimizer step: forward and backward, reduce, clip, update; its log appended to res_.steps.
StepTerms Run::step(const StepBatches& batches) {
  const int64_t step = at_.step + 1;  // 1-based, as logged
  dist::RankStatus::set_step(step);   // for the messages that end the MPI job
  // The micro-batches' ids in this run; a student of the MPI job runs the ones it owns.
  StepBatches mine;
  std::vector<int64_t> ids;
  for (const auto& mb : batches.micro_batches) {
    const int64_t id = micro_batch_++;
    if (dp_ && dp_->topology->owner_student(id) != dp_->students->rank()) continue;
    mine.micro_batches.push_back(mb);
    ids.push_back(id);
  }
  if (sharded_grads_) sharded_grads_->zero();  // model_.zero_grad() has no gradients to zero then
  StepTerms sum = forward_backward(step, mine, ids, batches.sequences());
  // Read once per step, before the students' one all-reduce of the step, so every student sees
  // the same sum and they all stop after the same step (a signal can reach the ranks at
  // different moments, or only some of them).
  const int sig = stop_signal();
  double stopping = sig != 0 ? 1 : 0;
  sum_over_students(sum, stopping);
  if (stopping > 0) stop_after_step_ = sig != 0 ? sig : -1;
  const double n = double(batches.sequences());
  const double loss = sum.loss / n, clm = sum.clm / n, fusion = sum.fusion / n;
  const double gnorm = reduce_and_clip();
  if (!std::isfinite(gnorm)) stop(step, fmt::format("the gradient norm is {} (loss {})", gnorm, loss));
  const double lr = sched_.lr(at_.step);
  update(step, lr);
  at_.step = step;
  at_.tokens_seen += sum.tokens;
  ++done_;
  res_.steps.push_back({step, loss, clm, fusion, lr, gnorm, at_.tokens_seen});
  if (observer_) observer_->on_step(res_.steps.back());
  return sum;
}

// The step's loss terms and fusion tallies over every student (each rank has its own
// micro-batches'), and the number of students that saw a stop signal.
void Run::sum_over_students(StepTerms& t, double& stopping) const {
  const size_t K = settings_.sources.size();
  tally_fusion(t, K);
  if (!dp_) return;
  std::vector<double> v{t.loss, t.clm, t.fusion, double(t.tokens), double(t.sequences), stopping};
  v.insert(v.end(), t.wins.begin(), t.wins.end());
  v.insert(v.end(), t.weights.begin(), t.weights.end());
  dp_->students->all_reduce(v);
  t.loss = v[0], t.clm = v[1], t.fusion = v[2], t.tokens = int64_t(v[3]), t.sequences = int64_t(v[4]);
  stopping = v[5];
  std::copy(v.begin() + 6, v.begin() + 6 + std::ptrdiff_t(K), t.wins.begin());
  std::copy(v.begin() + 6 + std::ptrdiff_t(K), v.end(), t.weights.begin());
}

// llm.c's "reduce" and the grad norm: nothing to reduce in one process; ZeRO-1's reduce-scatter
// into the shards, then the norm over all of them, on a student of the MPI job.
double Run::reduce_and_clip() {
  if (on_device_) return on_device_->clip(job_.optim.clip);
  model_.gradients_to_host();
  if (!zero1_) {
    reduce_gradients(grads_);
    return clip_grad_norm(grads_, job_.optim.clip);
  }
  zero1_->reduce_gradients();
  return zero1_->clip(job_.optim.clip);
}

StepTerms Run::forward_backward(int64_t step, const StepBatches& mine, std::span<const int64_t> ids,
                                int64_t sequences) {
  // The MPI job's timeline: the student's compute is this pass less its waits for rows (the fetch's
  // wait_rows), recorded as the spans between them, so a rank's compute and wait shares are disjoint.
  dist::Timeline* tl = dp_ && dp_->timeline && dp_->timeline->enabled() ? dp_->timeline : nullptr;
  const auto now = [&] { return tl->seconds(dist::Timeline::Clock::now()); };
  double busy_from = tl ? now() : 0;
  const auto busy_until_now = [&] {
    if (tl) tl->record(dist::Phase::student_compute, step, busy_from, now(), 0);
  };
  const Packer::SegmentGetter segment = [&](int64_t i) -> const PackInput& { return data_.get(i); };
  const MicroBatchFetch fetch = [&](size_t index, std::span<const int64_t> seqs) {
    const int64_t id = ids[index];
    busy_until_now();
    data_.begin_micro_batch(id, sampler_.segments(seqs));
    if (tl) busy_from = now();
    std::vector<PackedSequence> batch;
    for (const int64_t s : seqs) batch.push_back(sampler_.packer().build(s, segment, job_.corpus.document_mask));
    data_.end_micro_batch(id);
    return batch;
  };
  try {
    StepTerms terms = train_step(model_, settings_, step, mine, sequences, fetch, observer_, loss_on_device_.get());
    busy_until_now();
    return terms;
  } catch (const NonFiniteLoss& e) {
    stop(step, e.what());
  }
}

// AdamW at `lr`. The loss of the next step would notice overflowed weights only after this step's
// checkpoint (and, at the last step, the export) had been written full of Inf: the update checks itself.
void Run::update(int64_t step, double lr) {
  const std::string bad = zero1_      ? zero1_->step(lr)
                          : on_device_ ? on_device_->step(lr)
                                       : adamw_.step(grads_, lr);
  if (zero1_) zero1_->gather_params();
  if (!on_device_) model_.parameters_changed();  // on a GPU the step refreshed the passes' copy itself
  if (!bad.empty())
    fail("train: step {}: the update at learning rate {:g} made the weights or AdamW moments of {} Inf or NaN; "
         "stopped, no checkpoint of this step was written. Look at {} = {:g} (lower it), then {} = {:g} and {} = "
         "{:g}; {}",
         step, lr, bad, job_field(job_, "optim", "lr"), job_.optim.lr, job_field(job_, "optim", "clip"), job_.optim.clip,
         job_field(job_, "optim", "weight_decay"), job_.optim.weight_decay, last_good_text());
}

void Run::save() {
  if (on_device_) on_device_->to_host(adamw_);
  res_.last_checkpoint = zero1_ ? save_sharded(store_, job_, sched_, *zero1_, sampler_, at_)
                                : save_checkpoint(store_, job_, sched_, model_, adamw_, sampler_, at_);
  last_good_ = res_.last_checkpoint;
}

// The end of the run (or --stop-after) always leaves a checkpoint of its last step; then the export.
void Run::finish() {
  if (done_ > 0 && (job_.checkpoint.interval <= 0 || at_.step % job_.checkpoint.interval != 0)) save();
  res_.end_step = at_.step;
  res_.segments_read = data_.reads();
  if (opt_.export_dir.empty() || !root() || !res_.stopped_by.empty()) return;  // stopped: not done yet
  // In the checkpoint's layout (GPT-2's Conv1D, GPT-NeoX's per-head query_key_value); on a GPU
  // the last save filled the host's weights already (to_host then copies nothing).
  if (on_device_) on_device_->to_host(adamw_);
  const std::vector<SafetensorsEntry> ents = model_.checkpoint_entries();
  export_hf(ents, tdir_, job_.target.tokenizer.empty() ? tdir_ : job_.target.tokenizer, opt_.export_dir);
}

// A step whose loss or gradient norm is not finite: what, and what to look at.
void Run::stop(int64_t step, const std::string& what) const {
  fail("train: step {}: {}; stopped. Look at {}; {}", step, what, look_at(step), last_good_text());
}

// The weights the run started from when its first step fails, else the settings that let the
// updates grow the weights until the logits overflow.
std::string Run::look_at(int64_t step) const {
  if (step == res_.start_step + 1)
    return fmt::format("the weights this run started from ({}: `fusellm score` shows whether they give finite logits)",
                       last_good_.empty() ? tdir_ : last_good_);
  return fmt::format("{} = {:g} and {} = {:g} (the updates grew the weights until the logits overflowed: lower the "
                     "learning rate, or clip the gradients)",
                     job_field(job_, "optim", "lr"), job_.optim.lr, job_field(job_, "optim", "clip"), job_.optim.clip);
}

std::string Run::last_good_text() const {
  return last_good_.empty() ? fmt::format("no last good checkpoint: this run wrote no checkpoint yet (a rerun starts "
                                          "again from [target] {})", tdir_)
                            : fmt::format("the last good checkpoint is {}", last_good_);
}

}  // namespace

std::string target_dir(const JobConfig& job) {
  if (!job.target.path.empty()) return job.target.path;
  if (const SourceConfig* s = job.find_source(job.target.init_from)) return s->path;
  fail("{}: [target]: neither path nor a known init_from", job.file);
}

TrainResult train(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer, DataParallel* dp) {
  std::optional<Kokkos::ScopeGuard> kokkos;  // first: outlives every View below
  if (!Kokkos::is_initialized() && !opt.init_kokkos) fail("train: Kokkos is not initialized");
  // A device that is not there is refused before anything else is looked at.
  device::resolve(job.train.device, job.device_setting());
  if (fuses_teachers(job) && !job.cache.dir.empty()) {
    if (job.distill.fusion == kernels::FusionMode::kMinCEPerPosition)
      fail("{}: [distill].fusion = \"minCE-position\" needs the teachers' per-position CE, which the distribution "
           "cache does not store: run the job online (remove [cache].dir)",
           job.where("distill", "fusion"));
    check_offline_caches(job, opt.require_complete_caches);
  }
  // One lock per run: the MPI job's student rank 0 holds it for all ranks.
  std::vector<FileLock> locks;
  if (!dp || dp->students->rank() == 0) locks = claim_run_dirs(job, opt);
  if (!Kokkos::is_initialized()) kokkos.emplace();
  return Run(job, opt, observer, dp).run();
}

}  // namespace fusellm
