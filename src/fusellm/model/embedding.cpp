// Token embedding (nn.Embedding) and, for GPT-2, learned positions (GPT2Model's wte + wpe):
//   x[t] = E[ids[t]] (+ P[positions[t]])
// and nn.Embedding's backward, a scatter-add of the rows into the table's gradient:
//   dE[ids[t]] += dx[t]
// The backward runs the tokens in order on one thread: two tokens with the same id add into the
// same row, and a fixed order keeps the result independent of the thread count.
#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
           ConstMatView pos_table, MatView x) {
  const int64_t T = int64_t(ids.size()), Hd = x.cols;
  if (x.rows != T || table.cols != Hd || (pos_table.rows > 0 && (pos_table.cols != Hd || int64_t(positions.size()) != T)))
    fail("embed: shapes do not agree: {} ids, table [{}, {}], positions table [{}, {}], x [{}, {}]", T, table.rows,
         table.cols, pos_table.rows, pos_table.cols, x.rows, x.cols);
  const bool learned = pos_table.rows > 0;
#pragma omp parallel for schedule(static) if (T >= 64)
  for (int64_t t = 0; t < T; ++t) {
    const float* e = table.row(ids[t]);
    float* xr = x.row(t);
    if (learned) {
      const float* p = pos_table.row(positions[t]);
#pragma omp simd
      for (int64_t c = 0; c < Hd; ++c) xr[c] = e[c] + p[c];
    } else {
      std::memcpy(xr, e, sizeof(float) * size_t(Hd));
    }
  }
}

void embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable) {
  const int64_t T = int64_t(ids.size()), Hd = dx.cols;
  if (dx.rows != T || dtable.cols != Hd)
    fail("embedding_backward: shapes do not agree: {} ids, dx [{}, {}], dtable [{}, {}]", T, dx.rows, dx.cols,
         dtable.rows, dtable.cols);
  for (int64_t t = 0; t < T; ++t) {
    float* row = dtable.row(ids[t]);
    const float* d = dx.row(t);
    for (int64_t c = 0; c < Hd; ++c) row[c] += d[c];
  }
}

}  // namespace fusellm::model
