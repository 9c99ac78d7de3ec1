//! `emsim eval`: score counted electrons against the truth, and the evaluation suites.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use emsim::gpu::Device;
use emsim::net::precision::NetPrecision;
use emsim::{Error, Result};

use super::count::SplitArgs;
use super::{DeviceArgs, emit_report, load_library, net_precision, parse_list, parse_size};

#[derive(Args)]
pub(crate) struct EvalArgs {
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
pub(crate) enum EvalCmd {
    /// Isolated library events with noise, one per small frame (the EMSim notes' controlled test).
    Isolated {
        /// Event library (default: the one in assets/).
        #[arg(long)]
        library: Option<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        events: u32,
        #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E, allow_negative_numbers = true)]
        sigma_e: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Frame side around each event, pixels (odd).
        #[arg(long, default_value_t = 21)]
        crop: u32,
        #[arg(long, default_value_t = emsim::count::DEFAULT_CENTROID_THRESHOLD_E, allow_negative_numbers = true)]
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
        #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E, allow_negative_numbers = true)]
        sigma_e: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The fraction of library events held out in training.
        #[arg(long, default_value_t = 0.2)]
        holdout: f32,
        #[arg(long, default_value_t = emsim::count::DEFAULT_CENTROID_THRESHOLD_E, allow_negative_numbers = true)]
        centroid_threshold_e: f32,
        /// Activation storage of the network: f32 or f16 (see `count --net-precision`).
        #[arg(long, default_value = "f32", value_parser = net_precision())]
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
    /// Recall and precision against dose: frames at each dose, counted with a centroid, the network,
    /// the network with --split-pairs, stempy's counter and the centroid on the 3x3-sum finder
    /// (table + PNG).
    Dose(DoseArgs),
    /// MTF (slanted knife edge), noise power and DQE of the integrating mode, the counting methods
    /// and a perfect counter, through frames and count, at chosen doses (table, JSON, PNG;
    /// docs/dqe.md).
    Dqe(super::dqe::DqeArgs),
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
        #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E, allow_negative_numbers = true)]
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
pub(crate) struct DoseArgs {
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
    #[arg(long, default_value_t = emsim::frames::DEFAULT_NOISE_SIGMA_E, allow_negative_numbers = true)]
    noise_sigma_e: f32,
    /// How centres are found (count --finder): pixel, or sum3 (the EMSim notes' 3x3-sum search;
    /// with pixel, the centroid on sum3 is added for comparison).
    #[arg(long, default_value = "pixel", value_parser = super::one_of(&emsim::count::Finder::NAMES, &[]))]
    finder: String,
    /// The centroid to compare: max, c3x3, c5x5, c3x3t, c5x5t.
    #[arg(long, default_value = "c3x3t")]
    centroid: String,
    /// Event library (default: the one in assets/).
    #[arg(long)]
    library: Option<PathBuf>,
    /// The network (default: assets/models/fast-neighbours.safetensors, whose crops the pair models read).
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

pub(crate) fn eval_dose(a: DoseArgs) -> Result<()> {
    use emsim::count::Method;
    let doses = parse_list(&a.doses, "--doses", "a number", |d| d.parse::<f64>().ok())?;
    let (height, width) = parse_size(&a.size)?;
    let centroid = Method::parse(&a.centroid).map_err(|_| {
        Error::invalid("--centroid", format!("'{}': expected one of max, c3x3, c5x5, c3x3t, c5x5t", a.centroid))
    })?;
    if centroid == Method::Net {
        return Err(Error::invalid("--centroid", "expected a centroid, not net"));
    }
    let net = emsim::count::load_net_model(a.model.as_deref(), true)?;
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
        finder: emsim::count::Finder::parse(&a.finder)?,
        net,
        pairs,
        radius_px: a.radius_px,
        library_path: lib_path,
        progress: !a.quiet,
    };
    let report = emsim::eval::dose::run(&o, &lib, &device)?;
    emit_report(&report, &a.json, |r| r.table(), a.plots, |r, dir| r.plots(dir))
}

#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    if let Some(EvalCmd::Dose(d)) = a.sub {
        return eval_dose(d);
    }
    if let Some(EvalCmd::Dqe(d)) = a.sub {
        return super::dqe::eval_dqe(d);
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
        return emit_report(&report, &json, |r| r.table(), plots, |r, dir| Ok(vec![r.plot(dir)?]));
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
        return emit_report(&report, &json, |r| r.table(), plots, |r, dir| r.plots(dir));
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
        limits: Default::default(),
    };
    let report = emsim::eval::run(&opts)?;
    if to_stdout {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else if !a.quiet {
        print!("{}", report.table());
    }
    Ok(())
}
