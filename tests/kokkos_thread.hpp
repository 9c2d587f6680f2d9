#pragma once
// Kokkos from a thread other than the one that initialized it, for tests whose ranks are threads
// (dist/inproc/inproc_transport.hpp). Kokkos 3.x's OpenMP backend keeps its instance in a
// thread-local pointer (Kokkos::Impl::t_openmp_instance, OpenMP/Kokkos_OpenMP_Exec.hpp), so any
// other thread's View or parallel dispatch fails with "uninitialized execution space"; Kokkos 4
// dropped that. A KokkosLender taken on the main thread lends its instance to ONE other thread at
// a time (lend() there): the instance is not safe for two threads dispatching at once, so a test
// lends it only to the one rank that runs Kokkos while the main thread waits.
#include <Kokkos_Core.hpp>

namespace fusellm::testing {

class KokkosLender {
 public:
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
  KokkosLender() : instance_(Kokkos::Impl::t_openmp_instance) {}
  void lend() const { Kokkos::Impl::t_openmp_instance = instance_; }

 private:
  Kokkos::Impl::OpenMPExec* instance_;
#else
  void lend() const {}
#endif
};

}  // namespace fusellm::testing
