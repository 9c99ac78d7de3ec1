//! The `emsim` binary: the frames issue's acceptance commands and its bad-input behaviour.

use std::path::Path;
use std::process::Command;

fn emsim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).current_dir(dir).output().expect("run emsim")
}

fn stderr_line(out: &std::process::Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    s.lines().filter(|l| l.starts_with("emsim: error")).collect::<Vec<_>>().join("\n")
}

/// Nothing but `keep` in `dir` (no output, no temporary left behind).
fn only(dir: &Path, keep: &[&str]) {
    let names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for n in &names {
        assert!(keep.contains(&n.as_str()), "unexpected file left behind: {n} (all: {names:?})");
    }
}

#[test]
fn frames_acceptance_eight_default_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = emsim(
        &["frames", "--frames", "8", "--seed", "1", "--out", "f.h5", "--device", "cpu", "--json", "-q"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["frames"], 8);
    assert!(summary["frames_per_s"].as_f64().unwrap() > 0.0);
    let f = hdf5::File::open(dir.path().join("f.h5")).unwrap();
    assert_eq!(f.dataset("frames").unwrap().shape(), vec![8, 576, 576]);
    let rows = f.dataset("truth/x_px").unwrap().shape()[0] as f64;
    // 8 x Normal(2927.294, 70.531): within 5 sigma of the sum.
    assert!((rows - 8.0 * 2927.294).abs() < 5.0 * 70.531 * 8f64.sqrt(), "{rows} truth rows");
    let offsets = f.dataset("truth/offsets").unwrap().read_raw::<u64>().unwrap();
    assert_eq!(offsets.len(), 9);
    assert_eq!(*offsets.last().unwrap() as f64, rows);
    only(dir.path(), &["f.h5"]);
}

#[test]
fn shards_assemble_to_the_whole_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--frames", "5", "--seed", "9", "--size", "48x40", "--electrons", "30", "--device", "cpu", "-q"];
    let run = |extra: &[&str]| {
        let mut a = vec!["frames"];
        a.extend_from_slice(&common);
        a.extend_from_slice(extra);
        let o = emsim(&a, dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["--out", "all.h5"]);
    run(&["--out", "s0.h5", "--shard", "0/2"]);
    run(&["--out", "s1.h5", "--shard", "1/2", "--batch", "1"]);
    let read = |p: &str| {
        let f = hdf5::File::open(dir.path().join(p)).unwrap();
        let frames = f.dataset("frames").unwrap().read_raw::<f32>().unwrap();
        let x = f.dataset("truth/x_px").unwrap().read_raw::<f32>().unwrap();
        let frame = f.dataset("truth/frame").unwrap().read_raw::<u32>().unwrap();
        let first = f.attr("first_frame").unwrap().read_scalar::<u64>().unwrap() as u32;
        (frames, x, frame.into_iter().map(|k| k + first).collect::<Vec<_>>())
    };
    let (all, s0, s1) = (read("all.h5"), read("s0.h5"), read("s1.h5"));
    assert_eq!([s0.0, s1.0].concat(), all.0);
    assert_eq!([s0.1, s1.1].concat(), all.1);
    assert_eq!([s0.2, s1.2].concat(), all.2);
}

#[test]
fn npy_format_and_quantized_frames() {
    let dir = tempfile::tempdir().unwrap();
    let o = emsim(
        &[
            "frames",
            "--frames",
            "2",
            "--size",
            "30x20",
            "--format",
            "npy",
            "--quantize-u16",
            "--offset-adu",
            "100",
            "--out",
            "d",
            "--device",
            "cpu",
            "-q",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    use ndarray_npy::ReadNpyExt;
    let frames =
        ndarray::Array3::<u16>::read_npy(std::fs::File::open(dir.path().join("d/frames.npy")).unwrap()).unwrap();
    assert_eq!(frames.shape(), &[2, 30, 20]);
    let x =
        ndarray::Array1::<f32>::read_npy(std::fs::File::open(dir.path().join("d/truth_x_px.npy")).unwrap()).unwrap();
    assert!(!x.is_empty() && x.iter().all(|&v| (0.0..20.0).contains(&v)));
    assert!(dir.path().join("d/attrs.json").exists());
}

#[test]
fn bad_input_gives_one_line_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("corrupt.h5"), b"this is not hdf5").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--library", "missing.h5"], "missing.h5"),
        (&["--library", "corrupt.h5"], "corrupt.h5"),
        (&["--frames", "0"], "--frames"),
        (&["--noise-sigma-e", "-1"], "--noise-sigma-e"),
        (&["--shard", "3/2"], "--shard"),
        (&["--size", "12"], "--size"),
        (&["--gain", "0"], "--gain"),
        (&["--format", "tiff"], "--format"),
        (&["--compression", "gzip=12"], "--compression"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["frames", "--device", "cpu", "-q", "--out", "out.h5"];
        for (flag, default) in [("--frames", "2"), ("--size", "16x16")] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, default]);
            }
        }
        args.extend_from_slice(extra);
        let o = emsim(&args, dir.path());
        assert!(!o.status.success(), "{extra:?} succeeded");
        let line = stderr_line(&o);
        assert_eq!(
            line.lines().count(),
            1,
            "{extra:?}: expected one error line, got {:?}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(line.contains(needle), "{extra:?}: error '{line}' does not name {needle}");
        only(dir.path(), &["corrupt.h5"]);
    }
    // Unwritable output: a folder that does not exist.
    let o =
        emsim(&["frames", "--frames", "1", "--size", "8x8", "--device", "cpu", "--out", "nowhere/f.h5"], dir.path());
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("nowhere"), "{}", stderr_line(&o));
    // An existing output is not overwritten without --force.
    std::fs::write(dir.path().join("keep.h5"), b"precious").unwrap();
    let o = emsim(&["frames", "--frames", "1", "--size", "8x8", "--device", "cpu", "--out", "keep.h5"], dir.path());
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("--force"));
    assert_eq!(std::fs::read(dir.path().join("keep.h5")).unwrap(), b"precious");
}

#[test]
fn unknown_backend_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = emsim(&["frames", "--frames", "1", "--size", "8x8", "--backend", "cuda", "--out", "f.h5"], dir.path());
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("cuda"), "{}", stderr_line(&o));
}
