//! The command line: one module per command; each turns its flags into the library's options and
//! calls the library. Shared here: the device flags and the parsers of common values.

pub(crate) mod bench;
pub(crate) mod count;
pub(crate) mod dqe;
pub(crate) mod eval;
pub(crate) mod events;
pub(crate) mod frames;
pub(crate) mod merge;
pub(crate) mod train;

use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use emsim::gpu::{BackendChoice, Device};
use emsim::io::library::EventLibrary;
use emsim::net::precision::NetPrecision;
use emsim::{Error, Result};

#[derive(Args, Clone)]
pub(crate) struct DeviceArgs {
    /// Where kernels run: auto (a hardware GPU if there is one, else the CPU twins), gpu (any
    /// wgpu adapter, software rasterizers such as llvmpipe included) or cpu (the Rust twins of
    /// every kernel). `emsim devices` says what auto picks.
    #[arg(long, default_value = "auto", value_parser = one_of(&Device::NAMES, &[]))]
    device: String,
    /// wgpu backend (`gles` and `opengl` also name gl).
    #[arg(long, default_value = "auto", value_parser = one_of(&BackendChoice::NAMES, &["gles", "opengl"]))]
    backend: String,
}

pub(crate) fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::invalid("--size", format!("'{s}': expected HxW, e.g. 576x576"));
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((h.trim().parse().map_err(|_| bad())?, w.trim().parse().map_err(|_| bad())?))
}

/// A flag's choices (`names`, and `hidden` aliases): `--help` lists them and a value outside them
/// is refused by the parser with the list; the library parses the name.
pub(crate) fn one_of(names: &'static [&'static str], hidden: &'static [&'static str]) -> PossibleValuesParser {
    let shown = names.iter().map(|&n| PossibleValue::new(n));
    PossibleValuesParser::new(shown.chain(hidden.iter().map(|&n| PossibleValue::new(n).hide(true))))
}

/// `--net-precision`: f32 or f16.
pub(crate) fn net_precision() -> impl TypedValueParser<Value = NetPrecision> {
    one_of(&NetPrecision::NAMES, &[]).map(|s| s.parse::<NetPrecision>().expect("one of NetPrecision::NAMES"))
}

/// A comma-separated list of values, each parsed by `parse`; a value it refuses is named in a
/// one-line error on `flag` with what was `expected`.
pub(crate) fn parse_list<T>(s: &str, flag: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    s.split(',')
        .map(|v| parse(v.trim()).ok_or_else(|| Error::invalid(flag, format!("'{}': expected {expected}", v.trim()))))
        .collect()
}

pub(crate) fn parse_shard(s: &str) -> Result<(u32, u32)> {
    let bad = || Error::invalid("--shard", format!("'{s}': expected k/N with 0 <= k < N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    Ok((k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?))
}

pub(crate) fn load_library(path: &Option<PathBuf>) -> Result<(EventLibrary, String)> {
    let p = path.clone().unwrap_or_else(emsim::default_library_path);
    Ok((EventLibrary::read_h5(&p)?, p.display().to_string()))
}

/// A report's outputs: JSON to `json` (a file, or stdout for "-"), the table on stdout unless the
/// JSON went there, and the plots (`plots` called with the folder given), each named on stderr.
pub(crate) fn emit_report<T: serde::Serialize>(
    report: &T,
    json: &Option<PathBuf>,
    table: impl FnOnce(&T) -> String,
    plots_dir: Option<PathBuf>,
    plots: impl FnOnce(&T, &std::path::Path) -> Result<Vec<PathBuf>>,
) -> Result<()> {
    if !write_json_report(report, json)? {
        print!("{}", table(report));
    }
    if let Some(dir) = plots_dir {
        for p in plots(report, &dir)? {
            eprintln!("plot: {}", p.display());
        }
    }
    Ok(())
}

/// Writes `report` as JSON to `json` (a file, or stdout for "-") and says whether it went to stdout.
pub(crate) fn write_json_report<T: serde::Serialize>(report: &T, json: &Option<PathBuf>) -> Result<bool> {
    let to_stdout = json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if let Some(p) = json.as_ref().filter(|_| !to_stdout) {
        let out = emsim::io::atomic::Output::new(p, true, "--json")?;
        std::fs::write(out.tmp(), serde_json::to_string_pretty(report).unwrap()).map_err(|e| Error::file(p, e))?;
        out.commit()?;
    }
    if to_stdout {
        println!("{}", serde_json::to_string_pretty(report).unwrap());
    }
    Ok(to_stdout)
}
