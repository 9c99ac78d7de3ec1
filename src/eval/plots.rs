//! PNG charts (plotters, bitmap backend, text with the embedded DejaVu Sans font): line charts,
//! overlaid histograms and scatter plots. Stages share them (eval's error plots, training curves).
//!
//! Each function draws into memory and writes the PNG under a temporary name that is renamed
//! when complete ([`crate::io::atomic::Output`]); an existing file is replaced.

use std::path::Path;
use std::sync::OnceLock;

pub use plotters::chart::SeriesLabelPosition;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::io::atomic::Output;
use crate::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence: `assets/fonts/LICENSE-DejaVu.txt`).
static FONT_TTF: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fonts/DejaVuSans.ttf"));

/// Scatter plots draw at most this many points per series (every k-th point beyond that).
pub const MAX_SCATTER_POINTS: usize = 100_000;

/// Colours of successive series (matplotlib's tab10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Titles, axes and size of a chart. Ranges default to the data's.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Logarithmic y axis (points with y <= 0 are left out).
    pub log_y: bool,
    /// Width and height, pixels.
    pub size: (u32, u32),
    /// Where the legend goes (drawn when a series has a label).
    pub legend_at: SeriesLabelPosition,
}

impl<'a> Chart<'a> {
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str) -> Self {
        Self {
            title,
            x_label,
            y_label,
            x_range: None,
            y_range: None,
            log_y: false,
            size: (900, 600),
            legend_at: SeriesLabelPosition::UpperRight,
        }
    }
}

/// A named series of (x, y) points.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [(f64, f64)],
}

/// A named sample of values (for histograms).
#[derive(Clone, Copy, Debug)]
pub struct Sample<'a> {
    pub label: &'a str,
    pub values: &'a [f64],
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn register_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    if *OK.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_TTF).is_ok()) {
        Ok(())
    } else {
        Err(Error::Other("the embedded font assets/fonts/DejaVuSans.ttf could not be loaded".into()))
    }
}

/// Draws with `draw` on a white `size` canvas and writes it as a PNG to `path`.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<()> {
    register_font()?;
    if path.is_dir() {
        return Err(Error::file(path, "is a folder, not a PNG file to write"));
    }
    let (w, h) = size;
    if w < 100 || h < 100 {
        return Err(Error::invalid("plot size", format!("{w}x{h}: each side must be at least 100 pixels")));
    }
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| Error::file(path, format!("drawing plot: {e}"));
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        draw(&root).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer size");
    let out = Output::new(path, true, "plot")?;
    img.save_with_format(out.tmp(), image::ImageFormat::Png).map_err(|e| Error::file(path, e))?;
    out.commit()?;
    Ok(())
}

/// `(lo, hi)` of finite values (positive ones for a log axis), widened when empty or degenerate.
fn data_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return if log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        if hi <= lo { (lo / 2.0, hi * 2.0) } else { (lo / 1.15, hi * 1.15) }
    } else if hi <= lo {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = 0.02 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// Builds the chart (linear or log y), draws the mesh, runs `$body` with the chart context bound
/// to `$ctx`, then the legend when `$legend`. A macro because the two y axes are different types.
macro_rules! with_chart {
    ($root:expr, $chart:expr, $x:expr, $y:expr, $legend:expr, |$ctx:ident| $body:block) => {{
        let (x, y): ((f64, f64), (f64, f64)) = ($x, $y);
        let mut builder = ChartBuilder::on($root);
        builder.caption($chart.title, ("sans-serif", 22)).margin(15).x_label_area_size(50).y_label_area_size(75);
        if $chart.log_y {
            let mut $ctx = builder.build_cartesian_2d(x.0..x.1, (y.0..y.1).log_scale())?;
            $ctx.configure_mesh()
                .x_desc($chart.x_label)
                .y_desc($chart.y_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()?;
            $body
            if $legend {
                $ctx.configure_series_labels()
                    .label_font(("sans-serif", 15))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position($chart.legend_at.clone())
                    .draw()?;
            }
        } else {
            let mut $ctx = builder.build_cartesian_2d(x.0..x.1, y.0..y.1)?;
            $ctx.configure_mesh()
                .x_desc($chart.x_label)
                .y_desc($chart.y_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()?;
            $body
            if $legend {
                $ctx.configure_series_labels()
                    .label_font(("sans-serif", 15))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position($chart.legend_at.clone())
                    .draw()?;
            }
        }
        Ok(())
    }};
}

/// A tick label: integers without decimals, others with up to 4 decimals, tiny or huge ones in
/// scientific notation.
pub fn tick(v: &f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() <= 1e-9 * a {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn keep(p: &(f64, f64), log_y: bool) -> bool {
    p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0)
}

/// Lines through each series' points (in the given order), one colour per series.
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|p| keep(p, chart.log_y));
    let x = chart.x_range.unwrap_or_else(|| data_range(all().map(|p| p.0), false));
    let y = chart.y_range.unwrap_or_else(|| data_range(all().map(|p| p.1), chart.log_y));
    let legend = series.iter().any(|s| !s.label.is_empty());
    render(path, chart.size, |root| {
        with_chart!(root, chart, x, y, legend, |ctx| {
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| keep(p, chart.log_y)).collect();
                let drawn = ctx.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
                if !s.label.is_empty() {
                    drawn
                        .label(s.label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                }
            }
        })
    })
}

/// Counts of `values` in `bins` equal bins over `[lo, hi)` (the last bin includes `hi`); values
/// outside the range are not counted.
pub fn bin_counts(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut c = vec![0u64; bins];
    let w = (hi - lo) / bins as f64;
    for &v in values {
        if v >= lo && v <= hi {
            let b = (((v - lo) / w) as usize).min(bins - 1);
            c[b] += 1;
        }
    }
    c
}

/// Overlaid histograms (counts per bin; translucent bars with an outline), one colour per sample.
/// The x range defaults to the data's; values outside it are not counted.
pub fn histogram(path: &Path, chart: &Chart, samples: &[Sample], bins: usize) -> Result<()> {
    let bins = bins.max(1);
    let (lo, hi) =
        chart.x_range.unwrap_or_else(|| data_range(samples.iter().flat_map(|s| s.values.iter().copied()), false));
    let counts: Vec<Vec<u64>> = samples.iter().map(|s| bin_counts(s.values, lo, hi, bins)).collect();
    let binned: Vec<(&str, &[u64])> = samples.iter().zip(&counts).map(|(s, c)| (s.label, c.as_slice())).collect();
    histogram_counts(path, chart, &binned, (lo, hi))
}

/// Overlaid histograms already binned: `(label, counts)` per sample, equal bins over `lo..hi`.
pub fn histogram_counts(path: &Path, chart: &Chart, samples: &[(&str, &[u64])], (lo, hi): (f64, f64)) -> Result<()> {
    let bins = samples.first().map_or(1, |s| s.1.len()).max(1);
    let counts: Vec<&[u64]> = samples.iter().map(|s| s.1).collect();
    let peak = counts.iter().flat_map(|c| c.iter()).copied().max().unwrap_or(0).max(1) as f64;
    let y = chart.y_range.unwrap_or(if chart.log_y { (0.5, peak * 2.0) } else { (0.0, peak * 1.05) });
    let floor = y.0;
    let w = (hi - lo) / bins as f64;
    let legend = samples.iter().any(|s| !s.0.is_empty());
    render(path, chart.size, |root| {
        with_chart!(root, chart, (lo, hi), y, legend, |ctx| {
            for (i, (&(label, _), c)) in samples.iter().zip(&counts).enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let bars = c.iter().enumerate().filter(|&(_, &n)| n as f64 > floor).map(|(b, &n)| {
                    let x0 = lo + b as f64 * w;
                    Rectangle::new([(x0, floor), (x0 + w, n as f64)], color.mix(0.2).filled())
                });
                ctx.draw_series(bars)?;
                let mut steps = vec![(lo, floor)];
                for (b, &n) in c.iter().enumerate() {
                    let v = (n as f64).max(floor);
                    steps.push((lo + b as f64 * w, v));
                    steps.push((lo + (b + 1) as f64 * w, v));
                }
                steps.push((hi, floor));
                let drawn = ctx.draw_series(LineSeries::new(steps, color.stroke_width(2)))?;
                if !label.is_empty() {
                    drawn
                        .label(label)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.5).filled()));
                }
            }
        })
    })
}

/// Scatter plot (small translucent dots), one colour per series, with the line y = x when
/// `diagonal`. A series with more than [`MAX_SCATTER_POINTS`] points is thinned to every k-th.
pub fn scatter(path: &Path, chart: &Chart, series: &[Series], diagonal: bool) -> Result<()> {
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|p| keep(p, chart.log_y));
    let x = chart.x_range.unwrap_or_else(|| data_range(all().map(|p| p.0), false));
    let y = chart.y_range.unwrap_or_else(|| data_range(all().map(|p| p.1), chart.log_y));
    let legend = series.iter().any(|s| !s.label.is_empty());
    render(path, chart.size, |root| {
        with_chart!(root, chart, x, y, legend, |ctx| {
            if diagonal {
                let (a, b) = (x.0.max(y.0), x.1.min(y.1));
                if a < b {
                    ctx.draw_series(LineSeries::new([(a, a), (b, b)], BLACK.mix(0.6).stroke_width(1)))?;
                }
            }
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let step = s.points.len().div_ceil(MAX_SCATTER_POINTS).max(1);
                let dots = s
                    .points
                    .iter()
                    .step_by(step)
                    .filter(|p| keep(p, chart.log_y))
                    .map(|&p| Circle::new(p, 1, color.mix(0.35).filled()));
                let drawn = ctx.draw_series(dots)?;
                if !s.label.is_empty() {
                    drawn.label(s.label).legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [t(0.0), t(4000.0), t(0.25), t(0.1), t(-2.5), t(1.0 / 3.0)],
            ["0", "4000", "0.25", "0.1", "-2.5", "0.3333"]
        );
        assert_eq!([t(2.5e7), t(1e-5)], ["2.5e7", "1.0e-5"]);
    }

    #[test]
    fn bins() {
        assert_eq!(bin_counts(&[0.0, 0.1, 0.5, 0.99, 1.0, 1.5, -0.1], 0.0, 1.0, 2), vec![2, 3]);
    }

    #[test]
    fn charts_are_written_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let pts: Vec<(f64, f64)> = (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect();
        let mut c = Chart::new("loss", "epoch", "loss");
        c.log_y = true;
        let p = dir.path().join("line.png");
        line_chart(&p, &c, &[Series { label: "train", points: &pts }]).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 600));
        // The caption is drawn in dark pixels near the top centre (a font is really in use).
        let dark = (400..500).flat_map(|x| (0..40).map(move |y| (x, y))).filter(|&(x, y)| img.get_pixel(x, y)[0] < 128);
        assert!(dark.count() > 20, "no caption text drawn");

        let vals: Vec<f64> = (0..1000).map(|i| (i % 97) as f64 / 97.0).collect();
        let h = dir.path().join("hist.png");
        histogram(&h, &Chart::new("h", "x", "count"), &[Sample { label: "a", values: &vals }], 20).unwrap();
        let s = dir.path().join("scatter.png");
        scatter(&s, &Chart::new("s", "a", "b"), &[Series { label: "", points: &pts }], true).unwrap();
        assert!(image::open(&h).is_ok() && image::open(&s).is_ok());
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
