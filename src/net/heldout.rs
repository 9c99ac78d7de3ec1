//! `emsim eval net`: the EMSim notes' 24 JUL test for a trained model. Held-out library events
//! (never seen in training), read noise, the crop centred as the model expects (for `seed`: the
//! pixel of incidence is the centre pixel, "central pixel known"); the network's position error
//! against the classical centroids computed on the very same noisy crops, and the sigma knob
//! (efficiency vs mean error as the cut on the network's sigma varies).

use serde::Serialize;

use super::data::{LibraryArrays, MakeBatchParams, SampleSpec, VALIDATION_BASE, make_batch_cpu};
use super::decode::{Decoded, decode};
use super::gpu_net::GpuNet;
use super::infer::outputs_cpu_with;
use super::model::{Head, Model};
use super::precision::NetPrecision;
use super::train::split_events;
use crate::count::Method;
use crate::count::calibrate::to_q;
use crate::count::localize::localize_one;
use crate::eval::metrics::quantile;
use crate::gpu::Device;
use crate::io::library::EventLibrary;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct HeldoutOptions {
    pub events: usize,
    pub sigma_e: f32,
    pub seed: u64,
    /// The held-out fraction used in training (the last events of the library).
    pub holdout: f32,
    pub centroid_threshold_e: f32,
    pub batch: usize,
    /// The network's activation storage ([`crate::net::precision`]).
    pub precision: NetPrecision,
}

impl Default for HeldoutOptions {
    fn default() -> Self {
        Self {
            events: 10_000,
            sigma_e: 20.0,
            seed: 1,
            holdout: 0.2,
            centroid_threshold_e: 40.0,
            batch: 1000,
            precision: NetPrecision::F32,
        }
    }
}

/// Error statistics of one method.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorRecord {
    pub method: String,
    pub n: usize,
    pub mean_error_px: f64,
    pub min_error_px: f64,
    pub median_error_px: f64,
    pub p90_error_px: f64,
    pub p95_error_px: f64,
    pub p99_error_px: f64,
    pub max_error_px: f64,
    pub mean_error_um: f64,
}

/// One point of the sigma knob: keep the samples with the network's sigma <= cut.
#[derive(Clone, Debug, Serialize)]
pub struct KnobPoint {
    pub efficiency: f64,
    pub sigma_cut_px: f64,
    pub mean_error_px: f64,
    /// The best centroid's mean error over all samples (100 % efficiency), for the ratio.
    pub ratio_to_best_centroid: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HeldoutReport {
    pub test: &'static str,
    pub model: String,
    pub events: usize,
    pub sigma_e: f32,
    pub seed: u64,
    pub pitch_um: f64,
    pub path: &'static str,
    /// The network's activation storage (`f32`, `f16`).
    pub net_precision: &'static str,
    pub records: Vec<ErrorRecord>,
    pub best_centroid: String,
    pub knob: Vec<KnobPoint>,
    /// Per-sample errors (network, c3x3), for the scatter plot; not in the JSON.
    #[serde(skip)]
    pub pairs: Vec<(f64, f64)>,
}

/// Error statistics of `e` (pixels) for `method`.
pub fn record(method: &str, mut e: Vec<f64>, pitch_um: f64) -> ErrorRecord {
    e.sort_by(|a, b| a.total_cmp(b));
    let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
    ErrorRecord {
        method: method.into(),
        n: e.len(),
        mean_error_px: mean,
        min_error_px: e.first().copied().unwrap_or(f64::NAN),
        median_error_px: quantile(&e, 0.5),
        p90_error_px: quantile(&e, 0.9),
        p95_error_px: quantile(&e, 0.95),
        p99_error_px: quantile(&e, 0.99),
        max_error_px: e.last().copied().unwrap_or(f64::NAN),
        mean_error_um: mean * pitch_um,
    }
}

fn dist(a: [f32; 2], t: &[f32]) -> f64 {
    (((a[0] - t[0]) as f64).powi(2) + ((a[1] - t[1]) as f64).powi(2)).sqrt()
}

/// Runs the test on `device`.
pub fn heldout_eval(model: &Model, lib: &EventLibrary, o: &HeldoutOptions, device: &Device) -> Result<HeldoutReport> {
    if o.events == 0 {
        return Err(Error::invalid("--events", "must be at least 1"));
    }
    if !matches!(model.cfg.head, Head::Grid { .. } | Head::Xy) {
        return Err(Error::invalid(
            "--model",
            format!(
                "model '{}' is {}: `eval net` tests a single-electron localizer (use `eval pairs` for it)",
                model.cfg.name,
                model.cfg.head.role()
            ),
        ));
    }
    let folded = model.fold_batchnorm()?;
    let model = &folded;
    let cfg = &model.cfg;
    let arrays = LibraryArrays::new(lib)?;
    let (_, (va_lo, va_n)) = split_events(lib.len(), o.holdout)?;
    let spec = SampleSpec { seed: o.seed, ev_lo: va_lo, ev_count: va_n, sigma_e: o.sigma_e };
    let batch = o.batch.max(1);
    let gpu = match device {
        Device::Gpu(ctx) => {
            let capacity = batch.min(GpuNet::max_capacity(ctx, model)?);
            Some(GpuNet::new_inference(ctx, model.clone(), capacity, o.precision)?)
        }
        Device::Cpu => None,
    };
    let side = cfg.input_px;
    let c0 = (side / 2) as u32;
    let thr_q = to_q(o.centroid_threshold_e);
    let mut net_err = Vec::with_capacity(o.events);
    let mut sigma = Vec::with_capacity(o.events);
    let mut cls_err: Vec<Vec<f64>> = vec![Vec::with_capacity(o.events); Method::ALL.len()];
    let mut rand_err = Vec::with_capacity(o.events);
    let key = crate::rng::key_from_seed(o.seed);
    let mut start = 0usize;
    while start < o.events {
        let n = batch.min(o.events - start).min(gpu.as_ref().map_or(usize::MAX, |g| g.capacity));
        let p = MakeBatchParams::new(cfg, &spec, VALIDATION_BASE + start as u64, n);
        let b = make_batch_cpu(&p, &arrays);
        let dec: Vec<Decoded> = match &gpu {
            Some(net) => decode(cfg, &net.infer(&b.x, n)?, n),
            None => decode(cfg, &outputs_cpu_with(model, &b.x, n, batch, o.precision)?, n),
        };
        for (s, d) in dec.iter().enumerate().take(n) {
            let t = &b.target[2 * s..2 * s + 2];
            net_err.push(dist(d.mean_xy, t));
            sigma.push(d.sigma_px as f64);
            let q: Vec<i32> =
                b.x[s * side * side..(s + 1) * side * side].iter().map(|&v| to_q(v / cfg.input_scale)).collect();
            let l = localize_one(&q, side as u32, side as u32, c0, c0, thr_q);
            for (k, xy) in l.xy.iter().enumerate() {
                // localize gives crop coordinates; targets are relative to the centre pixel's centre
                cls_err[k].push(dist([xy[0] - c0 as f32 - 0.5, xy[1] - c0 as f32 - 0.5], t));
            }
            // the MSU multi-electron notebook's baseline: a uniform random point in the brightest pixel
            let (imax, _) = q.iter().enumerate().fold((0, i32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            let r = crate::rng::philox4x32_10(
                crate::rng::counter(0, (start + s) as u64, crate::rng::streams::BASELINE),
                key,
            );
            let (mx, my) = ((imax % side) as f32, (imax / side) as f32);
            let guess = [mx + crate::rng::u01(r[0]) - c0 as f32 - 0.5, my + crate::rng::u01(r[1]) - c0 as f32 - 0.5];
            rand_err.push(dist(guess, t));
        }
        start += n;
    }
    let pitch = lib.meta.pitch_um;
    let mut records = vec![record("net", net_err.clone(), pitch)];
    for (k, m) in Method::ALL.iter().enumerate() {
        records.push(record(m.name(), cls_err[k].clone(), pitch));
    }
    let best = records[1..].iter().min_by(|a, b| a.mean_error_px.total_cmp(&b.mean_error_px)).unwrap().clone();
    records.push(record("random", rand_err, pitch));
    // the knob: sort by sigma, mean error of the kept fraction
    let mut order: Vec<usize> = (0..net_err.len()).collect();
    order.sort_by(|&a, &b| sigma[a].total_cmp(&sigma[b]));
    let mut knob = Vec::new();
    for pct in [10u32, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100] {
        let keep = ((order.len() as f64 * pct as f64 / 100.0).round() as usize).clamp(1, order.len());
        let mean = order[..keep].iter().map(|&i| net_err[i]).sum::<f64>() / keep as f64;
        knob.push(KnobPoint {
            efficiency: keep as f64 / order.len() as f64,
            sigma_cut_px: sigma[order[keep - 1]],
            mean_error_px: mean,
            ratio_to_best_centroid: mean / best.mean_error_px,
        });
    }
    let pairs = net_err.iter().zip(&cls_err[Method::C3x3.index()]).map(|(&a, &b)| (b, a)).collect();
    Ok(HeldoutReport {
        test: "heldout events, centre pixel as the model expects (EMSim notes, 24 JUL 2021)",
        model: cfg.name.clone(),
        events: o.events,
        sigma_e: o.sigma_e,
        seed: o.seed,
        pitch_um: pitch,
        path: device.path_name(),
        net_precision: gpu.as_ref().map_or(o.precision, |g| g.precision()).name(),
        best_centroid: best.method.clone(),
        records,
        knob,
        pairs,
    })
}

impl HeldoutReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}: model '{}' ({} activations), {} held-out events, sigma {} e, seed {}, pitch {} um, {} path\n",
            self.test, self.model, self.net_precision, self.events, self.sigma_e, self.seed, self.pitch_um, self.path
        );
        s.push_str("method     mean px  min px  median px  p90 px  p95 px  p99 px  max px   mean um\n");
        for r in &self.records {
            s.push_str(&format!(
                "{:<9} {:>8.4} {:>7.4} {:>10.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>9.5}\n",
                r.method,
                r.mean_error_px,
                r.min_error_px,
                r.median_error_px,
                r.p90_error_px,
                r.p95_error_px,
                r.p99_error_px,
                r.max_error_px,
                r.mean_error_um
            ));
        }
        s.push_str(
            "(random: a uniform random point in the brightest pixel, the MSU multi-electron notebook's baseline)\n",
        );
        s.push_str(&format!("sigma knob (network; ratio to the best centroid, {}):\n", self.best_centroid));
        for k in &self.knob {
            s.push_str(&format!(
                "  efficiency {:>5.1} %  sigma <= {:.4} px  mean error {:.4} px  ratio {:.3}\n",
                100.0 * k.efficiency,
                k.sigma_cut_px,
                k.mean_error_px,
                k.ratio_to_best_centroid
            ));
        }
        s
    }

    /// `knob.png` (efficiency vs mean error) and `net_vs_c3x3.png` (per-sample errors) in `dir`.
    pub fn plots(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        use crate::eval::plots::{Chart, Series, line_chart, scatter};
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let pts: Vec<(f64, f64)> = self.knob.iter().map(|k| (100.0 * k.efficiency, k.mean_error_px)).collect();
        let best = self.records.iter().find(|r| r.method == self.best_centroid).unwrap().mean_error_px;
        let flat = [(0.0, best), (100.0, best)];
        let label = format!("{} (100 %)", self.best_centroid);
        let a = dir.join("knob.png");
        line_chart(
            &a,
            &Chart::new("sigma knob: efficiency vs mean error", "efficiency (%)", "mean error (px)"),
            &[Series { label: "network", points: &pts }, Series { label: &label, points: &flat }],
        )?;
        let b = dir.join("net_vs_c3x3.png");
        scatter(
            &b,
            &Chart::new("per-event error", "3x3 centroid error (px)", "network error (px)"),
            &[Series { label: "events", points: &self.pairs }],
            true,
        )?;
        Ok(vec![a, b])
    }
}
