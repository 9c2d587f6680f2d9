#include "fusellm/core/resident_memory.hpp"

#include <fstream>
#include <string>

namespace fusellm {

int64_t resident_bytes() {
  // "VmRSS:     12345 kB" (proc(5): the kernel always writes kB).
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      int64_t kb = 0;
      return in >> kb ? kb * 1024 : 0;
    }
    in.ignore(4096, '\n');
  }
  return 0;
}

}  // namespace fusellm
