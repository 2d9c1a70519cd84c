#include <brain/io/plot.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

namespace brain::io {

namespace {

constexpr double kWidth = 900, kHeight = 520, kLeft = 70, kRight = 20, kTop = 40, kBottom = 55;
const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

double nice_step(double span) {
  const double raw = span / 5;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

struct Frame {
  double x0, x1, y0, y1;
  double px(double x) const { return kLeft + (x - x0) / (x1 - x0) * (kWidth - kLeft - kRight); }
  double py(double y) const { return kHeight - kBottom - (y - y0) / (y1 - y0) * (kHeight - kTop - kBottom); }
};

void axes(std::ostringstream& svg, const Frame& f, const std::string& title, const std::string& x_label,
          const std::string& y_label) {
  svg << std::fixed << std::setprecision(2);
  svg << "<text x=\"" << kWidth / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">" << escape(title) << "</text>\n";
  svg << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << kWidth - kLeft - kRight << "\" height=\""
      << kHeight - kTop - kBottom << "\" fill=\"none\" stroke=\"#333\"/>\n";
  for (int axis = 0; axis < 2; ++axis) {
    const double lo = axis == 0 ? f.x0 : f.y0, hi = axis == 0 ? f.x1 : f.y1;
    const double step = nice_step(hi - lo);
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
      std::ostringstream label;
      label << std::defaultfloat << std::setprecision(6) << (std::abs(v) < 1e-12 ? 0.0 : v);
      if (axis == 0) {
        svg << "<line x1=\"" << f.px(v) << "\" y1=\"" << kHeight - kBottom << "\" x2=\"" << f.px(v) << "\" y2=\""
            << kHeight - kBottom + 5 << "\" stroke=\"#333\"/><text x=\"" << f.px(v) << "\" y=\"" << kHeight - kBottom + 20
            << "\" text-anchor=\"middle\" font-size=\"12\">" << label.str() << "</text>\n";
      } else {
        svg << "<line x1=\"" << kLeft - 5 << "\" y1=\"" << f.py(v) << "\" x2=\"" << kLeft << "\" y2=\"" << f.py(v)
            << "\" stroke=\"#333\"/><text x=\"" << kLeft - 8 << "\" y=\"" << f.py(v) + 4
            << "\" text-anchor=\"end\" font-size=\"12\">" << label.str() << "</text>\n";
      }
    }
  }
  svg << "<text x=\"" << (kLeft + kWidth - kRight) / 2 << "\" y=\"" << kHeight - 12
      << "\" text-anchor=\"middle\" font-size=\"13\">" << escape(x_label) << "</text>\n";
  svg << "<text transform=\"translate(18," << (kTop + kHeight - kBottom) / 2
      << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">" << escape(y_label) << "</text>\n";
}

std::string header() {
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
    << "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  return s.str();
}

}  // namespace

std::string raster_svg(const std::vector<RasterGroup>& groups, double t0_ms, double dt_ms, const std::string& title) {
  int64_t steps = 0, total = 0;
  for (const auto& g : groups) {
    TORCH_CHECK(g.spikes.dim() == 2, "raster_svg: spikes of '", g.label, "' must be [T, n], got ", g.spikes.sizes());
    steps = std::max<int64_t>(steps, g.spikes.size(0));
    total += g.spikes.size(1);
  }
  Frame f{t0_ms, t0_ms + std::max<int64_t>(steps, 1) * dt_ms, 0, static_cast<double>(std::max<int64_t>(total, 1))};
  std::ostringstream svg;
  svg << header();
  axes(svg, f, title, "time (ms)", "neuron");
  const double h = std::max(0.6, (kHeight - kTop - kBottom) / static_cast<double>(std::max<int64_t>(total, 1)));
  int64_t offset = 0;
  size_t color = 0;
  for (const auto& g : groups) {
    const std::string fill = g.color.empty() ? kPalette[color++ % 8] : g.color;
    const at::Tensor nz = g.spikes.to(torch::kCPU).ne(0).nonzero();  // [(t, neuron)]
    const auto acc = nz.accessor<int64_t, 2>();
    svg << "<g fill=\"" << fill << "\">\n";
    for (int64_t k = 0; k < nz.size(0); ++k) {
      svg << "<rect x=\"" << f.px(t0_ms + acc[k][0] * dt_ms) << "\" y=\"" << f.py(offset + acc[k][1] + 1)
          << "\" width=\"1.2\" height=\"" << h << "\"/>\n";
    }
    svg << "</g>\n<text x=\"" << kWidth - kRight - 6 << "\" y=\"" << f.py(offset + g.spikes.size(1) / 2.0)
        << "\" text-anchor=\"end\" font-size=\"13\" fill=\"" << fill << "\">" << escape(g.label) << "</text>\n";
    offset += g.spikes.size(1);
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string traces_svg(const at::Tensor& times_ms, const at::Tensor& values_in, const std::vector<std::string>& labels,
                       const std::string& title, const std::string& y_label) {
  TORCH_CHECK(values_in.dim() == 2 && times_ms.dim() == 1 && times_ms.size(0) == values_in.size(0),
              "traces_svg: expected times [T] and values [T, k]");
  const at::Tensor v = values_in.to(torch::kCPU, torch::kDouble);
  const at::Tensor t = times_ms.to(torch::kCPU, torch::kDouble);
  const int64_t T = v.size(0);
  double lo = T ? v.min().item<double>() : 0, hi = T ? v.max().item<double>() : 1;
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const double pad = 0.05 * (hi - lo);
  Frame f{T ? t[0].item<double>() : 0.0, T > 1 ? t[T - 1].item<double>() : 1.0, lo - pad, hi + pad};
  std::ostringstream svg;
  svg << header();
  axes(svg, f, title, "time (ms)", y_label);
  const auto va = v.accessor<double, 2>();
  const auto ta = t.accessor<double, 1>();
  const int64_t stride = std::max<int64_t>(1, T / 4000);  // a few thousand points per line
  for (int64_t k = 0; k < v.size(1); ++k) {
    svg << "<polyline fill=\"none\" stroke-width=\"1\" stroke=\"" << kPalette[k % 8] << "\" points=\"";
    for (int64_t i = 0; i < T; i += stride) svg << f.px(ta[i]) << "," << f.py(va[i][k]) << " ";
    svg << "\"/>\n";
    if (k < static_cast<int64_t>(labels.size())) {
      svg << "<text x=\"" << kLeft + 8 << "\" y=\"" << kTop + 18 + 17 * k << "\" font-size=\"12\" fill=\""
          << kPalette[k % 8] << "\">" << escape(labels[k]) << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string xy_svg(const std::vector<XYSeries>& series, double x0, double x1, double y0, double y1,
                   const std::string& title, const std::string& x_label, const std::string& y_label) {
  TORCH_CHECK(x0 < x1 && y0 < y1, "xy_svg: empty plot box");
  const Frame f{x0, x1, y0, y1};
  std::ostringstream svg;
  svg << header();
  axes(svg, f, title, x_label, y_label);
  const auto inside = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && x >= x0 && x <= x1 && y >= y0 && y <= y1;
  };
  int legend = 0;
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    TORCH_CHECK(s.x.size() == s.y.size(), "xy_svg: series '", s.label, "' has ", s.x.size(), " x and ", s.y.size(), " y values");
    const std::string colour = s.color.empty() ? kPalette[k % 8] : s.color;
    if (s.style == "line") {
      svg << "<polyline fill=\"none\" stroke-width=\"1.2\" stroke=\"" << colour << "\" points=\"";
      for (size_t i = 0; i < s.x.size(); ++i)
        if (inside(s.x[i], s.y[i])) svg << f.px(s.x[i]) << "," << f.py(s.y[i]) << " ";
      svg << "\"/>\n";
    } else {
      const bool big = s.style == "filled" || s.style == "open";
      svg << "<g fill=\"" << (s.style == "open" ? "white" : colour) << "\" stroke=\"" << (big ? colour : "none")
          << "\" stroke-width=\"1.5\">\n";
      for (size_t i = 0; i < s.x.size(); ++i)
        if (inside(s.x[i], s.y[i]))
          svg << "<circle cx=\"" << f.px(s.x[i]) << "\" cy=\"" << f.py(s.y[i]) << "\" r=\"" << (big ? 5 : 1.3) << "\"/>\n";
      svg << "</g>\n";
    }
    if (!s.label.empty()) {
      svg << "<text x=\"" << kWidth - kRight - 8 << "\" y=\"" << kTop + 18 + 17 * legend++
          << "\" text-anchor=\"end\" font-size=\"12\" fill=\"" << colour << "\">" << escape(s.label) << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string heatmap_svg(const at::Tensor& values_in, double t0_ms, double dt_ms, double y0, double y1,
                        const std::string& title, const std::string& y_label) {
  TORCH_CHECK(values_in.dim() == 2, "heatmap_svg: expected values [T, n], got ", values_in.sizes());
  TORCH_CHECK(y1 > y0 && dt_ms > 0, "heatmap_svg: expected y1 > y0 and dt_ms > 0");
  const int64_t T = values_in.size(0), n = values_in.size(1);
  Frame f{t0_ms, t0_ms + std::max<int64_t>(T, 1) * dt_ms, y0, y1};
  std::ostringstream svg;
  svg << header();
  if (T > 0 && n > 0) {
    // Cells: averages over blocks of steps and rows, at most 600 x 200.
    const int64_t ct = std::min<int64_t>(T, 600), cn = std::min<int64_t>(n, 200);
    const at::Tensor v = values_in.to(torch::kCPU, torch::kDouble).nan_to_num(0.0);
    const at::Tensor cells = at::adaptive_avg_pool2d(v.unsqueeze(0).unsqueeze(0), {ct, cn}).squeeze(0).squeeze(0);
    const double lo = cells.min().item<double>(), hi = cells.max().item<double>();
    const auto c = cells.accessor<double, 2>();
    // A perceptual ramp (dark blue -> teal -> yellow), interpolated between five stops.
    const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    const double w = (kWidth - kLeft - kRight) / static_cast<double>(ct), h = (kHeight - kTop - kBottom) / static_cast<double>(cn);
    for (int64_t i = 0; i < ct; ++i) {
      for (int64_t j = 0; j < cn; ++j) {
        const double x = hi > lo ? (c[i][j] - lo) / (hi - lo) * 4 : 0;
        const int k = std::min(3, static_cast<int>(x));
        const double fr = x - k;
        int rgb[3];
        for (int ch = 0; ch < 3; ++ch) rgb[ch] = static_cast<int>(stops[k][ch] + fr * (stops[k + 1][ch] - stops[k][ch]));
        svg << "<rect x=\"" << kLeft + i * w << "\" y=\"" << kHeight - kBottom - (j + 1) * h << "\" width=\"" << w + 0.3
            << "\" height=\"" << h + 0.3 << "\" fill=\"rgb(" << rgb[0] << "," << rgb[1] << "," << rgb[2] << ")\"/>\n";
      }
    }
  }
  axes(svg, f, title, "time (ms)", y_label);
  svg << "</svg>\n";
  return svg.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  TORCH_CHECK(out, "cannot open '", path, "' for writing");
  out << text;
  TORCH_CHECK(out.good(), "writing '", path, "' failed");
}

}  // namespace brain::io
