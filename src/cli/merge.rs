//! `emsim merge`: the shards of one frames dataset as one file.

use std::path::PathBuf;

use clap::Args;

use emsim::Result;
use emsim::io::merge::MergeMode;

#[derive(Args)]
pub(crate) struct MergeArgs {
    /// The shard files of one dataset (`emsim frames --shard k/N`), every k once, in any order; or
    /// the counts files of every shard (`emsim count` on each).
    #[arg(required = true, value_name = "SHARDS")]
    shards: Vec<PathBuf>,
    /// The merged HDF5 file.
    #[arg(long, short)]
    out: PathBuf,
    /// Copy the shards' data into a self-contained file (compressed chunks copied as stored),
    /// instead of virtual datasets that read the shards where they are.
    #[arg(long)]
    copy: bool,
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn merge(a: MergeArgs) -> Result<()> {
    let mode = if a.copy { MergeMode::Copy } else { MergeMode::Virtual };
    let t0 = std::time::Instant::now();
    let s = emsim::io::merge::merge(&a.shards, &a.out, mode, a.force)?;
    if a.json {
        println!("{}", serde_json::to_string(&s).unwrap());
    } else if !a.quiet {
        eprintln!(
            "merged {} shards into {} ({} frames of {}x{}, {} electrons, {}) in {:.2} s",
            s.shards,
            s.out,
            s.frames,
            s.height,
            s.width,
            s.electrons,
            if a.copy { "copied" } else { "virtual datasets reading the shards in place" },
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
