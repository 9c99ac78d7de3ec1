//! `emsim train` from the command line: a small run on the CPU twins and on the GPU gives the same
//! log, `--resume` continues, and bad input gets a one-line error and leaves nothing behind.

use std::path::Path;
use std::process::Command;

fn emsim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).current_dir(dir).output().expect("run emsim")
}

fn error_line(out: &std::process::Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    s.lines().filter(|l| l.starts_with("emsim: error")).collect::<Vec<_>>().join("\n")
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

const SMALL: &[&str] = &[
    "train",
    "--preset",
    "fast",
    "--batch",
    "16",
    "--train-samples",
    "64",
    "--val-samples",
    "32",
    "--seed",
    "3",
    "--quiet",
];

fn run(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = SMALL.to_vec();
    a.extend_from_slice(extra);
    emsim(&a, dir)
}

#[test]
fn train_small_run_cpu_and_gpu_agree_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(d, &["--epochs", "2", "--device", "cpu", "--out", "c.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(files(d), ["c.ckpt.safetensors", "c.csv", "c.png", "c.safetensors"]);
    let csv = std::fs::read_to_string(d.join("c.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[2].is_finite() && r[2] > 0.0), "{csv}");

    // The GPU path gives the same per-epoch losses (to float tolerance).
    if std::env::var("EMSIM_ALLOW_NO_GPU").as_deref() != Ok("1") || !emsim::gpu::list_adapters().is_empty() {
        let o = run(d, &["--epochs", "2", "--out", "g.safetensors"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let g = std::fs::read_to_string(d.join("g.csv")).unwrap();
        for (a, b) in csv.lines().skip(1).zip(g.lines().skip(1)) {
            let (a, b): (Vec<f64>, Vec<f64>) = (
                a.split(',').map(|v| v.parse().unwrap()).collect(),
                b.split(',').map(|v| v.parse().unwrap()).collect(),
            );
            // Losses agree to float tolerance; accuracies and the mean error of an untrained net
            // depend on arg-maxes that a last-bit difference can flip for a sample or two.
            for (k, tol) in [(2, 2e-3), (4, 2e-3), (3, 0.07), (5, 0.07), (6, 0.05)] {
                assert!((a[k] - b[k]).abs() <= tol * a[k].abs().max(1.0), "column {k}: cpu {} gpu {}", a[k], b[k]);
            }
        }
    }

    // Resume from the checkpoint for a third epoch.
    let o = run(
        d,
        &["--epochs", "3", "--device", "cpu", "--resume", "c.ckpt.safetensors", "--out", "c.safetensors", "--force"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv3 = std::fs::read_to_string(d.join("c.csv")).unwrap();
    assert_eq!(csv3.lines().count(), 4, "{csv3}");
    assert!(csv3.starts_with(&csv), "the first two epochs are kept as they were");
}

#[test]
fn train_bad_input_is_one_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["--preset", "huge", "--out", "m.safetensors"], "--preset"),
        (&["--batch", "0", "--out", "m.safetensors"], "--batch"),
        (&["--train-samples", "5", "--out", "m.safetensors"], "--train-samples"),
        (&["--holdout", "1.5", "--out", "m.safetensors"], "--holdout"),
        (&["--lr-schedule", "linear", "--out", "m.safetensors"], "--lr-schedule"),
        (&["--optimizer", "sgd", "--out", "m.safetensors"], "--optimizer"),
        (&["--library", "missing.h5", "--out", "m.safetensors"], "missing.h5"),
        (&["--out", "nodir/m.safetensors"], "does not exist"),
    ];
    for (extra, want) in cases {
        let mut a = vec!["train", "--device", "cpu", "--quiet"];
        a.extend_from_slice(extra);
        let o = emsim(&a, d);
        assert!(!o.status.success(), "{extra:?} should fail");
        let e = error_line(&o);
        assert_eq!(e.lines().count(), 1, "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(e.contains(want), "{extra:?}: '{e}' should name {want}");
        assert!(files(d).is_empty(), "{extra:?} left {:?}", files(d));
    }
    // Resuming from a model of another preset names the mismatch.
    let o = run(d, &["--epochs", "1", "--device", "cpu", "--out", "f.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = emsim(
        &["train", "--preset", "seed", "--resume", "f.ckpt.safetensors", "--out", "s.safetensors", "--device", "cpu"],
        d,
    );
    let e = error_line(&o);
    assert!(e.contains("f.ckpt.safetensors") && e.contains("'fast'") && e.contains("expected 'seed'"), "{e}");
    // A model file is not a checkpoint.
    let o = run(d, &["--epochs", "2", "--device", "cpu", "--resume", "f.safetensors", "--out", "f2.safetensors"]);
    assert!(error_line(&o).contains("not a checkpoint"), "{}", error_line(&o));
    assert!(!d.join("f2.safetensors").exists());
}

/// A model from a config file (a small regression net, the second seed notebook's kind of head):
/// trains, and a config that does not chain to its head is refused naming the file.
#[test]
fn train_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = r#"{"schema": "emsim-model/1", "name": "tiny-xy", "input_px": 7, "shift_px": 0, "input_scale": 0.001,
        "head": {"type": "xy"},
        "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
                   {"type": "linear", "out_features": 2}]}"#;
    std::fs::write(d.join("tiny.json"), cfg).unwrap();
    let o = emsim(
        &[
            "train",
            "--config",
            "tiny.json",
            "--batch",
            "16",
            "--train-samples",
            "64",
            "--val-samples",
            "16",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            "t.safetensors",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = emsim::io::model_file::load(&d.join("t.safetensors"), None).unwrap().model;
    assert_eq!(m.cfg.name, "tiny-xy");
    assert_eq!(m.tensors[0].shape, vec![4, 1, 3, 3]);
    assert_eq!(m.tensors[2].shape, vec![2, 100]);
    std::fs::write(d.join("bad.json"), cfg.replace("\"out_features\": 2", "\"out_features\": 3")).unwrap();
    let o = emsim(&["train", "--config", "bad.json", "--device", "cpu", "--out", "b.safetensors"], d);
    let e = error_line(&o);
    assert!(e.contains("bad.json") && e.contains("head needs 2"), "{e}");
}
