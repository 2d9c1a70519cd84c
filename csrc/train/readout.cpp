#include <brain/train/readout.h>

#include <torch/torch.h>

namespace brain::train {

namespace {

// [..., n] -> [samples, n], checking the last dimension.
at::Tensor as_samples(const at::Tensor& t, const char* name, const char* what) {
  TORCH_CHECK(t.dim() >= 1, "ridge: ", name, " must be [..., ", what, "], got a scalar");
  return t.reshape({-1, t.size(-1)});
}

at::Tensor cholesky_solve_spd(const at::Tensor& A, const at::Tensor& B, bool* ok) {
  auto [L, info] = torch::linalg_cholesky_ex(A);
  *ok = info.item<int64_t>() == 0;  // an offline trainer: one sync per fit is fine
  return *ok ? torch::cholesky_solve(B, L) : at::Tensor();
}

}  // namespace

RidgeSolution ridge(const at::Tensor& X_in, const at::Tensor& Y_in, double alpha, bool fit_bias) {
  TORCH_CHECK(alpha >= 0, "ridge: alpha must be >= 0, got ", alpha);
  TORCH_CHECK(X_in.dim() >= 1 && Y_in.dim() >= 1, "ridge: X and Y must have a feature dimension");
  TORCH_CHECK(X_in.sizes().slice(0, X_in.dim() - 1) == Y_in.sizes().slice(0, Y_in.dim() - 1),
              "ridge: X ", X_in.sizes(), " and Y ", Y_in.sizes(),
              " must have the same leading (sample) dimensions");
  const at::Tensor X = as_samples(X_in, "X", "n_features").to(at::kDouble);
  const at::Tensor Y = as_samples(Y_in, "Y", "n_out").to(at::kDouble);
  const int64_t n = X.size(0), f = X.size(1);
  TORCH_CHECK(n > 0, "ridge: no samples");
  at::Tensor x_mean = torch::zeros({f}, X.options()), y_mean = torch::zeros({Y.size(1)}, Y.options());
  if (fit_bias) {
    x_mean = X.mean(0);
    y_mean = Y.mean(0);
  }
  const at::Tensor Xc = X - x_mean, Yc = Y - y_mean;
  at::Tensor W;
  bool ok = false;
  if (alpha > 0) {
    if (n >= f) {
      const at::Tensor A = Xc.t().matmul(Xc) + alpha * torch::eye(f, X.options());
      W = cholesky_solve_spd(A, Xc.t().matmul(Yc), &ok);
    } else {  // dual: W = Xc^T (Xc Xc^T + alpha I)^-1 Yc, an n x n system
      const at::Tensor K = Xc.matmul(Xc.t()) + alpha * torch::eye(n, X.options());
      const at::Tensor C = cholesky_solve_spd(K, Yc, &ok);
      if (ok) W = Xc.t().matmul(C);
    }
  }
  if (!ok) {
    // Least squares with the same penalty, as an augmented system [Xc; sqrt(alpha) I] W = [Yc; 0].
    at::Tensor A = Xc, B = Yc;
    if (alpha > 0) {
      A = torch::cat({Xc, std::sqrt(alpha) * torch::eye(f, X.options())});
      B = torch::cat({Yc, torch::zeros({f, Y.size(1)}, Y.options())});
    }
    W = std::get<0>(torch::linalg_lstsq(A, B, c10::nullopt, std::string("gelsd")));
  }
  const at::Tensor b = y_mean - x_mean.matmul(W);
  return {W.to(X_in.options()), b.to(X_in.options())};
}

Readout::Readout(int64_t n_features, int64_t n_out, at::TensorOptions options)
    : n_features_(n_features), n_out_(n_out) {
  TORCH_CHECK(n_features > 0 && n_out > 0, "Readout: sizes must be positive, got ", n_features,
              " -> ", n_out);
  weight_ = register_parameter("weight", torch::zeros({n_features, n_out}, options), false);
  bias_ = register_parameter("bias", torch::zeros({n_out}, options), false);
}

at::Tensor Readout::forward(const at::Tensor& r) const {
  TORCH_CHECK(r.dim() >= 1 && r.size(-1) == n_features_, "Readout: features must be [..., ",
              n_features_, "], got ", r.sizes());
  return r.to(weight_.scalar_type()).matmul(weight_) + bias_;
}

void Readout::fit_ridge(const at::Tensor& X, const at::Tensor& Y, double alpha) {
  TORCH_CHECK(X.size(-1) == n_features_ && Y.size(-1) == n_out_, "Readout::fit_ridge: expected X [..., ",
              n_features_, "] and Y [..., ", n_out_, "], got ", X.sizes(), " and ", Y.sizes());
  const auto sol = ridge(X.to(weight_.options()), Y.to(weight_.options()), alpha, true);
  torch::NoGradGuard no_grad;
  weight_.copy_(sol.weight);
  bias_.copy_(sol.bias);
}

namespace {

std::pair<at::Tensor, at::Tensor> batch_pair(const char* who, const Readout& readout, const at::Tensor& r,
                                             const at::Tensor& y, const at::TensorOptions& o) {
  const at::Tensor rb = r.dim() == 1 ? r.unsqueeze(0) : r;
  const at::Tensor yb = y.dim() == 1 ? y.unsqueeze(0) : y;
  TORCH_CHECK(rb.dim() == 2 && rb.size(1) == readout.n_features(), who, ": r must be [", readout.n_features(),
              "] or [B, ", readout.n_features(), "], got ", r.sizes());
  TORCH_CHECK(yb.dim() == 2 && yb.size(1) == readout.n_out() && yb.size(0) == rb.size(0), who,
              ": y must be [", readout.n_out(), "] or [B, ", readout.n_out(), "] matching r, got ", y.sizes());
  return {rb.to(o), yb.to(o)};
}

}  // namespace

RLS::RLS(Readout& readout, double alpha, double forgetting) : readout_(readout), forgetting_(forgetting) {
  TORCH_CHECK(alpha > 0, "RLS: alpha (P0 = I / alpha) must be > 0, got ", alpha);
  TORCH_CHECK(forgetting > 0 && forgetting <= 1, "RLS: forgetting must be in (0, 1], got ", forgetting);
  P_ = torch::eye(readout.n_features() + 1, readout.weight().options()) / alpha;
}

at::Tensor RLS::update(const at::Tensor& r, const at::Tensor& y) {
  torch::NoGradGuard no_grad;
  const auto& o = readout_.weight().options();
  auto [rb, yb] = batch_pair("RLS", readout_, r, y, o);
  const at::Tensor ra = torch::cat({rb, torch::ones({rb.size(0), 1}, o)}, 1);  // bias feature
  const at::Tensor W = torch::cat({readout_.weight(), readout_.bias().unsqueeze(0)}, 0);  // [F+1, O]
  const at::Tensor err = ra.matmul(W) - yb;
  // Block RLS: K = P Ra^T (lambda I + Ra P Ra^T)^-1, W -= K E, P = (P - K Ra P) / lambda.
  const at::Tensor PRt = P_.matmul(ra.t());                                   // [F+1, B]
  at::Tensor K;
  if (rb.size(0) == 1) {  // FORCE's usual single-sample step: S is a number
    K = PRt / (forgetting_ + ra.matmul(PRt));
  } else {
    const at::Tensor S = forgetting_ * torch::eye(rb.size(0), o) + ra.matmul(PRt);  // [B, B]
    K = torch::linalg_solve(S, PRt.t()).t();                                       // [F+1, B]
  }
  const at::Tensor W_new = W - K.matmul(err);
  // P - K (P Ra^T)^T, symmetrised against rounding drift: (P - K PRt^T) is symmetric in exact
  // arithmetic, and averaging it with its transpose costs one pass.
  P_ = P_ - K.matmul(PRt.t());
  P_ = (P_ + P_.t()) * (0.5 / forgetting_);
  readout_.weight().copy_(W_new.narrow(0, 0, readout_.n_features()));
  readout_.bias().copy_(W_new[readout_.n_features()]);
  return r.dim() == 1 ? err.squeeze(0) : err;
}

LMS::LMS(Readout& readout, double lr) : readout_(readout), lr_(lr) {
  TORCH_CHECK(lr > 0, "LMS: lr must be > 0, got ", lr);
}

at::Tensor LMS::update(const at::Tensor& r, const at::Tensor& y) {
  torch::NoGradGuard no_grad;
  auto [rb, yb] = batch_pair("LMS", readout_, r, y, readout_.weight().options());
  const at::Tensor err = readout_.forward(rb) - yb;
  const double scale = lr_ / static_cast<double>(rb.size(0));
  readout_.weight().sub_(scale * rb.t().matmul(err));
  readout_.bias().sub_(scale * err.sum(0));
  return r.dim() == 1 ? err.squeeze(0) : err;
}

}  // namespace brain::train
