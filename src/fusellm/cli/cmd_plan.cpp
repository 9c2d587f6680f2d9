// fusellm plan --job J [--set section.key=value ...] [--world-size]: what the MPI job of J needs
// before anything runs, for a user writing a launch line and for slurm/launch.sh: the number of
// ranks (JobConfig::world_size: student_ranks + sum(teacher_ranks)), the rank map the job will
// print at start (dist::Topology, the same code), the launch lines, and the memory each rank
// needs (dist/memory_plan.hpp: one table per role, each line with its formula; with
// --gpu-memory 40GiB, whether each rank fits). --world-size prints only the number, for scripts
// (`sbatch --ntasks=$(fusellm plan --job J --world-size) ...`); --json the world size, the rank
// roles and the memory tables as one JSON object.
// Refuses a job whose [topology] does not fit its sources, as every rank of the job would.
//
// The memory plan reads each model's config.json (no weights). For models not on this machine,
// `--shapes NAME=PRESET|DIR` gives a [[source]]'s (or, NAME "target", a target with its own path)
// shapes from a published config (dist::shape_presets: llama2-7b, open-llama-7b-v2, mpt-7b) or
// another directory's config.json; the job's input paths are then not checked (the paper's
// jobs/paper.toml is planned before its FILL_IN paths are filled in).
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/dist/memory_plan.hpp"
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

// "rank 3", "ranks 0-7", "ranks 4, 6".
std::string ranks_text(const std::vector<int>& r) {
  if (r.size() == 1) return fmt::format("rank {}", r[0]);
  bool contiguous = true;
  for (size_t i = 1; i < r.size(); ++i) contiguous = contiguous && r[i] == r[i - 1] + 1;
  if (contiguous && !r.empty()) return fmt::format("ranks {}-{}", r.front(), r.back());
  return fmt::format("ranks {}", fmt::join(r, ", "));
}

// gpu: bytes of one GPU, 0 when not given (no verdict).
std::string verdict(int64_t total, int64_t gpu) {
  if (gpu == 0) return "";
  if (total <= gpu)
    return fmt::format("  fits in {} ({:.1f}%)", dist::format_bytes(gpu), 100.0 * double(total) / double(gpu));
  return fmt::format("  does NOT fit in {}: {} over", dist::format_bytes(gpu), dist::format_bytes(total - gpu));
}

void print_memory(const JobConfig& job, const dist::MemoryPlan& plan, int64_t gpu) {
  std::printf("memory per rank ([train].dtype %s, %lld tokens per micro-batch; MiB = 2^20 bytes, GiB = 2^30):\n",
              std::string(train_dtype_name(job.train.dtype)).c_str(),
              static_cast<long long>(job.train.micro_batch * job.corpus.max_len));
  for (const dist::RoleMemory& r : plan.roles) {
    std::printf("%s (%s):\n", r.role.c_str(), ranks_text(r.ranks).c_str());
    for (const dist::MemoryLine& l : r.lines)
      std::printf("  %-38s %12s  %s\n", l.what.c_str(), dist::format_bytes(l.bytes).c_str(), l.formula.c_str());
    std::printf("  %-38s %12s%s\n", "total", dist::format_bytes(r.total()).c_str(), verdict(r.total(), gpu).c_str());
  }
  const std::string v = verdict(plan.largest(), gpu);
  std::printf("the largest rank needs %s%s\n", dist::format_bytes(plan.largest()).c_str(), v.c_str());
  std::printf("not counted: %s\n", fmt::format("{}", fmt::join(dist::not_counted(), "; ")).c_str());
}

nlohmann::json memory_json(const JobConfig& job, const dist::MemoryPlan& plan, int64_t gpu) {
  nlohmann::json out;
  out["world_size"] = plan.world_size;
  out["dtype"] = std::string(train_dtype_name(job.train.dtype));
  out["gpu_memory"] = gpu ? nlohmann::json(gpu) : nlohmann::json(nullptr);
  out["roles"] = nlohmann::json::array();
  for (const dist::RoleMemory& r : plan.roles) {
    nlohmann::json role{{"role", r.role}, {"ranks", r.ranks}, {"total", r.total()}};
    role["lines"] = nlohmann::json::array();
    for (const dist::MemoryLine& l : r.lines)
      role["lines"].push_back({{"what", l.what}, {"bytes", l.bytes}, {"formula", l.formula}});
    if (gpu) role["fits"] = r.total() <= gpu;
    out["roles"].push_back(std::move(role));
  }
  out["not_counted"] = dist::not_counted();
  return out;
}

// --shapes NAME=SPEC, each once.
std::map<std::string, std::string> shapes_map(const std::vector<std::string>& specs) {
  std::map<std::string, std::string> m;
  for (const std::string& s : specs) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
      fail("--shapes {}: expected NAME=PRESET or NAME=DIR (NAME a [[source]] name or \"target\")", s);
    if (!m.emplace(s.substr(0, eq), s.substr(eq + 1)).second) fail("--shapes {}: '{}' given twice", s, s.substr(0, eq));
  }
  return m;
}

struct PlanCli {
  JobArgs job;
  bool world_size_only = false;
  bool json = false;
  std::vector<std::string> shapes;
  std::string gpu_memory;
};

void run_plan(const PlanCli& o) {
  const std::map<std::string, std::string> shapes = shapes_map(o.shapes);
  // With --shapes the models may not be on this machine: plan without checking the input paths
  // (the memory plan does not depend on the options load_job(JobArgs) adds to the overrides).
  const JobConfig job = shapes.empty()
                            ? load_job(o.job)
                            : fusellm::load_job(o.job.job, {.check_paths = false, .overrides = o.job.overrides});
  // Topology::of checks the layout (replicas divide teacher_ranks, one entry per source) as
  // every rank of the job does at start.
  const dist::Topology t = dist::Topology::of(job, int(job.world_size()));
  if (o.world_size_only) {
    std::printf("%d\n", t.world_size());
    return;
  }
  const int64_t gpu = o.gpu_memory.empty() ? 0 : dist::parse_memory_size(o.gpu_memory);
  const dist::MemoryPlan mem = dist::plan_memory(job, dist::job_shapes(job, shapes));
  if (o.json) {
    std::printf("%s\n", memory_json(job, mem, gpu).dump().c_str());
    return;
  }
  print_plan(o.job, job, t);
  print_memory(job, mem, gpu);
}

}  // namespace

void add_plan(CLI::App& app) {
  auto o = std::make_shared<PlanCli>();
  auto* sub = app.add_subcommand("plan",
                                 "the ranks a job needs (world size, rank map, memory per rank) and how to launch it");
  add_job_options(sub, o->job);
  sub->add_flag("--world-size", o->world_size_only, "print only the number of MPI ranks the job needs");
  sub->add_flag("--json", o->json, "print the world size, the roles and the memory per rank as one JSON object");
  sub->add_option("--shapes", o->shapes,
                  "NAME=PRESET|DIR: the shapes of [[source]] NAME (or NAME \"target\") from a published config "
                  "(llama2-7b, open-llama-7b-v2, mpt-7b) or DIR/config.json, for models not on this machine; the "
                  "job's paths are then not checked (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--gpu-memory", o->gpu_memory, "memory of one GPU (e.g. 40GiB, 80GB): say whether each rank fits");
  sub->callback([o] { run_plan(*o); });
}

}  // namespace fusellm::cli
