//! `emsim frames`: detector frames with ground truth.

use std::path::PathBuf;

use clap::Args;

use emsim::frames::run::{RunOptions, run};
use emsim::frames::{ElectronCount, FramesConfig, SEED_MEAN_ELECTRONS, SEED_SD_ELECTRONS};
use emsim::gpu::Device;
use emsim::io::frames_out::FramesFormat;
use emsim::{Error, Result};

use super::{DeviceArgs, load_library, parse_shard, parse_size};

#[derive(Args)]
pub(crate) struct FramesArgs {
    /// Frames in the dataset (all shards together).
    #[arg(long, default_value_t = FramesConfig::default().frames)]
    frames: u64,
    #[arg(long, default_value_t = FramesConfig::default().seed)]
    seed: u64,
    /// Output: an HDF5 file (--format h5) or a folder of .npy files (--format npy).
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value = "h5", value_parser = super::one_of(&FramesFormat::NAMES, &["hdf5"]))]
    format: String,
    /// HDF5 compression of /frames: deflate (shuffle + deflate on every core; plain h5py reads it),
    /// gzip=1..9 (shuffle + libdeflate at that level, on every core), zstd or zstd=1..22
    /// (shuffle + Zstandard on every core, HDF5 filter 32015), bslz4 (bitshuffle + LZ4 on every
    /// core, HDF5 filter 32008; h5py reads these two after `import hdf5plugin`), lzf (one thread)
    /// or none. docs/formats.md compares them.
    #[arg(long, default_value = "deflate")]
    compression: String,
    /// Event library (HDF5); default: the library shipped in assets/.
    #[arg(long)]
    library: Option<PathBuf>,
    /// Frame size HxW, e.g. 576x576.
    #[arg(long, default_value_t = default_size())]
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
    #[arg(long, default_value = "u16", value_parser = super::one_of(&["u16", "f32"], &[]))]
    dtype: String,
    /// The same as --dtype u16 (the default).
    #[arg(long, hide = true)]
    quantize_u16: bool,
    /// Frames per batch.
    #[arg(long, default_value_t = FramesConfig::default().batch_frames)]
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

/// `--size`'s default: the default frames' height x width.
fn default_size() -> String {
    let d = FramesConfig::default();
    format!("{}x{}", d.height, d.width)
}

pub(crate) fn frames(a: FramesArgs) -> Result<()> {
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
    let gain = a.gain.or(camera.map(|c| c.gain_adu_per_e)).unwrap_or(emsim::frames::DEFAULT_GAIN_ADU_PER_E);
    let noise_sigma_e =
        a.noise_sigma_e.or(camera.map(|c| c.read_noise_e())).unwrap_or(emsim::frames::DEFAULT_NOISE_SIGMA_E);
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
