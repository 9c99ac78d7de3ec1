//! `emsim train`: trains a model on samples made on the fly from an event library (on the GPU with
//! the layer kernels, or on the CPU twins), validates on held-out library events every epoch, and
//! writes the weights (safetensors), a checkpoint for `--resume`, a CSV log and a PNG loss curve.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::data::{
    Batch, GridLabelParams, LibraryArrays, LibraryBuffers, MakeBatchParams, SampleSpec, VALIDATION_BASE, check_holdout,
    grid_label_points_cpu, grid_label_record, make_batch_cpu, make_batch_record, n_held_out,
};
use super::decode::{Decoded, decode, pair_error_px};
use super::frames_data::FrameSamples;
use super::gpu_net::GpuNet;
use super::loss::{MseParams, PairMseParams, SoftmaxXentParams, mse_cpu, pair_mse_cpu, softmax_xent_cpu};
use super::model::{Head, Model, ModelConfig};
use super::optim::{AdamConfig, LrSchedule, adam_cpu};
use super::pairs::{MakePairsParams, PairSpec, make_pairs_cpu, make_pairs_record};
use crate::gpu::Device;
use crate::io::library::EventLibrary;
use crate::io::model_file::{self, OptimState};
use crate::{Error, Result};

/// Everything `emsim train` needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub cfg: ModelConfig,
    pub library: PathBuf,
    /// Train on crops of this frames dataset with truth instead of the library.
    pub frames: Option<PathBuf>,
    /// Use at most this many frames of `frames`.
    pub max_frames: Option<u64>,
    /// Where the crops of `frames` are centred.
    pub crop_centres: super::frames_data::CropCentres,
    pub out: PathBuf,
    pub force: bool,
    pub epochs: u32,
    pub batch: usize,
    /// Training samples per epoch (rounded down to whole batches).
    pub train_samples: usize,
    /// Validation samples per epoch (rounded down to whole batches, at least one batch).
    pub val_samples: usize,
    /// Fraction of the library's events held out for validation.
    pub holdout: f32,
    pub sigma_e: f32,
    pub seed: u64,
    pub adam: AdamConfig,
    pub schedule: LrSchedule,
    pub resume: Option<PathBuf>,
    pub quiet: bool,
}

/// One epoch's figures (a CSV row).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u32,
    pub lr: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_mean_error_px: f64,
    pub seconds: f64,
    pub train_samples_per_s: f64,
}

/// What a checkpoint remembers besides weights and Adam state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    epochs_done: u32,
    steps_done: u64,
    seed: u64,
    batch: usize,
    history: Vec<EpochRecord>,
}

pub struct TrainSummary {
    pub model: Model,
    pub history: Vec<EpochRecord>,
    pub out: PathBuf,
    pub csv: PathBuf,
    pub plot: PathBuf,
    pub checkpoint: PathBuf,
}

/// `<out without .safetensors>.<suffix>`.
pub fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The event ranges for training and validation.
pub fn split_events(n_events: usize, holdout: f32) -> Result<((u32, u32), (u32, u32))> {
    check_holdout(holdout)?;
    let n_val = n_held_out(n_events, holdout).ok_or_else(|| {
        Error::invalid("--library", format!("{n_events} events: too few to hold out {holdout} for validation"))
    })?;
    let n_train = n_events - n_val;
    Ok(((0, n_train as u32), (n_train as u32, n_val as u32)))
}

/// Mean distance between decoded positions and true points.
pub fn mean_error_px(dec: &[Decoded], target: &[f32]) -> f64 {
    let s: f64 = dec
        .iter()
        .zip(target.chunks_exact(2))
        .map(|(d, t)| (((d.mean_xy[0] - t[0]) as f64).powi(2) + ((d.mean_xy[1] - t[1]) as f64).powi(2)).sqrt())
        .sum();
    s / dec.len().max(1) as f64
}

/// Where a model's samples come from: single library events (`net/make_batch`), one-or-two
/// electron patches (`net/make_pairs`, models with `pairs`), or crops of a frames dataset with
/// truth (`--frames`: seed and electron range; see [`super::frames_data`]).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Single(SampleSpec),
    Pairs(PairSpec),
    Frames(&'a FrameSamples, u64, (u32, u32)),
}

impl Source<'_> {
    /// The source of `cfg` for events `[ev_lo, ev_lo + ev_count)`.
    pub fn new(cfg: &ModelConfig, seed: u64, (ev_lo, ev_count): (u32, u32), sigma_e: f32) -> Self {
        match cfg.pairs {
            Some(_) => Source::Pairs(cfg.pair_spec(seed, ev_lo, ev_count, sigma_e)),
            None => Source::Single(SampleSpec { seed, ev_lo, ev_count, sigma_e }),
        }
    }

    /// Samples `first .. first + n` on the CPU twins (pair samples: labels = class, target = both
    /// points). `arrays`: the library (not used for frames).
    pub fn batch_cpu(&self, cfg: &ModelConfig, first: u64, n: usize, arrays: Option<&LibraryArrays>) -> Result<Batch> {
        let lib = || arrays.ok_or_else(|| Error::Other("library samples without a library".into()));
        Ok(match self {
            Source::Frames(data, seed, range) => data.batch(cfg, *seed, *range, first, n),
            Source::Single(spec) => make_batch_cpu(&MakeBatchParams::new(cfg, spec, first, n), lib()?),
            Source::Pairs(spec) => {
                let b = make_pairs_cpu(&MakePairsParams::new(spec, first, n)?, lib()?);
                let mut labels = b.class;
                if matches!(cfg.head, Head::Grid { .. }) {
                    grid_label_points_cpu(&GridLabelParams::new(cfg, n, 4), &b.points, &mut labels);
                }
                Batch { x: b.x, labels, target: b.points }
            }
        })
    }

    /// Records the same samples into `net`'s input, labels and target buffers (frames: cut on the
    /// host and written to the buffers before the encoder's work runs).
    pub fn record(
        &self,
        enc: &mut wgpu::CommandEncoder,
        cfg: &ModelConfig,
        first: u64,
        n: usize,
        lb: Option<&LibraryBuffers>,
        net: &GpuNet,
    ) -> Result<()> {
        let ctx = net.ctx;
        let lib = || lb.ok_or_else(|| Error::Other("library samples without a library".into()));
        match self {
            Source::Frames(..) => {
                let b = self.batch_cpu(cfg, first, n, None)?;
                ctx.write(&net.input, &b.x);
                ctx.write(&net.labels, &b.labels);
                ctx.write(&net.target, &b.target);
            }
            Source::Single(spec) => {
                let lb = lib()?;
                let p = MakeBatchParams::new(cfg, spec, first, n);
                make_batch_record(ctx, enc, &p, lb, &net.input, &net.labels, &net.target)?
            }
            Source::Pairs(spec) => {
                let lb = lib()?;
                let p = MakePairsParams::new(spec, first, n)?;
                make_pairs_record(ctx, enc, &p, lb, &net.input, &net.labels, &net.target, &net.sep)?;
                if matches!(cfg.head, Head::Grid { .. }) {
                    grid_label_record(ctx, enc, &GridLabelParams::new(cfg, n, 4), &net.target, &net.labels)?;
                }
            }
        }
        Ok(())
    }
}

/// Mean position error of a batch's outputs (pixels; per electron for the pair head), or NaN for a
/// classifier.
pub fn batch_error_px(cfg: &ModelConfig, out: &[f32], target: &[f32], n: usize) -> f64 {
    match cfg.head {
        Head::Classes { .. } => f64::NAN,
        Head::Pair => {
            let s: f64 =
                out.chunks_exact(4).zip(target.chunks_exact(4)).take(n).map(|(p, t)| pair_error_px(p, t)).sum();
            s / n.max(1) as f64
        }
        _ => {
            // the first point of each sample (pair samples carry two)
            let td = cfg.target_dims();
            let first: Vec<f32> = target.chunks_exact(td).take(n).flat_map(|t| [t[0], t[1]]).collect();
            mean_error_px(&decode(cfg, out, n), &first)
        }
    }
}

/// Trains. The model file, checkpoint, CSV and PNG are each written atomically.
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub fn train(opts: &TrainOptions, device: &Device) -> Result<TrainSummary> {
    if opts.batch == 0 {
        return Err(Error::invalid("--batch", "must be at least 1"));
    }
    if opts.epochs == 0 {
        return Err(Error::invalid("--epochs", "must be at least 1"));
    }
    if !(opts.sigma_e >= 0.0) {
        return Err(Error::invalid("--sigma-e", "must be >= 0"));
    }
    let steps = opts.train_samples / opts.batch;
    if steps == 0 {
        return Err(Error::invalid(
            "--train-samples",
            format!("{} is less than one batch of {}", opts.train_samples, opts.batch),
        ));
    }
    let val_steps = (opts.val_samples / opts.batch).max(1);
    let csv = sibling(&opts.out, "csv");
    let plot = sibling(&opts.out, "png");
    let ckpt = sibling(&opts.out, "ckpt.safetensors");
    // Fail on an existing output before any work.
    crate::io::atomic::Output::new(&opts.out, opts.force, "--out")?;
    let (arrays, frames) = match &opts.frames {
        Some(path) => {
            if opts.cfg.pairs.is_some() || !matches!(opts.cfg.head, Head::Grid { .. } | Head::Xy) {
                return Err(Error::invalid(
                    "--frames",
                    format!(
                        "model '{}' trains on pair samples; --frames trains single-electron localizers",
                        opts.cfg.name
                    ),
                ));
            }
            (None, Some(FrameSamples::load(path, opts.max_frames, opts.holdout, opts.crop_centres)?))
        }
        None => {
            let lib = EventLibrary::read_h5(&opts.library)?;
            (Some(LibraryArrays::new(&lib).map_err(|e| Error::file(&opts.library, e))?), None)
        }
    };
    let (train_src, val_src) = match (&frames, &arrays) {
        (Some(f), _) => {
            let (tr, va) = f.split();
            (Source::Frames(f, opts.seed, tr), Source::Frames(f, opts.seed, va))
        }
        (None, Some(a)) => {
            let ((tr_lo, tr_n), (va_lo, va_n)) = split_events(a.offsets.len() - 1, opts.holdout)?;
            (
                Source::new(&opts.cfg, opts.seed, (tr_lo, tr_n), opts.sigma_e),
                Source::new(&opts.cfg, opts.seed, (va_lo, va_n), opts.sigma_e),
            )
        }
        (None, None) => unreachable!("a library or frames"),
    };

    let (mut model, mut optim, mut state) = match &opts.resume {
        Some(path) => {
            let loaded = model_file::load(path, Some(&opts.cfg))?;
            let (Some(o), Some(ts)) = (loaded.optim, loaded.train_state) else {
                return Err(Error::file(
                    path,
                    "not a checkpoint (no optimizer state): pass the .ckpt.safetensors file",
                ));
            };
            let st: TrainState =
                serde_json::from_str(&ts).map_err(|e| Error::file(path, format!("bad train state: {e}")))?;
            if st.batch != opts.batch || st.seed != opts.seed {
                return Err(Error::file(
                    path,
                    format!("checkpoint was made with --batch {} --seed {}; resume with the same", st.batch, st.seed),
                ));
            }
            (loaded.model, o, st)
        }
        None => {
            let m = Model::new(opts.cfg.clone(), opts.seed)?;
            let o = m
                .tensors
                .iter()
                .map(|t| {
                    let z = if t.trainable { vec![0.0; t.data.len()] } else { vec![] };
                    OptimState { m: z.clone(), v: z.clone(), vmax: z }
                })
                .collect();
            (m, o, TrainState { epochs_done: 0, steps_done: 0, seed: opts.seed, batch: opts.batch, history: vec![] })
        }
    };
    if state.epochs_done >= opts.epochs {
        return Err(Error::invalid(
            "--epochs",
            format!("the checkpoint has already done {} epochs", state.epochs_done),
        ));
    }

    let mut gpu = match device {
        Device::Gpu(ctx) => {
            let net = GpuNet::new(ctx, model.clone(), opts.batch, true, Some(&optim))?;
            let lb = arrays.as_ref().map(|a| LibraryBuffers::upload(ctx, a)).transpose()?;
            Some((net, lb))
        }
        Device::Cpu => None,
    };

    for epoch in state.epochs_done..opts.epochs {
        let lr = opts.schedule.lr(opts.adam.lr, epoch, opts.epochs);
        let t0 = Instant::now();
        let bar = progress(opts.quiet, steps as u64, &format!("epoch {}/{}", epoch + 1, opts.epochs));
        let (mut loss_sum, mut correct_sum) = (0.0f64, 0.0f64);
        for s in 0..steps {
            let t = state.steps_done + 1;
            let first = (t - 1) * opts.batch as u64;
            let (l, c) = match &mut gpu {
                Some((net, lb)) => {
                    let ctx = net.ctx;
                    let mut enc = ctx.encoder("train_step");
                    train_src.record(&mut enc, &opts.cfg, first, opts.batch, lb.as_ref(), net)?;
                    net.record_forward(&mut enc, opts.batch, true, opts.seed, t)?;
                    net.record_loss(&mut enc, opts.batch, true)?;
                    net.record_backward(&mut enc, opts.batch, opts.seed, t)?;
                    net.record_adam(&mut enc, &opts.adam, t, lr)?;
                    let rl = ctx.readback(&mut enc, &net.loss, (opts.batch * 4) as u64);
                    let rc = ctx.readback(&mut enc, &net.correct, (opts.batch * 4) as u64);
                    ctx.submit_and_wait(enc)?;
                    let (l, c): (Vec<f32>, Vec<f32>) = (rl.read(ctx)?, rc.read(ctx)?);
                    (l.iter().map(|&v| v as f64).sum::<f64>(), c.iter().map(|&v| v as f64).sum::<f64>())
                }
                None => {
                    let batch = train_src.batch_cpu(&opts.cfg, first, opts.batch, arrays.as_ref())?;
                    cpu_step(&mut model, &mut optim, &batch, opts, t, lr)?
                }
            };
            if !l.is_finite() {
                return Err(Error::Other(format!(
                    "training diverged at epoch {} step {s}: loss is {l}; lower --lr",
                    epoch + 1
                )));
            }
            loss_sum += l;
            correct_sum += c;
            state.steps_done = t;
            if let Some(b) = &bar {
                b.set_message(format!("loss {:.4}", loss_sum / ((s + 1) * opts.batch) as f64));
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let train_secs = t0.elapsed().as_secs_f64();
        if let Some((net, _)) = &mut gpu {
            net.download()?;
            model = net.model.clone();
        }
        let (val_loss, val_acc, val_err) = validate(
            &mut model,
            gpu.as_ref().map(|(n, l)| (n, l.as_ref())),
            arrays.as_ref(),
            &opts.cfg,
            &val_src,
            opts.batch,
            val_steps,
        )?;
        let n_train = (steps * opts.batch) as f64;
        let rec = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / n_train,
            train_accuracy: correct_sum / n_train,
            val_loss,
            val_accuracy: val_acc,
            val_mean_error_px: val_err,
            seconds: t0.elapsed().as_secs_f64(),
            train_samples_per_s: n_train / train_secs,
        };
        if !opts.quiet {
            eprintln!(
                "epoch {:>3}  lr {:.1e}  train loss {:.4} acc {:.3}  val loss {:.4} acc {:.3} mean error {:.4} px  ({:.0} samples/s)",
                rec.epoch,
                rec.lr,
                rec.train_loss,
                rec.train_accuracy,
                rec.val_loss,
                rec.val_accuracy,
                rec.val_mean_error_px,
                rec.train_samples_per_s
            );
        }
        state.history.push(rec);
        state.epochs_done = epoch + 1;
        if let Some((net, _)) = &gpu {
            optim = net.download_optim()?;
        }
        let ts = serde_json::to_string(&state).map_err(|e| Error::Other(e.to_string()))?;
        model_file::save(&model, Some((&optim, &ts)), &ckpt, true, "--out")?;
        write_csv(&csv, &state.history)?;
        write_plot(&plot, &state.history)?;
    }
    model_file::save(&model, None, &opts.out, opts.force, "--out")?;
    Ok(TrainSummary { model, history: state.history, out: opts.out.clone(), csv, plot, checkpoint: ckpt })
}

fn progress(quiet: bool, len: u64, prefix: &str) -> Option<indicatif::ProgressBar> {
    if quiet {
        return None;
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    b.set_prefix(prefix.to_string());
    Some(b)
}

/// One training step on the CPU twins; returns (sum of per-sample losses, number correct).
pub fn cpu_step(
    model: &mut Model,
    optim: &mut [OptimState],
    batch: &Batch,
    opts: &TrainOptions,
    t: u64,
    lr: f32,
) -> Result<(f64, f64)> {
    let n = batch.labels.len();
    let act = model.forward_cpu(&batch.x, n, true, opts.seed, t)?;
    let (loss, correct, dout) = loss_cpu(&model.cfg, act.last(), batch, n, true);
    let grads = model.backward_cpu(&batch.x, &act, &dout, opts.seed, t)?;
    for ((tensor, g), st) in model.tensors.iter_mut().zip(&grads).zip(optim.iter_mut()) {
        if !tensor.trainable {
            continue;
        }
        let p = opts.adam.params(tensor.data.len(), t, lr);
        adam_cpu(&p, &mut tensor.data, g, &mut st.m, &mut st.v, &mut st.vmax);
    }
    Ok((loss.iter().map(|&v| v as f64).sum(), correct.iter().map(|&v| v as f64).sum()))
}

/// Per-sample loss, correctness and (with `grad`) dL/d(output) on the CPU twins.
pub fn loss_cpu(cfg: &ModelConfig, out: &[f32], batch: &Batch, n: usize, grad: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let k = cfg.head_outputs();
    let mut loss = vec![0.0; n];
    let mut correct = vec![0.0; n];
    let mut dout = vec![0.0; if grad { n * k } else { 0 }];
    match cfg.head {
        Head::Grid { .. } | Head::Classes { .. } => {
            let p = SoftmaxXentParams { n: n as u32, k: k as u32, mean_over: n as u32, write_grad: grad as u32 };
            softmax_xent_cpu(&p, out, &batch.labels[..n], &mut loss, &mut correct, &mut dout);
        }
        Head::Xy => {
            let p = MseParams { n: n as u32, d: 2, mean_over: 2 * n as u32, write_grad: grad as u32 };
            mse_cpu(&p, out, &batch.target[..2 * n], &mut loss, &mut dout);
        }
        Head::Pair => {
            let p = PairMseParams { n: n as u32, mean_over: 4 * n as u32, write_grad: grad as u32, _pad: 0 };
            pair_mse_cpu(&p, out, &batch.target[..4 * n], &mut loss, &mut dout);
        }
    }
    (loss, correct, dout)
}

/// Validation on held-out events: (mean loss, accuracy, mean position error in pixels).
fn validate(
    model: &mut Model,
    gpu: Option<(&GpuNet, Option<&LibraryBuffers>)>,
    arrays: Option<&LibraryArrays>,
    cfg: &ModelConfig,
    src: &Source,
    batch: usize,
    steps: usize,
) -> Result<(f64, f64, f64)> {
    let (mut l, mut c, mut e) = (0.0, 0.0, 0.0);
    let td = cfg.target_dims();
    for v in 0..steps {
        let first = VALIDATION_BASE + (v * batch) as u64;
        let (loss, correct, out, target) = match gpu {
            Some((net, lb)) => {
                let ctx = net.ctx;
                let mut enc = ctx.encoder("validate");
                src.record(&mut enc, cfg, first, batch, lb, net)?;
                net.record_forward(&mut enc, batch, false, 0, 0)?;
                net.record_loss(&mut enc, batch, false)?;
                let k = cfg.head_outputs();
                let r = [
                    ctx.readback(&mut enc, &net.loss, (batch * 4) as u64),
                    ctx.readback(&mut enc, &net.correct, (batch * 4) as u64),
                    ctx.readback(&mut enc, net.output(), (batch * k * 4) as u64),
                    ctx.readback(&mut enc, &net.target, (batch * td * 4) as u64),
                ];
                ctx.submit_and_wait(enc)?;
                let [a, b, o, t] = r;
                (a.read::<f32>(ctx)?, b.read::<f32>(ctx)?, o.read::<f32>(ctx)?, t.read::<f32>(ctx)?)
            }
            None => {
                let b = src.batch_cpu(cfg, first, batch, arrays)?;
                let act = model.forward_cpu(&b.x, batch, false, 0, 0)?;
                let (loss, correct, _) = loss_cpu(cfg, act.last(), &b, batch, false);
                (loss, correct, act.last().to_vec(), b.target)
            }
        };
        l += loss.iter().map(|&x| x as f64).sum::<f64>();
        c += correct.iter().map(|&x| x as f64).sum::<f64>();
        e += batch_error_px(cfg, &out, &target, batch) * batch as f64;
    }
    let n = (steps * batch) as f64;
    Ok((l / n, c / n, e / n))
}

fn write_csv(path: &Path, h: &[EpochRecord]) -> Result<()> {
    let out = crate::io::atomic::Output::new(path, true, "--out")?;
    let mut s = String::from(
        "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_mean_error_px,seconds,train_samples_per_s\n",
    );
    for r in h {
        s.push_str(&format!(
            "{},{:e},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1}\n",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.val_loss,
            r.val_accuracy,
            r.val_mean_error_px,
            r.seconds,
            r.train_samples_per_s
        ));
    }
    std::fs::write(out.tmp(), s).map_err(|e| Error::file(path, e))?;
    out.commit()?;
    Ok(())
}

fn write_plot(path: &Path, h: &[EpochRecord]) -> Result<()> {
    use crate::eval::plots::{Chart, Series, line_chart};
    let tr: Vec<(f64, f64)> = h.iter().map(|r| (r.epoch as f64, r.train_loss)).collect();
    let va: Vec<(f64, f64)> = h.iter().map(|r| (r.epoch as f64, r.val_loss)).collect();
    let chart = Chart::new("training loss", "epoch", "loss (cross-entropy or MSE)");
    line_chart(path, &chart, &[Series { label: "train", points: &tr }, Series { label: "validation", points: &va }])
}
