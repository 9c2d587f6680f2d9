#include "fusellm/train/run_job.hpp"

#include <Kokkos_Core.hpp>

#include <optional>

#include <spdlog/spdlog.h>

#include "fusellm/core/error.hpp"
#include "fusellm/core/resident_memory.hpp"
#include "fusellm/dist/job_end.hpp"
#include "fusellm/dist/rank_agreement.hpp"
#include "fusellm/dist/rows_receiver.hpp"
#include "fusellm/dist/start_position.hpp"
#include "fusellm/dist/teacher_server.hpp"
#include "fusellm/dist/topology.hpp"
#include "fusellm/io/xxhash64.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/teach/teach.hpp"
#include "fusellm/train/train_step.hpp"

namespace fusellm {

namespace {

// What one rank of the MPI job holds besides its role's own objects.
struct RankSetup {
  const JobConfig& job;
  const TrainOptions& opt;
  dist::JobTransport& world;
  dist::Topology topo;
  std::unique_ptr<dist::Transport> group;
  std::shared_ptr<const JobTokenizers> toks;
  CorpusSegments segments;
  dist::RankFingerprints prints;
};

uint64_t tokenizers_print(const JobTokenizers& toks) {
  uint64_t h = 0;
  for (const auto& f : toks.fingerprints) h = xxh64(f, h);
  return h;
}

// Issue 11, "Bounded memory": credits bound what a teacher holds, whichever side is slower.
void report_served(const RankSetup& s, const dist::TeacherServer& server, JobRankResult& res) {
  const dist::RankRole& me = s.topo.role(s.world.rank());
  res.max_in_flight = server.max_in_flight();
  res.resident_first = server.resident_after_first();
  res.resident_end = resident_bytes();
  spdlog::info("rank {}: teacher of source \"{}\" replica {} stage {}: served {} micro-batches, at most {} in flight "
               "to one student ([topology].prefetch = {}); resident memory {:.1f} MiB after the first, {:.1f} MiB "
               "at the end",
               s.world.rank(), s.job.sources.at(size_t(me.source)).name, me.replica, me.stage, res.served,
               res.max_in_flight, s.job.topology.prefetch, double(res.resident_first) / (1 << 20),
               double(res.resident_end) / (1 << 20));
}

// A teacher rank: serves its replica's micro-batches, then waits for the students' end message;
// when the students stop early the message interrupts the serving (dist/job_end.hpp). Either way
// the rank then drains what was sent to it and not received.
JobRankResult serve_as_teacher(RankSetup& s, Sampler& sampler, dist::Timeline* tl) {
  const dist::RankRole& me = s.topo.role(s.world.rank());
  const SourceConfig& src = s.job.sources.at(size_t(me.source));
  std::unique_ptr<dist::StagePipeline> pipeline;
  if (fuses_teachers(s.job)) {
    pipeline = std::make_unique<dist::StagePipeline>(s.job, src.name, s.toks, vocab_map_path_for(s.job, src.name),
                                                     &s.world, s.topo.teacher_rank(me.source, me.replica, 0));
    if (pipeline->last()) s.prints.mapping = pipeline->teacher().mapping_fingerprint();
  }
  dist::agree_on_fingerprints(s.world, s.topo, s.prints);
  const dist::StartPosition start = dist::share_start_position(s.world, {});
  JobRankResult res;
  res.student = false;
  std::optional<dist::TeacherServer> server;  // outlives the drain, which completes its sends
  dist::watch_for_end(s.world);
  dist::JobEnd end;
  try {
    if (pipeline) {  // else CLM only: nothing to serve
      dist::restore_start_position(sampler, start);
      server.emplace(s.topo, s.world, me.source, std::move(pipeline), s.segments, sampler, s.job.topology.prefetch, tl);
      const int64_t steps = s.opt.stop_after > 0 ? s.opt.stop_after : sampler.total_steps();
      res.served = server->serve({start.step, steps});
      report_served(s, *server, res);
    }
    end = dist::wait_for_end(s.world);
  } catch (const dist::JobEnded& e) {
    end = e.end();
    spdlog::info("rank {}: teacher of source \"{}\": the students stopped after step {}; leaving", s.world.rank(),
                 src.name, end.step);
  }
  s.world.set_interrupt({});
  s.world.drain_unreceived();
  res.stopped = end.stopped;
  return res;
}

JobRankResult train_as_student(RankSetup& s, TrainObserver* observer, dist::Timeline* tl) {
  dist::agree_on_fingerprints(s.world, s.topo, s.prints);
  DataParallel dp;
  dp.world = &s.world;
  dp.students = s.group.get();
  dp.topology = &s.topo;
  dp.timeline = tl;
  dp.data = [&](int64_t vocab) {
    if (!fuses_teachers(s.job))
      return SegmentSource::from_segments(s.job, s.toks, std::make_shared<const CorpusSegments>(s.segments), vocab);
    std::vector<std::unique_ptr<RowsSource>> sources;
    std::vector<std::string> names;
    for (size_t j = 0; j < s.job.sources.size(); ++j) {
      names.push_back(s.job.sources[j].name);
      sources.push_back(std::make_unique<dist::RowsReceiver>(
          s.topo, s.world, int(j), names.back(), s.job.distill.top_k,
          s.job.distill.fusion == kernels::FusionMode::kMinCEPerPosition, tl));
    }
    return SegmentSource::from_rows(s.segments.lengths, std::move(names), std::move(sources), vocab);
  };
  JobRankResult res;
  res.train = train(s.job, s.opt, observer, &dp);
  res.stopped = !res.train.stopped_by.empty();
  if (s.world.rank() == 0) dist::announce_end(s.world, s.topo, {res.train.end_step, res.stopped});
  s.world.drain_unreceived();
  return res;
}

}  // namespace

JobRankResult run_job(const JobConfig& job, const TrainOptions& opt, TrainObserver* observer, dist::Transport* world) {
  if (!world || world->size() == 1) {
    JobRankResult r;
    r.train = train(job, opt, observer);
    r.stopped = !r.train.stopped_by.empty();
    return r;
  }
  if (!job.cache.dir.empty())
    fail("{}: [cache].dir is set: the MPI job is online (teachers send their rows as it runs); run offline "
         "training in one process, or remove [cache].dir", job.where("cache", "dir"));
  dist::JobTransport job_world(*world);
  RankSetup s{job, opt, job_world, dist::Topology::of(job, world->size()), nullptr, nullptr, {}, {}};
  s.group = s.topo.split(*world);
  s.topo.print_rank_map(*world);
  std::optional<Kokkos::ScopeGuard> kokkos;  // the Teacher's kernels need it
  if (!Kokkos::is_initialized()) kokkos.emplace();
  s.toks = std::make_shared<const JobTokenizers>(JobTokenizers::load(job, fuses_teachers(job)));
  s.segments = CorpusSegments::load_or_cut(job, *s.toks, opt.limit, world->rank() == 0);
  Sampler sampler(s.segments.lengths, SamplerSettings::of(job, opt.max_steps));
  s.prints.data = sampler.data_fingerprint();
  s.prints.tokenizers = tokenizers_print(*s.toks);
  const bool student = s.topo.role(world->rank()).role == dist::RankRole::Role::student;
  dist::Timeline tl(job.job.output_dir, world->rank(), student ? "student" : "teacher",
                    dist::Timeline::Clock::now());
  return student ? train_as_student(s, observer, &tl) : serve_as_teacher(s, sampler, &tl);
}

}  // namespace fusellm
