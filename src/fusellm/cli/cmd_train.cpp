// fusellm train --job J [--set section.key=value ...] [--max-steps N] [--cache-dir D] [--export DIR]: offline mode's second step
// (DESIGN.md section 2): continual training of the target from the teachers' distribution caches
// (train/trainer.hpp). Metrics go to <output_dir>/metrics.jsonl, a human line per log interval to
// stderr (with a progress bar on a terminal), checkpoints to [checkpoint].dir; a run resumes from
// its `latest`. At the end the target is exported in Hugging Face layout (to --export, default
// <output_dir>/export).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/stop_signal.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"
#include "fusellm/train/run_job.hpp"
#include "fusellm/train/step_dump.hpp"
#include "fusellm/train/trainer.hpp"

namespace fusellm::cli {

namespace {
struct TrainCli {
  JobArgs job;
  int64_t max_steps = -1;
  int64_t stop_after = -1;
  int64_t limit = -1;
  std::string cache_dir;
  std::string export_dir;
  std::string dump;
  bool no_export = false;
  bool quiet = false;
};

// What rank 0 prints at the end of a run.
void print_result(const TrainResult& r, const TrainOptions& opt) {
  std::printf("steps: %lld -> %lld of %lld (%lld segments, %lld packed sequences per epoch)\n",
              (long long)r.start_step, (long long)r.end_step, (long long)r.total_steps, (long long)r.segments,
              (long long)r.sequences);
  if (!r.steps.empty())
    std::printf("loss: %.6f -> %.6f\n", r.steps.front().loss, r.steps.back().loss);
  std::printf("metrics: %s\n", r.metrics_path.c_str());
  if (!r.last_checkpoint.empty()) std::printf("checkpoint: %s\n", r.last_checkpoint.c_str());
  if (!r.stopped_by.empty())
    std::printf("stopped: on %s after step %lld, with a checkpoint (exit status %d: requeue; the next run resumes)\n",
                r.stopped_by.c_str(), (long long)r.end_step, kExitRequeue);
  else if (!opt.export_dir.empty())
    std::printf("export: %s\n", opt.export_dir.c_str());
}
}  // namespace

void add_train(CLI::App& app) {
  auto o = std::make_shared<TrainCli>();
  auto* sub = app.add_subcommand("train", "continual training of the target from the teachers' caches (offline mode)");
  add_job_options(sub, o->job);
  sub->add_option("--max-steps", o->max_steps, "optimizer steps (overrides [train].max_steps and the schedule's length)")
      ->check(at_least(1, "optimizer steps, as [train].max_steps"));
  sub->add_option("--stop-after", o->stop_after, "stop after N steps of this run, with a checkpoint (the schedule is unchanged)")
      ->check(at_least(1, "steps of this run"));
  sub->add_option("--limit", o->limit, "only the first N segments (caches taught with `teach --limit`)")
      ->check(at_least(1, "segments to train on"));
  sub->add_option("--cache-dir", o->cache_dir, "the caches' directory (overrides the job's [cache].dir)");
  auto* export_opt =
      sub->add_option("--export", o->export_dir, "where to write the HF export of the target (default <output_dir>/export)");
  sub->add_flag("--no-export", o->no_export, "no HF export at the end")->excludes(export_opt);
  sub->add_option("--dump", o->dump, "write each step's packed sequences and fused targets as JSON lines (reference tests)");
  sub->add_flag("-q,--quiet", o->quiet, "no human lines on stderr");
  sub->callback([o] {
    // First: a signal from now on is a stop request, not the end of the process (issue 12: SIGUSR1
    // from Slurm's --signal, SIGTERM on preemption: a checkpoint, then exit status 75).
    install_stop_handlers();
    JobConfig job = load_job(o->job);
    if (!o->cache_dir.empty()) job.cache.dir = o->cache_dir;
    TrainOptions opt;
    opt.init_kokkos = true;  // after the job and the caches are checked
    opt.max_steps = o->max_steps;
    opt.stop_after = o->stop_after;
    opt.limit = o->limit;
    opt.require_complete_caches = o->limit < 0;
    opt.progress = !o->quiet;
    if (!o->no_export)
      opt.export_dir = o->export_dir.empty() ? (std::filesystem::path(job.job.output_dir) / "export").string() : o->export_dir;
    // Under mpirun/srun: one rank of the MPI job (train/run_job.hpp). A rank that fails ends the
    // whole job at once (MPI_Abort), so no other rank waits for it.
    const auto session = dist::mpi::MpiSession::if_launched();
    std::unique_ptr<dist::Transport> world;
    if (session && session->world_size() > 1) {
      world = dist::mpi::MpiTransport::world();
      world->set_timeout(std::chrono::seconds(600));
    }
    const int rank = world ? world->rank() : 0;
    std::optional<StepDump> dump;
    if (!o->dump.empty()) dump.emplace(rank == 0 ? o->dump : fmt::format("{}.rank{}", o->dump, rank));
    JobRankResult jr;
    try {
      jr = run_job(job, opt, dump ? &*dump : nullptr, world.get());
    } catch (const std::exception& e) {
      if (!world) throw;
      std::fprintf(stderr, "fusellm: error: rank %d: %s\n", rank, e.what());
      std::fflush(stderr);
      dist::mpi::MpiSession::abort(1);
    }
    if (rank == 0) print_result(jr.train, opt);
    if (jr.stopped) throw ExitStatus{kExitRequeue};
  });
}


}  // namespace fusellm::cli
