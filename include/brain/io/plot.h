// Pictures of a run as SVG (any browser or image viewer opens them): a spike raster and
// voltage traces.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::io {

struct RasterGroup {
  std::string label;
  at::Tensor spikes;  // [T, n], bool or 0/1
  std::string color;  // any SVG colour
};

// Populations stacked bottom-up; time on x from t0_ms in steps of dt_ms.
BRAIN_API std::string raster_svg(const std::vector<RasterGroup>& groups, double t0_ms, double dt_ms,
                                 const std::string& title);

// values [T, k]: k traces against times [T] (ms).
BRAIN_API std::string traces_svg(const at::Tensor& times_ms, const at::Tensor& values,
                                 const std::vector<std::string>& labels, const std::string& title,
                                 const std::string& y_label);

// values [T, n] as a colour map (time on x from t0_ms in steps of dt_ms, rows on y labelled
// from y0 to y1), e.g. a CANN's activity bump over time; subsampled to a few hundred cells a side.
BRAIN_API std::string heatmap_svg(const at::Tensor& values, double t0_ms, double dt_ms, double y0, double y1,
                                  const std::string& title, const std::string& y_label);

BRAIN_API void write_text(const std::string& path, const std::string& text);

}  // namespace brain::io

namespace brain::io {

// One series of an x-y picture: small dots, a line, or large filled / open circles.
struct XYSeries {
  std::string label;
  std::vector<double> x, y;
  std::string color;           // any SVG colour; empty: the palette
  std::string style = "dots";  // "dots", "line", "filled", "open"
};

// Series drawn in the box [x0, x1] x [y0, y1] (phase planes, bifurcation diagrams).
BRAIN_API std::string xy_svg(const std::vector<XYSeries>& series, double x0, double x1, double y0, double y1,
                             const std::string& title, const std::string& x_label, const std::string& y_label);

}  // namespace brain::io
