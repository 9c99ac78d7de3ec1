//! Evaluation and counting of big files in bounded memory: `emsim eval` gives the same report
//! whatever its block size, and close percentiles beyond its exact limit; `emsim count` and
//! `emsim eval` run through a merged dataset more than twice as large as the resident memory they
//! are allowed (their reports' `peak_memory_mib`: the kernel's high-water mark of the process).

use std::path::Path;
use std::process::Command;

use emsim::eval::{EvalOptions, StreamLimits, run};
use emsim::io::h5util::{set_attr, set_str_attr, write_column};

/// The tests take turns: a child process started by one would inherit the other's open HDF5
/// files, and their locks with them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CONFIG: &str = r#"{"config":{"seed":5},"first_frame":0}"#;

/// A truth file and a counts file with `per_frame` electrons on a 4 px grid in each of `n_frames`
/// frames (`side` x `side` pixels). The counts find every electron but every 10th, at an offset
/// that cycles through 0.0, 0.1, ... 0.9 px in x, plus one spurious electron per frame; with
/// `sigma`, a `sigma_px` column equal to the offset.
struct Files {
    n_frames: usize,
    side: usize,
    sigma: bool,
}

fn grid(side: usize) -> Vec<(f32, f32)> {
    let n = side / 4;
    (0..n * n).map(|i| (2.0 + 4.0 * (i % n) as f32, 2.0 + 4.0 * (i / n) as f32)).collect()
}

fn root_attrs(f: &hdf5::File) {
    set_str_attr(f, "generator", "test").unwrap();
    set_attr(f, "first_frame", 0u64).unwrap();
}

impl Files {
    fn write(&self, truth: &Path, counts: &Path, method: &str) {
        let g = grid(self.side);
        let (nf, per) = (self.n_frames, g.len());
        let f = hdf5::File::create(truth).unwrap();
        root_attrs(&f);
        set_str_attr(&f, "schema", "emsim-frames/1").unwrap();
        set_attr(&f, "seed", 5u64).unwrap();
        set_str_attr(&f, "config_json", CONFIG).unwrap();
        // never written, so it takes no space: eval reads its shape and pitch only
        let frames = f.new_dataset::<f32>().chunk((1, self.side, self.side)).shape((nf, self.side, self.side));
        let frames = frames.create("frames").unwrap();
        set_attr(&frames, "pixel_size_um", 10.0f64).unwrap();
        let t = f.create_group("truth").unwrap();
        let offsets: Vec<u64> = (0..=nf).map(|k| (k * per) as u64).collect();
        let frame: Vec<u32> = (0..nf * per).map(|i| (i / per) as u32).collect();
        write_column(&t, "offsets", &offsets, "index").unwrap();
        write_column(&t, "frame", &frame, "index").unwrap();
        let x: Vec<f32> = (0..nf * per).map(|i| g[i % per].0).collect();
        write_column(&t, "x_px", &x, "px").unwrap();
        let y: Vec<f32> = (0..nf * per).map(|i| g[i % per].1).collect();
        write_column(&t, "y_px", &y, "px").unwrap();
        drop((x, y, frame));

        let c = hdf5::File::create(counts).unwrap();
        root_attrs(&c);
        set_str_attr(&c, "schema", "emsim-counts/1").unwrap();
        set_str_attr(&c, "method", method).unwrap();
        set_attr(&c, "n_frames", nf as u64).unwrap();
        set_attr(&c, "frames_seed", 5u64).unwrap();
        set_str_attr(&c, "frames_config_json", CONFIG).unwrap();
        let e = c.create_group("electrons").unwrap();
        let (mut offsets, mut frame, mut x, mut y, mut sigma) = (vec![0u64], vec![], vec![], vec![], vec![]);
        for k in 0..nf {
            for (i, p) in g.iter().enumerate() {
                if i % 10 != 9 {
                    let d = (i % 10) as f32 * 0.1;
                    frame.push(k as u32);
                    x.push(p.0 + d);
                    y.push(p.1);
                    sigma.push(d);
                }
            }
            frame.push(k as u32);
            x.push(0.0);
            y.push(0.0);
            sigma.push(9.0);
            offsets.push(x.len() as u64);
        }
        write_column(&e, "offsets", &offsets, "index").unwrap();
        write_column(&e, "frame", &frame, "index").unwrap();
        write_column(&e, "x_px", &x, "px").unwrap();
        write_column(&e, "y_px", &y, "px").unwrap();
        if self.sigma {
            write_column(&e, "sigma_px", &sigma, "px").unwrap();
        }
    }
}

#[test]
fn blocks_change_nothing_and_percentiles_stay_close_beyond_the_exact_limit() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (t, a, b) = (dir.path().join("t.h5"), dir.path().join("a.h5"), dir.path().join("b.h5"));
    let files = Files { n_frames: 37, side: 64, sigma: true };
    files.write(&t, &a, "net");
    Files { sigma: false, ..files }.write(&t, &b, "c3x3t");
    let whole = StreamLimits { block_rows: usize::MAX, exact_errors: usize::MAX };
    let one = run(&EvalOptions { limits: whole, ..EvalOptions::new(&[&a, &b], &t) }).unwrap();
    eprintln!("{}", one.table());
    // everything but the process's peak memory
    let json = |r: &emsim::eval::EvalReport| {
        serde_json::to_string(&emsim::eval::EvalReport { peak_memory_mib: None, ..r.clone() }).unwrap()
    };
    for block_rows in [1, 300, 1000] {
        let lim = StreamLimits { block_rows, exact_errors: usize::MAX };
        let r = run(&EvalOptions { limits: lim, ..EvalOptions::new(&[&a, &b], &t) }).unwrap();
        assert_eq!(json(&r), json(&one), "blocks of {block_rows} rows");
    }
    // The known answer: 256 electrons a frame, 9 in 10 found at 0.0 ... 0.8 px, one spurious.
    let m = &one.methods[0];
    assert_eq!((one.n_true, m.n_matched, m.n_found), (37 * 256, 37 * 231, 37 * 232));
    let offsets: Vec<f64> = (0..256).filter(|i| i % 10 != 9).map(|i| (i % 10) as f64 * 0.1).collect();
    let mean = offsets.iter().sum::<f64>() / offsets.len() as f64;
    assert!((m.mean_error_px - mean).abs() < 1e-6, "{} vs {mean}", m.mean_error_px);
    assert_eq!(m.percentile_resolution_px, 0.0);
    assert_eq!(one.n_matched_by_all, Some(37 * 231));
    let cut = &one.sigma_cuts[0].points;
    assert_eq!(cut.last().unwrap().recall, m.recall);

    // Beyond 1000 errors a method's percentiles come from the histogram, within its bin width;
    // counts, means and extremes stay exact.
    let lim = StreamLimits { block_rows: 500, exact_errors: 1000 };
    let h = run(&EvalOptions { limits: lim, ..EvalOptions::new(&[&a, &b], &t) }).unwrap();
    for (x, y) in h.methods.iter().zip(&one.methods) {
        let res = x.percentile_resolution_px;
        assert!(res > 0.0 && res < 1e-4, "{res}");
        assert_eq!(
            (x.n_matched, x.n_found, x.min_error_px, x.max_error_px),
            (y.n_matched, y.n_found, 0.0, y.max_error_px)
        );
        assert!((x.mean_error_px - y.mean_error_px).abs() < 1e-12);
        for (p, q) in
            [(x.median_error_px, y.median_error_px), (x.p90_error_px, y.p90_error_px), (x.p99_error_px, y.p99_error_px)]
        {
            assert!((p - q).abs() <= res, "{p} vs {q}");
        }
    }
    // The sigma cuts too (sigma takes ten values here, so a cut within a bin of one of them may
    // keep or drop it); the last cut keeps everything.
    for (p, q) in h.sigma_cuts[0].points.iter().zip(&one.sigma_cuts[0].points) {
        assert!((p.sigma_cut_px - q.sigma_cut_px).abs() < 1e-3, "{} vs {}", p.sigma_cut_px, q.sigma_cut_px);
    }
    let (p, q) = (h.sigma_cuts[0].points.last().unwrap(), one.sigma_cuts[0].points.last().unwrap());
    assert_eq!((p.sigma_cut_px, p.kept_fraction, p.recall), (q.sigma_cut_px, 1.0, q.recall));
}

/// Runs the binary; its JSON report (stdout, or the file `json`) and peak resident memory in bytes.
fn run_json(args: &[&str], json: Option<&str>) -> (serde_json::Value, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).output().expect("start emsim");
    assert!(out.status.success(), "emsim {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = match json {
        Some(p) => std::fs::read_to_string(p).unwrap(),
        None => String::from_utf8(out.stdout).unwrap(),
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mib = v["peak_memory_mib"].as_f64().expect("peak_memory_mib in the report (Linux)");
    (v, (mib * MIB as f64) as u64)
}

const MIB: u64 = 1 << 20;

fn emsim_ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).output().expect("start emsim");
    assert!(out.status.success(), "emsim {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn count_and_eval_stream_a_merged_dataset_larger_than_their_memory() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_string_lossy().to_string();
    // 4 shards of 160 frames of 256 x 256 at 15,000 electrons a frame, merged: 9.6 million true
    // electrons (a 30 % recall at that density, but what counts here is the size).
    let mut shards = Vec::new();
    for k in 0..4 {
        let s = d(&format!("s{k}.h5"));
        let shard = format!("{k}/4");
        let args = ["--size", "256x256", "--electrons", "15000", "--seed", "3", "--device", "cpu", "-q"];
        emsim_ok(&[&["frames", "--frames", "640", "--shard", &shard, "--out", &s][..], &args].concat());
        shards.push(s);
    }
    let size: u64 = shards.iter().map(|s| std::fs::metadata(s).unwrap().len()).sum();
    let merge =
        [&["merge"][..], &shards.iter().map(String::as_str).collect::<Vec<_>>(), &["--out", &d("all.h5"), "-q"]];
    emsim_ok(&merge.concat());

    let args = ["count", &d("all.h5"), "--sigma-e", "20", "--device", "cpu", "--json", "--out", &d("c.h5")];
    let (summary, count_rss) = run_json(&args, None);
    eprintln!("count: dataset {} MiB, peak resident {} MiB", size / MIB, count_rss / MIB);
    assert_eq!(summary["frames"], 640);
    let (report, eval_rss) =
        run_json(&["eval", &d("c.h5"), "--truth", &d("all.h5"), "--json", &d("e.json")], Some(&d("e.json")));
    let m = &report["methods"][0];
    eprintln!(
        "eval: {} true electrons, peak resident {} MiB; recall {}",
        report["n_true"],
        eval_rss / MIB,
        m["recall"]
    );
    assert!(report["n_true"].as_u64().unwrap() > 9_000_000);
    assert_eq!(m["n_found"], summary["electrons"]);
    assert!(m["recall"].as_f64().unwrap() > 0.25 && m["precision"].as_f64().unwrap() > 0.99, "{m}");
    assert!(m["percentile_resolution_px"].as_f64().unwrap() > 0.0, "beyond the exact limit");
    for (what, rss) in [("count", count_rss), ("eval", eval_rss)] {
        assert!(rss < size / 2, "{what} held {} MiB for a {} MiB dataset", rss / MIB, size / MIB);
    }
}
