//! `emsim eval pairs`: a trained one-vs-two classifier or two-electron localizer on
//! held-out one-or-two-electron samples (library events never used in training, sample indices
//! never used in training or validation).
//!
//! - Classifier: accuracy, the confusion matrix, accuracy by separation of the two electrons, and
//!   the MSU multi-electron notebook's "easy vs hard" split of the two-electron samples. We define a pair as
//!   **hard** when the two electrons' noiseless footprints (pixels above `hard_threshold_e`, by
//!   default the finder's 4 sigma) touch or overlap (a pixel of one is the same as or 8-adjacent to
//!   a pixel of the other), **easy** when they are apart (two separate blobs: "trivial"). The
//!   notebook's own script is not in the notes; it found 15 % of its pairs hard.
//! - Pair localizer: the error per electron under the better assignment of the two predicted
//!   points to the two true ones, overall and by separation.

use serde::Serialize;

use super::data::{LibraryArrays, VALIDATION_BASE};
use super::decode::{class_probs, pair_error_px};
use super::gpu_net::GpuNet;
use super::heldout::{ErrorRecord, record};
use super::infer::outputs_cpu;
use super::model::{Head, Model};
use super::pairs::{MakePairsParams, PairSpec, make_pairs_cpu, pair_choice};
use super::train::split_events;
use crate::gpu::Device;
use crate::io::library::EventLibrary;
use crate::{Error, Result};

/// Held-out test samples start here (training uses indices from 0, validation from
/// `VALIDATION_BASE`).
pub const TEST_BASE: u64 = VALIDATION_BASE + (1 << 39);

#[derive(Clone, Debug)]
pub struct PairEvalOptions {
    pub samples: usize,
    pub sigma_e: f32,
    pub seed: u64,
    pub holdout: f32,
    pub batch: usize,
    /// Override the model's sample settings (separation range, extra electrons).
    pub max_sep_px: Option<u32>,
    pub extra_mean: Option<f32>,
    /// Footprint threshold of the easy/hard split, electrons (default: 4 sigma).
    pub hard_threshold_e: Option<f32>,
}

impl Default for PairEvalOptions {
    fn default() -> Self {
        Self {
            samples: 20_000,
            sigma_e: 20.0,
            seed: 1,
            holdout: 0.2,
            batch: 1000,
            max_sep_px: None,
            extra_mean: None,
            hard_threshold_e: None,
        }
    }
}

/// One separation bin (two-electron samples).
#[derive(Clone, Debug, Serialize)]
pub struct SepBin {
    pub lo_px: f64,
    pub hi_px: f64,
    pub n: u64,
    /// Classifier: fraction called two; localizer: mean error per electron, pixels.
    pub value: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassifierResult {
    pub accuracy: f64,
    /// `confusion[true][predicted]`, index 0 = one electron, 1 = two.
    pub confusion: [[u64; 2]; 2],
    pub accuracy_one: f64,
    pub accuracy_two: f64,
    pub hard_fraction_of_two: f64,
    pub accuracy_two_easy: f64,
    pub accuracy_two_hard: f64,
    pub hard_threshold_e: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct PairEvalReport {
    pub test: &'static str,
    pub model: String,
    pub head: &'static str,
    pub samples: usize,
    pub sigma_e: f32,
    pub seed: u64,
    pub pitch_um: f64,
    pub path: &'static str,
    pub input_px: usize,
    pub p_two: f32,
    pub max_sep_px: u32,
    pub extra_mean: f32,
    /// The separation distribution of the two-electron samples (`n` per bin) and, per bin, the
    /// classifier's fraction called two or the localizer's mean error.
    pub by_separation: Vec<SepBin>,
    pub classifier: Option<ClassifierResult>,
    /// Pair localizer: the error per electron (`n` = pairs).
    pub localizer: Option<ErrorRecord>,
}

const SEP_EDGES: [f64; 9] = [0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0];

fn sep_bin(d: f64) -> usize {
    SEP_EDGES.windows(2).position(|w| d < w[1]).unwrap_or(SEP_EDGES.len() - 2)
}

/// Whether the noiseless footprints (charge > `thr_e`) of the two electrons of sample `k` touch.
pub fn is_hard(p: &MakePairsParams, lib: &LibraryArrays, k: u64, thr_e: f32) -> bool {
    let c = pair_choice(p, k);
    let footprint = |ev: u32, dx0: i32, dy0: i32| -> Vec<(i32, i32)> {
        let mut m: std::collections::BTreeMap<(i32, i32), f32> = Default::default();
        for j in lib.offsets[ev as usize] as usize..lib.offsets[ev as usize + 1] as usize {
            *m.entry((dx0 + lib.dxdy[2 * j], dy0 + lib.dxdy[2 * j + 1])).or_default() += lib.charge[j];
        }
        m.into_iter().filter(|&(_, q)| q > thr_e).map(|(xy, _)| xy).collect()
    };
    let a = footprint(c.ev1, 0, 0);
    let b = footprint(c.ev2, c.ox, c.oy);
    a.iter().any(|&(ax, ay)| b.iter().any(|&(bx, by)| (ax - bx).abs() <= 1 && (ay - by).abs() <= 1))
}

/// Runs the test.
pub fn pair_eval(model: &Model, lib: &EventLibrary, o: &PairEvalOptions, device: &Device) -> Result<PairEvalReport> {
    let cfg = &model.cfg;
    if !matches!(cfg.head, Head::Classes { .. } | Head::Pair) {
        return Err(Error::invalid(
            "--model",
            format!(
                "model '{}' is {}: `eval pairs` tests a classifier or a pair localizer (use `eval net` for it)",
                cfg.name,
                cfg.head.role()
            ),
        ));
    }
    if o.samples == 0 {
        return Err(Error::invalid("--samples", "must be at least 1"));
    }
    let folded = model.fold_batchnorm()?;
    let arrays = LibraryArrays::new(lib)?;
    let (_, (va_lo, va_n)) = split_events(lib.len(), o.holdout)?;
    let mut spec: PairSpec = cfg.pair_spec(o.seed, va_lo, va_n, o.sigma_e);
    if let Some(m) = o.max_sep_px {
        spec.max_sep_px = m;
    }
    if let Some(e) = o.extra_mean {
        spec.extra_mean = e;
        spec.extra_max = spec.extra_max.max((e * 4.0).ceil() as u32).min(super::pairs::MAX_EXTRA);
    }
    spec.validate().map_err(|e| Error::invalid("--max-sep-px/--extra-mean", e.to_string()))?;
    let thr = o.hard_threshold_e.unwrap_or(4.0 * o.sigma_e);
    let batch = o.batch.max(1);
    let gpu = match device {
        Device::Gpu(ctx) => {
            Some(GpuNet::new(ctx, folded.clone(), batch.min(GpuNet::max_capacity(ctx, &folded)?), false, None)?)
        }
        Device::Cpu => None,
    };
    let classifier = matches!(cfg.head, Head::Classes { .. });
    let mut confusion = [[0u64; 2]; 2];
    let (mut easy, mut hard) = ([0u64; 2], [0u64; 2]); // [n, correct]
    let mut bins = vec![(0u64, 0.0f64); SEP_EDGES.len() - 1];
    let mut errors = Vec::new();
    let mut start = 0usize;
    while start < o.samples {
        let n = batch.min(o.samples - start).min(gpu.as_ref().map_or(usize::MAX, |g| g.capacity));
        let first = TEST_BASE + start as u64;
        let p = MakePairsParams::new(&spec, first, n)?;
        let b = make_pairs_cpu(&p, &arrays);
        let out = match &gpu {
            Some(net) => net.infer(&b.x, n)?,
            None => outputs_cpu(&folded, &b.x, n, batch)?,
        };
        if classifier {
            let probs = class_probs(cfg, &out, n);
            for s in 0..n {
                let truth = b.class[s] as usize;
                let pred = (probs[2 * s + 1] > 0.5) as usize;
                confusion[truth][pred] += 1;
                if truth == 1 {
                    let h = if is_hard(&p, &arrays, first + s as u64, thr) { &mut hard } else { &mut easy };
                    h[0] += 1;
                    h[1] += (pred == 1) as u64;
                    let bin = &mut bins[sep_bin(b.sep_px[s] as f64)];
                    bin.0 += 1;
                    bin.1 += pred as f64;
                }
            }
        } else {
            for s in 0..n {
                let e = pair_error_px(&out[4 * s..4 * s + 4], &b.points[4 * s..4 * s + 4]);
                errors.push(e);
                let bin = &mut bins[sep_bin(b.sep_px[s] as f64)];
                bin.0 += 1;
                bin.1 += e;
            }
        }
        start += n;
    }
    let frac = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    let by_separation = bins
        .iter()
        .enumerate()
        .map(|(i, &(n, v))| SepBin { lo_px: SEP_EDGES[i], hi_px: SEP_EDGES[i + 1], n, value: v / n.max(1) as f64 })
        .collect();
    let pitch = lib.meta.pitch_um;
    let classifier = classifier.then(|| {
        let total: u64 = confusion.iter().flatten().sum();
        ClassifierResult {
            accuracy: frac(confusion[0][0] + confusion[1][1], total),
            confusion,
            accuracy_one: frac(confusion[0][0], confusion[0][0] + confusion[0][1]),
            accuracy_two: frac(confusion[1][1], confusion[1][0] + confusion[1][1]),
            hard_fraction_of_two: frac(hard[0], hard[0] + easy[0]),
            accuracy_two_easy: frac(easy[1], easy[0]),
            accuracy_two_hard: frac(hard[1], hard[0]),
            hard_threshold_e: thr,
        }
    });
    let localizer = (!errors.is_empty()).then(|| record("pair", errors, pitch));
    Ok(PairEvalReport {
        test: "held-out one-or-two-electron samples",
        model: cfg.name.clone(),
        head: cfg.head.kind(),
        samples: o.samples,
        sigma_e: o.sigma_e,
        seed: o.seed,
        pitch_um: pitch,
        path: device.path_name(),
        input_px: cfg.input_px,
        p_two: spec.p_two,
        max_sep_px: spec.max_sep_px,
        extra_mean: spec.extra_mean,
        by_separation,
        classifier,
        localizer,
    })
}

impl PairEvalReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}: model '{}' ({} head), {} samples of {}x{} px, p_two {}, second electron within {} px per axis, \
             {} extra electrons per patch on average, sigma {} e, seed {}, pitch {} um, {} path\n",
            self.test,
            self.model,
            self.head,
            self.samples,
            self.input_px,
            self.input_px,
            self.p_two,
            self.max_sep_px,
            self.extra_mean,
            self.sigma_e,
            self.seed,
            self.pitch_um,
            self.path
        );
        if let Some(c) = &self.classifier {
            s.push_str(&format!("accuracy {:.4}\n", c.accuracy));
            s.push_str("confusion matrix (rows: true, columns: predicted)\n");
            s.push_str("              pred 1e   pred 2e\n");
            for (i, name) in ["true 1e", "true 2e"].iter().enumerate() {
                s.push_str(&format!("  {name}  {:>9} {:>9}\n", c.confusion[i][0], c.confusion[i][1]));
            }
            s.push_str(&format!(
                "accuracy on one-electron samples {:.4}, on two-electron samples {:.4}\n",
                c.accuracy_one, c.accuracy_two
            ));
            s.push_str(&format!(
                "two-electron samples: {:.1} % hard (footprints above {} e touch); accuracy easy {:.4}, hard {:.4}\n",
                100.0 * c.hard_fraction_of_two,
                c.hard_threshold_e,
                c.accuracy_two_easy,
                c.accuracy_two_hard
            ));
        }
        if let Some(l) = &self.localizer {
            s.push_str("error per electron (better assignment of the two points)\n");
            s.push_str("  mean px  min px  median px  p90 px  p95 px  p99 px  max px  mean um\n");
            s.push_str(&format!(
                "  {:>7.4} {:>7.4} {:>10.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.3}\n",
                l.mean_error_px,
                l.min_error_px,
                l.median_error_px,
                l.p90_error_px,
                l.p95_error_px,
                l.p99_error_px,
                l.max_error_px,
                l.mean_error_um
            ));
        }
        let what = if self.classifier.is_some() { "called two" } else { "mean error px" };
        s.push_str(&format!("by separation of the two electrons (px): n, {what}\n"));
        for b in &self.by_separation {
            if b.n > 0 {
                s.push_str(&format!("  [{:.1}, {:.1})  {:>7}  {:.4}\n", b.lo_px, b.hi_px, b.n, b.value));
            }
        }
        s
    }

    /// `by_separation.png`: the classifier's fraction called two (or the localizer's error) vs separation.
    pub fn plot(&self, dir: &std::path::Path) -> Result<std::path::PathBuf> {
        use crate::eval::plots::{Chart, Series, line_chart};
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let pts: Vec<(f64, f64)> =
            self.by_separation.iter().filter(|b| b.n > 0).map(|b| (0.5 * (b.lo_px + b.hi_px), b.value)).collect();
        let path = dir.join("by_separation.png");
        let y = if self.classifier.is_some() { "fraction called two" } else { "mean error per electron (px)" };
        line_chart(
            &path,
            &Chart::new("two-electron samples by separation", "separation (px)", y),
            &[Series { label: &self.model, points: &pts }],
        )?;
        Ok(path)
    }
}
