//! What merging frames shards and counts shards share: the mode, the summary, the checks of
//! configurations and shard ranges, the names of the sources, and the columns copied or mapped.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use crate::io::h5util::{err, open, set_str_attr, str_attr};
use crate::{Error, Result};

/// Truth rows moved at a time by [`MergeMode::Copy`] (16 MiB of u32).
pub const ROWS_PER_STEP: usize = 1 << 22;

/// How the merged file holds the shards' data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// Virtual datasets reading the shards in place.
    Virtual,
    /// A self-contained copy.
    Copy,
}

/// What [`super::merge`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MergeSummary {
    pub shards: usize,
    pub frames: u64,
    pub height: u64,
    pub width: u64,
    pub electrons: u64,
    pub mode: &'static str,
    pub out: String,
}

/// The configuration without what differs from shard to shard.
pub fn common_config(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("first_frame");
        o.remove("frames_in_file");
        if let Some(cfg) = o.get_mut("config").and_then(|v| v.as_object_mut()) {
            cfg.remove("shard_index");
            cfg.remove("shard_count");
        }
    }
    c
}

/// The first place where two JSON values differ, as a path (`config.height`).
pub fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &p),
                    _ => Some(p),
                }
            })
        }
        _ if a != b => Some(if at.is_empty() { "(the whole configuration)".into() } else { at.to_string() }),
        _ => None,
    }
}

/// A shard's `config_json` as the single-machine run writes it: shard 0/1, all `total` frames.
pub fn single_machine_config(config: &Value, total: u64) -> String {
    let mut config = config.clone();
    if let Some(o) = config.as_object_mut() {
        o.insert("first_frame".into(), 0.into());
        o.insert("frames_in_file".into(), total.into());
        if let Some(c) = o.get_mut("config").and_then(|v| v.as_object_mut()) {
            c.insert("shard_index".into(), 0.into());
            c.insert("shard_count".into(), 1.into());
        }
    }
    config.to_string()
}

/// Why a set of shards is not every shard of a dataset once each.
pub enum SetFault {
    /// The shard at this place (in index order) has the index of the one before it.
    Twice(usize),
    /// No shard has this index.
    Missing(u64),
    /// The shard at this place does not hold the frames its index says, which are these.
    Frames(usize, Range<u64>),
}

/// Checks shards given as `(index, first frame, frames)`, sorted by index, against the `n` shards
/// of a dataset of `total` frames (`emsim frames --shard k/N`).
pub fn set_fault(shards: &[(u64, u64, u64)], n: u64, total: u64) -> Option<SetFault> {
    if let Some(i) = (1..shards.len()).find(|&i| shards[i].0 == shards[i - 1].0) {
        return Some(SetFault::Twice(i));
    }
    if let Some(k) = (0..n).find(|k| !shards.iter().any(|s| s.0 == *k)) {
        return Some(SetFault::Missing(k));
    }
    shards.iter().enumerate().find_map(|(i, &(k, first, len))| {
        let r = crate::frames::shard_frames(k, n, total);
        (first != r.start || len != r.end - r.start).then_some(SetFault::Frames(i, r))
    })
}

/// How the merged file at `out` names a shard: relative to the merged file's folder when the shard
/// is in it or below (HDF5 looks there), else absolute.
pub fn source_name(shard: &Path, out: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(shard).map_err(|e| Error::file(shard, e))?;
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::file(dir, e))?;
    let p = abs.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(abs);
    p.to_str().map(str::to_string).ok_or_else(|| Error::file(shard, "the path is not UTF-8"))
}

/// A shard's 1-D columns, as [`stream_column`] and [`shared_column`] read them.
pub struct Source<'a> {
    pub path: &'a Path,
    /// The name the merged file gives it ([`source_name`]).
    pub name: &'a str,
    pub rows: u64,
    pub first_frame: u64,
    pub n_frames: u64,
}

/// The per-electron part of a merged file, in `group` (`truth` or `electrons`, already created):
/// `offsets` (one running sum of the sources'), `frame` (each source's first frame added), both
/// stored, and `columns` (name, u32 else f32), virtual or copied by `mode`; units from `src0`.
pub fn write_rows(
    file: &hdf5::File,
    group: &str,
    src0: &hdf5::File,
    sources: &[Source],
    columns: &[(&str, bool)],
    mode: MergeMode,
    tmp: &Path,
) -> Result<()> {
    let e = err(tmp, "writing the merged file");
    let total: u64 = sources.iter().map(|s| s.n_frames).sum();
    let rows: u64 = sources.iter().map(|s| s.rows).sum();
    let mut offsets = Vec::with_capacity(total as usize + 1);
    offsets.push(0u64);
    for s in sources {
        let f = open(s.path, "shard")?;
        let name = format!("{group}/offsets");
        let o = crate::io::h5util::read_column::<u64>(&f, s.path, &name, Some(s.n_frames as usize + 1))?;
        let base = *offsets.last().unwrap();
        offsets.extend(o[1..].iter().map(|v| v + base));
    }
    let g = file.group(group).map_err(&e)?;
    crate::io::h5util::write_column(
        &g,
        "offsets",
        &offsets,
        "index: electrons of frame k are rows [offsets[k], offsets[k+1])",
    )
    .map_err(&e)?;
    let units = |path: &str| src0.dataset(path).ok().and_then(|d| str_attr(&d, "units")).unwrap_or_default();
    let path = format!("{group}/frame");
    let frame = file.new_dataset::<u32>().shape(rows as usize).create(path.as_str()).map_err(&e)?;
    set_str_attr(&frame, "units", &units(&path)).map_err(&e)?;
    stream_column::<u32>(sources, &path, &frame, &add_first_frame, tmp)?;
    for &(name, is_u32) in columns {
        let path = format!("{group}/{name}");
        let ds = if is_u32 {
            shared_column::<u32>(file, sources, &path, mode, tmp)?
        } else {
            shared_column::<f32>(file, sources, &path, mode, tmp)?
        };
        set_str_attr(&ds, "units", &units(&path)).map_err(&e)?;
    }
    Ok(())
}

/// Streams column `name` of every source into `dst` in order, [`ROWS_PER_STEP`] rows at a time,
/// each piece passed through `fix` with its source's first frame on the way.
pub fn stream_column<T: hdf5::H5Type + Copy>(
    sources: &[Source],
    name: &str,
    dst: &hdf5::Dataset,
    fix: &dyn Fn(&mut [T], u64),
    tmp: &Path,
) -> Result<()> {
    let mut at = 0usize;
    for s in sources {
        let f = open(s.path, "shard")?;
        let src = f.dataset(name).map_err(err(s.path, name))?;
        for start in (0..s.rows as usize).step_by(ROWS_PER_STEP) {
            let end = (start + ROWS_PER_STEP).min(s.rows as usize);
            let mut v = src.read_slice_1d::<T, _>(start..end).map_err(err(s.path, name))?.to_vec();
            fix(&mut v, s.first_frame);
            dst.write_slice(v.as_slice(), at + start..at + end).map_err(err(tmp, name))?;
        }
        at += s.rows as usize;
    }
    Ok(())
}

/// Frame indices within a shard made indices within the merged file.
fn add_first_frame(v: &mut [u32], first_frame: u64) {
    v.iter_mut().for_each(|x| *x += first_frame as u32);
}

/// Column `name`, the same in the sources and the merged file: a virtual dataset mapping each
/// source's rows in turn, or (`MergeMode::Copy`) a copy streamed from them.
pub fn shared_column<T: hdf5::H5Type + Copy>(
    file: &hdf5::File,
    sources: &[Source],
    name: &str,
    mode: MergeMode,
    tmp: &Path,
) -> Result<hdf5::Dataset> {
    let rows: usize = sources.iter().map(|s| s.rows as usize).sum();
    let mut b = file.new_dataset::<T>();
    if mode == MergeMode::Virtual {
        let mut at = 0usize;
        for s in sources {
            let n = s.rows as usize;
            b = b.virtual_map(s.name, name, n, 0..n, rows, at..at + n);
            at += n;
        }
    }
    let ds = b.shape(rows).create(name).map_err(err(tmp, name))?;
    if mode == MergeMode::Copy {
        stream_column::<T>(sources, name, &ds, &|_, _| {}, tmp)?;
    }
    Ok(ds)
}
