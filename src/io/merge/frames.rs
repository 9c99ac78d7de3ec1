//! `emsim merge` of frames shards (`emsim frames --shard k/N`): one file for the whole dataset.
//! By default the merged file holds HDF5 virtual datasets that read the shards where they are
//! (nothing is copied: `/frames` and the truth columns `x_px`, `y_px`, `event`,
//! `deposit_kev`); the two columns whose values change, `/truth/frame` (the shard's first frame
//! added) and `/truth/offsets` (one running sum), are stored. With `copy`, a self-contained file:
//! the shards' compressed chunks are copied as stored (direct chunk I/O, no recompression) and the
//! truth columns streamed, in bounded memory. Layout: `docs/formats.md` ("Merging shards").

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::shared::{
    MergeMode, MergeSummary, SetFault, Source, common_config, first_difference, set_fault, single_machine_config,
    source_name, write_rows,
};
use crate::io::h5util::{err, num_attr, open, set_attr, set_str_attr, str_attr};
use crate::{Error, Result};

/// The truth columns that are the same in the shards and the merged file, and whether each is u32
/// (else f32).
const SHARED_COLUMNS: [(&str, bool); 4] = [("x_px", false), ("y_px", false), ("event", true), ("deposit_kev", false)];

/// One shard, as its file describes it.
#[derive(Clone, Debug)]
pub struct Shard {
    pub path: PathBuf,
    /// `k` and `N` of `shard = "k/N"`.
    pub index: u64,
    pub count: u64,
    pub seed: u64,
    pub first_frame: u64,
    pub total_frames: u64,
    pub n_frames: u64,
    pub height: u64,
    pub width: u64,
    /// `/frames` holds u16 (else f32).
    pub u16: bool,
    /// Rows of each truth column.
    pub truth_rows: u64,
    /// `config_json` as written, parsed.
    config: Value,
}

/// Reads what [`super::merge`] needs from one shard file, with one-line errors naming it.
pub fn inspect(path: &Path) -> Result<Shard> {
    crate::io::h5_filters::register().map_err(|m| Error::file(path, m))?;
    let file = open(path, "frames shard")?;
    let schema = str_attr(&file, "schema").unwrap_or_default();
    if schema != crate::io::frames_out::SCHEMA {
        return Err(Error::file(
            path,
            format!("schema {schema:?}; expected {:?} (a file written by emsim frames)", crate::io::frames_out::SCHEMA),
        ));
    }
    let need = |name: &str| {
        num_attr::<u64>(&file, name).ok_or_else(|| Error::file(path, format!("no `{name}` attribute (u64)")))
    };
    let (seed, first_frame, total_frames) = (need("seed")?, need("first_frame")?, need("total_frames")?);
    let shard = str_attr(&file, "shard").ok_or_else(|| Error::file(path, "no `shard` attribute (\"k/N\")"))?;
    let (index, count) = shard
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
        .filter(|&(k, n)| k < n)
        .ok_or_else(|| Error::file(path, format!("shard attribute {shard:?}; expected \"k/N\" with k < N")))?;
    let text = str_attr(&file, "config_json").ok_or_else(|| Error::file(path, "no `config_json` attribute"))?;
    let config: Value =
        serde_json::from_str(&text).map_err(|e| Error::file(path, format!("config_json is not JSON: {e}")))?;
    let ds = file.dataset("frames").map_err(|_| Error::file(path, "no /frames dataset"))?;
    let shape = ds.shape();
    if shape.len() != 3 {
        return Err(Error::file(path, format!("/frames has shape {shape:?}; expected (frames, height, width)")));
    }
    let dtype = ds.dtype().map_err(|e| Error::file(path, format!("/frames: {e}")))?;
    let u16 = if dtype.is::<u16>() {
        true
    } else if dtype.is::<f32>() {
        false
    } else {
        return Err(Error::file(path, "/frames is neither u16 nor f32 (emsim frames writes one of them)"));
    };
    let offsets = crate::io::h5util::read_column::<u64>(&file, path, "truth/offsets", Some(shape[0] + 1))?;
    let truth_rows = *offsets.last().unwrap();
    for (name, _) in SHARED_COLUMNS.iter().chain(&[("frame", true)]) {
        let ds = file.dataset(&format!("truth/{name}")).map_err(|_| Error::file(path, format!("no /truth/{name}")))?;
        if ds.shape() != [truth_rows as usize] {
            return Err(Error::file(
                path,
                format!("/truth/{name} has shape {:?}; /truth/offsets says {truth_rows} rows", ds.shape()),
            ));
        }
    }
    Ok(Shard {
        path: path.to_path_buf(),
        index,
        count,
        seed,
        first_frame,
        total_frames,
        n_frames: shape[0] as u64,
        height: shape[1] as u64,
        width: shape[2] as u64,
        u16,
        truth_rows,
        config,
    })
}

/// Checks that `shards` are every shard of one dataset, once each; returns them in order.
pub fn check(mut shards: Vec<Shard>) -> Result<Vec<Shard>> {
    let Some(first) = shards.first().cloned() else {
        return Err(Error::invalid("SHARDS", "no shard files given"));
    };
    let common = common_config(&first.config);
    for s in &shards[1..] {
        let name = first.path.display();
        if s.seed != first.seed {
            return Err(Error::file(
                &s.path,
                format!("seed {}, but {name} has seed {}: a shard of another dataset", s.seed, first.seed),
            ));
        }
        if s.count != first.count {
            return Err(Error::file(
                &s.path,
                format!("one of {} shards, but {name} is one of {}", s.count, first.count),
            ));
        }
        if (s.height, s.width, s.u16) != (first.height, first.width, first.u16) {
            return Err(Error::file(
                &s.path,
                format!(
                    "frames of {}x{} {}, but {name} has {}x{} {}",
                    s.height,
                    s.width,
                    if s.u16 { "u16" } else { "f32" },
                    first.height,
                    first.width,
                    if first.u16 { "u16" } else { "f32" }
                ),
            ));
        }
        if let Some(d) = first_difference(&common, &common_config(&s.config), "") {
            return Err(Error::file(&s.path, format!("its configuration differs from {name}'s in `{d}`")));
        }
    }
    shards.sort_by_key(|s| s.index);
    let n = first.count;
    let keys: Vec<(u64, u64, u64)> = shards.iter().map(|s| (s.index, s.first_frame, s.n_frames)).collect();
    let wrong_frames = |s: &Shard, r: Range<u64>| {
        Error::file(
            &s.path,
            format!(
                "holds frames {}..{} of {}; shard {}/{n} should hold {}..{} of {} (truncated or damaged?)",
                s.first_frame,
                s.first_frame + s.n_frames,
                s.total_frames,
                s.index,
                r.start,
                r.end,
                first.total_frames
            ),
        )
    };
    match set_fault(&keys, n, first.total_frames) {
        Some(SetFault::Twice(i)) => {
            let (s, before) = (&shards[i], &shards[i - 1]);
            return Err(Error::file(
                &s.path,
                format!("shard {}/{} is also {}", s.index, s.count, before.path.display()),
            ));
        }
        Some(SetFault::Missing(k)) => {
            return Err(Error::invalid(
                "SHARDS",
                format!("shard {k}/{n} is missing ({} of {n} shards given; all are needed)", shards.len()),
            ));
        }
        Some(SetFault::Frames(i, r)) => return Err(wrong_frames(&shards[i], r)),
        None => {}
    }
    if let Some(s) = shards.iter().find(|s| s.total_frames != first.total_frames) {
        return Err(wrong_frames(s, crate::frames::shard_frames(s.index, n, first.total_frames)));
    }
    Ok(shards)
}

/// Writes the merged file of checked `shards` (from [`check`]) to `tmp`, which will be renamed to
/// `out` (virtual datasets name their sources relative to `out`'s folder).
pub fn write(shards: &[Shard], mode: MergeMode, tmp: &Path, out: &Path) -> Result<MergeSummary> {
    let first = &shards[0];
    let (total, h, w) = (first.total_frames, first.height as usize, first.width as usize);
    let rows: u64 = shards.iter().map(|s| s.truth_rows).sum();
    let e = err(tmp, "writing the merged file");
    let file = hdf5::File::create(tmp).map_err(&e)?;
    let src0 = open(&first.path, "frames shard")?;
    for name in ["schema", "generator"] {
        set_str_attr(&file, name, &str_attr(&src0, name).unwrap_or_default()).map_err(&e)?;
    }
    set_attr(&file, "seed", first.seed).map_err(&e)?;
    set_attr(&file, "first_frame", 0u64).map_err(&e)?;
    set_attr(&file, "total_frames", total).map_err(&e)?;
    set_str_attr(&file, "shard", "0/1").map_err(&e)?;
    set_str_attr(&file, "config_json", &single_machine_config(&first.config, total)).map_err(&e)?;
    let names: Vec<String> = shards.iter().map(|s| source_name(&s.path, out)).collect::<Result<_>>()?;
    set_str_attr(&file, "merged_from", &serde_json::to_string(&names).unwrap()).map_err(&e)?;
    let mode_name = match mode {
        MergeMode::Virtual => "virtual",
        MergeMode::Copy => "copy",
    };
    set_str_attr(&file, "merge", mode_name).map_err(&e)?;

    // /frames
    let src_frames = src0.dataset("frames").map_err(&e)?;
    let frames = match mode {
        MergeMode::Virtual => {
            let shape = (total as usize, h, w);
            let mut b = if first.u16 { file.new_dataset::<u16>() } else { file.new_dataset::<f32>() };
            for (s, name) in shards.iter().zip(&names) {
                let (a, n) = (s.first_frame as usize, s.n_frames as usize);
                b = b.virtual_map(name, "frames", (n, h, w), (0..n, 0..h, 0..w), shape, (a..a + n, 0..h, 0..w));
            }
            b.shape(shape).create("frames").map_err(&e)?
        }
        MergeMode::Copy => copy_frames(shards, &file, &src_frames, tmp)?,
    };
    for name in ["units", "compression", "axes"] {
        if let Some(v) = str_attr(&src_frames, name) {
            set_str_attr(&frames, name, &v).map_err(&e)?;
        }
    }
    for name in ["noise_sigma_e", "gain_adu_per_e", "offset_adu", "pixel_size_um"] {
        if let Some(v) = num_attr::<f32>(&src_frames, name) {
            set_attr(&frames, name, v).map_err(&e)?;
        }
    }

    // /truth
    let tg = file.create_group("truth").map_err(&e)?;
    if let Some(c) = src0.group("truth").ok().and_then(|g| str_attr(&g, "convention")) {
        set_str_attr(&tg, "convention", &c).map_err(&e)?;
    }
    let sources: Vec<Source> = shards
        .iter()
        .zip(&names)
        .map(|(s, name)| Source {
            path: &s.path,
            name,
            rows: s.truth_rows,
            first_frame: s.first_frame,
            n_frames: s.n_frames,
        })
        .collect();
    write_rows(&file, "truth", &src0, &sources, &SHARED_COLUMNS, mode, tmp)?;
    file.flush().map_err(&e)?;
    Ok(MergeSummary {
        shards: shards.len(),
        frames: total,
        height: first.height,
        width: first.width,
        electrons: rows,
        mode: mode_name,
        out: out.display().to_string(),
    })
}

/// `/frames` of the self-contained file: created with the first shard's chunk shape and filters,
/// then every shard's chunks copied as stored (the same filters, so no recompression), one at a
/// time.
fn copy_frames(shards: &[Shard], file: &hdf5::File, src0: &hdf5::Dataset, tmp: &Path) -> Result<hdf5::Dataset> {
    let e = err(tmp, "writing the merged file");
    let first = &shards[0];
    let shape = (first.total_frames as usize, first.height as usize, first.width as usize);
    let chunk = src0.chunk().ok_or_else(|| Error::file(&first.path, "/frames is not chunked"))?;
    let filters = src0.filters();
    let ds = if first.u16 { file.new_dataset::<u16>() } else { file.new_dataset::<f32>() }
        .chunk(chunk.clone())
        .set_filters(&filters)
        .shape(shape)
        .create("frames")
        .map_err(&e)?;
    for s in shards {
        let f = open(&s.path, "frames shard")?;
        let src = f.dataset("frames").map_err(err(&s.path, "/frames"))?;
        if src.chunk().as_ref() != Some(&chunk) || src.filters() != filters {
            return Err(Error::file(
                &s.path,
                format!(
                    "/frames is stored in other chunks or with other filters than {}'s: use the same --compression for every shard",
                    first.path.display()
                ),
            ));
        }
        if s.first_frame % chunk[0] as u64 != 0 {
            return Err(Error::file(
                &s.path,
                format!("starts at frame {}, inside a chunk of {} frames", s.first_frame, chunk[0]),
            ));
        }
        for f0 in (0..s.n_frames).step_by(chunk[0]) {
            for r0 in (0..s.height).step_by(chunk[1]) {
                for c0 in (0..s.width).step_by(chunk[2]) {
                    let (stored, mask) =
                        crate::io::chunks::read_chunk(&src, &[f0, r0, c0]).map_err(|m| Error::file(&s.path, m))?;
                    crate::io::chunks::write_chunk_masked(&ds, &[s.first_frame + f0, r0, c0], &stored, mask)
                        .map_err(|m| Error::file(tmp, m))?;
                }
            }
        }
    }
    Ok(ds)
}
