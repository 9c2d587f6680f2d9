# NCCL and cuDNN ship no CMake config (TOOLCHAIN.md): find them next to the toolkit and wrap
# them in imported targets. NCCL has no static library.
find_library(FUSELLM_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
find_path(FUSELLM_NCCL_INC nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
add_library(fusellm::nccl UNKNOWN IMPORTED)
set_target_properties(fusellm::nccl PROPERTIES IMPORTED_LOCATION ${FUSELLM_NCCL_LIB}
  INTERFACE_INCLUDE_DIRECTORIES ${FUSELLM_NCCL_INC})
find_library(FUSELLM_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
find_path(FUSELLM_CUDNN_INC cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
add_library(fusellm::cudnn UNKNOWN IMPORTED)
set_target_properties(fusellm::cudnn PROPERTIES IMPORTED_LOCATION ${FUSELLM_CUDNN_LIB}
  INTERFACE_INCLUDE_DIRECTORIES ${FUSELLM_CUDNN_INC})
