#include "fusellm/train/checkpointing.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"

namespace fusellm {

void load_weights(const TrainCheckpoint& ck, const ParamTable& table, std::span<float> params) {
  for (int i = 0; i < table.size(); ++i) {
    const ParamEntry& e = table[i];
    const Tensor* t = ck.find_model(e.name);
    if (!t) fail("{}: has no tensor {} (a checkpoint of another model?)", ck.path, e.name);
    if (t->shape() != e.shape)
      fail("{}: tensor {} is {}, the target's is {}", ck.path, e.name, shape_str(t->shape()), shape_str(e.shape));
    const TensorView view = table.view(params, i);
    std::copy(t->data(), t->data() + t->size(), view.data());
  }
}

// A checkpoint's sampler position means something only for the data it was written with.
void check_same_data(const TrainCheckpoint& ck, const Sampler& sampler) {
  const TrainState& st = ck.state;
  if (st.data_fingerprint != 0 && st.data_fingerprint != sampler.data_fingerprint())
    fail("{}: written for other training data ({} packed sequences per epoch, data fingerprint {:016x}); the "
         "data now gives {} sequences (fingerprint {:016x}): the caches were taught again or extended, or "
         "[corpus].max_len or --limit changed, so its sampler position would point elsewhere. Train from the "
         "same data, or start afresh with another [checkpoint].dir",
         ck.path, st.data_sequences, st.data_fingerprint, sampler.sequences(), sampler.data_fingerprint());
}

Resumed restore_position(const TrainCheckpoint& ck, const JobConfig& job, const LrSchedule& sched, Sampler& sampler) {
  const TrainState& st = ck.state;
  if (!(st.schedule == sched))
    spdlog::warn("train: {}: the checkpoint's schedule ({} steps, warmup {}) differs from the job's ({} steps, "
                 "warmup {}); continuing with the job's",
                 ck.path, st.schedule.total_steps, st.schedule.warmup_steps, sched.total_steps, sched.warmup_steps);
  if (st.job_toml != job.to_toml()) spdlog::warn("train: {}: written by a different job; continuing with this one", ck.path);
  std::mt19937_64 rng;
  rng_from_text(rng, st.rng_state);
  sampler.restore(st.sampler_epoch, st.sampler_position, rng);
  spdlog::info("train: resumed from {} (step {}, {} tokens seen)", ck.path, st.step, st.tokens_seen);
  return Resumed{ck.path, {st.step, st.tokens_seen}};
}

std::optional<Resumed> resume_latest(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                                     model::TrainableLlama& model, AdamW& adamw, Sampler& sampler) {
  if (!job.checkpoint.resume) return std::nullopt;
  const std::optional<TrainCheckpoint> ck = store.load_latest();
  if (!ck) return std::nullopt;
  for (const auto& w : ck->warnings) spdlog::warn("train: {}", w);
  load_weights(*ck, model.parameter_table(), model.parameter_buffer());
  check_same_data(*ck, sampler);
  ck->restore_optimizer(adamw);
  return restore_position(*ck, job, sched, sampler);
}

TrainState train_state(const JobConfig& job, const LrSchedule& sched, const Sampler& sampler, const RunPosition& at,
                       int64_t optim_steps) {
  TrainState st;
  st.step = at.step;
  st.tokens_seen = at.tokens_seen;
  st.sampler_epoch = sampler.epoch();
  st.sampler_position = sampler.position();
  st.optim_steps = optim_steps;
  st.rng_state = rng_to_text(sampler.epoch_start_rng());
  st.schedule = sched;
  st.job_toml = job.to_toml();
  st.data_sequences = sampler.sequences();
  st.data_fingerprint = sampler.data_fingerprint();
  return st;
}

std::string save_checkpoint(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                            const model::TrainableLlama& model, const AdamW& adamw, const Sampler& sampler,
                            const RunPosition& at) {
  CheckpointContents c;
  for (const auto& p : model.parameters()) c.model.push_back({p.name, p.value.shape(), p.value.span()});
  c.add_optimizer(adamw);
  c.state = train_state(job, sched, sampler, at, adamw.steps());
  return store.save(c);
}

}  // namespace fusellm
