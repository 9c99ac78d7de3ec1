//! `emsim merge`: the shards of one frames dataset (`emsim frames --shard k/N`), or the counts of
//! every shard (`emsim count` on each), presented as one file. By default the merged file holds
//! HDF5 virtual datasets reading the shards in place; with [`MergeMode::Copy`], a self-contained
//! copy made in bounded memory. Layout: `docs/formats.md` ("Merging shards").

pub mod counts;
pub mod frames;
pub mod shared;

use std::path::{Path, PathBuf};

pub use shared::{MergeMode, MergeSummary};

use crate::{Error, Result};

/// `emsim merge`: checks `inputs` (frames shards or counts shards, by the first input's schema),
/// then writes the merged file at `out` (atomically: nothing is left at `out` if it fails).
pub fn merge(inputs: &[PathBuf], out: &Path, mode: MergeMode, force: bool) -> Result<MergeSummary> {
    for p in inputs {
        if std::fs::canonicalize(p).ok().is_some_and(|c| Some(c) == std::fs::canonicalize(out).ok()) {
            return Err(Error::invalid("--out", format!("{} is one of the shards", out.display())));
        }
    }
    if inputs.first().is_some_and(|p| counts::is_counts(p)) {
        let shards = counts::check(inputs.iter().map(|p| counts::inspect(p)).collect::<Result<Vec<_>>>()?)?;
        let output = crate::io::atomic::Output::new(out, force, "--out")?;
        let summary = counts::write(&shards, mode, output.tmp(), out)?;
        output.commit()?;
        return Ok(summary);
    }
    let shards = frames::check(inputs.iter().map(|p| frames::inspect(p)).collect::<Result<Vec<_>>>()?)?;
    let output = crate::io::atomic::Output::new(out, force, "--out")?;
    let summary = frames::write(&shards, mode, output.tmp(), out)?;
    output.commit()?;
    Ok(summary)
}
