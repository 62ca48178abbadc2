//! SVG plots for the reports (plotters, SVG backend): latency on a log scale
//! against throughput, offered rate, or percentile in "nines".

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// Index into the palette, so one system keeps one color across charts.
    pub color: usize,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Plain numbers (throughput, offered rate).
    Linear,
    /// Percentiles mapped by [`nines`]: 0 → 0 %, 1 → 90 %, 2 → 99 %, 3 → 99.9 % ...
    Nines,
}

/// Where quantile `q` sits on a [`XAxis::Nines`] axis.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-6).log10()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A light variant of palette color `i` (for secondary lines such as p50).
pub const LIGHT: usize = 100;

fn color(i: usize) -> RGBAColor {
    let c = COLORS[(i % LIGHT) % COLORS.len()];
    if i >= LIGHT { c.mix(0.45) } else { c.to_rgba() }
}

/// Draws `series` to an SVG at `path`, y (milliseconds) on a log scale, with
/// an optional labelled horizontal line (an SLO, a floor).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_axis: XAxis,
    series: &[Series],
    hline: Option<(f64, &str)>,
) -> Result<()> {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied());
    let (mut xmin, mut xmax) =
        pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (mut ymin, mut ymax) =
        pts().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
    if let Some((y, _)) = hline {
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.1, 1.0);
    }
    if x_axis == XAxis::Linear {
        xmin = 0.0;
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    // Whole decades, so the log axis always shows labelled powers of ten.
    let ymin = 10f64.powf(ymin.max(0.001).log10().floor());
    let ymax = 10f64.powf(ymax.max(ymin * 10.0).log10().ceil());

    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax * 1.02, (ymin..ymax).log_scale())
        .map_err(|e| anyhow!("{e}"))?;
    let x_fmt = |x: &f64| match x_axis {
        XAxis::Linear => format!("{x:.0}"),
        XAxis::Nines => {
            let digits = (x.round() as usize).saturating_sub(2);
            format!("{:.digits$}%", 100.0 * (1.0 - 10f64.powf(-x)))
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y: &f64| trim(*y))
        .y_labels(20)
        // On the nines axis, label whole nines: 0 %, 90 %, 99 %, 99.9 % ...
        .x_labels(match x_axis {
            XAxis::Linear => 10,
            XAxis::Nines => xmax.ceil() as usize + 1,
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for s in series {
        let c = color(s.color);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    if let Some((y, label)) = hline {
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(LineSeries::new([(xmin, y), (xmax * 1.02, y)], grey.stroke_width(1)))
            .map_err(|e| anyhow!("{e}"))?
            .label(label.to_owned())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    drop(chart);
    drop(root);
    check_svg(path)
}

/// Fails unless `path` holds a well-formed SVG document (an `<svg>` root).
pub fn check_svg(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    let doc = roxmltree::Document::parse(&text)
        .map_err(|e| anyhow!("{} is not well-formed XML: {e}", path.display()))?;
    let root = doc.root_element().tag_name().name();
    anyhow::ensure!(root == "svg", "{}: root element is <{root}>, not <svg>", path.display());
    Ok(())
}

/// A short number: `0.25`, `12`, `99.9`.
fn trim(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(0.0) - 0.0).abs() < 1e-12);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!((nines(1.0) - 6.0).abs() < 1e-9);
        assert_eq!(trim(99.9), "99.9");
        assert_eq!(trim(0.250), "0.25");
        assert_eq!(trim(1200.0), "1200");
    }

    #[test]
    fn draws_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.svg");
        let s =
            Series { name: "etcd p99".into(), color: 1, points: vec![(100.0, 1.0), (1000.0, 3.5)] };
        line_chart(&p, "t", "req/s", "ms", XAxis::Linear, &[s], Some((10.0, "SLO"))).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("etcd p99"));
    }
}
