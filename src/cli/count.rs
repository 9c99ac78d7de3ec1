//! `emsim count`: find and localize the electrons of a frames file.

use std::path::PathBuf;

use clap::Args;

use emsim::Result;
use emsim::count::NetKernel;
use emsim::gpu::Device;
use emsim::net::precision::NetPrecision;

use super::{DeviceArgs, net_precision};

/// The pair-splitting models and rule (`count --split-pairs`, `eval dose`).
#[derive(Args)]
pub(crate) struct SplitArgs {
    /// The one-vs-two classifier for pair splitting (default: assets/models/pair-split.safetensors).
    #[arg(long)]
    pair_classifier: Option<PathBuf>,
    /// The two-electron localizer for pair splitting (default: assets/models/pair-loc.safetensors).
    #[arg(long)]
    pair_localizer: Option<PathBuf>,
    /// Split when the classifier's probability of two electrons exceeds this.
    #[arg(long, default_value_t = emsim::count::split::DEFAULT_THRESHOLD)]
    split_threshold: f32,
    /// Drop a split-off electron within this many pixels of another found electron.
    #[arg(long, default_value_t = emsim::count::split::DEFAULT_DEDUPE_PX, allow_negative_numbers = true)]
    split_dedupe_px: f32,
}

impl SplitArgs {
    pub(crate) fn load(&self, net: &emsim::net::model::Model) -> Result<emsim::count::split::PairModels> {
        emsim::count::split::load_pair_models(
            self.pair_classifier.as_deref(),
            self.pair_localizer.as_deref(),
            net,
            self.split_threshold,
            self.split_dedupe_px,
        )
    }
}

#[derive(Args)]
pub(crate) struct CountArgs {
    /// Frames: an emsim frames HDF5 file (or any HDF5 file with a 3-D dataset), an emsim npy
    /// folder, or a 3-D .npy file.
    input: PathBuf,
    /// HDF5 dataset holding the frames.
    #[arg(long, default_value = "frames")]
    dataset: String,
    /// Localization method(s), comma-separated: max, c3x3, c5x5, c3x3t, c5x5t, net, or stempy
    /// (stempy's classic counter with its own finder, at pixel centres; docs/counting.md).
    #[arg(long, default_value = "c3x3t")]
    method: String,
    /// How centres are found: pixel (local maxima of the pixels, as stempy, plus faint electrons
    /// found through their 3x3 sum) or sum3 (local maxima of the 3x3 sums, as the EMSim notes;
    /// merges electrons 1-2 pixels apart). docs/counting.md.
    #[arg(long, default_value = "pixel", value_parser = super::one_of(&emsim::count::Finder::NAMES, &[]))]
    finder: String,
    /// The network for --method net (safetensors from `emsim train`; default: assets/models/tiny.safetensors; with --split-pairs, fast-neighbours.safetensors, whose crops the pair models read).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Crops per network batch (--method net).
    #[arg(long, default_value_t = emsim::count::DEFAULT_NET_BATCH)]
    net_batch: usize,
    /// Split the clusters the one-vs-two classifier calls two electrons (--method net).
    #[arg(long)]
    split_pairs: bool,
    #[command(flatten)]
    split: SplitArgs,
    /// Activation storage of the network: f32, or f16 (GPUs with SHADER_F16; half the memory
    /// traffic between layers; --device cpu rounds the same way to reproduce it). With
    /// --net-kernel fused, the precision of the weights instead.
    #[arg(long, default_value = "f32", value_parser = net_precision())]
    net_precision: NetPrecision,
    /// How the GPU runs a small perceptron (the default network): layers (a kernel per layer),
    /// fused (one kernel per batch: crop, layers and decoding per electron; without
    /// --split-pairs; with --net-precision f16 its weights are f16), or auto: fused on adapters
    /// that run on the CPU (lavapipe), where it is faster, layers on other GPUs until it is timed
    /// there. The same electrons to 1e-4 px in f32; `emsim bench` times both (docs/network.md).
    #[arg(long, default_value = "auto", value_parser = super::one_of(&NetKernel::NAMES, &[]))]
    net_kernel: String,
    /// Output counts file (HDF5); with several methods include {method} in the name (replaced by
    /// the method's name, with one method too).
    #[arg(long, short)]
    out: String,
    /// Also write stempy's sparse electron-counted HDF5 (stempy.io.load_electron_counts).
    #[arg(long)]
    stempy: Option<PathBuf>,
    /// Folder for counted images at 1x, 2x, 4x (npy + PNG).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Read-noise sigma in electrons (default: estimated from the frames).
    #[arg(long, allow_negative_numbers = true)]
    sigma_e: Option<f32>,
    /// Background threshold, in units of the noise sigma (stempy's background_threshold_n_sigma).
    #[arg(long, default_value_t = emsim::count::DEFAULT_BACKGROUND_THRESHOLD_N_SIGMA, allow_negative_numbers = true)]
    background_threshold_n_sigma: f32,
    /// --finder pixel: a local maximum below the background threshold is still a (faint) centre
    /// when its pixel is above this many noise sigmas...
    #[arg(long, default_value_t = emsim::count::DEFAULT_FAINT_THRESHOLD_N_SIGMA, allow_negative_numbers = true)]
    faint_threshold_n_sigma: f32,
    /// ...and its 3x3 sum above this many noise sigmas (of one pixel).
    #[arg(long, default_value_t = emsim::count::DEFAULT_FAINT_SUM_THRESHOLD_N_SIGMA, allow_negative_numbers = true)]
    faint_sum_threshold_n_sigma: f32,
    /// Reject centres with a pixel above this many electrons (X-ray-like hits); 0 = off.
    #[arg(long, default_value_t = emsim::count::DEFAULT_XRAY_THRESHOLD_E, allow_negative_numbers = true)]
    xray_threshold_e: f32,
    /// Pixel threshold of the thresholded centroids (c3x3t, c5x5t), electrons.
    #[arg(long, default_value_t = emsim::count::DEFAULT_CENTROID_THRESHOLD_E, allow_negative_numbers = true)]
    centroid_threshold_e: f32,
    /// Drop a centre when a stronger one lies within this many pixels (--finder pixel: faint
    /// centres only).
    #[arg(long, default_value_t = emsim::count::DEFAULT_SUPPRESS_PX)]
    suppress_px: u32,
    /// Dark reference (ADU per pixel, HxW): file.npy, file.h5 or file.h5:/dataset.
    #[arg(long)]
    dark: Option<String>,
    /// Gain map (multiplier per pixel, HxW): file.npy, file.h5 or file.h5:/dataset.
    #[arg(long)]
    gain_map: Option<String>,
    /// ADU per electron (default: the frames file's gain_adu_per_e, else 1).
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<f32>,
    /// Scalar dark offset in ADU (default: the frames file's offset_adu, else 0).
    #[arg(long, allow_negative_numbers = true)]
    offset_adu: Option<f32>,
    /// Pixel pitch in um (default: the frames file's pixel_size_um).
    #[arg(long)]
    pixel_size_um: Option<f32>,
    /// Count only the first N frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Frames per batch (0: automatic).
    #[arg(long, default_value_t = 0)]
    batch: u32,
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    dev: DeviceArgs,
}

#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub(crate) fn count(a: CountArgs) -> Result<()> {
    use emsim::count::{CountConfig, Method, run::CountOptions};
    let methods = a.method.split(',').map(|m| Method::parse(m.trim())).collect::<emsim::Result<Vec<_>>>()?;
    let cfg = CountConfig {
        noise_sigma_e: a.sigma_e,
        finder: emsim::count::Finder::parse(&a.finder)?,
        background_threshold_n_sigma: a.background_threshold_n_sigma,
        faint_threshold_n_sigma: a.faint_threshold_n_sigma,
        faint_sum_threshold_n_sigma: a.faint_sum_threshold_n_sigma,
        xray_threshold_e: a.xray_threshold_e,
        centroid_threshold_e: a.centroid_threshold_e,
        suppress_px: a.suppress_px,
        batch_frames: a.batch,
        net_batch: a.net_batch,
        net_precision: a.net_precision,
        net_kernel: NetKernel::from_name(&a.net_kernel).expect("one of NetKernel::NAMES"),
        ..Default::default()
    };
    let mut cfg = cfg;
    if methods.contains(&Method::Net) {
        if a.net_batch == 0 {
            return Err(emsim::Error::invalid("--net-batch", "must be at least 1"));
        }
        let net = emsim::count::load_net_model(a.model.as_deref(), a.split_pairs)?;
        if a.split_pairs {
            cfg.pairs = Some(a.split.load(&net)?);
        }
        cfg.net = Some(net);
    } else if a.model.is_some() {
        return Err(emsim::Error::invalid("--model", "only used with --method net"));
    } else if a.net_kernel != NetKernel::default().name() {
        return Err(emsim::Error::invalid("--net-kernel", "only used with --method net"));
    } else if a.net_precision != NetPrecision::F32 {
        return Err(emsim::Error::invalid("--net-precision", "only used with --method net"));
    }
    if a.split_pairs && !methods.contains(&Method::Net) {
        return Err(emsim::Error::invalid("--split-pairs", "needs --method net (it splits the network's electrons)"));
    }
    if !a.split_pairs {
        for (flag, given) in [
            ("--pair-classifier", a.split.pair_classifier.is_some()),
            ("--pair-localizer", a.split.pair_localizer.is_some()),
        ] {
            if given {
                return Err(emsim::Error::invalid(flag, "only used with --method net --split-pairs"));
            }
        }
    }
    // Check the settings before opening a device.
    cfg.validate(1, 1)?;
    if let Some(g) = a.gain
        && !(g > 0.0)
    {
        return Err(emsim::Error::invalid("--gain", format!("must be > 0, got {g}")));
    }
    let device = Device::open(&a.dev.device, &a.dev.backend)?;
    let opts = CountOptions {
        input: a.input,
        dataset: a.dataset,
        methods,
        out: a.out,
        stempy: a.stempy,
        images: a.images,
        force: a.force,
        progress: !a.quiet,
        max_frames: a.max_frames,
        gain_adu_per_e: a.gain,
        offset_adu: a.offset_adu,
        dark: a.dark,
        gain_map: a.gain_map,
        pixel_size_um: a.pixel_size_um,
    };
    let summary = emsim::count::run::run(cfg, &device, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&summary).unwrap());
    } else if !a.quiet {
        eprintln!(
            "counted {} electrons in {} frames ({:.1} per frame, noise sigma {:.2} e-{}) in {:.2} s ({:.1} frames/s, {} path): {}",
            summary.electrons,
            summary.frames,
            summary.electrons_per_frame,
            summary.noise_sigma_e,
            if summary.sigma_estimated { ", estimated" } else { "" },
            summary.elapsed_s,
            summary.frames_per_s,
            summary.path,
            summary.outputs.join(", ")
        );
    }
    Ok(())
}
