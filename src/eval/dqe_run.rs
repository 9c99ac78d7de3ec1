//! `emsim eval dqe`: MTF, noise power and DQE of the simulated detector through the whole pipeline,
//! for the integrating mode (summed frames, in electrons), every counting method asked for at
//! each upsampling, and the ceiling of a perfect counter (the truth positions binned).
//!
//! For each dose (electrons per pixel per frame):
//! * a knife edge: frames of 512 x 96 pixels half covered by a straight edge tilted by
//!   `angle_deg` from the columns (electrons behind it removed, `Generator::generate_cpu_masked`),
//!   counted, and every method's counts summed into one image per upsampling; MTF by the
//!   slanted-edge method (`dqe::mtf_slanted_edge`);
//! * flat fields of 128 x 128 pixels, counted; per frame and method, NPS(u, 0) and the binned
//!   variances for NPS(0) (`dqe::NpsU`, `dqe::BinnedVariance`); the mean signal; the counted
//!   fraction against the true electrons (coincidence loss);
//! * DQE(f) = (dmu/dq)^2 q MTF(f)^2 / NPS(f) and DQE(0) = (dmu/dq)^2 q / NPS(0), q the dose per
//!   pixel of the grid and dmu/dq the slope of the mean signal against it, measured on the same
//!   flat fields with 10 % more electrons (for a linear response, mu^2 / (q NPS)).
//!
//! Frames are made on the CPU (the knife edge is a CPU feature of the generator); counting runs on
//! the device given. Frequencies are in cycles per detector pixel (Nyquist 0.5).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dqe::{BinnedVariance, Edge, NpsU, dqe, mtf_slanted_edge};
use crate::count::split::PairModels;
use crate::count::stempy::StempyCount;
use crate::count::{CountConfig, Counter, Found, HostAdu, Method};
use crate::frames::{ElectronCount, FramesConfig, Generator, Truth};
use crate::gpu::Device;
use crate::io::counts_out::ElectronColumns;
use crate::io::library::EventLibrary;
use crate::net::model::Model;
use crate::{Error, Result};

/// Knife-edge frames: rows x columns.
pub const EDGE_FRAME: (u32, u32) = (512, 96);
/// Flat-field frames: rows x columns.
pub const FLAT_FRAME: (u32, u32) = (128, 128);
/// Half width of the edge spread function used, detector pixels.
const EDGE_HALF_WIDTH_PX: f64 = 8.0;
/// Rows summed into one band for NPS(u, 0).
const NPS_BAND_ROWS: usize = 16;
/// Frequency step of the curves, cycles per detector pixel.
const FREQUENCY_STEP: f64 = 0.025;
/// Frames per batch.
const BATCH: usize = 256;
/// The relative step of the dose for the response's slope.
const SLOPE_STEP: f64 = 0.1;
/// NPS(0) is extrapolated from the largest bins of which the flat fields hold at least this many.
const NPS0_MIN_BINS: u64 = 16_384;

pub struct DqeOptions {
    pub doses: Vec<f64>,
    /// Knife-edge frames per dose.
    pub edge_frames: u64,
    /// Flat-field frames per dose.
    pub flat_frames: u64,
    pub noise_sigma_e: f32,
    pub angle_deg: f64,
    /// Upsampling factors of the counted images (1: detector pixels).
    pub upsample: Vec<u32>,
    /// Classical counting methods.
    pub methods: Vec<Method>,
    /// With a model: `net` too.
    pub net: Option<Model>,
    /// With the pair models: `net+split` too (the network's electrons and those split off).
    pub pairs: Option<PairModels>,
    pub seed: u64,
}

/// One curve set: a method (or `integrating`, `perfect`) at one upsampling.
#[derive(Clone, Debug, Serialize)]
pub struct DqeCurve {
    pub method: String,
    pub upsample: u32,
    /// Mean signal per pixel of the grid per frame (counts, or electrons for `integrating`).
    pub mean_signal_per_px: f64,
    /// Incident electrons per pixel of the grid per frame.
    pub q_e_per_px: f64,
    pub nps0: f64,
    /// The bin size NPS(0) was extrapolated from, pixels of the grid.
    pub nps0_bin_px: usize,
    /// (dmu/dq)^2 q / NPS(0), with the response's slope measured at this dose.
    pub dqe0: f64,
    /// mu^2 / (q NPS(0)): the same for a linear response; above `dqe0` where counting losses
    /// grow with dose (it can then exceed 1).
    pub dqe0_from_mean: f64,
    /// dmu/dq: the mean signal gained per incident electron at this dose.
    pub response_slope: f64,
    /// Found / true electrons on the flat fields (1 for `integrating`).
    pub counted_fraction: f64,
    /// 1 - counted_fraction.
    pub coincidence_loss: f64,
    /// Cycles per detector pixel.
    pub frequency_cycles_per_px: Vec<f64>,
    /// The same as a fraction of the detector's Nyquist frequency (0.5 cycles per pixel).
    pub frequency_nyquist: Vec<f64>,
    pub mtf: Vec<f64>,
    pub nps: Vec<f64>,
    pub dqe: Vec<f64>,
    pub mtf_nyquist: f64,
    pub dqe_nyquist: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DqePoint {
    pub dose_e_per_px: f64,
    pub true_electrons_flat: u64,
    pub curves: Vec<DqeCurve>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DqeReport {
    pub test: &'static str,
    pub edge_frames: u64,
    pub edge_frame: [u32; 2],
    pub flat_frames: u64,
    pub flat_frame: [u32; 2],
    pub angle_deg: f64,
    pub noise_sigma_e: f32,
    pub seed: u64,
    pub path: &'static str,
    pub points: Vec<DqePoint>,
}

/// What is measured: a method's positions, the truth, or the summed charge.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    Integrating,
    Perfect,
    Method(Method),
    /// The network with pair splitting.
    Split,
}

impl Source {
    fn name(self) -> String {
        match self {
            Self::Integrating => "integrating".into(),
            Self::Perfect => "perfect".into(),
            Self::Method(m) => m.name().into(),
            Self::Split => "net+split".into(),
        }
    }
}

/// The (source, upsampling) pairs measured.
fn sources(o: &DqeOptions) -> Vec<(Source, u32)> {
    let mut out = vec![(Source::Integrating, 1)];
    let mut methods: Vec<Source> = vec![Source::Perfect];
    methods.extend(o.methods.iter().map(|&m| Source::Method(m)));
    if o.net.is_some() {
        methods.push(Source::Method(Method::Net));
    }
    if o.pairs.is_some() {
        methods.push(Source::Split);
    }
    for &k in &o.upsample {
        out.extend(methods.iter().map(|&s| (s, k)));
    }
    out
}

/// The positions of one batch's electrons per source (frame in batch, x, y), or None for the
/// integrating mode.
fn positions(
    src: Source,
    found: &Found,
    stempy: Option<&ElectronColumns>,
    truth: &Truth,
    first: u64,
) -> Option<Vec<(usize, f32, f32)>> {
    match src {
        Source::Integrating => None,
        Source::Perfect => Some(
            (0..truth.x_px.len())
                .map(|i| ((truth.frame[i] as u64 - first) as usize, truth.x_px[i], truth.y_px[i]))
                .collect(),
        ),
        Source::Method(Method::Net) => {
            Some(found.cands.iter().zip(&found.net).map(|(c, n)| (c[0] as usize, n.xy[0], n.xy[1])).collect())
        }
        Source::Split => Some(
            found
                .cands
                .iter()
                .zip(&found.net)
                .enumerate()
                .flat_map(|(i, (c, n))| {
                    let second = found.split_off(i).map(|xy| (c[0] as usize, xy[0], xy[1]));
                    std::iter::once((c[0] as usize, n.xy[0], n.xy[1])).chain(second)
                })
                .collect(),
        ),
        Source::Method(Method::Stempy) => {
            let s = stempy.expect("stempy's electrons when stempy is measured");
            Some((0..s.len()).map(|i| ((s.frame[i] as u64 - first) as usize, s.x_px[i], s.y_px[i])).collect())
        }
        Source::Method(m) => Some(
            found
                .cands
                .iter()
                .zip(&found.localized)
                .map(|(c, l)| (c[0] as usize, l.xy[m.index()][0], l.xy[m.index()][1]))
                .collect(),
        ),
    }
}

/// stempy's counter for one stage's frames, when stempy is among the methods.
fn stempy_count(o: &DqeOptions, count: &Counter, (h, w): (u32, u32)) -> Option<StempyCount> {
    o.methods.contains(&Method::Stempy).then(|| StempyCount::new(&count.cfg, count.sigma_e, h as usize, w as usize))
}

/// Adds `points` (detector pixels) to `image` (`h k x w k`), one count each.
fn bin(points: impl Iterator<Item = (f32, f32)>, image: &mut [f32], h: usize, w: usize, k: u32) {
    let k = k as f32;
    let (hk, wk) = (h * k as usize, w * k as usize);
    for (x, y) in points {
        let (c, r) = ((x * k).floor(), (y * k).floor());
        if c >= 0.0 && r >= 0.0 && (c as usize) < wk && (r as usize) < hk {
            image[r as usize * wk + c as usize] += 1.0;
        }
    }
}

/// Runs the measurement.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub fn run(o: &DqeOptions, lib: &EventLibrary, device: &Device) -> Result<DqeReport> {
    if o.doses.is_empty() || o.doses.iter().any(|&d| !(d > 0.0 && d < 1.0)) {
        return Err(Error::invalid("--doses", "give doses between 0 and 1 electron per pixel per frame"));
    }
    if o.edge_frames == 0 || o.flat_frames == 0 {
        return Err(Error::invalid("--frames", "must be at least 1"));
    }
    if !(o.angle_deg >= 1.0 && o.angle_deg <= 20.0) {
        return Err(Error::invalid("--angle-deg", "the edge's tilt must be between 1 and 20 degrees"));
    }
    if o.upsample.is_empty() || o.upsample.iter().any(|&k| !matches!(k, 1 | 2 | 4 | 8)) {
        return Err(Error::invalid("--upsample", "give factors among 1, 2, 4 and 8"));
    }
    let mut points = Vec::new();
    for (i, &dose) in o.doses.iter().enumerate() {
        let seed = o.seed.wrapping_add(2 * i as u64);
        let (mtfs, freqs) = edge_mtfs(o, lib, device, dose, seed)?;
        let (flat, n_true) = flat_fields(o, lib, device, dose, seed + 1, &freqs, true)?;
        // the same frames with 10 % more electrons (the same electrons first, then others): the
        // response's slope dmu/dq, which counting losses that grow with dose make less than mu/q
        let (up, _) = flat_fields(o, lib, device, dose * (1.0 + SLOPE_STEP), seed + 1, &freqs, false)?;
        let curves = sources(o)
            .into_iter()
            .zip(mtfs)
            .zip(flat)
            .zip(up)
            .map(|((((src, k), mtf), f), u)| {
                let q = dose / (k * k) as f64;
                let slope = (u.mean - f.mean) / (q * SLOPE_STEP);
                let nps0_b = f.binned.nps0(NPS0_MIN_BINS).unwrap_or((1, f64::NAN));
                let beyond = |v: Vec<f64>| -> Vec<f64> {
                    v.into_iter()
                        .zip(&freqs)
                        .map(|(v, &fr)| if fr <= 0.5 * k as f64 + 1e-9 { v } else { f64::NAN })
                        .collect()
                };
                // at f = 0 the bands' projections, their means removed, have no power: NPS(0)
                // comes from the binned variances
                let mut nps = beyond(f.nps.nps());
                nps[0] = nps0_b.1;
                let d = dqe(slope * q, q, &mtf, &nps);
                let nyq = freqs.iter().position(|&x| (x - 0.5).abs() < 1e-9).expect("0.5 on the grid");
                let counted = if src == Source::Integrating { 1.0 } else { f.found as f64 / n_true.max(1) as f64 };
                DqeCurve {
                    method: src.name(),
                    upsample: k,
                    mean_signal_per_px: f.mean,
                    q_e_per_px: q,
                    nps0: nps0_b.1,
                    nps0_bin_px: nps0_b.0,
                    dqe0: slope * slope * q / nps0_b.1,
                    dqe0_from_mean: f.mean * f.mean / (q * nps0_b.1),
                    response_slope: slope,
                    counted_fraction: counted,
                    coincidence_loss: 1.0 - counted,
                    frequency_cycles_per_px: freqs.clone(),
                    frequency_nyquist: freqs.iter().map(|f| f / 0.5).collect(),
                    mtf_nyquist: mtf[nyq],
                    dqe_nyquist: d[nyq],
                    mtf,
                    nps,
                    dqe: d,
                }
            })
            .collect();
        points.push(DqePoint { dose_e_per_px: dose, true_electrons_flat: n_true, curves });
    }
    Ok(DqeReport {
        test: "MTF (slanted edge), NPS and DQE through frames and count (eval dqe)",
        edge_frames: o.edge_frames,
        edge_frame: [EDGE_FRAME.0, EDGE_FRAME.1],
        flat_frames: o.flat_frames,
        flat_frame: [FLAT_FRAME.0, FLAT_FRAME.1],
        angle_deg: o.angle_deg,
        noise_sigma_e: o.noise_sigma_e,
        seed: o.seed,
        path: device.path_name(),
        points,
    })
}

fn frames_config(o: &DqeOptions, (h, w): (u32, u32), frames: u64, dose: f64, seed: u64) -> Result<FramesConfig> {
    let cfg = FramesConfig {
        frames,
        height: h,
        width: w,
        electrons: ElectronCount::Dose { electrons_per_pixel: dose },
        noise_sigma_e: o.noise_sigma_e,
        seed,
        batch_frames: BATCH as u32,
        ..Default::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

fn counter<'a>(o: &DqeOptions, (h, w): (u32, u32), device: &'a Device) -> Result<Counter<'a>> {
    let cfg =
        CountConfig { net: o.net.clone(), pairs: o.pairs.clone(), batch_frames: BATCH as u32, ..Default::default() };
    Counter::new(cfg, h, w, o.noise_sigma_e.max(1e-3), device)
}

/// The MTF of every (source, upsampling) on the knife edge, on frequencies 0 .. the largest
/// grid's Nyquist (cycles per detector pixel).
fn edge_mtfs(
    o: &DqeOptions,
    lib: &EventLibrary,
    device: &Device,
    dose: f64,
    seed: u64,
) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let (h, w) = (EDGE_FRAME.0 as usize, EDGE_FRAME.1 as usize);
    let cfg = frames_config(o, EDGE_FRAME, o.edge_frames, dose, seed)?;
    let edge = Edge { x0_px: w as f64 / 2.0, y0_px: h as f64 / 2.0, angle_rad: o.angle_deg.to_radians() };
    let cpu = Device::Cpu;
    let gen_ = Generator::new(cfg.clone(), lib, &cpu)?;
    let count = counter(o, EDGE_FRAME, device)?;
    let stempy = stempy_count(o, &count, EDGE_FRAME);
    let srcs = sources(o);
    let mut images: Vec<Vec<f32>> = srcs.iter().map(|&(_, k)| vec![0.0; h * w * (k * k) as usize]).collect();
    let counts: Vec<u32> = (0..o.edge_frames).map(|f| cfg.electron_count(f)).collect();
    for start in (0..counts.len()).step_by(BATCH) {
        let end = (start + BATCH).min(counts.len());
        let batch = gen_
            .generate_cpu_masked(start as u64, &counts[start..end], |x, y| edge.distance_px(x as f64, y as f64) > 0.0);
        let found = count.count(&batch.frames)?;
        let stempy_cols = stempy.as_ref().map(|s| s.count_batch(HostAdu::F32(&batch.frames), start as u64).0);
        let truth = Truth::of(&batch, lib, 0);
        for (&(src, k), img) in srcs.iter().zip(&mut images) {
            match positions(src, &found, stempy_cols.as_ref(), &truth, start as u64) {
                Some(p) => bin(p.into_iter().map(|(_, x, y)| (x, y)), img, h, w, k),
                None => {
                    for frame in batch.frames.chunks_exact(h * w) {
                        for (a, &v) in img.iter_mut().zip(frame) {
                            *a += (v - cfg.offset_adu) / cfg.gain_adu_per_e;
                        }
                    }
                }
            }
        }
    }
    let k_max = *o.upsample.iter().max().unwrap() as f64;
    let n = (0.5 * k_max / FREQUENCY_STEP).round() as usize;
    let freqs: Vec<f64> = (0..=n).map(|j| j as f64 * FREQUENCY_STEP).collect();
    let mut out = Vec::new();
    for (&(_, k), img) in srcs.iter().zip(&images) {
        let kf = k as f64;
        let grid_edge = Edge { x0_px: edge.x0_px * kf, y0_px: edge.y0_px * kf, angle_rad: edge.angle_rad };
        // on the grid, f cycles per detector pixel are f / k cycles per grid pixel; beyond the
        // grid's own Nyquist (0.5 k per detector pixel) the curve is not defined
        let grid_f: Vec<f64> = freqs.iter().map(|f| (f / kf).min(0.5)).collect();
        let m = mtf_slanted_edge(img, h * k as usize, w * k as usize, &grid_edge, 4, EDGE_HALF_WIDTH_PX * kf, &grid_f)?;
        out.push(m.mtf.iter().zip(&freqs).map(|(&v, &f)| if f <= 0.5 * kf + 1e-9 { v } else { f64::NAN }).collect());
    }
    Ok((out, freqs))
}

/// What the flat fields give one (source, upsampling).
struct Flat {
    nps: NpsU,
    binned: BinnedVariance,
    mean: f64,
    found: u64,
}

fn flat_fields(
    o: &DqeOptions,
    lib: &EventLibrary,
    device: &Device,
    dose: f64,
    seed: u64,
    freqs: &[f64],
    spectra: bool,
) -> Result<(Vec<Flat>, u64)> {
    let (h, w) = (FLAT_FRAME.0 as usize, FLAT_FRAME.1 as usize);
    let cfg = frames_config(o, FLAT_FRAME, o.flat_frames, dose, seed)?;
    let cpu = Device::Cpu;
    let gen_ = Generator::new(cfg.clone(), lib, &cpu)?;
    let count = counter(o, FLAT_FRAME, device)?;
    let stempy = stempy_count(o, &count, FLAT_FRAME);
    let srcs = sources(o);
    let mut flats = srcs
        .iter()
        .map(|&(_, k)| {
            let (hk, wk) = (h * k as usize, w * k as usize);
            let grid_f: Vec<f64> = freqs.iter().map(|f| (f / k as f64).min(0.5)).collect();
            Ok(Flat {
                nps: NpsU::new(hk, wk, NPS_BAND_ROWS * k as usize, &grid_f)?,
                binned: BinnedVariance::new(hk, wk),
                mean: 0.0,
                found: 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let counts: Vec<u32> = (0..o.flat_frames).map(|f| cfg.electron_count(f)).collect();
    let mut n_true = 0u64;
    for start in (0..counts.len()).step_by(BATCH) {
        let end = (start + BATCH).min(counts.len());
        let batch = gen_.generate(start as u64, &counts[start..end])?;
        let found = count.count(&batch.frames)?;
        let stempy_cols = stempy.as_ref().map(|s| s.count_batch(HostAdu::F32(&batch.frames), start as u64).0);
        let truth = Truth::of(&batch, lib, 0);
        n_true += truth.x_px.len() as u64;
        let frames = end - start;
        let frame_px = h * w;
        use rayon::prelude::*;
        srcs.par_iter().zip(&mut flats).for_each(|(&(src, k), flat)| {
            let (hk, wk) = (h * k as usize, w * k as usize);
            // each frame's electrons (positions come sorted by frame)
            let mut by_frame: Vec<Vec<(f32, f32)>> = vec![Vec::new(); frames];
            let integrating = match positions(src, &found, stempy_cols.as_ref(), &truth, start as u64) {
                Some(p) => {
                    flat.found += p.len() as u64;
                    for (f, x, y) in p {
                        by_frame[f].push((x, y));
                    }
                    false
                }
                None => true,
            };
            let mut image = vec![0.0f32; hk * wk];
            for (f, pts) in by_frame.iter().enumerate() {
                if integrating {
                    let frame = &batch.frames[f * frame_px..(f + 1) * frame_px];
                    for (a, &v) in image.iter_mut().zip(frame) {
                        *a = (v - cfg.offset_adu) / cfg.gain_adu_per_e;
                    }
                } else {
                    image.fill(0.0);
                    bin(pts.iter().copied(), &mut image, h, w, k);
                }
                if spectra {
                    flat.nps.add(&image);
                    flat.binned.add(&image);
                }
                flat.mean += image.iter().map(|&v| v as f64).sum::<f64>() / (hk * wk) as f64;
            }
        });
    }
    for f in &mut flats {
        f.mean /= o.flat_frames as f64;
    }
    Ok((flats, n_true))
}

impl DqeReport {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{}: knife edge {} frames of {}x{} (tilt {} deg), flat fields {} frames of {}x{}, sigma {} e, seed {}, {} path\n",
            self.test,
            self.edge_frames,
            self.edge_frame[0],
            self.edge_frame[1],
            self.angle_deg,
            self.flat_frames,
            self.flat_frame[0],
            self.flat_frame[1],
            self.noise_sigma_e,
            self.seed,
            self.path
        );
        s.push_str("dose e/px  method        grid  DQE(0)  MTF(Nyq)  DQE(Nyq)  counted\n");
        for p in &self.points {
            for (j, c) in p.curves.iter().enumerate() {
                let lead = if j == 0 { format!("{:<9}", p.dose_e_per_px) } else { " ".repeat(9) };
                s.push_str(&format!(
                    "{lead}  {:<12} {:>3}x  {:>6.3}  {:>8.3}  {:>8.3}  {:>7.4}\n",
                    c.method, c.upsample, c.dqe0, c.mtf_nyquist, c.dqe_nyquist, c.counted_fraction
                ));
            }
        }
        s
    }

    /// Per dose and grid `mtf_D_Kx.png`, `nps_D_Kx.png`, `dqe_D_Kx.png` (D: the dose's index, K
    /// the upsampling; the integrating mode on each); `dqe0_vs_dose.png` and
    /// `counted_fraction_vs_dose.png`.
    pub fn plots(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        use super::plots::{Chart, Series, line_chart};
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut out = Vec::new();
        let label = |c: &DqeCurve| format!("{} {}x", c.method, c.upsample);
        for (i, p) in self.points.iter().enumerate() {
            type Pick = fn(&DqeCurve) -> &Vec<f64>;
            let picks: [(&str, &str, Pick); 3] =
                [("mtf", "MTF", |c| &c.mtf), ("nps", "NPS / q", |c| &c.nps), ("dqe", "DQE", |c| &c.dqe)];
            let mut grids: Vec<u32> = p.curves.iter().map(|c| c.upsample).collect();
            grids.dedup();
            for k in grids {
                // one chart per grid; the integrating mode (1x) beside every grid's counters
                let curves: Vec<&DqeCurve> =
                    p.curves.iter().filter(|c| c.upsample == k || c.method == "integrating").collect();
                for (file, what, pick) in picks {
                    let labels: Vec<String> = curves.iter().map(|c| label(c)).collect();
                    let pts: Vec<Vec<(f64, f64)>> = curves
                        .iter()
                        .map(|c| {
                            let scale = if file == "nps" { 1.0 / c.q_e_per_px } else { 1.0 };
                            c.frequency_cycles_per_px
                                .iter()
                                .zip(pick(c))
                                .filter(|(_, v)| v.is_finite())
                                .map(|(&f, &v)| (f, v * scale))
                                .collect()
                        })
                        .collect();
                    let series: Vec<Series> =
                        labels.iter().zip(&pts).map(|(l, p)| Series { label: l, points: p }).collect();
                    let path = dir.join(format!("{file}_{i}_{k}x.png"));
                    let title = format!("{what} at {} e/px/frame, counts at {k}x", p.dose_e_per_px);
                    let mut chart = Chart::new(&title, "frequency (cycles / detector pixel)", what);
                    if file != "nps" {
                        chart.y_range = Some((0.0, 1.2));
                    }
                    line_chart(&path, &chart, &series)?;
                    out.push(path);
                }
            }
        }
        for (file, what) in
            [("dqe0_vs_dose.png", "DQE(0)"), ("counted_fraction_vs_dose.png", "counted / true electrons")]
        {
            let labels: Vec<String> = self.points[0].curves.iter().map(label).collect();
            let pts: Vec<Vec<(f64, f64)>> = (0..labels.len())
                .map(|j| {
                    self.points
                        .iter()
                        .map(|p| {
                            let c = &p.curves[j];
                            (p.dose_e_per_px, if file.starts_with("dqe0") { c.dqe0 } else { c.counted_fraction })
                        })
                        .collect()
                })
                .collect();
            let series: Vec<Series> = labels.iter().zip(&pts).map(|(l, p)| Series { label: l, points: p }).collect();
            let path = dir.join(file);
            line_chart(&path, &Chart::new(what, "dose (electrons / pixel / frame)", what), &series)?;
            out.push(path);
        }
        Ok(out)
    }
}
