// Pipeline-parallel teachers over MPI: the tiny job's Llama and GPT-NeoX sources, each in as many
// stages as mpirun started ranks (one process per stage, hidden states and credits as MPI
// messages), give on the last rank the rows of one Teacher, bit for bit. Runs under mpirun at
// -np 1, 2 and 3 (tests/CMakeLists.txt, fusellm_mpi_tests).
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <memory>

#include "fusellm/dist/mpi/mpi_session.hpp"
#include "fusellm/dist/mpi/mpi_transport.hpp"
#include "fusellm/dist/stage_pipeline.hpp"
#include "unit/dist/stage_cases.hpp"

using namespace fusellm;
using namespace fusellm::dist;
using namespace fusellm::dist::stage_cases;

namespace {

std::unique_ptr<mpi::MpiTransport> g_world;

class MpiStagePipeline : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiStagePipeline, StagesGiveTheRowsOfOneTeacher) {
  Transport& world = *g_world;
  const std::string source = GetParam();
  const int64_t stages = world.size();
  StagePipeline p(fx().staged(source, stages), source, fx().toks, fx().vocab_map(source), &world, 0);
  std::vector<TeacherRows> got;
  for (const auto& b : batches())
    for (auto& r : p.run(b)) got.push_back(std::move(r));
  p.flush();
  if (!p.last()) {
    EXPECT_TRUE(got.empty());
    return;
  }
  const std::vector<TeacherRows> want = reference_rows(source);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) expect_same_rows(got[i], want[i]);
}

INSTANTIATE_TEST_SUITE_P(TinyJob, MpiStagePipeline, ::testing::Values("llama", "neox"));

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mpi::MpiSession session;
  Kokkos::ScopeGuard kokkos(argc, argv);  // the last stage's Teacher scores and aligns with Kokkos
  g_world = mpi::MpiTransport::world();
  g_world->set_timeout(std::chrono::seconds(40));
  const int rc = RUN_ALL_TESTS();
  g_world.reset();  // before MPI_Finalize
  return rc;
}
