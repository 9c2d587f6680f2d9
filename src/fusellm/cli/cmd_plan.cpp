// fusellm plan --job J [--set section.key=value ...] [--world-size]: what the MPI job of J needs
// before anything runs, for a user writing a launch line and for slurm/launch.sh: the number of
// ranks (JobConfig::world_size: student_ranks + sum(teacher_ranks)), the rank map the job will
// print at start (dist::Topology, the same code), and the launch lines. --world-size prints only
// the number, for scripts (`sbatch --ntasks=$(fusellm plan --job J --world-size) ...`).
// Refuses a job whose [topology] does not fit its sources, as every rank of the job would.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/dist/topology.hpp"

namespace fusellm::cli {
namespace {

// A word as the shell reads it back: as is when it is safe, else in single quotes.
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `--job J --set a=b ...` as the user gave them, so the printed lines run the same job.
std::string job_words(const JobArgs& args) {
  std::string w = "--job " + shell_word(args.job);
  for (const std::string& o : args.overrides) w += " --set " + shell_word(o);
  return w;
}

std::string teachers_line(const JobConfig& job, const dist::Topology& t) {
  std::string line;
  for (int j = 0; j < t.sources(); ++j)
    line += fmt::format("{}source \"{}\": replicas x stages = {} x {} = {} rank{}", j ? "; " : "",
                        job.sources[size_t(j)].name, t.replicas(j), t.stages(j), t.replicas(j) * t.stages(j),
                        t.replicas(j) * t.stages(j) == 1 ? "" : "s");
  return line;
}

void print_plan(const JobArgs& args, const JobConfig& job, const dist::Topology& t) {
  const int n = t.world_size();
  std::printf("job \"%s\" (%s) needs %d MPI ranks: [topology].student_ranks + sum([topology].teacher_ranks)\n",
              job.job.name.c_str(), job.file.c_str(), n);
  std::printf("students: %d rank%s ([topology].student_ranks), %lld micro-batches each per step\n", t.student_ranks(),
              t.student_ranks() == 1 ? "" : "s", static_cast<long long>(job.grad_accum_steps()));
  std::printf("teachers: %d ranks ([topology].teacher_ranks): %s\n", n - t.student_ranks(), teachers_line(job, t).c_str());
  std::fputs(t.rank_map([](int r) { return fmt::format("rank {}", r); }).c_str(), stdout);
  const std::string words = job_words(args);
  std::printf("launch, from this directory:\n");
  std::printf("  sbatch --ntasks=%d slurm/one_node.sbatch %s\n", n, words.c_str());
  std::printf("  srun --mpi=pmix --kill-on-bad-exit=1 -n %d fusellm train %s\n", n, words.c_str());
  std::printf("  mpirun -np %d fusellm train %s\n", n, words.c_str());
}

}  // namespace

void add_plan(CLI::App& app) {
  struct PlanCli {
    JobArgs job;
    bool world_size_only = false;
  };
  auto o = std::make_shared<PlanCli>();
  auto* sub = app.add_subcommand("plan", "the ranks a job needs (world size, rank map) and how to launch it");
  add_job_options(sub, o->job);
  sub->add_flag("--world-size", o->world_size_only, "print only the number of MPI ranks the job needs");
  sub->callback([o] {
    const JobConfig job = load_job(o->job);
    // Topology::of checks the layout (replicas divide teacher_ranks, one entry per source) as
    // every rank of the job does at start.
    const dist::Topology t = dist::Topology::of(job, int(job.world_size()));
    if (o->world_size_only)
      std::printf("%d\n", t.world_size());
    else
      print_plan(o->job, job, t);
  });
}

}  // namespace fusellm::cli
