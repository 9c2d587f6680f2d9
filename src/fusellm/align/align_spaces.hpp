#pragma once
// The Kokkos execution spaces the align host wrappers are compiled for (explicit instantiations
// in src/fusellm/align/*.cpp): every backend the Kokkos build enables, so tests run the same
// wrapper on Serial and OpenMP and a CUDA build runs it on the GPU.
#include <Kokkos_Core.hpp>

#if defined(KOKKOS_ENABLE_SERIAL)
#define FUSELLM_ALIGN_SERIAL(M) M(Kokkos::Serial)
#else
#define FUSELLM_ALIGN_SERIAL(M)
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
#define FUSELLM_ALIGN_OPENMP(M) M(Kokkos::OpenMP)
#else
#define FUSELLM_ALIGN_OPENMP(M)
#endif
#if defined(KOKKOS_ENABLE_THREADS)
#define FUSELLM_ALIGN_THREADS(M) M(Kokkos::Threads)
#else
#define FUSELLM_ALIGN_THREADS(M)
#endif
#if defined(KOKKOS_ENABLE_CUDA)
#define FUSELLM_ALIGN_CUDA(M) M(Kokkos::Cuda)
#else
#define FUSELLM_ALIGN_CUDA(M)
#endif

#define FUSELLM_ALIGN_FOR_EACH_SPACE(M) \
  FUSELLM_ALIGN_SERIAL(M) FUSELLM_ALIGN_OPENMP(M) FUSELLM_ALIGN_THREADS(M) FUSELLM_ALIGN_CUDA(M)
