//! `emsim eval`: counted electrons (one `emsim-counts/1` file per method) against the truth of
//! the frames file they were counted from.
//!
//! * Matching ([`matching`]): per frame, one-to-one, within `--radius-px` (default 1.5 px), with
//!   the most pairs and then the least total distance; frames in parallel.
//! * Metrics ([`metrics`]): recall, precision, error percentiles in px and um, bias.
//! * With two or more methods, errors are also compared on the true electrons that every method
//!   matched (`mean_error_common_px`), since each method's own mean is over a different subset.
//! * For a method whose file has `sigma_px` (the network), the "sigma knob": keeping only found
//!   electrons with `sigma_px <= cut` trades recall for error (the matching is not redone).
//! * Plots ([`plots`], `--plots DIR`): `error_histogram.png`, `error_cumulative.png`,
//!   `error_scatter_A_vs_B.png` for each pair of methods, `sigma_cut.png`.
//!
//! Counts and truth must come from the same dataset (seed, configuration, first frame) and the
//! counts must cover every frame of the truth file.

pub mod crowding;
pub mod dose;
pub mod dqe;
pub mod dqe_run;
pub mod matching;
pub mod metrics;
pub mod plots;
pub mod read;
pub mod sketch;
pub mod stream;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::io::atomic::Output;
use crate::{Error, Result};
pub use crowding::CrowdingBin;
pub use matching::{DEFAULT_RADIUS_PX, MAX_EXACT_COMPONENT};
pub use metrics::MethodMetrics;
use read::{CountsFile, TruthFile, check_same_dataset};
pub use read::{CountsSet, TruthSet, read_counts, read_truth};
use sketch::Sketch;
pub use stream::StreamLimits;
use stream::{Scatter, Streamed};

pub const SCHEMA: &str = "emsim-eval/1";

/// Points of the sigma-cut curve (cuts at these fractions of the found electrons, by sigma).
const SIGMA_CUT_STEPS: usize = 20;

/// What `emsim eval` was asked to do.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Counts files, one per method.
    pub counts: Vec<PathBuf>,
    /// The frames file (HDF5) with the truth.
    pub truth: PathBuf,
    pub radius_px: f32,
    /// Write the report as JSON here.
    pub json: Option<PathBuf>,
    /// Write PNG plots into this folder (created if missing; its parent must exist).
    pub plots: Option<PathBuf>,
    /// How much is held in memory at once (the default suits files of any size).
    pub limits: StreamLimits,
}

impl EvalOptions {
    /// `counts` against `truth` with the defaults of `emsim eval`: radius
    /// [`DEFAULT_RADIUS_PX`], no JSON, no plots, the default memory limits.
    pub fn new(counts: &[&Path], truth: &Path) -> Self {
        Self {
            counts: counts.iter().map(|p| p.to_path_buf()).collect(),
            truth: truth.to_path_buf(),
            radius_px: DEFAULT_RADIUS_PX,
            json: None,
            plots: None,
            limits: StreamLimits::default(),
        }
    }
}

/// One point of a sigma-cut curve: found electrons with `sigma_px <= sigma_cut_px` only.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SigmaCutPoint {
    pub sigma_cut_px: f64,
    /// Fraction of the found electrons kept.
    pub kept_fraction: f64,
    pub recall: f64,
    pub precision: f64,
    pub mean_error_px: f64,
    pub median_error_px: f64,
}

/// The sigma-cut curve of a method with `sigma_px`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SigmaCurve {
    pub method: String,
    pub points: Vec<SigmaCutPoint>,
}

/// The result of an evaluation (printed by [`EvalReport::table`], written by `--json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub schema: String,
    pub generator: String,
    pub truth_file: String,
    pub frames_seed: u64,
    pub first_frame: u64,
    pub n_frames: u64,
    pub n_true: u64,
    pub pixel_size_um: f64,
    pub radius_px: f64,
    /// Components with more points are matched greedily (counted per method).
    pub max_exact_component: usize,
    /// True electrons matched by every method (null with one method).
    pub n_matched_by_all: Option<u64>,
    /// One record per counts file, in the order given.
    pub methods: Vec<MethodMetrics>,
    pub sigma_cuts: Vec<SigmaCurve>,
    /// PNG files written (`--plots`).
    pub plots: Vec<String>,
    /// Peak resident memory of the process (Linux), MiB: bounded whatever the size of the files.
    pub peak_memory_mib: Option<f64>,
}

/// Reads, checks, matches, measures; writes `--json` and `--plots` when asked.
pub fn run(opts: &EvalOptions) -> Result<EvalReport> {
    let r = opts.radius_px;
    if !(r > 0.0 && r.is_finite()) {
        return Err(Error::invalid("--radius-px", format!("{r} must be > 0 pixels")));
    }
    if opts.counts.is_empty() {
        return Err(Error::invalid("counts", "give at least one counts file (emsim count ... --out counts.h5)"));
    }
    // Check the outputs before any work, so that a bad path fails at once.
    if let Some(p) = opts.json.as_deref().filter(|p| p.is_dir()) {
        return Err(Error::file(p, "is a folder; --json names the report file to write"));
    }
    let json_out = opts.json.as_deref().map(|p| Output::new(p, true, "--json")).transpose()?;
    if let Some(dir) = &opts.plots {
        check_plots_dir(dir)?;
    }

    let truth = TruthFile::open(&opts.truth)?;
    let counts: Vec<CountsFile> = opts.counts.iter().map(|p| CountsFile::open(p)).collect::<Result<_>>()?;
    for c in &counts {
        check_same_dataset(&truth.meta, &c.meta)?;
    }
    // The radius as typed (0.6, not 0.6000000238) for the report.
    let radius_report: f64 = r.to_string().parse().unwrap_or(r as f64);
    let mut streamed = stream::evaluate(&truth, &counts, r, radius_report, &opts.limits)?;
    let n_true = truth.len();
    let truth = &truth.meta;
    let mut report = EvalReport {
        schema: SCHEMA.into(),
        generator: crate::generator(),
        truth_file: truth.path.display().to_string(),
        frames_seed: truth.seed,
        first_frame: truth.first_frame,
        n_frames: truth.n_frames() as u64,
        n_true: n_true as u64,
        pixel_size_um: truth.pixel_size_um,
        radius_px: radius_report,
        max_exact_component: MAX_EXACT_COMPONENT,
        n_matched_by_all: streamed.n_matched_by_all,
        methods: std::mem::take(&mut streamed.methods),
        sigma_cuts: std::mem::take(&mut streamed.sigma_cuts),
        plots: Vec::new(),
        peak_memory_mib: None,
    };
    if let Some(dir) = &opts.plots {
        let paths: Vec<&Path> = counts.iter().map(|c| c.meta.path.as_path()).collect();
        report.plots = write_eval_plots(dir, &report, &paths, &mut streamed)?
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    report.peak_memory_mib = crate::peak_memory_mib();
    if let Some(out) = json_out {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::file(out.final_path(), e))?;
        std::fs::write(out.tmp(), text + "\n").map_err(|e| Error::file(out.final_path(), e))?;
        out.commit()?;
    }
    Ok(report)
}

/// The plots folder may exist; otherwise its parent must (it is created when plotting).
fn check_plots_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return if dir.is_dir() { Ok(()) } else { Err(Error::file(dir, "exists and is not a folder [--plots]")) };
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::file(dir, format!("cannot create: folder {} does not exist [--plots]", parent.display())));
    }
    Ok(())
}

/// Labels of the methods for legends: the method name, with the file name when names repeat.
fn labels(methods: &[MethodMetrics], paths: &[&Path]) -> Vec<String> {
    methods
        .iter()
        .zip(paths)
        .map(|(m, p)| {
            if methods.iter().filter(|o| o.method == m.method).count() > 1 {
                let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                format!("{} ({stem})", m.method)
            } else {
                m.method.clone()
            }
        })
        .collect()
}

/// A label made safe for a file name.
fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Error histogram, cumulative curve, method-vs-method scatter plots, recall and error by
/// crowding, and the sigma-cut curve.
fn write_eval_plots(dir: &Path, report: &EvalReport, paths: &[&Path], streamed: &mut Streamed) -> Result<Vec<PathBuf>> {
    use plots::{Chart, Series};
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e} [--plots]")))?;
    let labels = labels(&report.methods, paths);
    let r = report.radius_px;
    let mut written = Vec::new();

    let title = format!("Position error of matched electrons (radius {r} px)");
    let mut chart = Chart::new(&title, "error (px)", "electrons per bin");
    chart.x_range = Some((0.0, r));
    let counts: Vec<Vec<u64>> = streamed.errors.iter().map(|e| e.bin_counts(0.0, r, 60)).collect();
    let binned: Vec<(&str, &[u64])> = labels.iter().zip(&counts).map(|(l, c)| (l.as_str(), c.as_slice())).collect();
    let p = dir.join("error_histogram.png");
    plots::histogram_counts(&p, &chart, &binned, (0.0, r))?;
    written.push(p);

    // Fraction of all true electrons found within a given error (ends at the recall).
    let n_true = report.n_true.max(1) as f64;
    let curves: Vec<Vec<(f64, f64)>> = streamed
        .errors
        .iter_mut()
        .map(|e: &mut Sketch| {
            (0..=300).map(|i| r * i as f64 / 300.0).map(|x| (x, e.count_le(x) as f64 / n_true)).collect()
        })
        .collect();
    let title = format!("Cumulative error ({} true electrons)", report.n_true);
    let mut chart = Chart::new(&title, "error (px)", "fraction of true electrons found within error");
    chart.x_range = Some((0.0, r));
    chart.y_range = Some((0.0, 1.0));
    chart.legend_at = plots::SeriesLabelPosition::LowerRight;
    let series: Vec<Series> = labels.iter().zip(&curves).map(|(l, c)| Series { label: l, points: c }).collect();
    let p = dir.join("error_cumulative.png");
    plots::line_chart(&p, &chart, &series)?;
    written.push(p);

    for Scatter { a, b, n_both, stride, points } in &streamed.scatter {
        let shown = if *stride > 1 { format!(", every {stride}th true electron shown") } else { String::new() };
        let title = format!("Error per true electron matched by both ({n_both} electrons{shown})");
        let (xl, yl) = (format!("{} error (px)", labels[*a]), format!("{} error (px)", labels[*b]));
        let mut chart = Chart::new(&title, &xl, &yl);
        chart.x_range = Some((0.0, r));
        chart.y_range = Some((0.0, r));
        chart.size = (750, 700);
        let p = dir.join(format!("error_scatter_{}_vs_{}.png", file_safe(&labels[*a]), file_safe(&labels[*b])));
        plots::scatter(&p, &chart, &[Series { label: "", points }], true)?;
        written.push(p);
    }

    // Recall and mean error against the distance to the nearest other true electron: one point per
    // crowding bin at its middle (the last bin, 4 px or more, at 4.5 px).
    let x_of = |b: &CrowdingBin| b.nearest_max_px.map_or(b.nearest_min_px + 0.5, |hi| 0.5 * (b.nearest_min_px + hi));
    for (name, y_label, value) in [
        ("crowding_recall.png", "recall", (|b: &CrowdingBin| b.recall) as fn(&CrowdingBin) -> f64),
        ("crowding_error.png", "mean error (px)", |b: &CrowdingBin| b.mean_error_px),
    ] {
        let curves: Vec<Vec<(f64, f64)>> = report
            .methods
            .iter()
            .map(|m| m.crowding.iter().filter(|b| value(b).is_finite()).map(|b| (x_of(b), value(b))).collect())
            .collect();
        let series: Vec<Series> = labels.iter().zip(&curves).map(|(l, c)| Series { label: l, points: c }).collect();
        let chart = Chart::new(
            "By crowding",
            "distance to the nearest other true electron (px; last point: 4 px or more)",
            y_label,
        );
        let p = dir.join(name);
        plots::line_chart(&p, &chart, &series)?;
        written.push(p);
    }

    if !report.sigma_cuts.is_empty() {
        let curves: Vec<(String, Vec<(f64, f64)>)> = report
            .sigma_cuts
            .iter()
            .map(|c| (c.method.clone(), c.points.iter().map(|p| (p.recall, p.mean_error_px)).collect()))
            .collect();
        let series: Vec<Series> = curves.iter().map(|(l, c)| Series { label: l, points: c }).collect();
        let chart = Chart::new("Sigma cut: mean error vs recall", "recall (efficiency)", "mean error (px)");
        let p = dir.join("sigma_cut.png");
        plots::line_chart(&p, &chart, &series)?;
        written.push(p);
    }
    Ok(written)
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() { format!("{v:.digits$}") } else { "n/a".into() }
}

fn signed(v: f64, digits: usize) -> String {
    if v.is_finite() { format!("{v:+.digits$}") } else { "n/a".into() }
}

/// Columns padded to their widest cell; the first column left-aligned, the others right-aligned.
fn format_table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..ncol).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}", w = width[c]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = width[c]);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

impl EvalReport {
    /// Recall / mean error (px) of each method by the distance from the true electron to the
    /// nearest other one of its frame; the first row gives how many true electrons fall in each bin.
    fn crowding_table(&self) -> String {
        let Some(first) = self.methods.first().filter(|m| !m.crowding.is_empty()) else { return String::new() };
        let mut head = vec!["nearest other electron".to_string()];
        head.extend(first.crowding.iter().map(|b| match b.nearest_max_px {
            Some(hi) => format!("{}-{} px", b.nearest_min_px, hi),
            None => format!(">= {} px", b.nearest_min_px),
        }));
        let mut share = vec!["true electrons".to_string()];
        share.extend(
            first
                .crowding
                .iter()
                .map(|b| format!("{} ({} %)", b.n_true, num(100.0 * b.n_true as f64 / self.n_true.max(1) as f64, 1))),
        );
        let mut rows = vec![head, share];
        for m in &self.methods {
            let mut row = vec![format!("{} recall / mean px", m.method)];
            row.extend(m.crowding.iter().map(|b| format!("{} / {}", num(b.recall, 4), num(b.mean_error_px, 4))));
            rows.push(row);
        }
        format!("by crowding:\n{}", format_table(&rows))
    }

    /// A readable table: one row per method, then notes.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "truth {}: {} frames (first global frame {}), {} true electrons, seed {}, pitch {} um; match radius {} px",
            self.truth_file,
            self.n_frames,
            self.first_frame,
            self.n_true,
            self.frames_seed,
            self.pixel_size_um,
            self.radius_px
        );
        let mut rows = vec![
            [
                "method",
                "found",
                "matched",
                "recall",
                "precision",
                "mean",
                "median",
                "p90",
                "p95",
                "p99",
                "max",
                "mean",
                "bias x",
                "bias y",
            ]
            .map(String::from)
            .to_vec(),
            ["", "", "", "", "", "px", "px", "px", "px", "px", "px", "um", "px", "px"].map(String::from).to_vec(),
        ];
        for m in &self.methods {
            rows.push(vec![
                m.method.clone(),
                m.n_found.to_string(),
                m.n_matched.to_string(),
                num(m.recall, 4),
                num(m.precision, 4),
                num(m.mean_error_px, 4),
                num(m.median_error_px, 4),
                num(m.p90_error_px, 4),
                num(m.p95_error_px, 4),
                num(m.p99_error_px, 4),
                num(m.max_error_px, 4),
                num(m.mean_error_um, 3),
                signed(m.mean_dx_px, 4),
                signed(m.mean_dy_px, 4),
            ]);
        }
        s.push_str(&format_table(&rows));
        s.push_str(&self.crowding_table());
        if let Some(n) = self.n_matched_by_all {
            let per: Vec<String> = self
                .methods
                .iter()
                .map(|m| {
                    format!(
                        "{} {} px (median {})",
                        m.method,
                        num(m.mean_error_common_px.unwrap_or(f64::NAN), 4),
                        num(m.median_error_common_px.unwrap_or(f64::NAN), 4)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "matched by every method: {n} true electrons ({} %); mean error there: {}",
                num(100.0 * n as f64 / self.n_true.max(1) as f64, 2),
                per.join(", ")
            );
        }
        for c in &self.sigma_cuts {
            // The cuts keeping 50 %, 80 % and 100 % of the found electrons.
            let pick: Vec<String> = [10, 16, 20]
                .iter()
                .filter_map(|&step| c.points.get(step * SIGMA_CUT_STEPS / 20 - 1))
                .map(|p| {
                    format!(
                        "sigma <= {} px (keeps {} %): recall {}, mean {} px",
                        num(p.sigma_cut_px, 4),
                        num(100.0 * p.kept_fraction, 1),
                        num(p.recall, 4),
                        num(p.mean_error_px, 4)
                    )
                })
                .collect();
            let _ = writeln!(s, "{} sigma cut: {}", c.method, pick.join("; "));
        }
        for m in self.methods.iter().filter(|m| m.greedy_components > 0) {
            let _ = writeln!(
                s,
                "note: {}: {} crowded components ({} points, > {} each) matched greedily, not provably optimally",
                m.method, m.greedy_components, m.greedy_points, self.max_exact_component
            );
        }
        for p in &self.plots {
            let _ = writeln!(s, "plot: {p}");
        }
        s
    }
}
