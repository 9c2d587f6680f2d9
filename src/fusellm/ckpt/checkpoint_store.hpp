#pragma once
// Training checkpoints (DESIGN.md section 5), in the layout torchtitan uses: one directory per
// step, a completion marker written last, resume from the newest complete one. The store keeps
// StateDicts (core/state_dict.hpp) and knows no trainer: what a step holds is what its writer
// put in (train/train_checkpoint.hpp for the trainer's).
//
//   <dir>/step-<N>/<file>...    the step's files, each a StateDict (state_file.hpp): "state.h5"
//                               for one process; a distributed job's ranks each write their own
//   <dir>/step-<N>/COMPLETE     the manifest (manifest.hpp): every file with its size and the XXH64
//                               of its whole bytes; written, fsync'd, after all of them
//   <dir>/latest                "step-<N>": the newest checkpoint written completely
//
// Every file records its step as the int64 value "step".
//
// Atomicity: a checkpoint is written into <dir>/.tmp-step-<N>-<tag>/ (begin(); tag: the pid, or
// one name that a distributed job's ranks agree on), each file fsync'd (PendingCheckpoint::write),
// then commit(): the manifest written and fsync'd, the directory fsync'd, renamed to step-<N>
// (one rename(2)), the parent fsync'd; then `latest` is written to a temporary name, fsync'd and
// renamed over the old one. A process killed at any point leaves either the previous state or
// the new one, plus at worst a .tmp directory that loading ignores and the next save removes.
// Then all but the newest `keep` checkpoints are deleted.
//
// Loading (resume, export) verifies everything: the manifest, then the size and whole-file
// checksum of every file it lists, before HDF5 opens any (libhdf5 can crash on damaged metadata
// rather than fail), then every dataset's checksum and shape. A manifest line without a checksum
// (an older checkpoint) gets the size check only, and a log line says so. When the checkpoint
// `latest` names is damaged (or the caller refuses it) it warns, saying what is wrong, and falls
// back to the next older complete one; when none is usable it fails listing why each was
// refused. A directory with no checkpoint at all is a fresh start.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fusellm/ckpt/manifest.hpp"
#include "fusellm/core/state_dict.hpp"

namespace fusellm {

// The file of a single-process checkpoint.
inline constexpr const char* kCheckpointStateFile = "state.h5";

struct LoadedCheckpoint {
  std::string path;  // the step-<N> directory it was read from
  int64_t step = 0;
  std::vector<std::pair<std::string, StateDict>> files;  // in the manifest's order
  std::vector<std::string> warnings;  // what was wrong with newer checkpoints that were skipped
  // Files the manifest lists that the caller chose not to read (CheckpointStore::load with a
  // filter): present with their recorded size, not verified further, not in `files`.
  std::vector<std::string> unread;

  // The file of that name; Error naming the checkpoint when it has none.
  StateDict& file(const std::string& name);
  const StateDict& file(const std::string& name) const;
};

// A checkpoint being written, in its temporary directory; CheckpointStore::commit puts it in place.
class PendingCheckpoint {
 public:
  int64_t step() const { return step_; }
  const std::string& dir() const { return dir_; }
  // Writes one file of the checkpoint and fsyncs it; returns its manifest line (size, XXH64 of
  // its bytes). Its "step" value must be the checkpoint's step. Ranks may write theirs in parallel.
  DigestRecord write(const std::string& file, const StateDictRef& state) const;

 private:
  friend class CheckpointStore;
  PendingCheckpoint(int64_t step, std::string dir) : step_(step), dir_(std::move(dir)) {}
  int64_t step_;
  std::string dir_;
};

class CheckpointStore {
 public:
  // keep: complete checkpoints kept after each save (0 = all).
  explicit CheckpointStore(std::string dir, int64_t keep = 3);

  const std::string& dir() const { return dir_; }

  // One process: state (its "step" value says which) as the single file state.h5, written
  // atomically; `latest` points at it; pruned. Returns its directory. Saving a step that exists
  // (a run resumed from an older checkpoint) replaces it.
  std::string save(const StateDictRef& state) const;

  // The steps of save(), for writers of several files (one per rank). begin() creates the
  // temporary directory (removing one of the same step and tag); join() names one that another
  // process began; commit() writes the manifest of the files given and puts the step in place,
  // as save() does; abort() removes the temporary directory. Tag: "" means this process's pid.
  PendingCheckpoint begin(int64_t step, const std::string& tag = "") const;
  PendingCheckpoint join(int64_t step, const std::string& tag) const;
  std::string commit(const PendingCheckpoint& p, const std::vector<DigestRecord>& files) const;
  void abort(const PendingCheckpoint& p) const;

  // The newest usable checkpoint (see above), handed to `use`, which may refuse it by throwing
  // Error (a checkpoint that lacks what the caller needs): then the next older one is tried, and
  // the refusal is one of the warnings. false when the directory holds no checkpoint at all.
  bool load_latest(const std::function<void(LoadedCheckpoint&&)>& use) const;
  std::optional<LoadedCheckpoint> load_latest() const;

  // One checkpoint directory, fully verified; Error naming what is wrong.
  static LoadedCheckpoint load(const std::string& step_dir);
  // Only the files `read` accepts are verified and read; every other file the manifest lists is
  // checked to exist with its recorded size and named in `unread` (a distributed job's rank reads
  // the files it needs, and every file is verified by a rank that reads it).
  static LoadedCheckpoint load(const std::string& step_dir, const std::function<bool(const std::string&)>& read);

  // The step directories load_latest() tries, in its order: the one `latest` names, then every
  // other step-<N>, newest first. What is wrong with `latest` is logged and appended to
  // `warnings`. Empty when there is none; Error when `latest` exists without any.
  std::vector<std::string> resume_order(std::vector<std::string>& warnings) const;

  // Steps of the directories that have a completion marker, ascending (not verified).
  std::vector<int64_t> complete_steps() const;

 private:
  std::string dir_;
  int64_t keep_;
  void prune(int64_t saved_step) const;
};

}  // namespace fusellm
