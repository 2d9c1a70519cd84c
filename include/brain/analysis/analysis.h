// Dynamics analysis (SPEC section 5): phase planes, bifurcations, fast-slow analysis and slow
// points, built on autograd so every Jacobian is exact.
//
// A model is a vector field over named variables with named parameters: a Field receives the
// variables (in order) followed by the parameters (in order), each a tensor, all of one shape
// (the analysis evaluates many points at once, element by element), and returns d/dt of each
// variable in order. Python callables are wrapped into Fields by the Python package
// (brain.analysis); built-in models are in <brain/analysis/models.h>.
//
// Everything here runs in float64 by default on the device chosen in Options. The analysis is
// not a simulation loop: it synchronises with the host freely (convergence tests, branch
// matching).
#pragma once

#include <complex>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <brain/export.h>

namespace brain::analysis {

using Field = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& args)>;

// A variable's range and grid resolution (points, >= 2) in the analysis.
struct Axis {
  std::string name;
  double lo = 0, hi = 1;
  int64_t resolution = 0;  // 0: the analysis's default
};

// A parameter held at `value`, or swept over [lo, hi] at `resolution` points (bifurcations).
struct Param {
  std::string name;
  double value = 0;
  bool swept = false;
  double lo = 0, hi = 0;
  int64_t resolution = 0;  // 0: the analysis's default
  static Param fixed(std::string name, double value) { return {std::move(name), value, false, value, value, 1}; }
  static Param range(std::string name, double lo, double hi, int64_t resolution = 0) {
    return {std::move(name), lo, true, lo, hi, resolution};
  }
};

struct Options {
  at::TensorOptions tensor_options = at::TensorOptions().dtype(at::kDouble);
  int64_t resolution = 0;          // default grid points per variable (0: 1-D 1000, 2-D 200, 3-D 40)
  int64_t max_candidates = 16;     // fixed-point candidates kept per parameter value, per kind
  int64_t newton_iterations = 100;
  double tolerance = 1e-10;        // a fixed point has max_i |f_i| below this
  double eig_tolerance = 1e-4;     // |Re lambda| below this * max(1, |J|max) counts as zero
  double unique_tolerance = 1e-4;  // fixed points closer than this (per unit range) are one
  double match_tolerance = 0.05;   // branch continuation: largest step per unit range
  int64_t bisection_steps = 50;    // halvings when locating a bifurcation point
};

struct FixedPoint {
  std::vector<double> x;       // the variables' values, in order
  std::vector<double> params;  // the swept parameters' values (bifurcations), in order
  at::Tensor jacobian;         // [D, D] float64, df_i/dx_j
  std::vector<std::complex<double>> eigenvalues;
  std::string stability;
  double residual = 0;  // max_i |f_i(x)|
};

// The stability class of a fixed point with Jacobian J ([D, D]):
//   1-D: "stable", "unstable", "saddle-node" (zero eigenvalue);
//   2-D: "stable node", "unstable node", "stable focus", "unstable focus", "saddle", "centre",
//        "stable star", "unstable star", "stable degenerate", "unstable degenerate",
//        "saddle-node" (a zero eigenvalue);
//   3-D and more: "stable node", "unstable node", "stable focus", "unstable focus", "saddle",
//        "saddle-focus", "centre", "saddle-node".
// `eig_tolerance` scales with max(1, max |J_ij|).
BRAIN_API std::string classify(const at::Tensor& jacobian, double eig_tolerance = 1e-4);
BRAIN_API bool is_stable(const std::string& stability);

// Evaluates a field's Jacobian at points X [M, D] with parameters P [M, Q]: [M, D, D].
BRAIN_API at::Tensor jacobian(const Field& f, const at::Tensor& X, const at::Tensor& P);

// ---- Phase plane (any dimension; the 1-D and 2-D names check the dimension) ----------------
struct VectorFieldGrid {
  std::vector<at::Tensor> axes;         // per variable, [n_d]
  std::vector<at::Tensor> derivatives;  // per variable, [n_1, ..., n_D]; NaN where f is not finite
  int64_t skipped = 0;                  // grid points where f was not finite
};

struct Trajectory {
  at::Tensor t;       // [T]
  at::Tensor values;  // [T, B, D]
};

struct LimitCycle {
  bool found = false;
  double period = 0;
  std::vector<double> min, max, amplitude;  // per variable; amplitude = (max - min) / 2
  std::vector<double> params;               // swept parameter values when from a bifurcation
};

class BRAIN_API PhasePlane {
 public:
  PhasePlane(Field f, std::vector<Axis> variables, std::vector<Param> params = {}, Options options = {});
  virtual ~PhasePlane() = default;

  int64_t dimension() const { return static_cast<int64_t>(variables_.size()); }
  const std::vector<Axis>& variables() const { return variables_; }
  const std::vector<Param>& params() const { return params_; }

  VectorFieldGrid vector_field() const;
  // Per variable i, points [K, D] on its nullcline f_i = 0: sign changes of f_i between
  // neighbouring grid points along every grid line, refined by bisection (2-D and more).
  std::vector<at::Tensor> nullclines() const;
  std::vector<FixedPoint> fixed_points() const;
  // initial [B, D]; integrated with the library's integrators ("rk4" default).
  Trajectory trajectory(const at::Tensor& initial, double duration, double dt, const std::string& method = "rk4") const;
  // Simulates from each initial point; after `transient` (default duration / 2) looks for a
  // periodic orbit: upward crossings of the first variable's mean with a stable period.
  std::vector<LimitCycle> limit_cycles(const at::Tensor& initial, double duration, double dt,
                                       std::optional<double> transient = std::nullopt) const;
  int64_t skipped_points() const;

 protected:
  Field f_;
  std::vector<Axis> variables_;
  std::vector<Param> params_;
  Options options_;
};

class BRAIN_API PhasePlane1D : public PhasePlane {
 public:
  PhasePlane1D(Field f, std::vector<Axis> variables, std::vector<Param> params = {}, Options options = {});
};
class BRAIN_API PhasePlane2D : public PhasePlane {
 public:
  PhasePlane2D(Field f, std::vector<Axis> variables, std::vector<Param> params = {}, Options options = {});
};

// ---- Bifurcation in one or two parameters ---------------------------------------------------
struct BifurcationEvent {
  std::string kind;            // "saddle-node" (a real eigenvalue through 0) or "hopf"
  std::vector<double> params;  // the swept parameters' values at the event, in order
  std::vector<double> x;       // the fixed point there
};

struct BifurcationResult {
  std::vector<std::string> param_names;
  std::vector<FixedPoint> points;  // every fixed point at every grid value (its .params)
  std::vector<BifurcationEvent> events;
  int64_t skipped = 0;  // grid points where f was not finite
};

class BRAIN_API Bifurcation {
 public:
  // Exactly one or two of `params` must be swept.
  Bifurcation(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options = {});
  virtual ~Bifurcation() = default;
  BifurcationResult compute() const;
  // Limit cycles by simulation past Hopf points: at every grid value of the (first) swept
  // parameter where a fixed point is an unstable focus or node, simulated from next to it.
  std::vector<LimitCycle> limit_cycles(const BifurcationResult& result, double duration, double dt,
                                       std::optional<double> transient = std::nullopt) const;
  const std::vector<Axis>& variables() const { return variables_; }
  const std::vector<Param>& params() const { return params_; }

 protected:
  Field f_;
  std::vector<Axis> variables_;
  std::vector<Param> params_;
  Options options_;
};

class BRAIN_API Bifurcation1D : public Bifurcation {
 public:
  Bifurcation1D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options = {});
};
class BRAIN_API Bifurcation2D : public Bifurcation {
 public:
  Bifurcation2D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options = {});
};

// ---- Fast-slow analysis ---------------------------------------------------------------------
// f takes the fast variables, then the slow variables, then the parameters, and returns the
// derivatives of the fast then the slow variables. The fast subsystem's bifurcations are
// computed with the slow variables as parameters (one for FastSlow1D, two for FastSlow2D);
// trajectory() integrates the full system to overlay on them.
class BRAIN_API FastSlow {
 public:
  FastSlow(Field f, std::vector<Axis> fast_variables, std::vector<Axis> slow_variables,
           std::vector<Param> params = {}, Options options = {});
  virtual ~FastSlow() = default;
  BifurcationResult compute() const;
  // initial [B, D_fast + D_slow]
  Trajectory trajectory(const at::Tensor& initial, double duration, double dt, const std::string& method = "rk4") const;
  const std::vector<Axis>& fast_variables() const { return fast_; }
  const std::vector<Axis>& slow_variables() const { return slow_; }

 protected:
  Field f_;
  std::vector<Axis> fast_, slow_;
  std::vector<Param> params_;
  Options options_;
};
class BRAIN_API FastSlow1D : public FastSlow {
 public:
  FastSlow1D(Field f, std::vector<Axis> fast_variables, std::vector<Axis> slow_variables,
             std::vector<Param> params = {}, Options options = {});
};
class BRAIN_API FastSlow2D : public FastSlow {
 public:
  FastSlow2D(Field f, std::vector<Axis> fast_variables, std::vector<Axis> slow_variables,
             std::vector<Param> params = {}, Options options = {});
};

// ---- Slow points of high-dimensional systems --------------------------------------------------
// F maps states [M, D] to [M, D], row by row: the next state (discrete, e.g. an RNN cell or a
// DynamicalSystem's update) or the time derivative (continuous). The finder minimises
// q(x) = 1/2 |F(x) - x|^2 (discrete) or 1/2 |F(x)|^2 (continuous) from every candidate.
struct SlowPointOptions {
  bool discrete = true;
  std::string optimizer = "adam";  // torch::optim's "adam", "adamw", "sgd" (momentum 0.9),
                                   // "rmsprop", "adagrad", or "lbfgs" (strong Wolfe search)
  double lr = 0.01;                // the learning rate (L-BFGS uses 1 with its line search)
  int64_t max_steps = 10000;
  double tolerance = 1e-12;        // stop once every candidate's q is below this; also the loss filter
  int64_t check_every = 100;
  double unique_tolerance = 0.025; // points closer than this (Euclidean) are one
  double outlier_threshold = 1.0;  // drop points whose nearest other point is farther than this
                                   // (inf: keep all); ignored when fewer than 2 points remain
  bool verbose = false;
};

struct SlowPoints {
  at::Tensor points;        // [K, D]
  at::Tensor losses;        // [K]
  at::Tensor jacobians;     // [K, D, D]
  at::Tensor eigenvalues;   // [K, D] complex, sorted by decreasing real part
  at::Tensor right_vectors; // [K, D, D] complex, columns: J r = lambda r
  at::Tensor left_vectors;  // [K, D, D] complex, columns: l^H J = lambda l^H, l^H r = 1
  at::Tensor all_losses;    // [M]: every candidate's final q
  int64_t steps = 0;
  int64_t kept_after_loss = 0, kept_after_unique = 0, kept_after_outliers = 0;
};

class BRAIN_API SlowPointFinder {
 public:
  explicit SlowPointFinder(std::function<at::Tensor(const at::Tensor&)> F, SlowPointOptions options = {});
  SlowPoints find(const at::Tensor& candidates) const;
  // The loss q for states [M, D] (differentiable).
  at::Tensor loss(const at::Tensor& x) const;
  // Jacobians of F at states [M, D]: [M, D, D].
  at::Tensor jacobians(const at::Tensor& x) const;

 private:
  std::function<at::Tensor(const at::Tensor&)> F_;
  SlowPointOptions options_;
};

}  // namespace brain::analysis
