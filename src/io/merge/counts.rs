//! `emsim merge` of counts files (`emsim count` run on each shard of a frames dataset): one counts
//! file for the whole dataset, as counting the merged frames file would give with the same noise
//! sigma. The electron columns are virtual datasets reading the shards' counts in place (or copied
//! with `--copy`); the frame index (each shard's first frame added), the offsets and the counted
//! images (summed) are stored. Layout: `docs/formats.md` ("Merging shards").

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::shared::{
    MergeMode, MergeSummary, SetFault, Source, common_config, first_difference, set_fault, single_machine_config,
    source_name, write_rows,
};
use crate::io::h5util::{err, num_attr, open, read_column, set_attr, set_str_attr, str_attr};
use crate::{Error, Result};

/// The electron columns that are the same in the shards' counts and the merged file: name, u32
/// (else f32).
const SHARED: [(&str, bool); 5] = [("x_px", false), ("y_px", false), ("row", true), ("col", true), ("charge_e", false)];

/// The attributes that must agree between the shards' counts (the settings of the count).
const SAME_STR: [&str; 2] = ["method", "params_json"];
const SAME_F32: [&str; 4] =
    ["background_threshold_n_sigma", "xray_threshold_e", "centroid_threshold_e", "pixel_size_um"];

/// One shard's counts file, as it describes itself.
#[derive(Clone, Debug)]
pub struct CountsShard {
    pub path: PathBuf,
    pub index: u64,
    pub count: u64,
    pub total_frames: u64,
    pub first_frame: u64,
    pub n_frames: u64,
    pub height: u32,
    pub width: u32,
    pub rows: u64,
    pub sigma_px: bool,
    pub noise_sigma_e: f32,
    seed: Option<u64>,
    frames_config: Value,
}

/// Whether `path` is a counts file (`emsim-counts/1`).
pub fn is_counts(path: &Path) -> bool {
    hdf5::File::open(path).ok().and_then(|f| str_attr(&f, "schema")).as_deref() == Some(crate::io::counts_out::SCHEMA)
}

/// Reads what merging needs from one counts file, with one-line errors naming it.
pub fn inspect(path: &Path) -> Result<CountsShard> {
    let file = open(path, "counts file")?;
    let schema = str_attr(&file, "schema").unwrap_or_default();
    if schema != crate::io::counts_out::SCHEMA {
        return Err(Error::file(
            path,
            format!(
                "schema {schema:?}; expected {:?} like the other inputs (counts written by emsim count)",
                crate::io::counts_out::SCHEMA
            ),
        ));
    }
    let text = str_attr(&file, "frames_config_json")
        .ok_or_else(|| Error::file(path, "no `frames_config_json` attribute (counts of a file emsim frames wrote?)"))?;
    let frames_config: Value =
        serde_json::from_str(&text).map_err(|e| Error::file(path, format!("frames_config_json is not JSON: {e}")))?;
    let cfg = &frames_config["config"];
    let field =
        |k: &str| cfg[k].as_u64().ok_or_else(|| Error::file(path, format!("frames_config_json has no config.{k}")));
    let (index, count, total_frames) = (field("shard_index")?, field("shard_count")?, field("frames")?);
    let need = |name: &str| {
        num_attr::<u64>(&file, name).ok_or_else(|| Error::file(path, format!("no `{name}` attribute (u64)")))
    };
    let (first_frame, n_frames) = (need("first_frame")?, need("n_frames")?);
    let dim = |name: &str| {
        num_attr::<u32>(&file, name).ok_or_else(|| Error::file(path, format!("no `{name}` attribute (u32)")))
    };
    let offsets = read_column::<u64>(&file, path, "electrons/offsets", Some(n_frames as usize + 1))?;
    let rows = *offsets.last().unwrap();
    let sigma_px = file.dataset("electrons/sigma_px").is_ok();
    Ok(CountsShard {
        path: path.to_path_buf(),
        index,
        count,
        total_frames,
        first_frame,
        n_frames,
        height: dim("height")?,
        width: dim("width")?,
        rows,
        sigma_px,
        noise_sigma_e: num_attr::<f32>(&file, "noise_sigma_e").unwrap_or(f32::NAN),
        seed: num_attr::<u64>(&file, "frames_seed"),
        frames_config,
    })
}

/// Checks that `shards` are the counts of every shard of one dataset, once each, made with the same
/// settings; returns them in order.
pub fn check(mut shards: Vec<CountsShard>) -> Result<Vec<CountsShard>> {
    let Some(first) = shards.first().cloned() else {
        return Err(Error::invalid("SHARDS", "no counts files given"));
    };
    let f0 = open(&first.path, "counts file")?;
    let common = common_config(&first.frames_config);
    let name = first.path.display().to_string();
    for s in &shards[1..] {
        if s.seed != first.seed {
            return Err(Error::file(
                &s.path,
                format!("counts frames of seed {:?}, but {name} of seed {:?}: another dataset", s.seed, first.seed),
            ));
        }
        if let Some(d) = first_difference(&common, &common_config(&s.frames_config), "") {
            return Err(Error::file(&s.path, format!("its frames' configuration differs from {name}'s in `{d}`")));
        }
        let f = open(&s.path, "counts file")?;
        for a in SAME_STR {
            if str_attr(&f, a) != str_attr(&f0, a) {
                return Err(Error::file(&s.path, format!("`{a}` differs from {name}'s: counted with other settings")));
            }
        }
        for a in SAME_F32 {
            let (x, y) = (num_attr::<f32>(&f, a), num_attr::<f32>(&f0, a));
            if x.map(f32::to_bits) != y.map(f32::to_bits) {
                return Err(Error::file(&s.path, format!("`{a}` {x:?}, but {name} has {y:?}")));
            }
        }
        if s.sigma_px != first.sigma_px {
            return Err(Error::file(
                &s.path,
                format!("sigma_px present: {}, in {name}: {}", s.sigma_px, first.sigma_px),
            ));
        }
    }
    shards.sort_by_key(|s| s.index);
    let n = first.count;
    let keys: Vec<(u64, u64, u64)> = shards.iter().map(|s| (s.index, s.first_frame, s.n_frames)).collect();
    match set_fault(&keys, n, first.total_frames) {
        Some(SetFault::Twice(i)) => {
            let (s, before) = (&shards[i], &shards[i - 1]);
            Err(Error::file(
                &s.path,
                format!("the counts of shard {}/{} again ({} has them too)", s.index, s.count, before.path.display()),
            ))
        }
        Some(SetFault::Missing(k)) => Err(Error::invalid(
            "SHARDS",
            format!("the counts of shard {k}/{n} are missing ({} of {n} files given; all are needed)", shards.len()),
        )),
        Some(SetFault::Frames(i, r)) => {
            let s = &shards[i];
            Err(Error::file(
                &s.path,
                format!(
                    "counts frames {}..{}; shard {}/{n} holds {}..{} (counted with --max-frames?)",
                    s.first_frame,
                    s.first_frame + s.n_frames,
                    s.index,
                    r.start,
                    r.end
                ),
            ))
        }
        None => Ok(shards),
    }
}

/// Writes the merged counts of checked `shards` to `tmp` (renamed to `out` afterwards).
pub fn write(shards: &[CountsShard], mode: MergeMode, tmp: &Path, out: &Path) -> Result<MergeSummary> {
    let first = &shards[0];
    let total = first.total_frames;
    let rows: u64 = shards.iter().map(|s| s.rows).sum();
    let e = err(tmp, "writing the merged counts");
    let src0 = open(&first.path, "counts file")?;
    let file = hdf5::File::create(tmp).map_err(&e)?;
    for a in ["schema", "generator", "method", "params_json"] {
        set_str_attr(&file, a, &str_attr(&src0, a).unwrap_or_default()).map_err(&e)?;
    }
    set_attr(&file, "height", first.height).map_err(&e)?;
    set_attr(&file, "width", first.width).map_err(&e)?;
    set_attr(&file, "n_frames", total).map_err(&e)?;
    set_attr(&file, "first_frame", 0u64).map_err(&e)?;
    if let Some(s) = first.seed {
        set_attr(&file, "frames_seed", s).map_err(&e)?;
    }
    set_str_attr(&file, "frames_config_json", &single_machine_config(&first.frames_config, total)).map_err(&e)?;
    let names: Vec<String> = shards.iter().map(|s| source_name(&s.path, out)).collect::<Result<_>>()?;
    set_str_attr(&file, "frames_file", &format!("merged counts of {} shards", shards.len())).map_err(&e)?;
    set_str_attr(&file, "merged_from", &serde_json::to_string(&names).unwrap()).map_err(&e)?;
    let mode_name = if mode == MergeMode::Virtual { "virtual" } else { "copy" };
    set_str_attr(&file, "merge", mode_name).map_err(&e)?;
    for a in SAME_F32 {
        if let Some(v) = num_attr::<f32>(&src0, a) {
            set_attr(&file, a, v).map_err(&e)?;
        }
    }
    // The noise sigma of each shard's count (estimated per shard unless --sigma-e was given).
    let sigmas: Vec<f32> = shards.iter().map(|s| s.noise_sigma_e).collect();
    let mean = sigmas.iter().map(|&v| v as f64).sum::<f64>() / sigmas.len() as f64;
    set_attr(&file, "noise_sigma_e", mean as f32).map_err(&e)?;
    set_str_attr(&file, "noise_sigma_e_per_shard", &serde_json::to_string(&sigmas).unwrap()).map_err(&e)?;
    set_attr(&file, "sigma_estimated", num_attr::<u8>(&src0, "sigma_estimated").unwrap_or(0)).map_err(&e)?;

    let g = file.create_group("electrons").map_err(&e)?;
    if let Some(c) = src0.group("electrons").ok().and_then(|g| str_attr(&g, "convention")) {
        set_str_attr(&g, "convention", &c).map_err(&e)?;
    }
    let sources: Vec<Source> = shards
        .iter()
        .zip(&names)
        .map(|(s, name)| Source { path: &s.path, name, rows: s.rows, first_frame: s.first_frame, n_frames: s.n_frames })
        .collect();
    let sigma = first.sigma_px.then_some(("sigma_px", false));
    let columns: Vec<(&str, bool)> = SHARED.into_iter().chain(sigma).collect();
    write_rows(&file, "electrons", &src0, &sources, &columns, mode, tmp)?;
    // The counted images: the sums of the shards'.
    for name in ["counted_image", "counted_image_x2", "counted_image_x4"] {
        let Ok(d0) = src0.dataset(name) else { continue };
        let mut sum = vec![0u32; d0.size()];
        for s in shards {
            let f = open(&s.path, "counts file")?;
            let v = f.dataset(name).and_then(|d| d.read_raw::<u32>()).map_err(err(&s.path, name))?;
            if v.len() != sum.len() {
                return Err(Error::file(&s.path, format!("/{name} has {} values, expected {}", v.len(), sum.len())));
            }
            sum.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
        }
        let shape = d0.shape();
        let a = ndarray::ArrayView2::from_shape((shape[0], shape[1]), &sum).map_err(|x| Error::file(tmp, x))?;
        let ds = file
            .new_dataset_builder()
            .shuffle()
            .deflate(1)
            .chunk((shape[0].min(1024), shape[1].min(1024)))
            .with_data(&a)
            .create(name)
            .map_err(&e)?;
        if let Some(v) = str_attr(&d0, "units") {
            set_str_attr(&ds, "units", &v).map_err(&e)?;
        }
        if let Some(k) = num_attr::<u32>(&d0, "upsampling") {
            set_attr(&ds, "upsampling", k).map_err(&e)?;
        }
    }
    file.flush().map_err(&e)?;
    Ok(MergeSummary {
        shards: shards.len(),
        frames: total,
        height: first.height as u64,
        width: first.width as u64,
        electrons: rows,
        mode: mode_name,
        out: out.display().to_string(),
    })
}
