//! The records and the report of `emsim bench`: one record per (stage, path, size), the table,
//! and the comparison of two reports.

use serde::Serialize;

use crate::gpu::AdapterSummary;
use crate::{Error, Result};

use super::*;

/// One measurement: one stage on one path at one size.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRecord {
    pub stage: String,
    pub path: String,
    /// What the timed region includes.
    pub timed: String,
    pub height: u32,
    pub width: u32,
    pub electrons_per_frame: f64,
    pub batch_frames: u32,
    pub frames_per_repeat: u64,
    pub repeats: u32,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Frame stages (`frames`, `count`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub electrons_per_s: Option<f64>,
    /// `events` (Monte Carlo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_s: Option<f64>,
    /// `copy`: bytes moved per second; frame stages: f32 frame bytes produced or consumed per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    /// Frame stages: `bytes_per_s` over the same path's copy bandwidth measured in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_copy_bandwidth: Option<f64>,
    /// Network stages (`net_infer`, `net_train`): the model preset, samples per batch, samples/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_samples: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_s: Option<f64>,
    /// GPU path with timestamp queries: median GPU time per repeat (the command buffers' own
    /// time, without host work, uploads by queue writes or idle gaps), and its share of the wall
    /// time. The rates above are from wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_median_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_fraction_of_wall: Option<f64>,
    /// The frame stages' rate on GPU time alone (`frames_per_repeat / gpu_median_s`): what the
    /// kernels sustain when uploads and readbacks overlap or stay on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_frames_per_s: Option<f64>,
    /// The network stages' rate on GPU time alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_samples_per_s: Option<f64>,
    /// `"u16"`: raw u16 frames, as a detector writes them (`frames`: quantized frames, read back
    /// two per word; `count`: counted as stored). Absent: f32 frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_dtype: Option<String>,
    /// Network inference stages: the activation storage (`f32`, `f16`; see `--net-precision`);
    /// for `count_net_fused`, the precision of the weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_precision: Option<String>,
    /// `count_net_fused`: whether the kernel's lanes shared the weights by subgroup shuffles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_subgroups: Option<bool>,
    /// Counting stages on the GPU path: how `count/sum3` and `count/find` split the frames
    /// (`rows8`, `cols8`, `pixels`, `tiles`; see `count::CountLayout`, `EMSIM_COUNT_LAYOUT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_layout: Option<String>,
    /// `--kernel-times` (GPU path with timestamp queries): each kernel's GPU milliseconds and
    /// dispatches per repeat, from timestamps around every compute pass (the repeats' wall and
    /// `gpu_median_s` then include that profiling's small overhead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_gpu_ms_per_repeat: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_dispatches_per_repeat: Option<std::collections::BTreeMap<String, f64>>,
    /// `--kernel-times`, frame stages: frames per second of the compute kernels' own time (the
    /// sum of `kernel_gpu_ms_per_repeat`), without the copies inside the command buffers (uploads
    /// and readbacks over PCIe) or gaps: the rate if frames arrived on the device and left it as
    /// found electrons only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_frames_per_s: Option<f64>,
    /// `--kernel-times`, network stages: samples per second of the kernels' own time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_samples_per_s: Option<f64>,
    /// End-to-end stages (`frames_file`, `count_file`): the same settings' in-memory rate
    /// (`frames`, `count` u16) in this run, and `frames_per_s` over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_memory_frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_in_memory: Option<f64>,
    /// End-to-end stages: bytes per frame of the frames dataset (compressed) and of the whole
    /// file the stage writes or reads (frames, truth, metadata), the disk's synced sequential
    /// write rate measured in this run, the frame rate that rate allows for the whole file's
    /// bytes, and `frames_per_s` over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes_per_frame: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_bytes_per_frame: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_write_bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bound_frames_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_disk_bound: Option<f64>,
    /// End-to-end stages: the compression of `/frames` in the file, as the file records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

impl BenchRecord {
    pub(super) fn timing(stage: &str, path: &str, timed: &str, reps: &mut Reps) -> Self {
        let times = &mut reps.wall;
        let (min, max) = (times.iter().cloned().fold(f64::MAX, f64::min), times.iter().cloned().fold(0.0, f64::max));
        let med = median(times);
        let gpu_median_s = (!reps.gpu.is_empty() && reps.gpu.len() == times.len()).then(|| median(&mut reps.gpu));
        let per_repeat = |f: fn(&crate::gpu::timing::KernelTime) -> f64| {
            (reps.kernel_repeats > 0).then(|| {
                reps.kernels.iter().map(|k| (k.kernel.to_string(), f(k) / reps.kernel_repeats as f64)).collect()
            })
        };
        let kernel_gpu_ms_per_repeat = per_repeat(|k| k.gpu_s * 1e3);
        let kernel_dispatches_per_repeat = per_repeat(|k| k.dispatches as f64);
        Self {
            stage: stage.into(),
            path: path.into(),
            timed: timed.into(),
            height: 0,
            width: 0,
            electrons_per_frame: 0.0,
            batch_frames: 0,
            frames_per_repeat: 0,
            repeats: times.len() as u32,
            median_s: med,
            min_s: min,
            max_s: max,
            frames_per_s: None,
            electrons_per_s: None,
            events_per_s: None,
            bytes_per_s: None,
            fraction_of_copy_bandwidth: None,
            model: None,
            batch_samples: None,
            samples_per_s: None,
            gpu_median_s,
            gpu_fraction_of_wall: gpu_median_s.map(|g| g / med),
            gpu_frames_per_s: None,
            gpu_samples_per_s: None,
            frames_dtype: None,
            net_precision: None,
            net_subgroups: None,
            count_layout: None,
            kernel_gpu_ms_per_repeat,
            kernel_dispatches_per_repeat,
            kernel_frames_per_s: None,
            kernel_samples_per_s: None,
            in_memory_frames_per_s: None,
            fraction_of_in_memory: None,
            stored_bytes_per_frame: None,
            file_bytes_per_frame: None,
            disk_write_bytes_per_s: None,
            disk_bound_frames_per_s: None,
            fraction_of_disk_bound: None,
            compression: None,
        }
    }

    /// The headline figure and its unit.
    pub fn headline(&self) -> (f64, &'static str) {
        if let Some(v) = self.frames_per_s {
            (v, "frames/s")
        } else if let Some(v) = self.events_per_s {
            (v, "events/s")
        } else if let Some(v) = self.samples_per_s {
            (v, "samples/s")
        } else if let Some(v) = self.bytes_per_s {
            (v / 1e9, "GB/s")
        } else {
            (f64::NAN, "")
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub generator: String,
    pub quick: bool,
    pub threads: usize,
    pub adapter: Option<AdapterSummary>,
    /// GPU path: the run-time checks the kernels were compiled with (`full`, `trusted`; see
    /// `gpu::ShaderChecks`, `EMSIM_SHADER_CHECKS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shader_checks: Option<&'static str>,
    pub records: Vec<BenchRecord>,
}

impl BenchReport {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(a) = &self.adapter {
            s += &format!("adapter: {} ({}, {}, {})\n", a.name, a.backend, a.device_type, a.driver_info);
            if let Some(c) = self.shader_checks {
                s += &format!("shader checks: {c}\n");
            }
        } else {
            s += "adapter: none (CPU path only)\n";
        }
        s += &format!("cpu threads: {}\n", self.threads);
        s += &format!(
            "{:<15} {:<4} {:>9} {:>8} {:>5} {:>12} {:<9} {:>11} {:>8} {:>7} {:>8} {:>12}\n",
            "stage",
            "path",
            "size",
            "e-/frame",
            "batch",
            "rate",
            "unit",
            "electrons/s",
            "of copy",
            "spread",
            "gpu/wall",
            "gpu-only rate"
        );
        for r in &self.records {
            let (v, unit) = r.headline();
            let size = r.size_label();
            let batch = r.batch_samples.unwrap_or(r.batch_frames);
            s += &format!(
                "{:<15} {:<4} {:>9} {:>8.0} {:>5} {:>12.1} {:<9} {:>11} {:>8} {:>6.1}% {:>8} {:>12}\n",
                r.stage,
                r.path,
                size,
                r.electrons_per_frame,
                batch,
                v,
                unit,
                r.electrons_per_s.map_or("-".into(), |e| format!("{e:.3e}")),
                r.fraction_of_copy_bandwidth.map_or("-".into(), |f| format!("{:.1}%", 100.0 * f)),
                100.0 * (r.max_s - r.min_s) / r.median_s,
                r.gpu_fraction_of_wall.map_or("-".into(), |f| format!("{:.0}%", 100.0 * f)),
                r.gpu_frames_per_s.or(r.gpu_samples_per_s).map_or("-".into(), |v| format!("{v:.1}"))
            );
        }
        // --kernel-times: each record's kernels, largest first.
        for r in &self.records {
            let (Some(ms), Some(n)) = (&r.kernel_gpu_ms_per_repeat, &r.kernel_dispatches_per_repeat) else { continue };
            if ms.is_empty() {
                continue;
            }
            let rate = match (r.kernel_frames_per_s, r.kernel_samples_per_s) {
                (Some(f), _) => format!("; kernels alone: {f:.1} frames/s"),
                (_, Some(v)) => format!("; kernels alone: {v:.1} samples/s"),
                _ => String::new(),
            };
            s += &format!(
                "kernels of {} {} {}, batch {} (GPU ms per repeat, dispatches{rate}):
",
                r.stage,
                r.path,
                r.size_label(),
                r.batch_samples.unwrap_or(r.batch_frames)
            );
            let mut ks: Vec<(&String, &f64)> = ms.iter().collect();
            ks.sort_by(|a, b| b.1.total_cmp(a.1));
            let total: f64 = ks.iter().map(|k| k.1).sum();
            for (k, v) in ks {
                s += &format!(
                    "  {:<34} {:>10.4} ms {:>5.1}% {:>8.0}\n",
                    k,
                    v,
                    100.0 * v / total.max(1e-30),
                    n.get(k).copied().unwrap_or(0.0)
                );
            }
        }
        s
    }
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `emsim bench --compare a.json b.json`: the records the two runs share (same stage, path and
/// size), side by side with the ratio b / a of their headline rates.
pub fn compare(a_path: &std::path::Path, b_path: &std::path::Path) -> Result<String> {
    let read = |p: &std::path::Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).map_err(|e| Error::file(p, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(p, format!("not JSON from emsim bench --json: {e}")))?;
        if v.get("schema").and_then(|s| s.as_str()) != Some("emsim-bench/1") {
            return Err(Error::file(p, "not an emsim bench --json report (schema emsim-bench/1 expected)"));
        }
        Ok(v)
    };
    let (a, b) = (read(a_path)?, read(b_path)?);
    // A record is the same measurement in both runs when stage, path, size, electrons per frame
    // (the nominal load: rounded to 10 %), model and batch (samples, or frames per submission)
    // agree.
    let key = |r: &serde_json::Value| {
        let e = r["electrons_per_frame"].as_f64().unwrap_or(0.0);
        let e = if e > 0.0 { format!(" {:.0}e", 10f64.powf((e.log10() * 10.0).round() / 10.0)) } else { String::new() };
        let model = r["model"].as_str().map(|m| format!(" {m}")).unwrap_or_default();
        // network stages: samples per batch; frame stages: frames per submission (the sweeps)
        let batch = r["batch_samples"]
            .as_u64()
            .or_else(|| r["batch_frames"].as_u64().filter(|&b| b > 0))
            .map(|b| format!(" b{b}"))
            .unwrap_or_default();
        let f16 = if r["net_precision"].as_str() == Some("f16") { " f16" } else { "" };
        let u16 = if r["frames_dtype"].as_str() == Some("u16") { " u16" } else { "" };
        let sg = if r["net_subgroups"].as_bool() == Some(false) { " no-subgroups" } else { "" };
        format!(
            "{} {} {}x{}{e}{model}{batch}{f16}{u16}{sg}",
            r["stage"].as_str().unwrap_or("?"),
            r["path"].as_str().unwrap_or("?"),
            r["height"],
            r["width"]
        )
    };
    let rate = |r: &serde_json::Value| -> Option<(f64, &'static str)> {
        for (k, unit, scale) in [
            ("frames_per_s", "frames/s", 1.0),
            ("events_per_s", "events/s", 1.0),
            ("samples_per_s", "samples/s", 1.0),
            ("bytes_per_s", "GB/s", 1e-9),
        ] {
            if let Some(v) = r.get(k).and_then(|v| v.as_f64()) {
                return Some((v * scale, unit));
            }
        }
        None
    };
    let adapter = |v: &serde_json::Value| v["adapter"]["name"].as_str().unwrap_or("none (CPU only)").to_string();
    let mut s = format!("a: {} ({})\nb: {} ({})\n", a_path.display(), adapter(&a), b_path.display(), adapter(&b));
    let empty = Vec::new();
    let brecs = b["records"].as_array().unwrap_or(&empty);
    let mut rows = Vec::new();
    for ra in a["records"].as_array().unwrap_or(&empty) {
        if let Some(rb) = brecs.iter().find(|rb| key(rb) == key(ra))
            && let (Some((va, unit)), Some((vb, _))) = (rate(ra), rate(rb))
        {
            rows.push((key(ra), va, vb, unit));
        }
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("stage path size".len());
    s += &format!("{:<w$} {:>14} {:>14} {:<9} {:>8}\n", "stage path size", "a", "b", "unit", "b / a");
    for (k, va, vb, unit) in &rows {
        s += &format!("{k:<w$} {va:>14.1} {vb:>14.1} {unit:<9} {:>7.2}x\n", vb / va);
    }
    let shared = rows.len();
    if shared == 0 {
        return Err(Error::Other(format!("{} and {} share no stage/path/size", a_path.display(), b_path.display())));
    }
    Ok(s)
}
