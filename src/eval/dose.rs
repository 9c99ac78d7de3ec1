//! `emsim eval dose`: recall and precision against dose for a centroid, the network, the network
//! with pair splitting, stempy's counter (the field's baseline), and the centroid on the 3x3-sum
//! finder of the EMSim notes (the others use the default pixel finder). For every dose (electrons
//! per pixel per frame) the whole pipeline runs as the commands would: `frames --dose d` (HDF5
//! with truth), `count` with the centroid, `net` and `stempy`, `count --method net --split-pairs`,
//! `count --finder sum3`, and `eval`'s matching, in a temporary folder that is removed afterwards.
//!
//! The loss to overlap at dose `d` is the centroid's recall at the lowest dose of the sweep (the
//! reference, where clusters rarely overlap) minus its recall at `d`; pair splitting "recovers"
//! `(recall_split(d) - recall_centroid(d)) / loss(d)` of it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::count::run::CountOptions;
use crate::count::split::PairModels;
use crate::count::{CountConfig, Finder, Method};
use crate::frames::run::RunOptions;
use crate::frames::{ElectronCount, FramesConfig};
use crate::gpu::Device;
use crate::io::library::EventLibrary;
use crate::net::model::Model;
use crate::{Error, Result};

pub struct DoseOptions {
    /// Ascending; the first is the reference.
    pub doses: Vec<f64>,
    pub frames: u64,
    pub height: u32,
    pub width: u32,
    pub seed: u64,
    pub noise_sigma_e: f32,
    /// The centroid compared (default c3x3t).
    pub centroid: Method,
    /// The finder of every method but stempy's; with [`Finder::Pixel`] the centroid on
    /// [`Finder::Sum3`] is added.
    pub finder: Finder,
    pub net: Model,
    pub pairs: PairModels,
    pub radius_px: f32,
    pub library_path: String,
    pub progress: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DoseMethod {
    pub method: String,
    pub n_found: u64,
    pub recall: f64,
    pub precision: f64,
    pub mean_error_px: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DosePoint {
    pub dose_e_per_px: f64,
    pub n_true: u64,
    /// centroid, net, net+split, stempy, and with the pixel finder the centroid on sum3.
    pub methods: Vec<DoseMethod>,
    /// Centroid recall at the reference dose minus here.
    pub centroid_overlap_loss: f64,
    /// Fraction of that loss pair splitting recovers (NaN where the loss is 0).
    pub split_recovered_fraction: f64,
    /// The same, counting only the recall splitting gains beyond what it gains at the reference
    /// dose (where it also recovers some electrons that are not lost to overlap).
    pub split_recovered_fraction_beyond_reference: f64,
    /// Precision of net+split minus the centroid's, points (x100).
    pub split_precision_change_points: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DoseReport {
    pub test: &'static str,
    pub frames_per_dose: u64,
    pub height: u32,
    pub width: u32,
    pub seed: u64,
    pub noise_sigma_e: f32,
    pub radius_px: f32,
    pub net_model: String,
    pub classifier_model: String,
    pub localizer_model: String,
    pub path: &'static str,
    pub points: Vec<DosePoint>,
}

/// Runs the sweep.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub fn run(o: &DoseOptions, lib: &EventLibrary, device: &Device) -> Result<DoseReport> {
    if o.doses.len() < 2 || o.doses.windows(2).any(|w| !(w[0] < w[1])) || !(o.doses[0] > 0.0) {
        return Err(Error::invalid("--doses", "give at least two ascending doses > 0 (the first is the reference)"));
    }
    if o.frames == 0 {
        return Err(Error::invalid("--frames", "must be at least 1"));
    }
    let dir = tempfile::Builder::new().prefix("emsim-dose-").tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let mut points = Vec::new();
    for (i, &dose) in o.doses.iter().enumerate() {
        let frames = dir.path().join(format!("frames{i}.h5"));
        let fc = FramesConfig {
            frames: o.frames,
            height: o.height,
            width: o.width,
            electrons: ElectronCount::Dose { electrons_per_pixel: dose },
            noise_sigma_e: o.noise_sigma_e,
            seed: o.seed.wrapping_add(i as u64),
            ..Default::default()
        };
        fc.validate()?;
        crate::frames::run::run(
            &fc,
            lib,
            device,
            &RunOptions {
                out: frames.clone(),
                format: "h5".parse()?,
                compression: "none".parse()?,
                force: true,
                preview: None,
                progress: o.progress,
                library_path: o.library_path.clone(),
            },
        )?;
        let base = CountConfig { net: Some(o.net.clone()), finder: o.finder, ..Default::default() };
        let plain = dir.path().join(format!("counts{i}-{{method}}.h5"));
        count(&frames, &plain, vec![o.centroid, Method::Net, Method::Stempy], base.clone(), device, o.progress)?;
        let split = dir.path().join(format!("counts{i}-split.h5"));
        let cfg = CountConfig { pairs: Some(o.pairs.clone()), ..base.clone() };
        count(&frames, &split, vec![Method::Net], cfg, device, o.progress)?;
        let mut files = vec![
            PathBuf::from(plain.display().to_string().replace("{method}", o.centroid.name())),
            PathBuf::from(plain.display().to_string().replace("{method}", "net")),
            split,
            PathBuf::from(plain.display().to_string().replace("{method}", "stempy")),
        ];
        if o.finder == Finder::Pixel {
            // the centroid on the EMSim notes' 3x3-sum finder, beside the pixel finder
            let sum3 = dir.path().join(format!("counts{i}-sum3.h5"));
            let cfg = CountConfig { finder: Finder::Sum3, net: None, ..base };
            count(&frames, &sum3, vec![o.centroid], cfg, device, o.progress)?;
            files.push(sum3);
        }
        let report = super::run(&super::EvalOptions {
            counts: files.clone(),
            truth: frames.clone(),
            radius_px: o.radius_px,
            json: None,
            plots: None,
            limits: Default::default(),
        })?;
        let sum3_name = format!("{} sum3", o.centroid.name());
        let names = [o.centroid.name(), "net", "net+split", "stempy", &sum3_name];
        let methods: Vec<DoseMethod> = report
            .methods
            .iter()
            .zip(names)
            .map(|(m, name)| DoseMethod {
                method: name.into(),
                n_found: m.n_found,
                recall: m.recall,
                precision: m.precision,
                mean_error_px: m.mean_error_px,
            })
            .collect();
        points.push(DosePoint {
            dose_e_per_px: dose,
            n_true: report.n_true,
            methods,
            centroid_overlap_loss: 0.0,
            split_recovered_fraction: f64::NAN,
            split_recovered_fraction_beyond_reference: f64::NAN,
            split_precision_change_points: 0.0,
        });
        std::fs::remove_file(&frames).ok();
    }
    let ref_recall = points[0].methods[0].recall;
    let ref_gain = points[0].methods[2].recall - ref_recall;
    for p in &mut points {
        let (c, s) = (&p.methods[0], &p.methods[2]);
        p.centroid_overlap_loss = ref_recall - c.recall;
        let (gain, loss) = (s.recall - c.recall, p.centroid_overlap_loss);
        p.split_recovered_fraction = if loss > 0.0 { gain / loss } else { f64::NAN };
        p.split_recovered_fraction_beyond_reference = if loss > 0.0 { (gain - ref_gain) / loss } else { f64::NAN };
        p.split_precision_change_points = 100.0 * (s.precision - c.precision);
    }
    Ok(DoseReport {
        test: "recall and precision against dose (frames --dose, count, eval)",
        frames_per_dose: o.frames,
        height: o.height,
        width: o.width,
        seed: o.seed,
        noise_sigma_e: o.noise_sigma_e,
        radius_px: o.radius_px,
        net_model: o.net.cfg.name.clone(),
        classifier_model: o.pairs.classifier.cfg.name.clone(),
        localizer_model: o.pairs.localizer.cfg.name.clone(),
        path: device.path_name(),
        points,
    })
}

fn count(
    frames: &Path,
    out: &Path,
    methods: Vec<Method>,
    cfg: CountConfig,
    device: &Device,
    progress: bool,
) -> Result<()> {
    let opts = CountOptions { progress, ..CountOptions::new(frames.to_path_buf(), methods, out.display().to_string()) };
    crate::count::run::run(cfg, device, &opts)?;
    Ok(())
}

impl DoseReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}: {} frames of {}x{} per dose, seed {}, sigma {} e, match radius {} px, models {} / {} / {}, {} path\n",
            self.test,
            self.frames_per_dose,
            self.height,
            self.width,
            self.seed,
            self.noise_sigma_e,
            self.radius_px,
            self.net_model,
            self.classifier_model,
            self.localizer_model,
            self.path
        );
        s.push_str("dose e/px  true e    method      found  recall  precision  mean px\n");
        for p in &self.points {
            for (k, m) in p.methods.iter().enumerate() {
                let lead = if k == 0 { format!("{:<9} {:>7}", p.dose_e_per_px, p.n_true) } else { " ".repeat(17) };
                s.push_str(&format!(
                    "{lead}    {:<10} {:>6}  {:.4}  {:>9.4}  {:.4}\n",
                    m.method, m.n_found, m.recall, m.precision, m.mean_error_px
                ));
            }
            s.push_str(&format!(
                "{}loss to overlap (centroid, vs the lowest dose) {:.4}; split recovers {:.1} % of it ({:.1} % beyond \
                 its gain at the lowest dose); precision change {:+.2} points\n",
                " ".repeat(21),
                p.centroid_overlap_loss,
                100.0 * p.split_recovered_fraction,
                100.0 * p.split_recovered_fraction_beyond_reference,
                p.split_precision_change_points
            ));
        }
        s
    }

    /// `recall_vs_dose.png` and `precision_vs_dose.png` in `dir`.
    pub fn plots(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        use crate::eval::plots::{Chart, Series, line_chart};
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut out = Vec::new();
        for (what, file) in [("recall", "recall_vs_dose.png"), ("precision", "precision_vs_dose.png")] {
            let names: Vec<String> = self.points[0].methods.iter().map(|m| m.method.clone()).collect();
            let series: Vec<Vec<(f64, f64)>> = (0..names.len())
                .map(|k| {
                    self.points
                        .iter()
                        .map(|p| {
                            let m = &p.methods[k];
                            (p.dose_e_per_px, if what == "recall" { m.recall } else { m.precision })
                        })
                        .collect()
                })
                .collect();
            let s: Vec<Series> = names.iter().zip(&series).map(|(n, pts)| Series { label: n, points: pts }).collect();
            let path = dir.join(file);
            line_chart(&path, &Chart::new(&format!("{what} vs dose"), "dose (electrons / pixel / frame)", what), &s)?;
            out.push(path);
        }
        Ok(out)
    }
}
