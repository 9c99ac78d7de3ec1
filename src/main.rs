//! The `emsim` command line: parses flags and calls the library. Nothing else lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use emsim::Result;
use emsim::gpu::Device;

mod cli;
use cli::train::{InferArgs, TrainArgs};
use cli::{
    bench::BenchArgs, count::CountArgs, eval::EvalArgs, events::EventsArgs, frames::FramesArgs, merge::MergeArgs,
};

#[derive(Parser)]
#[command(name = "emsim", version, about = "Direct-electron-detector simulation, counting and localization on the GPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
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
    #[command(after_help = "Examples:\n  emsim count f.h5 --out counts.h5 --stempy counts-stempy.h5\n  \
        emsim count f.h5 --method max,c3x3,c5x5,c3x3t,c5x5t --out 'counts-{method}.h5' --images counted/\n  \
        python3 -c \"import h5py; c = h5py.File('counts.h5'); print(c['electrons/x_px'][:5])\"")]
    Count(CountArgs),
    /// Present the shards of one frames dataset (`frames --shard k/N`), or their counts, as one file.
    #[command(
        after_help = "Examples:\n  emsim merge shard*.h5 --out all.h5            # virtual datasets: nothing copied\n  \
        emsim merge shard*.h5 --out all.h5 --copy     # a self-contained file\n  \
        emsim merge counts*.h5 --out counts-all.h5    # the counts of the shards (emsim count on each)\n  \
        python3 -c \"import h5py; print(h5py.File('all.h5')['frames'].shape)\""
    )]
    Merge(MergeArgs),
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
        Cmd::Events(a) => cli::events::run_events(a),
        Cmd::Frames(a) => cli::frames::frames(a),
        Cmd::Count(a) => cli::count::count(a),
        Cmd::Merge(a) => cli::merge::merge(a),
        Cmd::Eval(a) => cli::eval::eval(a),
        Cmd::Train(a) => cli::train::train(a),
        Cmd::Infer(a) => cli::train::infer(a),
        Cmd::Bench(a) => cli::bench::run_bench(a),
    }
}

/// A command-line error in one line, `emsim: error: ...` (with the accepted values where the flag
/// has a list of them, the missing flags, clap's tip); help and version print as clap prints them.
fn parse_or_exit() -> Cli {
    use clap::error::ErrorKind;
    let e = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // "...: " introduces a list (the missing flags): its items joined by commas; other lines by "; "
    let mut line = String::new();
    let mut list = false;
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            line.push_str(match (list, parts[k - 1].ends_with(':')) {
                (_, true) => " ",
                (true, false) => ", ",
                (false, false) => "; ",
            });
        }
        list |= p.ends_with(':');
        line.push_str(p);
    }
    eprintln!("emsim: error: {} (see --help)", line.strip_prefix("error: ").unwrap_or(&line));
    std::process::exit(2);
}

fn main() -> ExitCode {
    let cli = parse_or_exit();
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
