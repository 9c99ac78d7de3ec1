//! `emsim merge`: the shards of one dataset, merged as virtual datasets or copied, equal the
//! single-machine file (frames and truth), count to the same electrons, and read from anywhere;
//! shards that do not fit are named in one line and leave no output.

mod common;
use common::cli::{emsim, only, stderr_line};

/// Runs emsim and asserts success.
fn ok(args: &[&str], d: &std::path::Path) -> std::process::Output {
    let o = emsim(args, d);
    assert!(o.status.success(), "emsim {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn frames(d: &std::path::Path, out: &str, extra: &[&str]) {
    let mut a = vec!["frames", "--frames", "9", "--size", "40x56", "--electrons", "30", "--device", "cpu", "-q"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["--out", out]);
    ok(&a, d);
}

/// Every dataset of a frames file, as raw bytes, by name.
fn contents(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let f = hdf5::File::open(path).unwrap();
    let mut v = Vec::new();
    let fr = f.dataset("frames").unwrap();
    assert_eq!(fr.shape(), vec![9, 40, 56], "{}: /frames is one dataset of the full shape", path.display());
    v.push(("frames".into(), bytemuck::cast_slice(&fr.read_raw::<u16>().unwrap()).to_vec()));
    v.push((
        "offsets".into(),
        bytemuck::cast_slice(&f.dataset("truth/offsets").unwrap().read_raw::<u64>().unwrap()).to_vec(),
    ));
    for name in ["frame", "event"] {
        let d = f.dataset(&format!("truth/{name}")).unwrap();
        v.push((name.into(), bytemuck::cast_slice(&d.read_raw::<u32>().unwrap()).to_vec()));
    }
    for name in ["x_px", "y_px", "deposit_kev"] {
        let d = f.dataset(&format!("truth/{name}")).unwrap();
        v.push((name.into(), bytemuck::cast_slice(&d.read_raw::<f32>().unwrap()).to_vec()));
    }
    v
}

#[test]
fn merged_shards_equal_the_single_machine_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("parts")).unwrap();
    frames(d, "one.h5", &["--seed", "5"]);
    for k in 0..4 {
        frames(d, &format!("parts/s{k}.h5"), &["--seed", "5", "--shard", &format!("{k}/4")]);
    }
    // any order of the inputs
    ok(&["merge", "parts/s2.h5", "parts/s0.h5", "parts/s3.h5", "parts/s1.h5", "--out", "parts/all.h5", "-q"], d);
    ok(&["merge", "parts/s0.h5", "parts/s1.h5", "parts/s2.h5", "parts/s3.h5", "--out", "copy.h5", "--copy", "-q"], d);
    let want = contents(&d.join("one.h5"));
    for merged in ["parts/all.h5", "copy.h5"] {
        let got = contents(&d.join(merged));
        for ((name, a), (_, b)) in want.iter().zip(&got) {
            assert!(a == b, "{merged}: {name} differs from the single-machine file");
        }
    }
    let f = hdf5::File::open(d.join("parts/all.h5")).unwrap();
    use hdf5::plist::dataset_create::Layout;
    assert_eq!(f.dataset("frames").unwrap().layout(), Layout::Virtual, "the default merge holds virtual datasets");
    assert_eq!(f.dataset("truth/x_px").unwrap().layout(), Layout::Virtual);
    drop(f);
    assert_eq!(hdf5::File::open(d.join("copy.h5")).unwrap().dataset("frames").unwrap().layout(), Layout::Chunked);

    // emsim reads the merged files like any other: the same electrons as from the single file
    ok(&["count", "one.h5", "--out", "c-one.h5", "--device", "cpu", "-q"], d);
    ok(&["count", "parts/all.h5", "--out", "c-all.h5", "--device", "cpu", "-q"], d);
    ok(&["count", "copy.h5", "--out", "c-copy.h5", "--device", "cpu", "-q"], d);
    let col =
        |p: &str| hdf5::File::open(d.join(p)).unwrap().dataset("electrons/x_px").unwrap().read_raw::<f32>().unwrap();
    let (one, all, copy) = (col("c-one.h5"), col("c-all.h5"), col("c-copy.h5"));
    assert!(!one.is_empty());
    assert!(one == all && one == copy, "counting the merged files gives other electrons");
    let ev = ok(&["eval", "c-all.h5", "--truth", "parts/all.h5", "--json", "-"], d);
    let r: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert!(r["methods"][0]["recall"].as_f64().unwrap() > 0.5);

    // the shards' names are relative to the merged file's folder: the folder can move
    std::fs::rename(d.join("parts"), d.join("moved")).unwrap();
    let got = contents(&d.join("moved/all.h5"));
    assert!(want == got, "the merged file reads its shards after the folder moved");
}

#[test]
fn shards_that_do_not_fit_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in 0..3 {
        frames(d, &format!("s{k}.h5"), &["--seed", "5", "--shard", &format!("{k}/3")]);
    }
    frames(d, "seed6.h5", &["--seed", "6", "--shard", "2/3"]);
    frames(d, "big.h5", &["--seed", "5", "--shard", "2/3", "--noise-sigma-e", "30"]);
    ok(
        &[
            "frames",
            "--frames",
            "9",
            "--size",
            "40x60",
            "--electrons",
            "30",
            "--device",
            "cpu",
            "-q",
            "--seed",
            "5",
            "--shard",
            "2/3",
            "--out",
            "wide.h5",
        ],
        d,
    );
    std::fs::write(d.join("junk.h5"), b"not an hdf5 file").unwrap();
    let before = common::cli::names(d);
    let cases: [(&[&str], &str); 7] = [
        (&["s0.h5", "s1.h5", "wide.h5"], "wide.h5: frames of 40x60"),
        (&["s0.h5", "s1.h5"], "shard 2/3 is missing"),
        (&["s0.h5", "s1.h5", "seed6.h5"], "seed6.h5: seed 6"),
        (&["s0.h5", "s1.h5", "big.h5"], "big.h5: its configuration differs"),
        (&["s0.h5", "s1.h5", "s2.h5", "s1.h5"], "shard 1/3 is also"),
        (&["s0.h5", "s1.h5", "junk.h5"], "junk.h5"),
        (&["s0.h5", "s1.h5", "none.h5"], "none.h5"),
    ];
    for (inputs, want) in cases {
        for copy in [false, true] {
            let mut a = vec!["merge"];
            a.extend_from_slice(inputs);
            a.extend_from_slice(&["--out", "m.h5"]);
            if copy {
                a.push("--copy");
            }
            let o = emsim(&a, d);
            assert!(!o.status.success(), "{a:?} should fail");
            let line = stderr_line(&o);
            assert_eq!(line.lines().count(), 1, "{a:?}: one error line, got {line:?}");
            assert!(line.contains(want), "{a:?}: {line:?} should contain {want:?}");
            only(d, &before.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
    // the merged file cannot be one of its shards
    let o = emsim(&["merge", "s0.h5", "s1.h5", "s2.h5", "--out", "s1.h5", "--force"], d);
    assert!(stderr_line(&o).contains("--out"), "{}", stderr_line(&o));
}

/// The counts of each shard (`emsim count` on the shard files, as a cluster would run it), merged,
/// equal counting the single-machine file with the same noise sigma; counts that do not fit are
/// named.
#[test]
fn merged_counts_equal_counting_the_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    frames(d, "one.h5", &["--seed", "8"]);
    ok(&["count", "one.h5", "--sigma-e", "20", "--out", "c-one.h5", "--device", "cpu", "-q"], d);
    for k in 0..3 {
        frames(d, &format!("s{k}.h5"), &["--seed", "8", "--shard", &format!("{k}/3")]);
        let (s, c) = (format!("s{k}.h5"), format!("c{k}.h5"));
        ok(&["count", &s, "--sigma-e", "20", "--out", &c, "--device", "cpu", "-q"], d);
    }
    ok(&["count", "s1.h5", "--sigma-e", "20", "--method", "max", "--out", "c1-max.h5", "--device", "cpu", "-q"], d);
    ok(&["merge", "c2.h5", "c0.h5", "c1.h5", "--out", "c-all.h5", "-q"], d);
    ok(&["merge", "c0.h5", "c1.h5", "c2.h5", "--out", "c-copy.h5", "--copy", "-q"], d);
    let read = |p: &str| {
        let f = hdf5::File::open(d.join(p)).unwrap();
        let u32s = |n: &str| f.dataset(n).unwrap().read_raw::<u32>().unwrap();
        let f32s = |n: &str| f.dataset(n).unwrap().read_raw::<f32>().unwrap();
        (
            f.dataset("electrons/offsets").unwrap().read_raw::<u64>().unwrap(),
            [u32s("electrons/frame"), u32s("electrons/row"), u32s("electrons/col"), u32s("counted_image_x4")],
            [f32s("electrons/x_px"), f32s("electrons/y_px"), f32s("electrons/charge_e")],
        )
    };
    let want = read("c-one.h5");
    assert!(!want.2[0].is_empty());
    assert!(want == read("c-all.h5"), "merged counts (virtual) differ from counting the single file");
    assert!(want == read("c-copy.h5"), "merged counts (copy) differ from counting the single file");
    // scored against the single file's truth as its own counts are
    let ev = |c: &str| {
        let o = ok(&["eval", c, "--truth", "one.h5", "--json", "-"], d);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["methods"][0]["recall"].as_f64().unwrap()
    };
    assert_eq!(ev("c-all.h5"), ev("c-one.h5"));

    let before = common::cli::names(d);
    for (inputs, want) in [
        (&["c0.h5", "c1-max.h5", "c2.h5"][..], "c1-max.h5: `method` differs"),
        (&["c0.h5", "c2.h5"][..], "the counts of shard 1/3 are missing"),
        (&["c0.h5", "c1.h5", "c2.h5", "c0.h5"][..], "shard 0/3 again (c0.h5 has them too)"),
        (&["c0.h5", "c1.h5", "s2.h5"][..], "s2.h5: schema"),
    ] {
        let mut a = vec!["merge"];
        a.extend_from_slice(inputs);
        a.extend_from_slice(&["--out", "m.h5"]);
        let o = emsim(&a, d);
        let line = stderr_line(&o);
        assert!(!o.status.success() && line.contains(want), "{a:?}: {line:?} should contain {want:?}");
        only(d, &before.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
