#include <brain/analysis/analysis.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/lbfgs.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

namespace brain::analysis {

SlowPointFinder::SlowPointFinder(std::function<at::Tensor(const at::Tensor&)> F, SlowPointOptions options)
    : F_(std::move(F)), options_(std::move(options)) {
  TORCH_CHECK(F_, "SlowPointFinder: the function is empty");
  const auto& o = options_.optimizer;
  TORCH_CHECK(o == "adam" || o == "adamw" || o == "sgd" || o == "rmsprop" || o == "adagrad" || o == "lbfgs",
              "SlowPointFinder: optimizer must be one of adam, adamw, sgd, rmsprop, adagrad, lbfgs; got '", o, "'");
  TORCH_CHECK(options_.lr > 0 && std::isfinite(options_.lr), "SlowPointFinder: lr must be positive, got ", options_.lr);
  TORCH_CHECK(options_.max_steps > 0, "SlowPointFinder: max_steps must be positive, got ", options_.max_steps);
  TORCH_CHECK(options_.check_every > 0, "SlowPointFinder: check_every must be positive, got ", options_.check_every);
  TORCH_CHECK(options_.tolerance > 0, "SlowPointFinder: tolerance must be positive, got ", options_.tolerance);
  TORCH_CHECK(options_.unique_tolerance >= 0, "SlowPointFinder: unique_tolerance must be >= 0");
  TORCH_CHECK(options_.outlier_threshold > 0, "SlowPointFinder: outlier_threshold must be positive (inf keeps all)");
}

at::Tensor SlowPointFinder::loss(const at::Tensor& x) const {
  const auto y = F_(x);
  TORCH_CHECK(y.defined() && y.sizes() == x.sizes(), "SlowPointFinder: the function must map states ", x.sizes(),
              " to the same shape, got ", y.defined() ? y.sizes() : at::IntArrayRef{});
  const auto r = options_.discrete ? y - x : y;
  return 0.5 * (r * r).sum(1);
}

at::Tensor SlowPointFinder::jacobians(const at::Tensor& states) const {
  at::AutoGradMode enable(true);
  const auto x = states.detach().clone().requires_grad_(true);
  const auto y = F_(x);
  TORCH_CHECK(y.defined() && y.sizes() == x.sizes(), "SlowPointFinder: the function must map states ", x.sizes(),
              " to the same shape");
  const int64_t K = x.size(0), D = x.size(1);
  auto J = at::zeros({K, D, D}, x.options());
  if (!y.requires_grad()) return J;
  for (int64_t i = 0; i < D; ++i) {
    const auto g = torch::autograd::grad({y.select(1, i).sum()}, {x}, {}, /*retain_graph=*/true, false, true)[0];
    if (g.defined()) J.select(1, i).copy_(g);
  }
  return J;
}

SlowPoints SlowPointFinder::find(const at::Tensor& candidates) const {
  TORCH_CHECK(candidates.dim() == 2 && candidates.size(0) > 0 && candidates.size(1) > 0,
              "SlowPointFinder: candidates must be [M, D] with M, D > 0, got ", candidates.sizes());
  TORCH_CHECK(at::isFloatingType(candidates.scalar_type()), "SlowPointFinder: candidates must be floating point, got ",
              candidates.scalar_type());
  TORCH_CHECK(at::isfinite(candidates).all().item<bool>(), "SlowPointFinder: candidates must be finite");
  at::AutoGradMode enable(true);
  SlowPoints out;
  auto x = candidates.detach().clone().requires_grad_(true);
  const auto report = [&](int64_t step, const at::Tensor& q) {
    if (options_.verbose)
      std::fprintf(stderr, "slow points: step %lld, max q %.3e, mean q %.3e\n", static_cast<long long>(step),
                   q.max().item<double>(), q.mean().item<double>());
  };
  if (options_.optimizer != "lbfgs") {
    const auto& name = options_.optimizer;
    const double lr = options_.lr;
    std::unique_ptr<torch::optim::Optimizer> made;
    if (name == "adam") made = std::make_unique<torch::optim::Adam>(std::vector<at::Tensor>{x}, torch::optim::AdamOptions(lr));
    else if (name == "adamw") made = std::make_unique<torch::optim::AdamW>(std::vector<at::Tensor>{x}, torch::optim::AdamWOptions(lr).weight_decay(0));
    else if (name == "sgd") made = std::make_unique<torch::optim::SGD>(std::vector<at::Tensor>{x}, torch::optim::SGDOptions(lr).momentum(0.9));
    else if (name == "rmsprop") made = std::make_unique<torch::optim::RMSprop>(std::vector<at::Tensor>{x}, torch::optim::RMSpropOptions(lr));
    else made = std::make_unique<torch::optim::Adagrad>(std::vector<at::Tensor>{x}, torch::optim::AdagradOptions(lr));
    auto& opt = *made;
    for (int64_t step = 1; step <= options_.max_steps; ++step) {
      opt.zero_grad();
      const auto q = loss(x);
      q.sum().backward();
      opt.step();
      out.steps = step;
      if (step % options_.check_every == 0) {
        const auto qd = q.detach();
        report(step, qd);
        if (qd.max().item<double>() < options_.tolerance) break;
      }
    }
  } else {
    torch::optim::LBFGS opt({x}, torch::optim::LBFGSOptions(1.0)
                                     .max_iter(options_.check_every)
                                     .tolerance_grad(0)
                                     .tolerance_change(0)
                                     .history_size(50)
                                     .line_search_fn("strong_wolfe"));
    for (int64_t done = 0; done < options_.max_steps; done += options_.check_every) {
      opt.step([&] {
        opt.zero_grad();
        const auto total = loss(x).sum();
        total.backward();
        return total;
      });
      out.steps = done + options_.check_every;
      const auto q = loss(x).detach();
      report(out.steps, q);
      if (!(q.max().item<double>() >= options_.tolerance)) break;  // also stops on NaN
    }
  }
  const auto xs = x.detach();
  const auto q = [&] {
    at::NoGradGuard no_grad;
    return loss(xs);
  }();
  out.all_losses = q;

  // Filter by loss, then keep one point per cluster (lowest loss first), then drop outliers.
  auto keep = (q < options_.tolerance).nonzero().squeeze(1);
  out.kept_after_loss = keep.size(0);
  keep = keep.index_select(0, std::get<1>(q.index_select(0, keep).sort()));
  std::vector<int64_t> unique;
  {
    const auto pts = xs.index_select(0, keep).to(at::kDouble).cpu();
    const auto idx = keep.cpu();
    for (int64_t i = 0; i < pts.size(0); ++i) {
      bool dup = false;
      for (size_t j = 0; j < unique.size() && !dup; ++j)
        dup = (pts[i] - pts[unique[j]]).norm().item<double>() < options_.unique_tolerance;
      if (!dup) unique.push_back(i);
    }
    std::vector<int64_t> rows;
    for (auto i : unique) rows.push_back(idx[i].item<int64_t>());
    unique = rows;
  }
  out.kept_after_unique = unique.size();
  auto kept = at::tensor(unique, at::kLong).to(xs.device());
  if (std::isfinite(options_.outlier_threshold) && kept.size(0) >= 2) {
    const auto pts = xs.index_select(0, kept);
    auto dists = at::cdist(pts, pts);
    dists.fill_diagonal_(std::numeric_limits<double>::infinity());
    const auto nearest = std::get<0>(dists.min(1));
    kept = kept.index_select(0, (nearest <= options_.outlier_threshold).nonzero().squeeze(1));
  }
  out.kept_after_outliers = kept.size(0);
  out.points = xs.index_select(0, kept);
  out.losses = q.index_select(0, kept);
  out.jacobians = jacobians(out.points);
  const int64_t K = out.points.size(0), D = out.points.size(1);
  if (K == 0) {
    const auto c = out.points.options().dtype(at::toComplexType(out.points.scalar_type()));
    out.eigenvalues = at::empty({0, D}, c);
    out.right_vectors = at::empty({0, D, D}, c);
    out.left_vectors = at::empty({0, D, D}, c);
    return out;
  }
  const auto [values, vectors] = at::linalg_eig(out.jacobians);
  const auto order = at::argsort(at::real(values), /*stable=*/true, /*dim=*/1, /*descending=*/true);
  out.eigenvalues = values.gather(1, order);
  out.right_vectors = vectors.gather(2, order.unsqueeze(1).expand({K, D, D}));
  // Rows of R^-1 are the left eigenvectors (conjugated): R^-1 J = Lambda R^-1, R^-1 R = I.
  out.left_vectors = at::linalg_inv(out.right_vectors).conj().transpose(1, 2).contiguous();
  return out;
}

}  // namespace brain::analysis
