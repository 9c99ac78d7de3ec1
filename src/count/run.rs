//! The streaming driver of `emsim count`: frames are read from disk on one thread, counted on the
//! device and written on another, in batches, so memory stays bounded whatever the file size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{CountConfig, Counter, Found, Method};
use crate::gpu::{AdapterSummary, Device};
use crate::io::atomic::Output;
use crate::io::counts_out::{CountsMeta, CountsWriter, ElectronColumns, StempyWriter};
use crate::io::frames_in::FramesReader;
use crate::{Error, Result};

#[derive(Clone)]
pub struct CountOptions {
    pub input: PathBuf,
    pub dataset: String,
    pub methods: Vec<Method>,
    /// Output path; with several methods it must contain `{method}`.
    pub out: String,
    pub stempy: Option<PathBuf>,
    /// Folder for counted images (npy + PNG) at 1x, 2x, 4x.
    pub images: Option<PathBuf>,
    pub force: bool,
    pub progress: bool,
    /// Count at most this many frames (from the first).
    pub max_frames: Option<u64>,
    /// Override the gain / offset the frames file states.
    pub gain_adu_per_e: Option<f32>,
    pub offset_adu: Option<f32>,
    pub dark: Option<String>,
    pub gain_map: Option<String>,
    pub pixel_size_um: Option<f32>,
}

impl CountOptions {
    /// Counting `input`'s `/frames` with `methods` into `out`, with every option at its default
    /// (the file's gain and offset, no maps, no extra outputs), overwriting, without a progress bar.
    pub fn new(input: PathBuf, methods: Vec<Method>, out: String) -> Self {
        Self {
            input,
            dataset: "frames".into(),
            methods,
            out,
            stempy: None,
            images: None,
            force: true,
            progress: false,
            max_frames: None,
            gain_adu_per_e: None,
            offset_adu: None,
            dark: None,
            gain_map: None,
            pixel_size_um: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CountSummary {
    pub stage: &'static str,
    pub path: &'static str,
    pub frames: u64,
    pub electrons: u64,
    pub electrons_per_frame: f64,
    pub noise_sigma_e: f32,
    pub sigma_estimated: bool,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub electrons_per_s: f64,
    pub outputs: Vec<String>,
    pub adapter: Option<AdapterSummary>,
    /// The network's activation storage (`f32`, `f16`) when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_precision: Option<&'static str>,
    /// How the GPU ran the network (`layers`, `fused`; on the CPU path the `--net-kernel` given)
    /// when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_kernel: Option<&'static str>,
    /// Peak resident memory of the process (Linux), MiB.
    pub peak_memory_mib: Option<f64>,
}

/// The output path of method `m`: `{method}` in the template is replaced by its name (with one
/// method too, so a template written for several works unchanged for one).
fn out_path(template: &str, m: Method) -> PathBuf {
    PathBuf::from(template.replace("{method}", m.name()))
}

/// Counts `opts.input` with `cfg` (gain/offset/dark/gain map filled in from the file and options).
pub fn run(mut cfg: CountConfig, device: &Device, opts: &CountOptions) -> Result<CountSummary> {
    if opts.methods.is_empty() {
        return Err(Error::invalid("--method", "give at least one method"));
    }
    let several = opts.methods.len() > 1;
    if several && !opts.out.contains("{method}") {
        return Err(Error::invalid(
            "--out",
            "with several methods the path must contain {method}, e.g. counts-{method}.h5",
        ));
    }
    let mut reader = FramesReader::open(&opts.input, &opts.dataset)?;
    let meta = reader.meta.clone();
    let (h, w) = (meta.height, meta.width);
    let n_frames = opts.max_frames.map_or(meta.n_frames, |m| m.min(meta.n_frames));
    if n_frames == 0 {
        return Err(Error::file(&opts.input, "has no frames to count"));
    }
    cfg.gain_adu_per_e = opts.gain_adu_per_e.or(meta.gain_adu_per_e).unwrap_or(1.0);
    cfg.offset_adu = opts.offset_adu.or(meta.offset_adu).unwrap_or(0.0);
    if let Some(d) = &opts.dark {
        cfg.dark = Some(crate::io::frames_in::read_map(d, "--dark", h, w)?);
    }
    if let Some(g) = &opts.gain_map {
        cfg.gain_map = Some(crate::io::frames_in::read_map(g, "--gain-map", h, w)?);
    }
    cfg.validate(h, w)?;
    // Outputs: check all are writable before any work.
    let outputs: Vec<(Method, Output)> = opts
        .methods
        .iter()
        .map(|&m| Ok((m, Output::new(&out_path(&opts.out, m), opts.force, "--out")?)))
        .collect::<Result<_>>()?;
    let stempy_out = opts.stempy.as_ref().map(|p| Output::new(p, opts.force, "--stempy")).transpose()?;
    let images_out = opts.images.as_ref().map(|p| Output::new(p, opts.force, "--images")).transpose()?;

    let t0 = Instant::now();
    // Noise sigma: given, or estimated from the first frames (calibrated as the kernel does).
    let (sigma_e, estimated) = match cfg.noise_sigma_e {
        Some(s) => (s, false),
        None => {
            let k = n_frames.min(super::SIGMA_ESTIMATE_FRAMES as u64) as usize;
            let adu = reader.read(0, k)?;
            let s = cfg.estimate_sigma_from_adu(super::HostAdu::F32(&adu), (h * w) as usize).ok_or_else(|| {
                Error::file(
                    &opts.input,
                    "cannot estimate the read noise (no pixel below the dark level); pass --sigma-e",
                )
            })?;
            (s, true)
        }
    };
    let counter = Counter::new(cfg.clone(), h, w, sigma_e, device)?;
    let stempy_count = opts
        .methods
        .contains(&Method::Stempy)
        .then(|| super::stempy::StempyCount::new(&cfg, sigma_e, h as usize, w as usize));
    let batch = counter.batch_frames() as u64;
    let pitch = opts.pixel_size_um.or(meta.pixel_size_um).unwrap_or(f32::NAN);
    // What the network ran with (f16 falls back to f32 on adapters without SHADER_F16; on the
    // GPU the kernel chosen, on the CPU path the flag as given: it always fuses small networks).
    let net_precision = opts.methods.contains(&Method::Net).then_some(counter.cfg.net_precision);
    let params_json = serde_json::json!({
        "net_precision": net_precision.map(|p| p.name()),
        "net_kernel": opts.methods.contains(&Method::Net).then_some(counter.cfg.net_kernel.name()),
        "suppress_px": cfg.suppress_px, "gain_adu_per_e": cfg.gain_adu_per_e, "offset_adu": cfg.offset_adu,
        "dark": opts.dark, "gain_map": opts.gain_map, "dataset": opts.dataset,
        "finder": cfg.finder.name(),
        "faint_threshold_n_sigma": (cfg.finder == super::Finder::Pixel).then_some(cfg.faint_threshold_n_sigma),
        "faint_sum_threshold_n_sigma": (cfg.finder == super::Finder::Pixel).then_some(cfg.faint_sum_threshold_n_sigma),
    })
    .to_string();
    let mut writers: Vec<(Method, CountsWriter)> = outputs
        .iter()
        .map(|(m, o)| {
            let cm = CountsMeta {
                method: m.name().into(),
                height: h,
                width: w,
                n_frames,
                first_frame: meta.first_frame,
                pixel_size_um: pitch,
                frames_file: opts.input.display().to_string(),
                frames_seed: meta.seed,
                frames_config_json: meta.config_json.clone(),
                noise_sigma_e: sigma_e,
                sigma_estimated: estimated,
                background_threshold_n_sigma: cfg.background_threshold_n_sigma,
                xray_threshold_e: cfg.xray_threshold_e,
                centroid_threshold_e: cfg.centroid_threshold_e,
                params_json: params_json.clone(),
            };
            Ok((*m, CountsWriter::create(o.tmp(), &cm, *m == Method::Net)?))
        })
        .collect::<Result<_>>()?;
    let mut stempy = match &stempy_out {
        Some(o) => Some(StempyWriter::create(
            o.tmp(),
            h,
            w,
            n_frames,
            &[
                ("generator", crate::generator()),
                ("frames_file", opts.input.display().to_string()),
                ("noise_sigma_e", sigma_e.to_string()),
            ],
        )?),
        None => None,
    };
    let bar = crate::frames::run::progress_bar(opts.progress, n_frames, "count");
    // Raw u16 frames (detector data) go to the counter as they are: half the upload of f32.
    enum Batch {
        F32(Vec<f32>),
        U16(Vec<u16>),
    }
    let u16_input = reader.is_u16();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, Batch)>>(1);
    let mut electrons = 0u64;
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || {
            let mut start = 0;
            while start < n_frames {
                let n = batch.min(n_frames - start);
                let r = if u16_input {
                    reader.read_u16(start, n as usize).map(|v| (start, Batch::U16(v)))
                } else {
                    reader.read(start, n as usize).map(|v| (start, Batch::F32(v)))
                };
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
                start += n;
            }
        });
        for msg in rx.iter() {
            let (start, adu) = msg?;
            let host = match &adu {
                Batch::F32(a) => super::HostAdu::F32(a),
                Batch::U16(a) => super::HostAdu::U16(a),
            };
            let found = match host {
                super::HostAdu::F32(a) => counter.count(a)?,
                super::HostAdu::U16(a) => counter.count_u16(a)?,
            };
            let n = host.len() / (h * w) as usize;
            electrons += found.cands.len() as u64;
            for (m, wtr) in writers.iter_mut() {
                if *m == Method::Stempy {
                    let stempy = stempy_count.as_ref().expect("prepared when stempy is among the methods");
                    let (cols, counts) = stempy.count_batch(host, start);
                    wtr.append(&cols, &counts)?;
                } else {
                    wtr.append(&columns(&found, *m, start, w), &per_frame_counts(&found, n, *m))?;
                }
            }
            if let Some(st) = stempy.as_mut() {
                let mut lists = vec![Vec::new(); n];
                for c in &found.cands {
                    lists[c[0] as usize].push(c[1]);
                }
                st.append(&lists)?;
            }
            bar.inc(n as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    if let Some(dir) = &images_out {
        write_images(dir.tmp(), &writers[0].1)?;
    }
    let mut paths = Vec::new();
    for ((_, wtr), (_, o)) in writers.into_iter().zip(outputs) {
        wtr.finish()?;
        paths.push(o.commit()?.display().to_string());
    }
    if let (Some(st), Some(o)) = (stempy, stempy_out) {
        st.finish()?;
        paths.push(o.commit()?.display().to_string());
    }
    if let Some(o) = images_out {
        paths.push(o.commit()?.display().to_string());
    }
    Ok(CountSummary {
        stage: "count",
        path: device.path_name(),
        frames: n_frames,
        electrons,
        electrons_per_frame: electrons as f64 / n_frames as f64,
        noise_sigma_e: sigma_e,
        sigma_estimated: estimated,
        elapsed_s: elapsed,
        frames_per_s: n_frames as f64 / elapsed,
        electrons_per_s: electrons as f64 / elapsed,
        outputs: paths,
        adapter: device.adapter().cloned(),
        net_precision: net_precision.map(|p| p.name()),
        net_kernel: net_precision.map(|_| counter.cfg.net_kernel.name()),
        peak_memory_mib: crate::peak_memory_mib(),
    })
}

/// Electrons per frame of the batch for method `m` (the network's count includes split-off ones).
fn per_frame_counts(found: &Found, n: usize, m: Method) -> Vec<u64> {
    let mut v = vec![0u64; n];
    for (i, c) in found.cands.iter().enumerate() {
        let extra = m == Method::Net && found.split_off(i).is_some();
        v[c[0] as usize] += 1 + extra as u64;
    }
    v
}

/// The electrons of a batch as columns for one method; frame indices offset by `start`.
pub fn columns(found: &Found, m: Method, start: u64, width: u32) -> ElectronColumns {
    let mut e = ElectronColumns::default();
    let net = m == Method::Net;
    if net {
        assert_eq!(found.net.len(), found.cands.len(), "network estimates for every centre");
        e.sigma_px = Some(Vec::with_capacity(found.net_electrons()));
    }
    for (i, (c, l)) in found.cands.iter().zip(&found.localized).enumerate() {
        let xy = if net { found.net[i].xy } else { l.xy[m.index()] };
        // a split centre gives two rows: its own and the split-off electron (same centre pixel,
        // 3x3 charge and sigma)
        let second = if net { found.split_off(i) } else { None };
        for xy in std::iter::once(xy).chain(second) {
            e.frame.push((start + c[0] as u64) as u32);
            e.x_px.push(xy[0]);
            e.y_px.push(xy[1]);
            e.row.push(c[1] / width);
            e.col.push(c[1] % width);
            e.charge_e.push(l.charge3_e);
            if let Some(s) = e.sigma_px.as_mut() {
                s.push(found.net[i].sigma_px);
            }
        }
    }
    e
}

/// Counted images as `counted_x{k}.npy` and `.png` (square-root grey scale) in `dir`.
fn write_images(dir: &Path, w: &CountsWriter) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    for (k, img) in w.images() {
        let (hh, ww) = (w.height() * k, w.width() * k);
        let a = ndarray::ArrayView2::from_shape((hh as usize, ww as usize), img).unwrap();
        let npy = dir.join(format!("counted_x{k}.npy"));
        ndarray_npy::write_npy(&npy, &a).map_err(|e| Error::file(&npy, e))?;
        let max = img.iter().copied().max().unwrap_or(0).max(1) as f32;
        let png: Vec<u8> = img.iter().map(|&v| ((v as f32 / max).sqrt() * 255.0).round() as u8).collect();
        let p = dir.join(format!("counted_x{k}.png"));
        image::GrayImage::from_raw(ww, hh, png).expect("size").save(&p).map_err(|e| Error::file(&p, e))?;
    }
    Ok(())
}
