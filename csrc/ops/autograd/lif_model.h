// The LIF constants of the fused LIF ops, as a node keeps them: IValues (op_node.h).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/string_view.h>

namespace brain::ops {

struct LifModel {
  double v_rest, v_reset, v_th, R, tau, dt;
  std::string method;
  bool detach_reset;
  std::string surrogate;
  std::vector<double> params;

  LifModel(double v_rest, double v_reset, double v_th, double R, double tau, double dt, c10::string_view method,
           bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params)
      : v_rest(v_rest), v_reset(v_reset), v_th(v_th), R(R), tau(tau), dt(dt), method(method.data(), method.size()),
        detach_reset(detach_reset), surrogate(surrogate.data(), surrogate.size()), params(params.vec()) {}
  // From a node's constants, which start with constants()'s.
  explicit LifModel(const std::vector<c10::IValue>& c)
      : v_rest(c[0].toDouble()), v_reset(c[1].toDouble()), v_th(c[2].toDouble()), R(c[3].toDouble()),
        tau(c[4].toDouble()), dt(c[5].toDouble()), method(c[6].toStringRef()), detach_reset(c[7].toBool()),
        surrogate(c[8].toStringRef()), params(c[9].toDoubleVector()) {}

  // The step's linear part, v_pre_t = dv_du u_{t-1} + dv_dI I_t + const (u: the membrane after
  // the reset), of either method.
  double dv_du() const { return method == "exp_euler" ? std::exp(-dt / tau) : 1.0 - dt / tau; }
  double dv_dI() const { return method == "exp_euler" ? R * (1.0 - std::exp(-dt / tau)) : R * dt / tau; }

  static constexpr size_t kConstants = 10;
  std::vector<c10::IValue> constants() const {
    return {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params};
  }
};

}  // namespace brain::ops
