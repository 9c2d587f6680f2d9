// Scalar entry to fast_math.hpp's exp8, compiled with the library's architecture flags (so that
// callers built without them, such as the tests, need not include the vector header).
#include "fusellm/model/fast_math.hpp"

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

float fast_exp(float x) { return exp8(splat8(x))[0]; }

}  // namespace fusellm::model
