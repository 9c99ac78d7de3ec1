//! `emsim eval dqe`: MTF, noise power and DQE through the pipeline.

use std::path::PathBuf;

use clap::Args;

use emsim::Result;
use emsim::count::Method;
use emsim::gpu::Device;

use super::{DeviceArgs, emit_report, load_library, parse_list};

#[derive(Args)]
pub(crate) struct DqeArgs {
    /// Doses, electrons per pixel per frame, comma-separated.
    #[arg(long, default_value = "0.005,0.02")]
    doses: String,
    /// Knife-edge frames (512x96) per dose (default 100,000; 10,000 with --quick).
    #[arg(long)]
    edge_frames: Option<u64>,
    /// Flat-field frames (128x128) per dose (default 5,000; 1,000 with --quick).
    #[arg(long)]
    flat_frames: Option<u64>,
    /// Counting methods, comma-separated (max, c3x3, c5x5, c3x3t, c5x5t, stempy); with --model,
    /// the network too. The integrating mode and a perfect counter are always measured.
    #[arg(long, default_value = "max,c3x3t")]
    methods: String,
    /// Counted images at these multiples of the detector's sampling, comma-separated (1, 2, 4, 8).
    #[arg(long, default_value = "1,2,4")]
    upsample: String,
    /// The network (safetensors) to measure beside the classical methods.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also the network with pair splitting (`net+split`; needs --model).
    #[arg(long, requires = "model")]
    split_pairs: bool,
    #[command(flatten)]
    split: super::count::SplitArgs,
    /// Tilt of the knife edge from the pixel columns, degrees.
    #[arg(long, default_value_t = 5.0)]
    angle_deg: f64,
    #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E, allow_negative_numbers = true)]
    noise_sigma_e: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fewer frames (a few minutes on 2 cores; noisier curves).
    #[arg(long)]
    quick: bool,
    /// Event library (default: the one in assets/).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Write the report as JSON here ('-': stdout instead of the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Folder for the plots (MTF, NPS, DQE per dose; DQE(0) and counted fraction vs dose).
    #[arg(long)]
    plots: Option<PathBuf>,
    #[command(flatten)]
    dev: DeviceArgs,
}

pub(crate) fn eval_dqe(a: DqeArgs) -> Result<()> {
    let doses = parse_list(&a.doses, "--doses", "a number", |v| v.parse::<f64>().ok())?;
    let upsample = parse_list(&a.upsample, "--upsample", "1, 2, 4 or 8", |v| v.parse::<u32>().ok())?;
    let methods = parse_list(&a.methods, "--methods", "one of max, c3x3, c5x5, c3x3t, c5x5t, stempy", |v| {
        Method::parse(v).ok().filter(|&m| m != Method::Net)
    })?;
    let net = match &a.model {
        Some(p) => Some(emsim::count::load_net_model(Some(p), false)?),
        None => None,
    };
    let pairs = match (&net, a.split_pairs) {
        (Some(n), true) => Some(a.split.load(n)?),
        _ => None,
    };
    let (lib, _) = load_library(&a.library)?;
    let device = Device::open(&a.dev.device, &a.dev.backend)?;
    let o = emsim::eval::dqe_run::DqeOptions {
        doses,
        edge_frames: a.edge_frames.unwrap_or(if a.quick { 10_000 } else { 100_000 }),
        flat_frames: a.flat_frames.unwrap_or(if a.quick { 1_000 } else { 5_000 }),
        noise_sigma_e: a.noise_sigma_e,
        angle_deg: a.angle_deg,
        upsample,
        methods,
        net,
        pairs,
        seed: a.seed,
    };
    let report = emsim::eval::dqe_run::run(&o, &lib, &device)?;
    emit_report(&report, &a.json, |r| r.table(), a.plots, |r, dir| r.plots(dir))
}
