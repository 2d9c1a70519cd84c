// Declares the `brain` operator namespace. Exactly one TORCH_LIBRARY block may exist per
// namespace; every op family adds its schemas with TORCH_LIBRARY_FRAGMENT(brain, m) in
// csrc/ops/<family>.cpp, and its kernels with TORCH_LIBRARY_IMPL(brain, <Key>, m).
#include <torch/library.h>

TORCH_LIBRARY(brain, m) {}
