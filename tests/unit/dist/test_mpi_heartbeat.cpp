// The heartbeat (dist/mpi/heartbeat.hpp) under mpirun at 1, 2 and 3 ranks (fusellm_mpi_tests):
// a rank busy for longer than dead_after without calling MPI is not declared dead (its heartbeat
// thread answers), and stop() leaves nothing behind (a second heartbeat runs after the first).
// A failure here is an MPI_Abort from the heartbeat, which fails mpirun. A silent rank ending the
// job is tested on whole jobs (tests/integration/test_faults.cpp: kill -STOP).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "fusellm/dist/mpi/heartbeat.hpp"
#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"

using namespace fusellm;
using namespace fusellm::dist;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<mpi::MpiTransport> g_world;

RankStatus status_of(const mpi::MpiTransport& world) {
  std::vector<std::string> hosts;
  for (int r = 0; r < world.size(); ++r) hosts.push_back(world.host(r));
  return RankStatus(JobConfig{}, world.rank(), hosts);
}

}  // namespace

TEST(Heartbeat, ABusyRankIsNotDeclaredDead) {
  const RankStatus status = status_of(*g_world);
  mpi::Heartbeat beat(status, 100ms, 800ms);
  // The last rank computes (no MPI call) for three dead_after periods; the others wait for it.
  if (g_world->rank() == g_world->size() - 1) std::this_thread::sleep_for(2500ms);
  g_world->barrier();
  beat.stop();
}

TEST(Heartbeat, StopLeavesNothingBehind) {
  const RankStatus status = status_of(*g_world);
  for (int round = 0; round < 3; ++round) {
    mpi::Heartbeat beat(status, 50ms, 2000ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(120 * (g_world->rank() + 1)));  // ranks stop apart
    g_world->barrier();
    beat.stop();
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mpi::MpiSession session;
  if (!session.thread_multiple()) {
    std::fprintf(stderr, "this MPI library does not give MPI_THREAD_MULTIPLE: the heartbeat cannot run\n");
    return 1;
  }
  g_world = mpi::MpiTransport::world();
  g_world->set_timeout(std::chrono::seconds(30));
  const int rc = RUN_ALL_TESTS();
  g_world.reset();  // before MPI_Finalize
  return rc;
}
