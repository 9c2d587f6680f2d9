// The MPI transport against the shared Transport contract (transport_cases.hpp), plus the
// topology's split over MPI. Runs under mpirun at several rank counts (tests/CMakeLists.txt,
// fusellm_mpi_tests); every rank runs every test, and a failure on any rank fails mpirun.
#include <gtest/gtest.h>

#include <memory>

#include "error_of.hpp"
#include "fusellm/dist/mpi/mpi_check.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"
#include "fusellm/dist/topology.hpp"
#include "transport_cases.hpp"

using namespace fusellm;
using namespace fusellm::dist;

namespace {

std::unique_ptr<mpi::MpiTransport> g_world;

// The world transport, with a timeout so that a broken test fails instead of hanging.
Transport& world() { return *g_world; }

}  // namespace

FUSELLM_TRANSPORT_TESTS(MpiTransport, [](auto body) { body(world()); })

TEST(MpiSession, SeesTheLauncher) {
  // ctest starts this binary with mpirun, which the session must recognize.
  EXPECT_TRUE(mpi::MpiSession::launched());
}

TEST(MpiCheck, NamesTheCallTheFileTheRankAndMpisText) {
  const std::string e = fusellm::testing::error_of([] { mpi::check(MPI_ERR_RANK, "MPI_Isend(...)", "x.cpp", 7); });
  EXPECT_NE(e.find("x.cpp:7: world rank "), std::string::npos) << e;
  EXPECT_NE(e.find("MPI_Isend(...) failed: "), std::string::npos) << e;
  EXPECT_NE(e.find("rank"), std::string::npos) << e;  // MPI_Error_string: "MPI_ERR_RANK: invalid rank"
  EXPECT_EQ(fusellm::testing::error_of([] { FUSELLM_MPI_CHECK(MPI_SUCCESS); }), "");
}

TEST(MpiTransport, DescribesRanksWithTheirHosts) {
  EXPECT_EQ(world().kind(), "mpi");
  for (int r = 0; r < world().size(); ++r) {
    const std::string d = world().describe(r);
    EXPECT_EQ(d.rfind(fmt::format("rank {} (host ", r), 0), 0u) << d;
    EXPECT_FALSE(g_world->host(r).empty());
  }
  EXPECT_NE(fusellm::testing::error_of([] { world().describe(world().size()); }), "");
}

TEST(MpiTransport, SplitRefusesNegativeColor) {
  // Refused locally on every rank, before MPI_Comm_split, so nobody waits.
  EXPECT_NE(fusellm::testing::error_of([] { world().split(-1, 0); }), "");
}

// A job for `world_size` ranks: students first, then one teacher group of 1 or 2 ranks.
JobConfig job_for(int world_size) {
  JobConfig job;
  job.file = "job.toml";
  if (world_size >= 2) {
    job.sources.push_back({.name = "a", .path = "a", .replicas = world_size >= 3 ? 2 : 1});
    job.topology.teacher_ranks = {world_size >= 3 ? 2 : 1};
  }
  job.topology.student_ranks = world_size - (world_size >= 3 ? 2 : world_size >= 2 ? 1 : 0);
  return job;
}

TEST(MpiTopology, SplitsWorldIntoGroups) {
  const Topology topo = Topology::of(job_for(world().size()), world().size());
  const RankRole& me = topo.role(world().rank());
  auto group = topo.split(world());
  std::vector<double> members{1.0};
  group->all_reduce(members);
  int expected = 0;
  for (int r = 0; r < world().size(); ++r) expected += topo.group_color(r) == topo.group_color(world().rank());
  EXPECT_EQ(members[0], expected);
  EXPECT_EQ(group->rank(), me.rank_in_group);
  topo.print_rank_map(world());
  world().barrier();
}

TEST(MpiTopology, EveryRankRefusesAWorldOfTheWrongSize) {
  // A job that needs one rank more than mpirun started: every rank refuses it on its own, before
  // any communication; the all-reduce then confirms that all of them did.
  const std::string err = fusellm::testing::error_of([] { Topology::of(job_for(world().size() + 1), world().size()); });
  EXPECT_NE(err.find(fmt::format("mpirun -np {}", world().size() + 1)), std::string::npos) << err;
  std::vector<double> refused{err.empty() ? 0.0 : 1.0};
  world().all_reduce(refused);
  EXPECT_EQ(refused[0], world().size());
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mpi::MpiSession session;  // always: this binary is meant for mpirun (-np 1 included)
  g_world = mpi::MpiTransport::world();
  g_world->set_timeout(std::chrono::seconds(30));
  const int rc = RUN_ALL_TESTS();
  g_world.reset();  // before MPI_Finalize
  return rc;
}
