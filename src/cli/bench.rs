//! `emsim bench`: the throughput of every stage.

use std::path::PathBuf;

use clap::Args;

use emsim::Result;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Small sizes: finishes in well under two minutes on 2 cores without a GPU.
    #[arg(long)]
    quick: bool,
    /// Folder the end-to-end stages (frames_file, count_file) write to: the file system to measure.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Compression of the file the end-to-end stages write and read (as `emsim frames
    /// --compression`): deflate (the default), gzip=1..9, zstd, zstd=1..22, bslz4 or none.
    #[arg(long, default_value = "deflate")]
    compression: String,
    /// Print JSON (schema docs/bench-schema.json) instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip the GPU path (only the CPU twins).
    #[arg(long)]
    cpu_only: bool,
    /// Skip the CPU path (only the GPU), e.g. for a long sweep on a real GPU.
    #[arg(long, conflicts_with = "cpu_only")]
    gpu_only: bool,
    /// wgpu backend (`gles` and `opengl` also name gl).
    #[arg(long, default_value = "auto", value_parser = super::one_of(&emsim::gpu::BackendChoice::NAMES, &["gles", "opengl"]))]
    backend: String,
    /// Only these stages, comma-separated: events, frames, frames_resident, frames_file, count,
    /// count_file, frames_count, count_resident, count_net_resident, count_net, net_infer,
    /// net_train (the copy bandwidth is always measured).
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

/// Runs `emsim bench ...`.
pub(crate) fn run_bench(a: BenchArgs) -> Result<()> {
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
        compression: a.compression.parse()?,
    };
    let report = emsim::bench::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
