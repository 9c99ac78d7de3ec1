//! The `emsim` command line: parses flags and calls the library. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use emsim::frames::run::{RunOptions, run};
use emsim::frames::{ElectronCount, FramesConfig, SEED_MEAN_ELECTRONS, SEED_SD_ELECTRONS};
use emsim::gpu::Device;
use emsim::io::library::EventLibrary;
use emsim::net::precision::NetPrecision;
use emsim::{Error, Result};

#[derive(Parser)]
#[command(name = "emsim", version, about = "Direct-electron-detector simulation, counting and localization on the GPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct DeviceArgs {
    /// Where kernels run: auto (a hardware GPU if there is one, else the CPU twins), gpu (any
    /// wgpu adapter, software rasterizers such as llvmpipe included) or cpu (the Rust twins of
    /// every kernel). `emsim devices` says what auto picks.
    #[arg(long, default_value = "auto")]
    device: String,
    /// wgpu backend: auto, vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto")]
    backend: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the GPU adapters wgpu can see, with their limits and features, and what --device auto picks.
    #[command(after_help = "Example: emsim devices --json")]
    Devices {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Simulate (Monte Carlo), import or inspect single-electron event libraries.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  emsim events --preset seed --energy-kev 300 --count 100000 --seed 7 --out lib.h5\n  \
        emsim events --stack \"SiO2:1,Si:8*,Si:300\" --count 1000 --out thick.h5\n  \
        emsim events info lib.h5 --json\n  emsim events show lib.h5 --event 17 --out e.png"
    )]
    Events(EventsArgs),
    /// Make detector frames with ground truth.
    #[command(after_help = "Example:\n  emsim frames --frames 8 --seed 1 --out f.h5 --preview f.png\n  \
        python3 -c \"import h5py; f = h5py.File('f.h5'); print(f['frames'].shape, f['truth/x_px'][:5])\"")]
    Frames(FramesArgs),
    /// Find the electrons in frames and localize them (max pixel, 3x3/5x5 centroids, thresholded).
    #[command(after_help = "Examples:\n  emsim count f.h5 --method c3x3 --out counts.h5 --stempy counts-stempy.h5\n  \
        emsim count f.h5 --method max,c3x3,c5x5,c3x3t,c5x5t --out 'counts-{method}.h5' --images counted/\n  \
        python3 -c \"import h5py; c = h5py.File('counts.h5'); print(c['electrons/x_px'][:5])\"")]
    Count(CountArgs),
    /// Score counted electrons against the truth; or the isolated-event test of the EMSim notes.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  emsim eval counts-c3x3.h5 counts-max.h5 --truth f.h5 --json eval.json --plots plots/\n  \
        emsim eval isolated --events 10000 --sigma-e 20 --seed 1"
    )]
    Eval(EvalArgs),
    /// Measure the throughput of each stage on the GPU and CPU paths.
    #[command(after_help = "Example: emsim bench --quick --json > bench.json")]
    Bench(BenchArgs),
    /// Train the sub-pixel network on samples made on the fly from an event library.
    #[command(after_help = "Examples:\n  emsim train --preset seed --epochs 6 --out seed.safetensors\n  \
        emsim train --preset fast --library lib.h5 --epochs 20 --lr-schedule cosine --out fast.safetensors\n  \
        emsim train --preset fast --epochs 30 --resume fast.ckpt.safetensors --out fast.safetensors --force\n  \
        emsim train --preset pair-split --epochs 10 --batch 256 --out pair-split.safetensors\n  \
        python3 -c \"from safetensors.torch import load_file; print(load_file('seed.safetensors').keys())\"")]
    Train(TrainArgs),
    /// Run a trained network on crops from a .npy file (N x S x S, electrons) and write its estimates.
    #[command(
        after_help = "Example:\n  emsim infer --model assets/models/fast.safetensors --input crops.npy --out est.npy --logits logits.npy\n  \
        python3 -c \"import numpy as np; e = np.load('est.npy'); print(e[:3])  # x_px, y_px, sigma_px, p_max\""
    )]
    Infer(InferArgs),
}

#[derive(Args)]
struct InferArgs {
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
struct TrainArgs {
    /// Model preset: seed (41x41 in, 10x10 grid in the centre pixel), seed-84 (84x84 grid over 21x21 px), fast,
    /// fast-neighbours (fast trained among other electrons);
    /// one-vs-two classifiers pair-seed (the MSU multi-electron notebook's), pair-compact; pair-reg (the notebook's
    /// single-electron regression); for count --split-pairs: pair-split (classifier), pair-loc (pair localizer).
    #[arg(long, default_value = "seed", conflicts_with = "config")]
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
    #[arg(long, default_value_t = 20.0)]
    sigma_e: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// constant, cosine[:min_factor] or steps:E1,E2:gamma (epochs from 0). Default: the EMSim network's 1e-3 then 1e-4 at half way.
    #[arg(long)]
    lr_schedule: Option<String>,
    /// adam (L2 weight decay, as the EMSim network) or adamw (decoupled).
    #[arg(long, default_value = "adam")]
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

#[derive(Args)]
struct EventsArgs {
    #[command(subcommand)]
    sub: Option<EventsCmd>,
    #[command(flatten)]
    sim: SimulateArgs,
}

#[derive(Args)]
struct SimulateArgs {
    /// Sensor and beam preset: seed or 4dcamera (see docs/physics.md).
    #[arg(long, default_value = "seed")]
    preset: String,
    /// Layers, beam side first, thickness in um, `*` = sensitive: e.g. "SiO2:1,Si:8*,Si:300".
    #[arg(long)]
    stack: Option<String>,
    #[arg(long)]
    energy_kev: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    tilt_deg: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    pitch_um: Option<f64>,
    /// Depleted (drift) thickness at the collection plane, um; the rest of the sensitive layer is
    /// field free (docs/physics.md).
    #[arg(long, allow_negative_numbers = true)]
    depletion_um: Option<f64>,
    #[arg(long, default_value_t = 10000)]
    count: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Also store every transport step of the primary electron.
    #[arg(long)]
    tracks: bool,
    /// Where the charge collection runs: cpu (the default: libraries identical bit for bit
    /// whatever the machine), gpu (any wgpu adapter; the same charges within f32 rounding) or
    /// auto (a hardware GPU if there is one). The transport runs on the CPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// wgpu backend: auto, vulkan, metal, dx12 or gl.
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long, short, required = true)]
    out: Option<PathBuf>,
    #[arg(long)]
    force: bool,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Summary of a library: charge, deposits, backscatter, cluster sizes, parameters.
    Info {
        library: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The mean single-electron response (pattern, Gaussian sigma, peak and width of the 3x3
    /// charge, analog DQE(0), Swank factor) beside the 4D Camera's measured figures.
    #[command(after_help = "Example: emsim events response lib.h5 --gain-adu-per-e 0.07 --plot resp")]
    Response {
        library: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also give the charges in ADU at this gain.
        #[arg(long)]
        gain_adu_per_e: Option<f64>,
        /// Write PREFIX-spectrum.png (3x3 charge) and PREFIX-profile.png (mean pattern).
        #[arg(long, value_name = "PREFIX")]
        plot: Option<PathBuf>,
    },
    /// Draw one event's pixels with its incidence point.
    Show {
        library: PathBuf,
        #[arg(long)]
        event: usize,
        #[arg(long)]
        out: PathBuf,
        /// Screen pixels per detector pixel.
        #[arg(long, default_value_t = 16)]
        scale: u32,
    },
    /// Import a library: the EMSim notes' Geant4 pixel tables (event,row,col,counts,xinc,yinc) or a CSV
    /// of hits (event,x_um,y_um,z_um,edep_kev) that go through emsim's charge collection.
    Import {
        #[arg(long, conflicts_with = "hits", required_unless_present = "hits")]
        pixel_table: Option<PathBuf>,
        #[arg(long)]
        hits: Option<PathBuf>,
        /// Pixel pitch of a pixel table.
        #[arg(long, default_value_t = 5.0)]
        pitch_um: f64,
        /// Sensor for --hits.
        #[arg(long, default_value = "seed")]
        preset: String,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// A parametric library (charge cloud + short track): for tests, NOT physics.
    #[command(after_help = "Example: emsim events parametric --count 2000 --seed 7 --out lib.h5")]
    Parametric {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 5.0)]
        pitch_um: f64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct FramesArgs {
    /// Frames in the dataset (all shards together).
    #[arg(long, default_value_t = 8)]
    frames: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: an HDF5 file (--format h5) or a folder of .npy files (--format npy).
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value = "h5")]
    format: String,
    /// HDF5 compression of /frames: deflate (shuffle + deflate on every core; plain h5py reads it),
    /// gzip=1..9 (shuffle + libdeflate at that level, on every core), lzf (one thread) or none.
    /// docs/formats.md compares them.
    #[arg(long, default_value = "deflate")]
    compression: String,
    /// Event library (HDF5); default: the library shipped in assets/.
    #[arg(long)]
    library: Option<PathBuf>,
    /// Frame size HxW, e.g. 576x576.
    #[arg(long, default_value = "576x576")]
    size: String,
    /// Mean electrons per frame (Normal, with --electrons-sd).
    #[arg(long, default_value_t = SEED_MEAN_ELECTRONS)]
    electrons: f64,
    #[arg(long, default_value_t = SEED_SD_ELECTRONS)]
    electrons_sd: f64,
    /// Poisson-distributed electrons per frame with this mean (instead of Normal).
    #[arg(long, conflicts_with = "dose")]
    poisson: Option<f64>,
    /// Dose in electrons per pixel per frame (Poisson).
    #[arg(long)]
    dose: Option<f64>,
    /// A real camera's readout: its gain, dark level and read noise in ADU (4dcamera: the NCEM 4D
    /// Camera at 300 kV; needs a library of its 10 um pixels, `emsim events --preset 4dcamera`).
    /// --gain, --noise-sigma-e and --offset-adu replace its values.
    #[arg(long)]
    camera: Option<String>,
    /// Gaussian read noise, electrons [default: 20, or the camera's].
    #[arg(long, allow_negative_numbers = true)]
    noise_sigma_e: Option<f32>,
    /// ADU per electron [default: 1, or the camera's].
    #[arg(long, allow_negative_numbers = true)]
    gain: Option<f32>,
    /// Dark offset, ADU. Default: the camera's dark level with --camera; else 10x the read noise in
    /// ADU for u16 frames (so the noise is never clipped at 0; 200 ADU at the defaults), 0 for f32
    /// frames.
    #[arg(long, allow_negative_numbers = true)]
    offset_adu: Option<f32>,
    /// Stored values: u16 (integer ADU with a dark offset, as detectors write them) or f32.
    #[arg(long, default_value = "u16")]
    dtype: String,
    /// The same as --dtype u16 (the default).
    #[arg(long, hide = true)]
    quantize_u16: bool,
    /// Frames per batch.
    #[arg(long, default_value_t = 32)]
    batch: u32,
    /// Make part k of an N-way split: k/N.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Write a log-scale PNG of the first frame with the truth points.
    #[arg(long)]
    preview: Option<PathBuf>,
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

#[derive(Args)]
struct BenchArgs {
    /// Small sizes: finishes in well under two minutes on 2 cores without a GPU.
    #[arg(long)]
    quick: bool,
    /// Folder the end-to-end stages (frames_file, count_file) write to: the file system to measure.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Print JSON (schema docs/bench-schema.json) instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip the GPU path (only the CPU twins).
    #[arg(long)]
    cpu_only: bool,
    /// Skip the CPU path (only the GPU), e.g. for a long sweep on a real GPU.
    #[arg(long, conflicts_with = "cpu_only")]
    gpu_only: bool,
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Only these stages, comma-separated: events, frames, count, frames_count, count_net,
    /// net_infer, net_train
    /// (the copy bandwidth is always measured).
    #[arg(long, value_delimiter = ',')]
    stages: Option<Vec<String>>,
    /// Frames per repeat of the frame stages (default 32 with --quick, else 256).
    #[arg(long)]
    frames: Option<u64>,
    /// Extra frames-per-submission batches for `frames` and `count` on the GPU path (576x576,
    /// default density), comma-separated, e.g. 128,512.
    #[arg(long, value_delimiter = ',')]
    frame_batches: Vec<u32>,
    /// Extra inference batches for the `fast` network, comma-separated, e.g. 16384,65536.
    #[arg(long, value_delimiter = ',')]
    net_batches: Vec<usize>,
    /// GPU path: also time every kernel (timestamps around each compute pass); the records get
    /// kernel_gpu_ms_per_repeat and kernel_dispatches_per_repeat.
    #[arg(long)]
    kernel_times: bool,
    /// Compare two `--json` reports (a, then b): rates side by side with b / a.
    #[arg(long, num_args = 2, value_names = ["A_JSON", "B_JSON"])]
    compare: Option<Vec<PathBuf>>,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::invalid("--size", format!("'{s}': expected HxW, e.g. 576x576"));
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((h.trim().parse().map_err(|_| bad())?, w.trim().parse().map_err(|_| bad())?))
}

fn parse_precision(s: &str) -> std::result::Result<NetPrecision, String> {
    s.parse()
}

fn parse_shard(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::invalid("--shard", format!("'{s}': expected k/N with 0 <= k < N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    Ok((k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?))
}

fn load_library(path: &Option<PathBuf>) -> Result<(EventLibrary, String)> {
    let p = path.clone().unwrap_or_else(emsim::default_library_path);
    Ok((EventLibrary::read_h5(&p)?, p.display().to_string()))
}

/// The pair-splitting models and rule (`count --split-pairs`, `eval dose`).
#[derive(Args)]
struct SplitArgs {
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
    fn load(&self, net: &emsim::net::model::Model) -> Result<emsim::count::split::PairModels> {
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
struct CountArgs {
    /// Frames: an emsim frames HDF5 file (or any HDF5 file with a 3-D dataset), an emsim npy
    /// folder, or a 3-D .npy file.
    input: PathBuf,
    /// HDF5 dataset holding the frames.
    #[arg(long, default_value = "frames")]
    dataset: String,
    /// Localization method(s), comma-separated: max, c3x3, c5x5, c3x3t, c5x5t, net.
    #[arg(long, default_value = "c3x3")]
    method: String,
    /// The network for --method net (safetensors from `emsim train`; default: assets/models/fast-neighbours.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Crops per network batch (--method net).
    #[arg(long, default_value_t = 2048)]
    net_batch: usize,
    /// Split the clusters the one-vs-two classifier calls two electrons (--method net).
    #[arg(long)]
    split_pairs: bool,
    #[command(flatten)]
    split: SplitArgs,
    /// Activation storage of the network: f32, or f16 (GPUs with SHADER_F16; half the memory
    /// traffic between layers; --device cpu rounds the same way to reproduce it).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    net_precision: NetPrecision,
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
    #[arg(long, default_value_t = 4.0, allow_negative_numbers = true)]
    background_threshold_n_sigma: f32,
    /// Reject centres with a pixel above this many electrons (X-ray-like hits); 0 = off.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    xray_threshold_e: f32,
    /// Pixel threshold of the thresholded centroids (c3x3t, c5x5t), electrons.
    #[arg(long, default_value_t = 40.0, allow_negative_numbers = true)]
    centroid_threshold_e: f32,
    /// Drop a centre when a stronger one lies within this many pixels.
    #[arg(long, default_value_t = 2)]
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

#[derive(Args)]
struct EvalArgs {
    #[command(subcommand)]
    sub: Option<EvalCmd>,
    /// Counts files (emsim count --out), one per method.
    #[arg(required = true)]
    counts: Vec<PathBuf>,
    /// The frames file the counts came from (its /truth).
    #[arg(long, required = true)]
    truth: Option<PathBuf>,
    /// Matching radius, pixels.
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    radius_px: f32,
    /// Write the report as JSON to this file ("-": stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write PNG plots into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Isolated library events with noise, one per small frame (the EMSim notes' controlled test).
    Isolated {
        /// Event library (default: the one in assets/).
        #[arg(long)]
        library: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        events: u32,
        #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
        sigma_e: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Frame side around each event, pixels (odd).
        #[arg(long, default_value_t = 21)]
        crop: u32,
        #[arg(long, default_value_t = 40.0, allow_negative_numbers = true)]
        centroid_threshold_e: f32,
        /// Print JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// A trained network on held-out library events vs the centroids on the same crops, and its sigma knob.
    Net {
        /// The model (safetensors from `emsim train`).
        #[arg(long)]
        model: PathBuf,
        /// Event library (default: the one in assets/); events are drawn from its held-out part.
        #[arg(long)]
        library: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
        sigma_e: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The fraction of library events held out in training.
        #[arg(long, default_value_t = 0.2)]
        holdout: f32,
        #[arg(long, default_value_t = 40.0, allow_negative_numbers = true)]
        centroid_threshold_e: f32,
        /// Activation storage of the network: f32 or f16 (see `count --net-precision`).
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        net_precision: NetPrecision,
        /// Write the report as JSON here ('-': stdout instead of the table).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Folder for knob.png and net_vs_c3x3.png.
        #[arg(long)]
        plots: Option<PathBuf>,
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// Recall and precision against dose: frames at each dose, counted with a centroid, the network
    /// and the network with --split-pairs (table + PNG).
    Dose(DoseArgs),
    /// A one-vs-two classifier or a pair localizer on held-out one-or-two-electron samples:
    /// accuracy, confusion matrix, easy/hard split, by separation.
    Pairs {
        /// The model (safetensors from `emsim train --preset pair-...`).
        #[arg(long)]
        model: PathBuf,
        /// Event library (default: the one in assets/); events are drawn from its held-out part.
        #[arg(long)]
        library: Option<PathBuf>,
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
        #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
        sigma_e: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The fraction of library events held out in training.
        #[arg(long, default_value_t = 0.2)]
        holdout: f32,
        /// The second electron within this many pixels per axis (default: the model's training setting).
        #[arg(long)]
        max_sep_px: Option<u32>,
        /// Mean number of extra electrons per patch (default: the model's training setting).
        #[arg(long, allow_negative_numbers = true)]
        extra_mean: Option<f32>,
        /// Footprint threshold of the easy/hard split, electrons (default: 4 sigma).
        #[arg(long, allow_negative_numbers = true)]
        hard_threshold_e: Option<f32>,
        /// Write the report as JSON here ('-': stdout instead of the table).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Folder for by_separation.png.
        #[arg(long)]
        plots: Option<PathBuf>,
        #[command(flatten)]
        dev: DeviceArgs,
    },
}

#[derive(Args)]
struct DoseArgs {
    /// Doses, electrons per pixel per frame, ascending, comma-separated; the first is the reference.
    #[arg(long, default_value = "0.001,0.0025,0.005,0.01,0.02")]
    doses: String,
    /// Frames per dose.
    #[arg(long, default_value_t = 20)]
    frames: u64,
    /// Frame size HxW.
    #[arg(long, default_value = "256x256")]
    size: String,
    #[arg(long, default_value_t = 3)]
    seed: u64,
    #[arg(long, default_value_t = 20.0, allow_negative_numbers = true)]
    noise_sigma_e: f32,
    /// The centroid to compare: max, c3x3, c5x5, c3x3t, c5x5t.
    #[arg(long, default_value = "c3x3t")]
    centroid: String,
    /// Event library (default: the one in assets/).
    #[arg(long)]
    library: Option<PathBuf>,
    /// The network (default: assets/models/fast-neighbours.safetensors).
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    split: SplitArgs,
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    radius_px: f32,
    /// Write the report as JSON here ('-': stdout instead of the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Folder for recall_vs_dose.png and precision_vs_dose.png.
    #[arg(long)]
    plots: Option<PathBuf>,
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    dev: DeviceArgs,
}

fn eval_dose(a: DoseArgs) -> Result<()> {
    use emsim::count::Method;
    let doses = a
        .doses
        .split(',')
        .map(|d| d.trim().parse::<f64>().map_err(|_| Error::invalid("--doses", format!("'{d}' is not a number"))))
        .collect::<Result<Vec<_>>>()?;
    let (height, width) = parse_size(&a.size)?;
    let centroid = Method::parse(&a.centroid).map_err(|_| {
        Error::invalid("--centroid", format!("'{}': expected one of max, c3x3, c5x5, c3x3t, c5x5t", a.centroid))
    })?;
    if centroid == Method::Net {
        return Err(Error::invalid("--centroid", "expected a centroid, not net"));
    }
    let net = emsim::count::load_net_model(a.model.as_deref())?;
    let pairs = a.split.load(&net)?;
    let (lib, lib_path) = load_library(&a.library)?;
    let device = Device::open(&a.dev.device, &a.dev.backend)?;
    let o = emsim::eval::dose::DoseOptions {
        doses,
        frames: a.frames,
        height,
        width,
        seed: a.seed,
        noise_sigma_e: a.noise_sigma_e,
        centroid,
        net,
        pairs,
        radius_px: a.radius_px,
        library_path: lib_path,
        progress: !a.quiet,
    };
    let report = emsim::eval::dose::run(&o, &lib, &device)?;
    if !write_json_report(&report, &a.json)? {
        print!("{}", report.table());
    }
    if let Some(dir) = a.plots {
        for p in report.plots(&dir)? {
            eprintln!("plot: {}", p.display());
        }
    }
    Ok(())
}

/// Writes `report` as JSON to `json` (a file, or stdout for "-") and says whether it went to stdout.
fn write_json_report<T: serde::Serialize>(report: &T, json: &Option<PathBuf>) -> Result<bool> {
    let to_stdout = json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if let Some(p) = json.as_ref().filter(|_| !to_stdout) {
        let out = emsim::io::atomic::Output::new(p, true, "--json")?;
        std::fs::write(out.tmp(), serde_json::to_string_pretty(report).unwrap()).map_err(|e| Error::file(p, e))?;
        out.commit()?;
    }
    if to_stdout {
        println!("{}", serde_json::to_string_pretty(report).unwrap());
    }
    Ok(to_stdout)
}

fn eval(a: EvalArgs) -> Result<()> {
    if let Some(EvalCmd::Dose(d)) = a.sub {
        return eval_dose(d);
    }
    if let Some(EvalCmd::Pairs {
        model,
        library,
        samples,
        sigma_e,
        seed,
        holdout,
        max_sep_px,
        extra_mean,
        hard_threshold_e,
        json,
        plots,
        dev,
    }) = a.sub
    {
        use emsim::net::pair_eval::{PairEvalOptions, pair_eval};
        if !(sigma_e >= 0.0) {
            return Err(Error::invalid("--sigma-e", format!("must be >= 0, got {sigma_e}")));
        }
        let m = emsim::io::model_file::load(&model, None)?.model;
        let (lib, _) = load_library(&library)?;
        let o = PairEvalOptions {
            samples,
            sigma_e,
            seed,
            holdout,
            max_sep_px,
            extra_mean,
            hard_threshold_e,
            ..Default::default()
        };
        let device = Device::open(&dev.device, &dev.backend)?;
        let report = pair_eval(&m, &lib, &o, &device)?;
        if !write_json_report(&report, &json)? {
            print!("{}", report.table());
        }
        if let Some(dir) = plots {
            eprintln!("plot: {}", report.plot(&dir)?.display());
        }
        return Ok(());
    }
    if let Some(EvalCmd::Net {
        model,
        library,
        events,
        sigma_e,
        seed,
        holdout,
        centroid_threshold_e,
        net_precision,
        json,
        plots,
        dev,
    }) = a.sub
    {
        use emsim::net::heldout::{HeldoutOptions, heldout_eval};
        if !(sigma_e >= 0.0) {
            return Err(Error::invalid("--sigma-e", format!("must be >= 0, got {sigma_e}")));
        }
        let m = emsim::io::model_file::load(&model, None)?.model;
        let (lib, _) = load_library(&library)?;
        let o = HeldoutOptions {
            events,
            sigma_e,
            seed,
            holdout,
            centroid_threshold_e,
            precision: net_precision,
            ..Default::default()
        };
        let device = Device::open(&dev.device, &dev.backend)?;
        let report = heldout_eval(&m, &lib, &o, &device)?;
        if !write_json_report(&report, &json)? {
            print!("{}", report.table());
        }
        if let Some(dir) = plots {
            for p in report.plots(&dir)? {
                eprintln!("plot: {}", p.display());
            }
        }
        return Ok(());
    }
    if let Some(EvalCmd::Isolated { library, events, sigma_e, seed, crop, centroid_threshold_e, json, dev }) = a.sub {
        use emsim::count::isolated::{IsolatedOptions, isolated_test};
        let (lib, _) = load_library(&library)?;
        let o = IsolatedOptions { events, sigma_e, seed, crop, centroid_threshold_e, ..Default::default() };
        let device = Device::open(&dev.device, &dev.backend)?;
        let report = isolated_test(&lib, &o, &device)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report).unwrap());
        } else {
            print!("{}", report.table());
        }
        return Ok(());
    }
    let to_stdout = a.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let opts = emsim::eval::EvalOptions {
        counts: a.counts,
        truth: a.truth.expect("required by clap"),
        radius_px: a.radius_px,
        json: a.json.filter(|_| !to_stdout),
        plots: a.plots,
    };
    let report = emsim::eval::run(&opts)?;
    if to_stdout {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else if !a.quiet {
        print!("{}", report.table());
    }
    Ok(())
}

fn count(a: CountArgs) -> Result<()> {
    use emsim::count::{CountConfig, Method, run::CountOptions};
    let methods = a.method.split(',').map(|m| Method::parse(m.trim())).collect::<emsim::Result<Vec<_>>>()?;
    let cfg = CountConfig {
        noise_sigma_e: a.sigma_e,
        background_threshold_n_sigma: a.background_threshold_n_sigma,
        xray_threshold_e: a.xray_threshold_e,
        centroid_threshold_e: a.centroid_threshold_e,
        suppress_px: a.suppress_px,
        batch_frames: a.batch,
        net_batch: a.net_batch,
        net_precision: a.net_precision,
        ..Default::default()
    };
    let mut cfg = cfg;
    if methods.contains(&Method::Net) {
        if a.net_batch == 0 {
            return Err(emsim::Error::invalid("--net-batch", "must be at least 1"));
        }
        let net = emsim::count::load_net_model(a.model.as_deref())?;
        if a.split_pairs {
            cfg.pairs = Some(a.split.load(&net)?);
        }
        cfg.net = Some(net);
    } else if a.model.is_some() {
        return Err(emsim::Error::invalid("--model", "only used with --method net"));
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

fn frames(a: FramesArgs) -> Result<()> {
    let (height, width) = parse_size(&a.size)?;
    let (shard_index, shard_count) = parse_shard(&a.shard)?;
    let electrons = match (a.poisson, a.dose) {
        (Some(mean), _) => ElectronCount::Poisson { mean },
        (_, Some(d)) => ElectronCount::Dose { electrons_per_pixel: d },
        _ => ElectronCount::Normal { mean: a.electrons, sd: a.electrons_sd },
    };
    let quantize_u16 = match a.dtype.as_str() {
        "u16" => true,
        "f32" if a.quantize_u16 => return Err(Error::invalid("--quantize-u16", "conflicts with --dtype f32")),
        "f32" => false,
        other => return Err(Error::invalid("--dtype", format!("'{other}': expected u16 or f32"))),
    };
    let camera = a.camera.as_deref().map(emsim::frames::camera::Camera::named).transpose()?;
    let gain = a.gain.or(camera.map(|c| c.gain_adu_per_e)).unwrap_or(1.0);
    let noise_sigma_e = a.noise_sigma_e.or(camera.map(|c| c.read_noise_e())).unwrap_or(20.0);
    let offset_adu = a.offset_adu.or(camera.map(|c| c.dark_adu)).unwrap_or(if quantize_u16 {
        emsim::frames::auto_offset_adu(noise_sigma_e, gain)
    } else {
        0.0
    });
    let cfg = FramesConfig {
        frames: a.frames,
        height,
        width,
        electrons,
        noise_sigma_e,
        gain_adu_per_e: gain,
        offset_adu,
        quantize_u16,
        seed: a.seed,
        batch_frames: a.batch,
        shard_index,
        shard_count,
    };
    cfg.validate()?;
    let opts = RunOptions {
        out: a.out,
        format: a.format.parse()?,
        compression: a.compression.parse()?,
        force: a.force,
        preview: a.preview,
        progress: !a.quiet,
        library_path: String::new(),
    };
    let (lib, lib_path) = load_library(&a.library)?;
    if let Some(c) = camera {
        c.check_library_pitch(lib.meta.pitch_um, &lib_path)?;
    }
    let device = Device::open(&a.dev.device, &a.dev.backend)?;
    let summary = run(&cfg, &lib, &device, &RunOptions { library_path: lib_path, ..opts })?;
    if a.json {
        println!("{}", serde_json::to_string(&summary).unwrap());
    } else if !a.quiet {
        eprintln!(
            "wrote {} frames ({} electrons) to {} in {:.2} s ({:.1} frames/s, {} path)",
            summary.frames, summary.electrons, summary.output, summary.elapsed_s, summary.frames_per_s, summary.path
        );
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
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

fn infer(a: InferArgs) -> Result<()> {
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
    let x: Vec<f32> = crops.iter().map(|&v| v * model.cfg.input_scale).collect();
    let folded = model.fold_batchnorm()?;
    let act = folded.clone().forward_cpu(&x, n, false, 0, 0)?;
    // Localizers: (x, y, sigma, p_max) per crop; a classifier: its class probabilities; a pair
    // localizer: (x1, y1, x2, y2).
    let arr = match folded.cfg.head {
        emsim::net::model::Head::Classes { n: k } => {
            ndarray::Array2::from_shape_vec((n, k), emsim::net::decode::class_probs(&folded.cfg, act.last(), n))
                .unwrap()
        }
        emsim::net::model::Head::Pair => ndarray::Array2::from_shape_vec((n, 4), act.last().to_vec()).unwrap(),
        _ => {
            let dec = emsim::net::decode::decode(&folded.cfg, act.last(), n);
            let est: Vec<f32> = dec.iter().flat_map(|d| [d.mean_xy[0], d.mean_xy[1], d.sigma_px, d.p_max]).collect();
            ndarray::Array2::from_shape_vec((n, 4), est).unwrap()
        }
    };
    ndarray_npy::write_npy(out.tmp(), &arr).map_err(|e| Error::file(&a.out, e))?;
    if let Some(lo) = logits_out {
        let k = folded.cfg.head_outputs();
        let arr = ndarray::Array2::from_shape_vec((n, k), act.last().to_vec()).unwrap();
        ndarray_npy::write_npy(lo.tmp(), &arr).map_err(|e| Error::file(lo.final_path(), e))?;
        lo.commit()?;
    }
    out.commit()?;
    eprintln!("wrote {} estimates to {}", n, a.out.display());
    Ok(())
}

fn main_result(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Devices { json, backend } => {
            let adapters = emsim::gpu::list_adapters();
            let (auto, why) = Device::auto(&backend)?;
            if json {
                let v = serde_json::json!({
                    "adapters": adapters,
                    "auto": {"device": auto.path_name(), "reason": why, "adapter": auto.adapter()},
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap());
                return Ok(());
            }
            println!("--device auto: {} ({why})", auto.path_name());
            if adapters.is_empty() {
                println!(
                    "no GPU adapters found (install mesa-vulkan-drivers for a CPU Vulkan driver, or use --device cpu)"
                );
            } else {
                for a in adapters {
                    println!(
                        "{} | backend {} | {} | driver {} {} | max storage binding {} MiB | f16 {} | timestamps {} | subgroups {}",
                        a.name,
                        a.backend,
                        a.device_type,
                        a.driver,
                        a.driver_info,
                        a.max_storage_buffer_binding_size_bytes >> 20,
                        a.shader_f16,
                        a.timestamp_query,
                        a.subgroup
                    );
                }
            }
            Ok(())
        }
        Cmd::Events(EventsArgs { sub: None, sim }) => {
            let out = sim.out.expect("clap requires --out");
            let output = emsim::io::atomic::Output::new(&out, sim.force, "--out")?;
            let req = emsim::events::build::SimulateRequest {
                preset: sim.preset,
                stack: sim.stack,
                energy_kev: sim.energy_kev,
                tilt_deg: sim.tilt_deg,
                pitch_um: sim.pitch_um,
                depletion_um: sim.depletion_um,
                count: sim.count,
                seed: sim.seed,
                tracks: sim.tracks,
            };
            let t = std::time::Instant::now();
            let device = Device::open(&sim.device, &sim.backend)?;
            let lib = emsim::events::build::simulate_library_on(&req, &device, !sim.quiet)?;
            lib.write_h5(output.tmp())?;
            output.commit()?;
            if !sim.quiet {
                let dt = t.elapsed().as_secs_f64();
                eprintln!(
                    "wrote {} events to {} in {dt:.1} s ({:.0} events/s)",
                    lib.len(),
                    out.display(),
                    lib.len() as f64 / dt
                );
            }
            Ok(())
        }
        Cmd::Events(EventsArgs { sub: Some(EventsCmd::Info { library, json }), .. }) => {
            let info = emsim::events::info::library_info(&EventLibrary::read_h5(&library)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&info).unwrap());
            } else {
                print!("{}", info.text());
            }
            Ok(())
        }
        Cmd::Events(EventsArgs { sub: Some(EventsCmd::Response { library, json, gain_adu_per_e, plot }), .. }) => {
            if let Some(g) = gain_adu_per_e
                && !(g > 0.0 && g.is_finite())
            {
                return Err(Error::invalid("--gain-adu-per-e", format!("expected a finite gain > 0 ADU/e-, got {g}")));
            }
            let r = emsim::events::response::response(&EventLibrary::read_h5(&library)?, gain_adu_per_e)
                .map_err(|e| Error::file(&library, e))?;
            if let Some(prefix) = &plot {
                r.plot(prefix)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap());
            } else {
                print!("{}", r.text());
            }
            Ok(())
        }
        Cmd::Events(EventsArgs { sub: Some(EventsCmd::Show { library, event, out, scale }), .. }) => {
            emsim::events::show::show_event(&EventLibrary::read_h5(&library)?, event, &out, scale)
        }
        Cmd::Events(EventsArgs {
            sub: Some(EventsCmd::Import { pixel_table, hits, pitch_um, preset, seed, out, force }),
            ..
        }) => {
            let output = emsim::io::atomic::Output::new(&out, force, "--out")?;
            let lib = match (pixel_table, hits) {
                (Some(p), _) => emsim::events::import::import_pixel_table(&p, pitch_um)?,
                (None, Some(h)) => {
                    let (sensor, _) =
                        emsim::events::physics::preset(&preset).map_err(|m| Error::invalid("--preset", m))?;
                    emsim::events::import::import_hits(&h, &sensor, seed)?
                }
                (None, None) => return Err(Error::invalid("--pixel-table/--hits", "give one input file")),
            };
            lib.write_h5(output.tmp())?;
            output.commit()?;
            eprintln!("imported {} events into {}", lib.len(), out.display());
            Ok(())
        }
        Cmd::Events(EventsArgs { sub: Some(EventsCmd::Parametric { count, seed, pitch_um, out, force }), .. }) => {
            if count == 0 {
                return Err(Error::invalid("--count", "must be at least 1"));
            }
            if !(pitch_um > 0.0) {
                return Err(Error::invalid("--pitch-um", format!("{pitch_um} must be > 0")));
            }
            let output = emsim::io::atomic::Output::new(&out, force, "--out")?;
            let model = emsim::events::parametric::ParametricModel { pitch_um, ..Default::default() };
            let lib = emsim::events::parametric::parametric_library(&model, count, seed);
            lib.write_h5(output.tmp())?;
            output.commit()?;
            eprintln!("wrote {count} parametric events to {}", out.display());
            Ok(())
        }
        Cmd::Frames(a) => frames(a),
        Cmd::Count(a) => count(a),
        Cmd::Eval(a) => eval(a),
        Cmd::Train(a) => train(a),
        Cmd::Infer(a) => infer(a),
        Cmd::Bench(a) => {
            if let Some(files) = &a.compare {
                print!("{}", emsim::bench::compare(&files[0], &files[1])?);
                return Ok(());
            }
            let opts = emsim::bench::BenchOptions {
                quick: a.quick,
                cpu_only: a.cpu_only,
                gpu_only: a.gpu_only,
                backend: a.backend,
                stages: a.stages,
                frames: a.frames,
                frame_batches: a.frame_batches,
                net_batches: a.net_batches,
                kernel_times: a.kernel_times,
                dir: a.dir,
            };
            let report = emsim::bench::run(&opts)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // wgpu's GL probe (EGL) prints an error line without a runtime folder: give it a private one.
        // SAFETY: getuid cannot fail.
        let dir = std::env::temp_dir().join(format!("emsim-runtime-{}", unsafe { libc::getuid() }));
        use std::os::unix::fs::DirBuilderExt;
        if std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok() || dir.is_dir() {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
    // Ctrl-C or SIGTERM: remove the outputs being written (no partial file stays), then exit.
    if let Err(e) = ctrlc::set_handler(|| {
        emsim::io::atomic::remove_temporaries();
        eprintln!("emsim: interrupted; nothing was written");
        std::process::exit(130);
    }) {
        eprintln!("emsim: warning: cannot catch interrupts ({e}); an interrupted run may leave a temporary file");
    }
    match main_result(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emsim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
