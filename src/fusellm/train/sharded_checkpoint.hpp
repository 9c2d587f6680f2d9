#pragma once
// Checkpoints of the MPI job's data-parallel students, which hold AdamW's moments in ZeRO-1
// shards (dist/zero1.hpp); DESIGN.md section 5, issue 11 item 6. One step directory of the
// checkpoint store (ckpt/checkpoint_store.hpp) with
//
//   state.h5               from student rank 0: the model (the whole parameters, gathered) and the
//                          TrainState, as one process writes it, but with empty optim/m, optim/v
//                          and the values optim_shards, optim_total, save_id (train_checkpoint.hpp)
//   optim-<r>-of-<R>.h5    from student rank r: AdamW's moments of its shard (optim_shard.hpp)
//   COMPLETE               the manifest of all R + 1 files, written last by rank 0
//
// Saving: rank 0 draws the save's id and begins the temporary directory (tag "zero1-<id>"), the
// others join it; every rank writes and fsyncs its files; their manifest lines reach rank 0
// (through the transport, as text); rank 0 commits (manifest, rename, `latest`); every rank
// returns only after the commit, so none runs ahead of a step that is not complete. A failure
// on any rank aborts the save on every rank with the failing rank's message (the temporary
// directory removed); nothing waits for ever (the transport's timeout).
//
// Resuming: rank 0's order of candidates (`latest`, then older) is used by all; for each, every
// rank reads state.h5 and only the shard files that overlap its own shard (reshard on load:
// another number of ranks reads other ranges of the same files), verifying what it reads; a
// candidate is used only when every rank could use it, else all fall back to the next older one
// together, each warning with the failing rank's message. Resumes from a ZeRO-1 checkpoint of any
// number of ranks and from a single-process one (moments by tensor, mapped to flat offsets by the
// ParamTable); a single process (resume_latest) resumes from a ZeRO-1 checkpoint too. A single
// process keeps writing its own format (save_checkpoint: state.h5 only).
//
// Two layers: save_zero1 / load_zero1 know the Zero1 and a TrainState (tests call them with a
// table of a few tensors); save_sharded / resume_sharded are save_checkpoint / resume_latest
// for the trainer, with the Zero1 and the students' transport.
#include <cstdint>
#include <optional>
#include <string>

#include "fusellm/dist/transport.hpp"
#include "fusellm/dist/zero1.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/job/sampler.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/optim/lr_schedule.hpp"
#include "fusellm/train/checkpointing.hpp"
#include "fusellm/train/train_checkpoint.hpp"

namespace fusellm {

// Every student rank calls it, after gather_params() (rank 0 writes zero.params() as the model).
// Returns the step directory on every rank; Error on every rank when any rank failed.
std::string save_zero1(const TrainCheckpointStore& store, const dist::Zero1& zero, const TrainState& state);

// The newest checkpoint every rank can use, with the model's weights restored into zero.params()
// and this rank's moments and AdamW's step count into zero; nullopt when the store holds none.
// Error on every rank (listing why each candidate was refused) when none is usable.
std::optional<TrainCheckpoint> load_zero1(const TrainCheckpointStore& store, dist::Zero1& zero);

// save_checkpoint for the students (checkpointing.hpp): `zero` holds the model's buffers and its
// transport is the students'. Call on every student rank after the step's gather_params().
std::string save_sharded(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                         const dist::Zero1& zero, const Sampler& sampler, const RunPosition& at);

// resume_latest for the students: with [checkpoint].resume, the newest usable checkpoint
// restored into the model's buffers (through zero), this rank's AdamW shard and the sampler;
// nullopt for a fresh start. Call on every student rank.
std::optional<Resumed> resume_sharded(const TrainCheckpointStore& store, const JobConfig& job, const LrSchedule& sched,
                                      dist::Zero1& zero, Sampler& sampler);

}  // namespace fusellm
