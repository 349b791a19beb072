// A user's program: includes the umbrella header from the installed package and runs one op.
#include <jetmoe/jetmoe.hpp>

#include <cmath>
#include <cstdio>

int main() {
  jetmoe::exec::cpu cpu{.threads = 1};
  auto x = jetmoe::tensor<float, 2>::zeros(cpu, jetmoe::make_dims(2, 4));  // (T=2, H=4)
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < 4; ++h) x(t, h) = static_cast<float>(t + h + 1);
  jetmoe::ops::softmax(cpu, x.view());
  const float row_sum = x(0, 0) + x(0, 1) + x(0, 2) + x(0, 3);
  std::printf("softmax row sum %.6f\n", row_sum);
  return std::fabs(row_sum - 1.0f) < 1e-5f ? 0 : 1;
}
