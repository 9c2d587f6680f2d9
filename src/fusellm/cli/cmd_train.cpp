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
#include <string>
#include <utility>
#include <vector>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/input.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/core/stop_signal.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/dist/mpi/heartbeat.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"
#include "fusellm/dist/rank_status.hpp"
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

std::vector<std::string> hosts_of(const dist::mpi::MpiTransport& world) {
  std::vector<std::string> hosts;
  for (int r = 0; r < world.size(); ++r) hosts.push_back(world.host(r));
  return hosts;
}

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

// One rank's run. Under mpirun/srun: one rank of the MPI job (train/run_job.hpp), and a rank that
// fails, from the first MPI call to the last, ends the whole job at once (MPI_Abort) naming
// itself, so no other rank waits for it; one that stops answering is ended by the heartbeat, and
// every wait by [comm].timeout_seconds. Rank 0 prints the result before the ranks leave together:
// after a stop, every rank exits 75, and mpirun ends the ranks still running as soon as the first
// one exits non-zero, so an output printed after the barrier could be lost. Returns the result.
JobRankResult run_rank(const JobConfig& job, const TrainOptions& opt, const std::string& dump_path) {
  const auto session = dist::mpi::MpiSession::if_launched();
  const bool mpi_job = session && session->world_size() > 1;
  std::unique_ptr<dist::mpi::MpiTransport> world;
  std::optional<dist::RankStatus> status;
  std::optional<dist::mpi::Heartbeat> heartbeat;
  std::optional<StepDump> dump;
  JobRankResult jr;
  try {
    if (mpi_job) {
      world = dist::mpi::MpiTransport::world();
      world->set_timeout(std::chrono::seconds(job.comm.timeout_seconds));
      status.emplace(job, world->rank(), hosts_of(*world));
      if (session->thread_multiple())
        heartbeat.emplace(*status, std::chrono::seconds(job.comm.heartbeat_seconds),
                          std::chrono::seconds(job.comm.dead_after_seconds));
    }
    const int rank = world ? world->rank() : 0;
    if (!dump_path.empty()) dump.emplace(rank == 0 ? dump_path : fmt::format("{}.rank{}", dump_path, rank));
    jr = run_job(job, opt, dump ? &*dump : nullptr, world.get());
    if (rank == 0) {
      print_result(jr.train, opt);
      std::fflush(stdout);
    }
    if (world) world->barrier();  // the ranks leave together, the heartbeat watching until then
    if (heartbeat) heartbeat->stop();
  } catch (const std::exception& e) {
    if (!mpi_job) throw;
    // "rank 2 (teacher of source 'neox' replica 0 stage 0, host h, step 13): ..."
    const std::string me = status ? status->me() : fmt::format("rank {}", session->world_rank());
    std::fprintf(stderr, "fusellm: error: %s: %s\n", me.c_str(), e.what());
    std::fflush(stderr);
    dist::mpi::MpiSession::abort(1);
  }
  return jr;
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
    const JobRankResult jr = run_rank(job, opt, o->dump);
    if (jr.stopped) throw ExitStatus{kExitRequeue};
  });
}

}  // namespace fusellm::cli
