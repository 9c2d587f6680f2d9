#pragma once
// This process's resident memory (Linux: VmRSS in /proc/self/status, proc(5)), for the reports
// that show memory stays bounded (a teacher of the MPI job; issue 11, "Bounded memory").
#include <cstdint>

namespace fusellm {

// Resident set size in bytes; 0 where /proc/self/status cannot be read (not Linux).
int64_t resident_bytes();

}  // namespace fusellm
