#include "fusellm/dist/mpi/mpi_check.hpp"

#include "fusellm/core/error.hpp"

namespace fusellm::dist::mpi {

void check(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);  // unchecked: we are already reporting an error
  fail("{}:{}: world rank {}: {} failed: {} (MPI error {})", file, line, rank, call,
       len > 0 ? std::string(text, size_t(len)) : std::string("unknown error"), rc);
}

}  // namespace fusellm::dist::mpi
