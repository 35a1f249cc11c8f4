//! A small hand-made SVG line chart for the benchmark reports: a categorical x axis (client
//! counts, say), a linear or log10 y axis with "nice" ticks and a grid, one polyline with
//! point markers per series, a legend, a title and an optional note under the plot.
//!
//! Hand-made rather than a plotting crate: the charts are simple, and the output is plain
//! text that needs no fonts at build time and diffs well in the repository. Missing values
//! (a skipped cell) break a series' line instead of being drawn as zero.

use std::fmt::Write as _;

/// Size of the whole picture, in SVG user units (pixels).
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;

/// Room around the plot area: axis labels left and below, the legend on the right.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 78.0;

/// Line colours, one per series in order (distinguishable, also in grey-scale print).
const PALETTE: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// How values map to height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    /// From 0 to a little above the largest value.
    Linear,
    /// Whole decades around the values (all must be positive; others are left out).
    Log10,
}

/// One line: a name for the legend and one value per category (`None` = no point).
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// One value per category of the chart.
    pub values: Vec<Option<f64>>,
}

/// A line chart over categories.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Shown above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The x positions, evenly spaced, left to right.
    pub categories: Vec<String>,
    /// The lines.
    pub series: Vec<Series>,
    /// Linear or logarithmic y.
    pub y_scale: YScale,
    /// A line of small print under the chart (machine, sizes...).
    pub note: Option<String>,
}

/// The y axis: the value range drawn and the tick values.
struct Axis {
    low: f64,
    high: f64,
    ticks: Vec<f64>,
    /// The linear tick spacing (unused on a log axis, where each tick is its own step).
    step: f64,
    log: bool,
}

impl Axis {
    fn for_values(values: &[f64], scale: YScale) -> Self {
        match scale {
            YScale::Linear => {
                let top = values.iter().copied().fold(0.0, f64::max);
                let top = if top > 0.0 { top * 1.05 } else { 1.0 };
                let step = nice_step(top, 6);
                let high = (top / step).ceil() * step;
                let count = (high / step).round() as usize;
                let ticks = (0..=count).map(|i| i as f64 * step).collect();
                Self {
                    low: 0.0,
                    high,
                    ticks,
                    step,
                    log: false,
                }
            }
            YScale::Log10 => {
                let positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
                let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
                let max = positive.iter().copied().fold(0.0, f64::max);
                let (lo, hi) = if positive.is_empty() {
                    (0, 1)
                } else {
                    let lo = min.log10().floor() as i32;
                    (lo, (max.log10().ceil() as i32).max(lo + 1))
                };
                Self {
                    low: f64::from(lo),
                    high: f64::from(hi),
                    ticks: (lo..=hi).map(|e| 10f64.powi(e)).collect(),
                    step: 0.0,
                    log: true,
                }
            }
        }
    }

    /// Where `value` sits between the bottom (0) and the top (1) of the plot.
    fn fraction(&self, value: f64) -> Option<f64> {
        let v = if self.log {
            if value <= 0.0 {
                return None;
            }
            value.log10()
        } else {
            value
        };
        Some((v - self.low) / (self.high - self.low))
    }
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `0..span` into about `target`
/// parts.
pub fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let factor = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// Decimals that show `step` (and so every multiple of it) exactly: 0 for 20, 2 for 0.05.
fn decimals_for(step: f64) -> usize {
    if step > 0.0 && step.is_finite() {
        (-(step.log10().floor())).clamp(0.0, 6.0) as usize
    } else {
        0
    }
}

/// A tick label with as many decimals as the axis' step needs (0.05, 2.5, 1500).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = decimals_for(step);
    format!("{value:.decimals$}")
}

/// Text made safe for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl LineChart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .filter(|v| v.is_finite())
            .collect();
        let axis = Axis::for_values(&values, self.y_scale);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let n = self.categories.len().max(1);
        let x_of = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / n as f64;
        let y_of = |v: f64| axis.fraction(v).map(|f| TOP + plot_h * (1.0 - f));

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );

        // Grid and y ticks.
        for &tick in &axis.ticks {
            let Some(y) = y_of(tick) else { continue };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##,
                LEFT + plot_w
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                escape(&tick_label(tick, if axis.log { tick } else { axis.step }))
            );
        }
        // Axes.
        let _ = writeln!(
            svg,
            r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="#333333"/>"##,
            TOP + plot_h,
            LEFT + plot_w
        );
        // X ticks and category labels.
        for (i, category) in self.categories.iter().enumerate() {
            let x = x_of(i);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/>"##,
                TOP + plot_h,
                TOP + plot_h + 5.0
            );
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + plot_h + 19.0,
                escape(category)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h + 40.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        if let Some(note) = &self.note {
            let _ = writeln!(
                svg,
                r##"<text x="{LEFT}" y="{:.1}" font-size="10" fill="#555555">{}</text>"##,
                HEIGHT - 10.0,
                escape(note)
            );
        }

        // One polyline per unbroken run of values, and a marker on every point.
        for (k, series) in self.series.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, value) in series.values.iter().enumerate().take(n) {
                match value.and_then(|v| y_of(v).filter(|y| y.is_finite())) {
                    Some(y) => runs.last_mut().expect("one run").push((x_of(i), y)),
                    None => runs.push(Vec::new()),
                }
            }
            let _ = writeln!(svg, r#"<g stroke="{colour}" fill="{colour}">"#);
            for run in runs.iter().filter(|r| !r.is_empty()) {
                let points: Vec<String> =
                    run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    svg,
                    r#"<polyline points="{}" fill="none" stroke-width="2"/>"#,
                    points.join(" ")
                );
                for (x, y) in run {
                    let _ = writeln!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5"/>"#);
                }
            }
            let _ = writeln!(svg, "</g>");
            // Legend entry.
            let ly = TOP + 10.0 + 22.0 * k as f64;
            let lx = LEFT + plot_w + 18.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><circle cx="{:.1}" cy="{ly:.1}" r="3.5" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 24.0,
                lx + 12.0,
                lx + 30.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(scale: YScale) -> LineChart {
        LineChart {
            title: "Goodput <all>".into(),
            x_label: "clients".into(),
            y_label: "MB/s".into(),
            categories: vec!["1".into(), "4".into(), "16".into()],
            series: vec![
                Series {
                    name: "loop".into(),
                    values: vec![Some(10.0), Some(11.0), None],
                },
                Series {
                    name: "table & co".into(),
                    values: vec![Some(0.5), Some(40.0), Some(80.0)],
                },
            ],
            y_scale: scale,
            note: Some("2 cores".into()),
        }
    }

    #[test]
    fn every_series_gets_a_line_and_a_legend_entry() {
        let svg = chart(YScale::Linear).to_svg();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">loop</text>"));
        assert!(svg.contains(">table &amp; co</text>"));
        assert!(svg.contains("Goodput &lt;all&gt;"));
        // Two points of "loop", three of "table", plus one legend marker each.
        assert_eq!(svg.matches("<circle").count(), 7);
    }

    #[test]
    fn a_missing_value_breaks_the_line_instead_of_dropping_to_zero() {
        let mut c = chart(YScale::Linear);
        c.series[0].values = vec![Some(1.0), None, Some(3.0)];
        let svg = c.to_svg();
        // "loop" is two one-point runs, "table" one run: three polylines.
        assert_eq!(svg.matches("<polyline").count(), 3);
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        let axis = Axis::for_values(&[0.5, 40.0, 80.0], YScale::Log10);
        assert_eq!(axis.ticks, vec![0.1, 1.0, 10.0, 100.0]);
        assert!(chart(YScale::Log10).to_svg().contains(">100</text>"));
    }

    #[test]
    fn steps_are_round_numbers() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(7.0, 6), 1.0);
        assert_eq!(nice_step(0.3, 6), 0.05);
        assert_eq!(tick_label(0.05, 0.05), "0.05");
        assert_eq!(tick_label(1500.0, 500.0), "1500");
        assert_eq!(tick_label(2.5, 0.5), "2.5");
        assert_eq!(tick_label(0.1, 0.1), "0.1");
    }
}
