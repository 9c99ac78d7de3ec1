//! `emsim train` and `emsim infer`: the localization networks.

use std::path::PathBuf;

use clap::Args;

use emsim::gpu::Device;
use emsim::net::model::ModelConfig;
use emsim::{Error, Result};

use super::DeviceArgs;

#[derive(Args)]
pub(crate) struct InferArgs {
    #[arg(long)]
    model: PathBuf,
    /// Crops, float32 .npy of shape (N, S, S) with S the model's input_px; values in electrons.
    #[arg(long)]
    input: PathBuf,
    /// Estimates, float32 .npy (N, 4): x_px, y_px (relative to the centre of the crop's centre pixel),
    /// sigma_px, p_max; for a classifier (N, 2): P(one electron), P(two); for a pair localizer
    /// (N, 4): x1, y1, x2, y2.
    #[arg(long)]
    out: PathBuf,
    /// Also write the raw network outputs (N, outputs) here.
    #[arg(long)]
    logits: Option<PathBuf>,
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Model preset: seed (41x41 in, 10x10 grid in the centre pixel), seed-84 (84x84 grid over 21x21 px), fast,
    /// fast-neighbours (fast trained among other electrons), tiny (a 9x9-input perceptron of 28k multiply-adds,
    /// the default of count --method net; train it on frames: --frames f.h5 --crop-centres found);
    /// one-vs-two classifiers pair-seed (the MSU multi-electron notebook's), pair-compact; pair-reg (the notebook's
    /// single-electron regression); for count --split-pairs: pair-split (classifier), pair-loc (pair localizer).
    #[arg(long, default_value = "seed", conflicts_with = "config", value_parser = super::one_of(ModelConfig::PRESETS, &[]))]
    preset: String,
    /// A model config file (JSON, the `emsim_config` layout of docs/network.md) instead of a preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Event library (default: the shipped 300 keV library).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Train on crops of a frames dataset with truth (an emsim frames file) instead of library
    /// events: real neighbours and overlaps; its read noise is in the frames (--sigma-e is not used).
    #[arg(long, conflicts_with = "library")]
    frames: Option<PathBuf>,
    /// With --frames: use at most this many frames (the last --holdout of them for validation).
    #[arg(long, requires = "frames")]
    max_frames: Option<u64>,
    /// With --frames: centre the crops on the true electrons' pixels (shifted by up to the model's
    /// shift_px), or on the centres `emsim count` finds, matched to the truth (the offsets the
    /// network meets when counting): truth or found.
    #[arg(long, requires = "frames", default_value = "truth")]
    crop_centres: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    force: bool,
    #[arg(long, default_value_t = 6)]
    epochs: u32,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Training samples per epoch (the seed: 80,000).
    #[arg(long, default_value_t = 80_000)]
    train_samples: usize,
    /// Validation samples per epoch, from held-out library events (the seed: 20,000).
    #[arg(long, default_value_t = 20_000)]
    val_samples: usize,
    /// Fraction of library events held out for validation.
    #[arg(long, default_value_t = 0.2)]
    holdout: f32,
    /// Read noise, electrons.
    #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E)]
    sigma_e: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// constant, cosine[:min_factor] or steps:E1,E2:gamma (epochs from 0). Default: the EMSim network's 1e-3 then 1e-4 at half way.
    #[arg(long)]
    lr_schedule: Option<String>,
    /// adam (L2 weight decay, as the EMSim network) or adamw (decoupled).
    #[arg(long, default_value = "adam", value_parser = super::one_of(&["adam", "adamw"], &[]))]
    optimizer: String,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Turn amsgrad off (the seed used it).
    #[arg(long)]
    no_amsgrad: bool,
    /// Continue from a checkpoint (`<out>.ckpt.safetensors`).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub(crate) fn train(a: TrainArgs) -> Result<()> {
    use emsim::net::model::ModelConfig;
    use emsim::net::optim::{AdamConfig, LrSchedule};
    let cfg = match &a.config {
        Some(p) => ModelConfig::from_file(p)?,
        None => ModelConfig::preset(&a.preset)?,
    };
    let decoupled = match a.optimizer.as_str() {
        "adam" => false,
        "adamw" => true,
        o => return Err(Error::invalid("--optimizer", format!("'{o}': expected adam or adamw"))),
    };
    if !(a.lr > 0.0) {
        return Err(Error::invalid("--lr", format!("{} must be > 0", a.lr)));
    }
    let schedule = match &a.lr_schedule {
        Some(s) => LrSchedule::parse(s)?,
        None => LrSchedule::Steps { milestones: vec![a.epochs.div_ceil(2)], gamma: 0.1 },
    };
    let adam =
        AdamConfig { lr: a.lr, weight_decay: a.weight_decay, decoupled, amsgrad: !a.no_amsgrad, ..AdamConfig::seed() };
    let opts = emsim::net::train::TrainOptions {
        cfg,
        library: a.library.unwrap_or_else(emsim::default_library_path),
        frames: a.frames,
        max_frames: a.max_frames,
        crop_centres: emsim::net::frames_data::CropCentres::parse(&a.crop_centres)?,
        out: a.out,
        force: a.force,
        epochs: a.epochs,
        batch: a.batch,
        train_samples: a.train_samples,
        val_samples: a.val_samples,
        holdout: a.holdout,
        sigma_e: a.sigma_e,
        seed: a.seed,
        adam,
        schedule,
        resume: a.resume,
        quiet: a.quiet,
    };
    let device = Device::open(&a.device.device, &a.device.backend)?;
    let s = emsim::net::train::train(&opts, &device)?;
    eprintln!(
        "wrote {} ({} trainable values), log {}, curve {}, checkpoint {}",
        s.out.display(),
        s.model.n_trainable(),
        s.csv.display(),
        s.plot.display(),
        s.checkpoint.display()
    );
    Ok(())
}

pub(crate) fn infer(a: InferArgs) -> Result<()> {
    let out = emsim::io::atomic::Output::new(&a.out, a.force, "--out")?;
    let logits_out = a.logits.as_ref().map(|p| emsim::io::atomic::Output::new(p, a.force, "--logits")).transpose()?;
    let model = emsim::io::model_file::load(&a.model, None)?.model;
    let crops: ndarray::Array3<f32> = ndarray_npy::read_npy(&a.input)
        .map_err(|e| Error::file(&a.input, format!("expected a float32 .npy of shape (N, S, S): {e}")))?;
    let (n, h, w) = crops.dim();
    let side = model.cfg.input_px;
    if h != side || w != side {
        return Err(Error::file(
            &a.input,
            format!("crops are {h}x{w}, the model '{}' takes {side}x{side}", model.cfg.name),
        ));
    }
    let crops = crops.as_standard_layout();
    let (values, k, raw) = emsim::net::infer::crop_estimates(&model, crops.as_slice().expect("standard layout"), n)?;
    let arr = ndarray::Array2::from_shape_vec((n, k), values).unwrap();
    ndarray_npy::write_npy(out.tmp(), &arr).map_err(|e| Error::file(&a.out, e))?;
    if let Some(lo) = logits_out {
        let k = model.cfg.head_outputs();
        let arr = ndarray::Array2::from_shape_vec((n, k), raw).unwrap();
        ndarray_npy::write_npy(lo.tmp(), &arr).map_err(|e| Error::file(lo.final_path(), e))?;
        lo.commit()?;
    }
    out.commit()?;
    eprintln!("wrote {} estimates to {}", n, a.out.display());
    Ok(())
}
