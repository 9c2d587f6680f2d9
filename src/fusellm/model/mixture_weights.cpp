// Mixture weights: see mixture_weights.hpp.
#include "fusellm/model/mixture_weights.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "fusellm/core/error.hpp"

namespace fusellm {

std::vector<double> mixture_weights(const std::string& spec, size_t n_models, const std::string& option) {
  if (n_models == 0) fail("{}: no models to weight", option);
  if (spec.empty()) return std::vector<double>(n_models, 1.0 / double(n_models));
  std::vector<double> w;
  size_t begin = 0;
  while (true) {
    const size_t end = spec.find(',', begin);
    const std::string item = spec.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    // strtod over the whole item: "1x", "" and "nan" are refused, not read as a prefix.
    char* stop = nullptr;
    errno = 0;
    const double v = std::strtod(item.c_str(), &stop);
    if (item.empty() || stop != item.c_str() + item.size() || errno == ERANGE || !std::isfinite(v))
      fail("{} '{}': weight {} is '{}', expected a number", option, spec, w.size() + 1, item);
    if (v < 0) fail("{} '{}': weight {} is {}, expected a non-negative number", option, spec, w.size() + 1, item);
    w.push_back(v);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  if (w.size() != n_models)
    fail("{} '{}': {} weights for {} models, expected one per --model", option, spec, w.size(), n_models);
  double sum = 0;
  for (double v : w) sum += v;
  if (!(sum > 0)) fail("{} '{}': all weights are zero, expected at least one positive", option, spec);
  for (double& v : w) v /= sum;
  return w;
}

}  // namespace fusellm
