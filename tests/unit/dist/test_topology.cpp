// Topology: the role of every world rank, the work assignment, and the refusals (naming the job
// file, the [topology] fields and the mpirun -np to use).
#include <gtest/gtest.h>

#include <algorithm>

#include "error_of.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/rank_status.hpp"
#include "fusellm/dist/topology.hpp"

using namespace fusellm;
using namespace fusellm::dist;
using fusellm::testing::error_of;
using Role = RankRole::Role;

namespace {

// sources: (name, replicas, teacher_ranks)
struct Src {
  std::string name;
  int64_t replicas, ranks;
};
JobConfig job_of(std::vector<Src> sources, int64_t students) {
  JobConfig job;
  job.file = "jobs/t.toml";
  for (const auto& s : sources) {
    job.sources.push_back({.name = s.name, .path = s.name, .replicas = s.replicas});
    job.topology.teacher_ranks.push_back(s.ranks);
  }
  job.topology.student_ranks = students;
  return job;
}

}  // namespace

TEST(Topology, StudentsFirstThenTeacherGroupsInSourceOrder) {
  const Topology t = Topology::of(job_of({{"a", 1, 1}, {"b", 1, 1}}, 2), 4);
  EXPECT_EQ(t.world_size(), 4);
  EXPECT_EQ(t.role(0), (RankRole{Role::student, -1, 0, 0, 0}));
  EXPECT_EQ(t.role(1), (RankRole{Role::student, -1, 0, 0, 1}));
  EXPECT_EQ(t.role(2), (RankRole{Role::teacher, 0, 0, 0, 0}));
  EXPECT_EQ(t.role(3), (RankRole{Role::teacher, 1, 0, 0, 0}));
  EXPECT_EQ(t.group_color(0), 0);
  EXPECT_EQ(t.group_color(3), 2);
}

TEST(Topology, ReplicasAreContiguousRanksOfTheGroup) {
  // one student, source "a": 2 replicas, source "b": 2 replicas of 2 ranks (the stages to be)
  const Topology t = Topology::of(job_of({{"a", 2, 2}, {"b", 2, 4}}, 1), 7);
  EXPECT_EQ(t.role(1), (RankRole{Role::teacher, 0, 0, 0, 0}));
  EXPECT_EQ(t.role(2), (RankRole{Role::teacher, 0, 1, 0, 1}));
  EXPECT_EQ(t.role(3), (RankRole{Role::teacher, 1, 0, 0, 0}));
  EXPECT_EQ(t.role(4), (RankRole{Role::teacher, 1, 0, 1, 1}));
  EXPECT_EQ(t.role(5), (RankRole{Role::teacher, 1, 1, 0, 2}));
  EXPECT_EQ(t.role(6), (RankRole{Role::teacher, 1, 1, 1, 3}));
  EXPECT_EQ(t.teacher_rank(1, 1, 0), 5);
  EXPECT_EQ(t.teacher_rank(0, 1), 2);
  EXPECT_NE(error_of([&] { t.teacher_rank(0, 2); }), "");
  EXPECT_NE(error_of([&] { t.role(7); }), "");
}

TEST(Topology, StudentsOnly) {
  const Topology t = Topology::of(job_of({}, 3), 3);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(t.role(r), (RankRole{Role::student, -1, 0, 0, r}));
}

TEST(Topology, OwnerStudentAndServingReplicaAreRoundRobin) {
  const Topology t = Topology::of(job_of({{"a", 3, 3}}, 2), 5);
  for (int64_t id = 0; id < 12; ++id) {
    EXPECT_EQ(t.owner_student(id), int(id % 2));
    EXPECT_EQ(t.serving_replica(0, id), int(id % 3));
  }
  EXPECT_NE(error_of([&] { t.serving_replica(1, 0); }), "");
  EXPECT_NE(error_of([&] { t.owner_student(-1); }), "");
}

TEST(Topology, WrongWorldSizeSaysWhatTheJobNeeds) {
  const std::string e = error_of([] { Topology::of(job_of({{"a", 1, 2}, {"b", 1, 1}}, 2), 4); });
  EXPECT_NE(e.find("jobs/t.toml"), std::string::npos) << e;
  EXPECT_NE(e.find("needs sum(teacher_ranks) + student_ranks = 5 MPI ranks"), std::string::npos) << e;
  EXPECT_NE(e.find("teacher_ranks = [2, 1] for sources \"a\", \"b\""), std::string::npos) << e;
  EXPECT_NE(e.find("student_ranks = 2"), std::string::npos) << e;
  EXPECT_NE(e.find("started on 4"), std::string::npos) << e;
  EXPECT_NE(e.find("mpirun -np 5"), std::string::npos) << e;
}

TEST(Topology, ReplicasMustDivideTeacherRanks) {
  const std::string e = error_of([] { Topology::of(job_of({{"a", 1, 1}, {"b", 2, 3}}, 1), 5); });
  EXPECT_NE(e.find("source \"b\" has 2 replicas"), std::string::npos) << e;
  EXPECT_NE(e.find("[topology].teacher_ranks[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("3 teacher ranks"), std::string::npos) << e;
}

TEST(Topology, TeacherRanksNeedOneEntryPerSource) {
  JobConfig job = job_of({{"a", 1, 1}}, 1);
  job.topology.teacher_ranks.push_back(1);
  EXPECT_NE(error_of([&] { Topology::of(job, 3); }).find("has 2 entries but the job has 1 [[source]]"), std::string::npos);
}

TEST(Topology, FieldsOfAParsedJobAreNamedByLine) {
  const std::string text = R"(
[job]
name = "t"
[[source]]
path = "a"
replicas = 2
stages = 2
[target]
init_from = "a"
[corpus]
path = "c.jsonl"
[topology]
teacher_ranks = 4
student_ranks = 2
)";
  JobConfig job;
  const std::string parse_err = error_of([&] { job = parse_job(text, "/tmp/t.toml", {.check_paths = false}); });
  if (!parse_err.empty()) GTEST_SKIP() << "this job text no longer parses: " << parse_err;
  const std::string e = error_of([&] { Topology::of(job, 3); });
  EXPECT_NE(e.find("/tmp/t.toml:13"), std::string::npos) << e;  // teacher_ranks' line
  EXPECT_NE(e.find("mpirun -np 6"), std::string::npos) << e;
}

TEST(Topology, RankMapNamesEveryRanksRoleAndHost) {
  const Topology t = Topology::of(job_of({{"a", 1, 1}, {"b", 2, 2}}, 2), 5);
  InprocWorld::run(5, [&](Transport& world) {
    if (world.rank() != 0) return;
    const std::string map = t.rank_map(world);
    EXPECT_NE(map.find(world.describe(0) + "  student 0 of 2  device auto"), std::string::npos) << map;
    EXPECT_NE(map.find(world.describe(2) + "  teacher  source \"a\" replica 0 stage 0  group rank 0"), std::string::npos)
        << map;
    EXPECT_NE(map.find(world.describe(4) + "  teacher  source \"b\" replica 1 stage 0  group rank 1"), std::string::npos)
        << map;
    EXPECT_EQ(std::count(map.begin(), map.end(), '\n'), 6);
  });
}

// The messages that end the MPI job name a rank by its role, host and (for this rank) step.
TEST(RankStatus, NamesRoleHostAndStep) {
  const JobConfig job = job_of({{"a", 1, 1}, {"b", 2, 4}}, 2);  // "b": 2 replicas of 2 stages
  const RankStatus s(job, 5, {"n0", "n0", "n1", "n1", "n2", "n2", "n3"});
  EXPECT_EQ(s.who(0), "rank 0 (student 0, host n0)");
  EXPECT_EQ(s.who(1), "rank 1 (student 1, host n0)");
  EXPECT_EQ(s.who(2), "rank 2 (teacher of source 'a' replica 0 stage 0, host n1)");
  EXPECT_EQ(s.who(4), "rank 4 (teacher of source 'b' replica 0 stage 1, host n2)");
  EXPECT_EQ(s.who(6), "rank 6 (teacher of source 'b' replica 1 stage 1, host n3)");
  RankStatus::set_step(13);
  EXPECT_EQ(s.me(), "rank 5 (teacher of source 'b' replica 1 stage 0, host n2, step 13)");
  // A world that does not fit [topology] (run_job refuses it, naming the fields): no roles.
  const RankStatus odd(job, 1, {"n0", "n1"});
  EXPECT_EQ(odd.who(0), "rank 0 (role unknown, host n0)");
  RankStatus::set_step(0);
}

TEST(Topology, SplitGivesEachRankItsGroup) {
  const Topology t = Topology::of(job_of({{"a", 1, 1}, {"b", 2, 2}}, 2), 5);
  InprocWorld::run(5, [&](Transport& world) {
    world.set_timeout(std::chrono::seconds(20));
    auto g = t.split(world);
    const int sizes[] = {2, 2, 1, 2, 2};
    EXPECT_EQ(g->size(), sizes[world.rank()]);
    EXPECT_EQ(g->rank(), t.role(world.rank()).rank_in_group);
  });
}
