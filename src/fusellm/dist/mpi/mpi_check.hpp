#pragma once
// Every MPI call is checked. The communicators' error handler is MPI_ERRORS_RETURN (set by
// MpiSession and MpiTransport; MPI-3.1 section 8.3: the default, MPI_ERRORS_ARE_FATAL, aborts
// the whole job with MPI's own message), so a failed call returns its error code and
// FUSELLM_MPI_CHECK turns it into fusellm::Error naming the call, file:line, this process's
// world rank and MPI_Error_string's text.
#include <mpi.h>

namespace fusellm::dist::mpi {

void check(int rc, const char* call, const char* file, int line);

}  // namespace fusellm::dist::mpi

#define FUSELLM_MPI_CHECK(call) ::fusellm::dist::mpi::check((call), #call, __FILE__, __LINE__)
