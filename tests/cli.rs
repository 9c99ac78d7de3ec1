//! The `emsim` binary: the frames command's acceptance checks and its bad-input behaviour.

use std::path::Path;
use std::process::Command;

mod common;
use common::cli::{SPAWN, emsim, only, output, stderr_line};

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

    // u16 frames (HDF5 and the npy folder) are counted as they are stored (`count_u16`): the
    // same electrons on the GPU and the CPU path, and the same from either format.
    let q = ["--frames", "3", "--size", "41x53", "--electrons", "15", "--quantize-u16", "--gain", "2"];
    for (format, out) in [("hdf5", "q.h5"), ("npy", "qn")] {
        let mut args = vec!["frames", "--offset-adu", "200", "--format", format, "--out", out, "--device", "cpu", "-q"];
        args.extend_from_slice(&q);
        let o = emsim(&args, dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut xs = Vec::new();
    for (input, device) in [("q.h5", "gpu"), ("q.h5", "cpu"), ("qn", "gpu")] {
        let out = format!("c-{device}-{}.h5", input.replace('.', "_"));
        let o = emsim(&["count", input, "--out", &out, "--device", device, "-q"], dir.path());
        assert!(o.status.success(), "{input} {device}: {}", String::from_utf8_lossy(&o.stderr));
        let f = hdf5::File::open(dir.path().join(&out)).unwrap();
        xs.push(f.dataset("electrons/x_px").unwrap().read_raw::<f32>().unwrap());
    }
    assert!(!xs[0].is_empty());
    assert_eq!(xs[0], xs[1], "GPU and CPU count the u16 frames alike");
    assert_eq!(xs[0], xs[2], "HDF5 and npy u16 frames count alike");
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

/// Errors of the command line itself (a value outside a flag's choices, a misspelt or missing
/// flag, a value of the wrong type) are one `emsim: error:` line naming the flag, with the
/// choices or clap's tip, exit status 2; `--help` lists each flag's choices.
#[test]
fn command_line_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["frames", "--format", "tiff", "--out", "x"], &["--format", "tiff", "h5, npy"]),
        (&["frames", "--out", "x", "--formt", "h5"], &["--formt", "'--format'"]),
        (&["frames", "--frames", "many", "--out", "x"], &["--frames", "many"]),
        (&["frames", "--frames", "1"], &["--out"]),
        (&["count", "x.h5", "--device", "tpu"], &["--device", "auto, gpu, cpu"]),
        (&["train", "--preset", "big", "--out", "m"], &["--preset", "seed, seed-84, fast"]),
    ];
    for (args, needles) in cases {
        let o = emsim(args, dir.path());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: expected one line, got {stderr:?}");
        assert!(stderr.starts_with("emsim: error: "), "{stderr}");
        for n in *needles {
            assert!(stderr.contains(n), "{args:?}: '{stderr}' does not name {n}");
        }
    }
    let help = emsim(&["frames", "--help"], dir.path());
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[possible values: h5, npy]") && help.contains("[possible values: u16, f32]"), "{help}");
    only(dir.path(), &[]);
}

#[test]
fn unknown_backend_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = emsim(&["frames", "--frames", "1", "--size", "8x8", "--backend", "cuda", "--out", "f.h5"], dir.path());
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("cuda"), "{}", stderr_line(&o));
}

/// Counting's acceptance: counts of default-density frames on both paths agree, every
/// output opens, stempy's layout is there, and eval prints recall and precision with the 3x3
/// centroid more accurate than the max pixel.
#[test]
fn count_and_eval_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(emsim(&["frames", "--frames", "3", "--seed", "4", "--out", "f.h5", "--device", "cpu", "-q"], d));
    let all = "max,c3x3,c5x5,c3x3t,c5x5t";
    let gpu = ok(emsim(
        &[
            "count",
            "f.h5",
            "--method",
            all,
            "--out",
            "g-{method}.h5",
            "--stempy",
            "st.h5",
            "--images",
            "img",
            "--json",
            "-q",
        ],
        d,
    ));
    let summary: serde_json::Value = serde_json::from_slice(&gpu.stdout).unwrap();
    assert_eq!(summary["frames"], 3);
    ok(emsim(&["count", "f.h5", "--method", "c3x3", "--out", "cpu.h5", "--device", "cpu", "-q"], d));
    let col = |p: &str, name: &str| {
        hdf5::File::open(d.join(p)).unwrap().dataset(&format!("electrons/{name}")).unwrap().read_raw::<f32>().unwrap()
    };
    let (xg, xc) = (col("g-c3x3.h5", "x_px"), col("cpu.h5", "x_px"));
    assert_eq!(xg.len(), xc.len(), "GPU and CPU found different numbers of electrons");
    // Within 4 ulps of the position: Vulkan allows 2.5 ulp for f32 division, and NVIDIA's
    // driver uses that freedom (lavapipe agrees bit for bit).
    for (a, b) in xg.iter().zip(&xc) {
        assert!((a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(1.0), "x_px gpu {a} cpu {b}");
    }
    let n = xg.len() as f64 / 3.0;
    assert!(n > 2000.0 && n < 3200.0, "{n} electrons per frame");
    // The thresholded centroid weighs only pixels above its threshold, so it stays inside the 3x3
    // and the frame: every electron is in the counted image. (A plain centroid's negative noise
    // pixels can put a centre near the edge outside the frame, and out of the image.)
    let f = hdf5::File::open(d.join("g-c3x3t.h5")).unwrap();
    assert_eq!(f.dataset("counted_image_x4").unwrap().shape(), vec![2304, 2304]);
    let img = f.dataset("counted_image").unwrap().read_raw::<u32>().unwrap();
    let n_t = col("g-c3x3t.h5", "x_px").len();
    assert_eq!(img.iter().map(|&v| v as usize).sum::<usize>(), n_t, "every electron is in the counted image");
    // stempy layout: vlen frames with int64 Nx/Ny, version 3.
    let st = hdf5::File::open(d.join("st.h5")).unwrap();
    assert_eq!(st.attr("version").unwrap().read_scalar::<i32>().unwrap(), 3);
    let fr = st.dataset("electron_events/frames").unwrap();
    assert_eq!(fr.shape(), vec![3]);
    assert_eq!(fr.attr("Nx").unwrap().read_scalar::<i64>().unwrap(), 576);
    assert!(d.join("img/counted_x2.png").exists() && d.join("img/counted_x4.npy").exists());

    let ev = ok(emsim(&["eval", "g-max.h5", "g-c3x3.h5", "--truth", "f.h5", "--json", "-"], d));
    let report: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    let m = report["methods"].as_array().unwrap();
    let get = |i: usize, k: &str| m[i][k].as_f64().unwrap_or_else(|| panic!("key {k} in {}", m[i]));
    for i in 0..2 {
        for k in
            ["recall", "precision", "mean_error_px", "median_error_px", "p90_error_px", "p95_error_px", "p99_error_px"]
        {
            assert!(get(i, k).is_finite(), "{k}");
        }
        assert!(get(i, "recall") > 0.5 && get(i, "precision") > 0.5);
    }
    assert_eq!(m[0]["method"], "max");
    assert!(get(1, "mean_error_px") < get(0, "mean_error_px"), "3x3 centroid should beat the max pixel");
}

/// The default counter against stempy's (`--method stempy`, checked event for event against
/// stempy itself in tests/count.rs) on the same default frames, scored by eval's matching: at
/// least 1 point more recall at no less precision, and more accurate (docs/counting.md has the
/// full-size figures: recall 0.829 against 0.809 on 32 frames).
#[test]
fn default_count_finds_more_than_stempy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(emsim(&["frames", "--frames", "4", "--seed", "21", "--out", "f.h5", "--device", "cpu", "-q"], d));
    ok(emsim(&["count", "f.h5", "--out", "default.h5", "--device", "cpu", "-q"], d));
    ok(emsim(&["count", "f.h5", "--method", "stempy", "--out", "stempy.h5", "--device", "cpu", "-q"], d));
    let ev = ok(emsim(&["eval", "default.h5", "stempy.h5", "--truth", "f.h5", "--json", "-"], d));
    let report: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    let m = report["methods"].as_array().unwrap();
    let get = |i: usize, k: &str| m[i][k].as_f64().unwrap();
    assert_eq!((m[0]["method"].as_str(), m[1]["method"].as_str()), (Some("c3x3t"), Some("stempy")));
    eprintln!(
        "default: recall {:.4} precision {:.4} mean {:.4} px; stempy: {:.4} {:.4} {:.4} px",
        get(0, "recall"),
        get(0, "precision"),
        get(0, "mean_error_px"),
        get(1, "recall"),
        get(1, "precision"),
        get(1, "mean_error_px")
    );
    assert!(get(0, "recall") >= get(1, "recall") + 0.01, "recall at least stempy's + 1 point");
    assert!(get(0, "precision") >= get(1, "precision"), "precision at least stempy's");
    assert!(get(0, "mean_error_px") < 0.7 * get(1, "mean_error_px"), "sub-pixel accuracy");
}

#[test]
fn count_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = emsim(
        &["frames", "--frames", "2", "--size", "32x32", "--electrons", "5", "--out", "f.h5", "--device", "cpu", "-q"],
        d,
    );
    assert!(o.status.success());
    // An HDF5 file without /frames, and one whose /frames is 2-D.
    // Closed explicitly: a handle still open here keeps HDF5's file lock, and the subprocess
    // then fails to open the file (seen on the GPU machine: "unable to lock file, errno = 11");
    // written under SPAWN, so that no child of another test inherits the open file.
    {
        let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let f = hdf5::File::create(d.join("noframes.h5")).unwrap();
        f.new_dataset_builder().with_data(&[1.0f32, 2.0]).create("other").unwrap();
        f.close().unwrap();
        let f = hdf5::File::create(d.join("flat.h5")).unwrap();
        f.new_dataset_builder().with_data(&ndarray::Array2::<f32>::zeros((4, 4))).create("frames").unwrap();
        f.close().unwrap();
    }
    std::fs::write(d.join("junk.h5"), b"not hdf5").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["count", "noframes.h5", "--out", "c.h5"], "no /frames"),
        (&["count", "flat.h5", "--out", "c.h5"], "3-D"),
        (&["count", "junk.h5", "--out", "c.h5"], "junk.h5"),
        (&["count", "missing.h5", "--out", "c.h5"], "not found"),
        (&["count", "f.h5", "--out", "c.h5", "--background-threshold-n-sigma", "-1"], "--background-threshold-n-sigma"),
        (&["count", "f.h5", "--out", "c.h5", "--centroid-threshold-e", "-5"], "--centroid-threshold-e"),
        (&["count", "f.h5", "--out", "c.h5", "--method", "c7x7"], "--method"),
        (&["count", "f.h5", "--out", "c.h5", "--method", "max,c3x3"], "{method}"),
        (&["count", "f.h5", "--out", "c.h5", "--dark", "missing.npy"], "--dark"),
    ];
    for (args, expect) in cases {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--device", "cpu"]);
        let out = emsim(&a, d);
        assert!(!out.status.success(), "{args:?} should fail");
        let line = stderr_line(&out);
        assert_eq!(line.lines().count(), 1, "{args:?}: one error line, got {line:?}");
        assert!(line.contains(expect), "{args:?}: {line:?} should mention {expect}");
    }
    // A mistyped kernel-layout override (for benchmarks, GPU path) is named, not ignored.
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_emsim"))
            .args(["count", "f.h5", "--out", "c.h5", "--device", "gpu"])
            .env("EMSIM_COUNT_LAYOUT", "tile")
            .current_dir(d),
    );
    let line = stderr_line(&out);
    assert!(!out.status.success() && line.lines().count() == 1, "{line:?}");
    assert!(line.contains("EMSIM_COUNT_LAYOUT") && line.contains("'tile'"), "{line:?}");
    assert!(!d.join("c.h5").exists());
    // So is a mistyped shader-checks setting.
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_emsim"))
            .args(["count", "f.h5", "--out", "c.h5", "--device", "gpu"])
            .env("EMSIM_SHADER_CHECKS", "none")
            .current_dir(d),
    );
    let line = stderr_line(&out);
    assert!(!out.status.success() && line.lines().count() == 1, "{line:?}");
    assert!(line.contains("EMSIM_SHADER_CHECKS") && line.contains("'none'"), "{line:?}");
    assert!(!d.join("c.h5").exists());
    // Truth from another dataset.
    let o = emsim(
        &[
            "frames",
            "--frames",
            "2",
            "--size",
            "32x32",
            "--electrons",
            "5",
            "--seed",
            "99",
            "--out",
            "other.h5",
            "--device",
            "cpu",
            "-q",
        ],
        d,
    );
    assert!(o.status.success());
    let o = emsim(&["count", "f.h5", "--out", "c.h5", "--device", "cpu", "-q"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = emsim(&["eval", "c.h5", "--truth", "other.h5"], d);
    assert!(!out.status.success());
    let line = stderr_line(&out);
    assert!(line.contains("other.h5") && line.contains("seed"), "{line}");
    only(d, &["f.h5", "noframes.h5", "flat.h5", "junk.h5", "other.h5", "c.h5"]);
}

/// Stages that run on the GPU path only (frames kept in GPU memory).
const GPU_ONLY_STAGES: [&str; 4] = ["frames_resident", "count_resident", "count_net_resident", "count_net_fused"];

fn bench_schema() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bench-schema.json")).unwrap(),
    )
    .unwrap()
}

/// `bench --quick --json` (CPU path, to keep CI short) follows docs/bench-schema.json: the
/// required keys of every record, the stage-specific ones, and every stage present (but the
/// GPU-only ones); `--compare` reads two reports.
#[test]
fn bench_json_follows_schema_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let out = emsim(&["bench", "--quick", "--json", "--cpu-only"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = bench_schema();
    for k in schema["required"].as_array().unwrap() {
        assert!(report.get(k.as_str().unwrap()).is_some(), "report lacks {k}");
    }
    assert!(report.get("shader_checks").is_none(), "no GPU, no shader_checks");
    let items = &schema["properties"]["records"]["items"];
    let stages: Vec<&str> =
        items["properties"]["stage"]["enum"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let records = report["records"].as_array().unwrap();
    for st in &stages {
        let present = records.iter().any(|r| r["stage"] == *st);
        assert_eq!(present, !GPU_ONLY_STAGES.contains(st), "stage {st} on the CPU path");
    }
    check_records(items, records);
    std::fs::write(dir.path().join("a.json"), &out.stdout).unwrap();
    let cmp = emsim(&["bench", "--compare", "a.json", "a.json"], dir.path());
    assert!(cmp.status.success(), "{}", String::from_utf8_lossy(&cmp.stderr));
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(text.contains("frames cpu 576x576") && text.contains("1.00x"), "{text}");
    let bad = emsim(&["bench", "--compare", "a.json", "missing.json"], dir.path());
    assert!(!bad.status.success() && stderr_line(&bad).contains("missing.json"));
}

/// The GPU-only stages (frames kept in GPU memory) follow the schema too, with the shader-check
/// setting in the report and the count layout in the count record.
#[test]
fn bench_resident_stages_follow_schema() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--quick",
        "--gpu-only",
        "--json",
        "--stages",
        "frames_resident,count_resident,count_net_resident",
        "--frames",
        "16",
    ];
    let out = emsim(&args, dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = bench_schema();
    assert!(schema["properties"]["shader_checks"]["enum"].as_array().unwrap().contains(&report["shader_checks"]));
    let records = report["records"].as_array().unwrap();
    for st in ["frames_resident", "count_resident"] {
        // f32 and u16 frames
        assert_eq!(records.iter().filter(|r| r["stage"] == st).count(), 2, "{st}");
    }
    // with the network: u16 frames
    assert_eq!(records.iter().filter(|r| r["stage"] == "count_net_resident").count(), 1);
    check_records(&schema["properties"]["records"]["items"], records);
}

/// Every record has the schema's required keys, the stage-specific ones as positive numbers, and
/// a count layout exactly when it counts on the GPU path.
fn check_records(items: &serde_json::Value, records: &[serde_json::Value]) {
    let layouts = items["properties"]["count_layout"]["enum"].as_array().unwrap();
    for r in records {
        for k in items["required"].as_array().unwrap() {
            assert!(r.get(k.as_str().unwrap()).is_some(), "record {r} lacks {k}");
        }
        // counting on the GPU path says which kernel layout ran; nothing else does
        let counting =
            ["count", "frames_count", "count_resident", "count_net_resident", "count_net", "count_net_split"]
                .contains(&r["stage"].as_str().unwrap());
        if counting && r["path"] == "gpu" {
            assert!(layouts.contains(&r["count_layout"]), "record {r}: count_layout");
        } else {
            assert!(r.get("count_layout").is_none(), "record {r}: count_layout");
        }
        if ["frames_file", "count_file"].contains(&r["stage"].as_str().unwrap()) {
            assert_eq!(r["compression"], "shuffle+deflate", "record {r}: the default compression");
        }
        for cond in items["allOf"].as_array().unwrap() {
            let st = &cond["if"]["properties"]["stage"];
            let applies = st.get("const").is_some_and(|c| *c == r["stage"])
                || st.get("enum").is_some_and(|e| e.as_array().unwrap().contains(&r["stage"]));
            if applies {
                for k in cond["then"]["required"].as_array().unwrap() {
                    let k = k.as_str().unwrap();
                    if items["properties"][k]["type"] == "string" {
                        let v = r.get(k).and_then(|v| v.as_str());
                        assert!(v.is_some_and(|v| !v.is_empty()), "record {r}: {k} should be a string");
                    } else {
                        let v = r.get(k).and_then(|v| v.as_f64());
                        assert!(v.is_some_and(|v| v > 0.0), "record {r}: {k} should be a positive number");
                    }
                }
            }
        }
    }
}

/// `bench --kernel-times` on the GPU path: every count record names its kernels with their GPU
/// milliseconds and dispatches per repeat (the u16 record `count/calibrate_u16` or
/// `count/find_tile_u16` instead of the f32 kernel), and the f32 and u16 records stay apart in
/// `--compare`.
#[test]
fn bench_kernel_times_name_the_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--quick", "--gpu-only", "--stages", "count", "--kernel-times", "--frames", "2", "--json"];
    let out = emsim(&args, dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts: Vec<&serde_json::Value> =
        report["records"].as_array().unwrap().iter().filter(|r| r["stage"] == "count").collect();
    assert_eq!(counts.len(), 2, "f32 and u16 count records");
    for r in counts {
        let ms = r["kernel_gpu_ms_per_repeat"].as_object().unwrap_or_else(|| panic!("no kernel times in {r}"));
        let n = r["kernel_dispatches_per_repeat"].as_object().unwrap();
        let u16 = r["frames_dtype"] == "u16";
        // the kernels carry the adapter's layout in their names (count::CountLayout); the tile
        // layout calibrates and sums inside count/find_tile
        let layout = emsim::count::CountLayout::ALL
            .into_iter()
            .find(|l| match l.find() {
                Some(k) => ms.contains_key(k.name),
                None => ms.contains_key("count/find_tile") || ms.contains_key("count/find_tile_u16"),
            })
            .unwrap_or_else(|| panic!("no count/find variant in {r}"));
        let mut kernels = match layout.find() {
            Some(find) => vec![if u16 { "count/calibrate_u16" } else { "count/calibrate" }, find.name],
            None => vec![if u16 { "count/find_tile_u16" } else { "count/find_tile" }],
        };
        kernels.extend(layout.sum3().map(|k| k.name));
        kernels.extend(["count/suppress", "count/args"]);
        for k in kernels.iter().copied() {
            assert!(ms[k].as_f64().is_some_and(|v| v > 0.0), "{k} in {r}");
            // count/args makes the indirect arguments of count/suppress (which also localizes)
            assert_eq!(n[k].as_f64(), Some(1.0), "{k}: dispatches per repeat of 2 frames");
        }
        assert_eq!(ms.len(), kernels.len(), "{r}");
    }
    std::fs::write(dir.path().join("k.json"), &out.stdout).unwrap();
    let cmp = emsim(&["bench", "--compare", "k.json", "k.json"], dir.path());
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(text.contains("count gpu 576x576 ") && text.contains("u16"), "{text}");
}

/// `bench` bad input: a backend this machine lacks (the error lists the adapters it has), an
/// unknown backend, an unknown stage, and two paths excluded at once.
#[test]
fn bench_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lacking = if cfg!(target_os = "linux") { "dx12" } else { "gl" };
    let o = emsim(&["bench", "--quick", "--backend", lacking], dir.path());
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(line.contains(lacking) && line.contains("available"), "{line}");
    let o = emsim(&["bench", "--quick", "--backend", "cuda"], dir.path());
    assert!(!o.status.success() && stderr_line(&o).contains("auto, vulkan, metal, dx12, gl"), "{}", stderr_line(&o));
    let o = emsim(&["bench", "--quick", "--cpu-only", "--stages", "frames,foo"], dir.path());
    let line = stderr_line(&o);
    assert!(!o.status.success() && line.contains("--stages") && line.contains("foo") && line.contains("net_train"));
    let o = emsim(&["bench", "--quick", "--gpu-only", "--cpu-only"], dir.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--cpu-only"));
    only(dir.path(), &[]);
}

/// `EMSIM_ASSETS` moves the shipped assets (a binary used away from its source tree): the default
/// library is looked up there, and a missing one is named with that path.
#[test]
fn assets_dir_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let run = |assets: &Path| {
        output(
            Command::new(env!("CARGO_BIN_EXE_emsim"))
                .args(["frames", "--frames", "1", "--size", "8x8", "--device", "cpu", "--out", "f.h5", "-q"])
                .env("EMSIM_ASSETS", assets)
                .current_dir(dir.path()),
        )
    };
    let missing = dir.path().join("elsewhere");
    let o = run(&missing);
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("elsewhere/events/default-300kev.h5"), "{}", stderr_line(&o));
    only(dir.path(), &[]);
    let o = run(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
