//! Event libraries: Monte Carlo build, HDF5 round trip, info, show, imports, input errors.

use std::path::{Path, PathBuf};

use emsim::events::build::{SimulateRequest, simulate_library};
use emsim::events::import::{import_hits, import_pixel_table};
use emsim::events::info::library_info;
use emsim::events::physics;
use emsim::events::show::show_event;
use emsim::io::library::{EventLibrary, FLAG_BACKSCATTERED, FLAG_TRANSMITTED};

fn request(count: usize, seed: u64) -> SimulateRequest {
    SimulateRequest {
        preset: "seed".into(),
        stack: None,
        energy_kev: None,
        tilt_deg: None,
        pitch_um: None,
        depletion_um: None,
        count,
        seed,
        tracks: false,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn err_text<T: std::fmt::Debug>(r: emsim::Result<T>) -> String {
    let e = r.expect_err("expected an error");
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    s
}

#[test]
fn simulate_roundtrip_info_and_determinism() {
    let lib = simulate_library(&request(200, 1), false).unwrap();
    assert_eq!(lib.len(), 200);
    assert_eq!(lib.meta.source, "monte-carlo");
    assert_eq!(lib.meta.pitch_um, 5.0);
    assert_eq!(lib.meta.energy_kev, 300.0);
    assert!(lib.tracks.is_none());
    lib.validate(Path::new("memory")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&lib.meta.config_json).unwrap();
    assert_eq!(cfg["preset"], "seed");
    assert_eq!(cfg["beam"]["energy_kev"], 300.0);
    assert_eq!(cfg["sensor"]["stack"], emsim::events::physics::thinned_stack(4.0));
    assert_eq!(cfg["sensor"]["field_free_um"], 4.0);

    // Same seed, same library; another seed, another one.
    assert_eq!(simulate_library(&request(200, 1), false).unwrap(), lib);
    assert_ne!(simulate_library(&request(200, 2), false).unwrap(), lib);

    // HDF5 round trip.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.h5");
    lib.write_h5(&path).unwrap();
    let back = EventLibrary::read_h5(&path).unwrap();
    assert_eq!(back, lib);

    let info = library_info(&lib);
    assert_eq!(info.count, 200);
    assert_eq!(info.source, "monte-carlo");
    assert_eq!(info.seed, 1);
    assert!(info.flags_recorded);
    assert!((0.0..=1.0).contains(&info.backscatter_fraction), "{}", info.backscatter_fraction);
    assert!((0.0..=1.0).contains(&info.transmission_fraction));
    // 300 keV through an 8 um stack: nearly every primary is transmitted.
    assert!(info.transmission_fraction > 0.8, "{}", info.transmission_fraction);
    let bs = lib.flags.iter().filter(|&&f| f & FLAG_BACKSCATTERED != 0).count();
    let tr = lib.flags.iter().filter(|&&f| f & FLAG_TRANSMITTED != 0).count();
    assert_eq!(info.backscatter_fraction, bs as f64 / 200.0);
    assert_eq!(info.transmission_fraction, tr as f64 / 200.0);
    assert!(info.mean_charge_e > 0.0 && info.median_charge_e > 0.0);
    // ~1.6 keV in 4 um of Si -> ~450 e.
    assert!(info.mean_charge_e > 200.0 && info.mean_charge_e < 2000.0, "{}", info.mean_charge_e);
    assert!(info.mean_deposit_kev > 0.8 && info.mean_deposit_kev < 8.0, "{}", info.mean_deposit_kev);
    assert!(info.most_probable_deposit_kev > 0.0 && info.most_probable_deposit_kev < info.mean_deposit_kev * 2.0);
    assert!(info.mean_track_length_um > 8.0, "{}", info.mean_track_length_um);
    assert_eq!(info.cluster_size_histogram.iter().sum::<u64>(), 200);
    assert!(info.mean_cluster_size >= 1.0);
    let text = info.text();
    assert!(text.contains("events:") && text.contains("200") && text.contains("backscattered"), "{text}");
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["count"], 200);
    assert_eq!(json["config_json"]["preset"], "seed");

    // show: a PNG, and errors naming --event for a bad index.
    let png = dir.path().join("ev.png");
    show_event(&lib, 3, &png, 8).unwrap();
    let img = image::open(&png).unwrap();
    assert!(img.width() >= 8 * 3 && img.width().is_multiple_of(8));
    let e = err_text(show_event(&lib, 200, &dir.path().join("bad.png"), 8));
    assert!(e.contains("--event") && e.contains("200"), "{e}");
    assert!(!dir.path().join("bad.png").exists());
}

#[test]
fn simulate_overrides_and_tracks() {
    let req = SimulateRequest {
        preset: "4dcamera".into(),
        stack: Some("Si:10*".into()),
        energy_kev: Some(80.0),
        tilt_deg: Some(20.0),
        pitch_um: Some(7.5),
        depletion_um: Some(1.5),
        count: 20,
        seed: 3,
        tracks: true,
    };
    let lib = simulate_library(&req, false).unwrap();
    assert_eq!(lib.meta.pitch_um, 7.5);
    assert_eq!(lib.meta.energy_kev, 80.0);
    let cfg: serde_json::Value = serde_json::from_str(&lib.meta.config_json).unwrap();
    assert_eq!(cfg["sensor"]["stack"], "Si:10*");
    assert_eq!(cfg["sensor"]["collect_at_back"], true);
    assert_eq!(cfg["beam"]["tilt_deg"], 20.0);
    let t = lib.tracks.as_ref().expect("tracks");
    assert_eq!(t.offsets.len(), 21);
    assert!(t.x_um.len() > 20);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.h5");
    lib.write_h5(&path).unwrap();
    assert_eq!(EventLibrary::read_h5(&path).unwrap(), lib);
    assert!(library_info(&lib).has_tracks);
}

#[test]
fn simulate_bad_inputs_name_the_flag() {
    let mut r = request(10, 1);
    r.energy_kev = Some(5000.0);
    let e = err_text(simulate_library(&r, false));
    assert!(e.contains("--energy-kev") && e.contains("5000"), "{e}");

    let mut r = request(10, 1);
    r.preset = "nope".into();
    let e = err_text(simulate_library(&r, false));
    assert!(e.contains("--preset") && e.contains("nope") && e.contains("seed"), "{e}");

    for stack in ["Si:abc*", "Si:8", "Unobtainium:5*", "Si:8*,Si:5*", "Si:-3*"] {
        let mut r = request(10, 1);
        r.stack = Some(stack.into());
        let e = err_text(simulate_library(&r, false));
        assert!(e.contains("--stack"), "{stack}: {e}");
    }

    let mut r = request(10, 1);
    r.pitch_um = Some(0.0);
    assert!(err_text(simulate_library(&r, false)).contains("--pitch-um"));

    let mut r = request(10, 1);
    r.tilt_deg = Some(95.0);
    assert!(err_text(simulate_library(&r, false)).contains("--tilt-deg"));

    let e = err_text(simulate_library(&request(0, 1), false));
    assert!(e.contains("--count"), "{e}");
}

#[test]
fn import_pixel_table_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    // pandas-style export: index column, extra columns, any order.
    let p = write(
        dir.path(),
        "px.csv",
        ",event,xinc,yinc,front,energy,row,col,counts\n\
         0,7,0.001,-0.002,False,300,50,50,800\n\
         1,7,0.001,-0.002,False,300,50,51,150\n\
         2,7,0.001,-0.002,False,300,49,50,50\n\
         3,9,-0.0024,0.0,False,300,50,50,900\n",
    );
    let lib = import_pixel_table(&p, 5.0).unwrap();
    assert_eq!(lib.len(), 2);
    assert_eq!(lib.meta.source, "geant4-import");
    assert!((lib.incidence_x_px[0] - 0.7).abs() < 1e-5);
    assert!((lib.incidence_y_px[0] - 0.1).abs() < 1e-5);
    assert_eq!(lib.pixel_range(0).len(), 3);
    assert!((lib.total_charge_e(0) - 1000.0).abs() < 1e-3);
    // pixels sorted by (dy, dx): (0,-1), (0,0), (1,0)
    assert_eq!(&lib.dy_px[..3], &[-1, 0, 0]);
    assert_eq!(&lib.dx_px[..3], &[0, 0, 1]);
    assert!((lib.incidence_x_px[1] - 0.02).abs() < 1e-5);
    assert!((lib.deposit_kev[0] - 3.6).abs() < 1e-4);
    let info = library_info(&lib);
    assert!(!info.flags_recorded && info.mean_track_length_um.is_nan());
    let h5 = dir.path().join("px.h5");
    lib.write_h5(&h5).unwrap();
    assert_eq!(EventLibrary::read_h5(&h5).unwrap().dx_px, lib.dx_px);

    // Header-less, whitespace or comma separated.
    let p = write(dir.path(), "nohdr.csv", "# comment\n\n0,50,50,10,0,0\n0 50 51 5 0 0\n");
    assert_eq!(import_pixel_table(&p, 5.0).unwrap().len(), 1);

    let cases = [
        ("event,row,col,counts,xinc,yinc\n0,50,50,10,0,0\n0,50,x,5,0,0\n", "line 3", "col"),
        ("0,50,50,10,0,0\n1,50,50,-5,0,0\n", "line 2", "counts"),
        ("0,50,50,10,0,0\n\n0,50,51,10,0.001,0\n", "line 3", "xinc"),
        ("event,row,col,counts,xinc,yinc\n0,50,50,10\n", "line 2", "fields"),
        ("event,row,col,counts,xinc\n0,50,50,10,0\n", "line 1", "yinc"),
        ("0,50,50,nan,0,0\n", "line 1", "counts"),
    ];
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("bad{i}.csv"), text);
        let e = err_text(import_pixel_table(&p, 5.0));
        assert!(e.contains(line) && e.contains(what) && e.contains(&format!("bad{i}.csv")), "case {i}: {e}");
    }
    let empty = write(dir.path(), "empty.csv", "event,row,col,counts,xinc,yinc\n");
    assert!(err_text(import_pixel_table(&empty, 5.0)).contains("no data rows"));
    let blank = write(dir.path(), "blank.csv", "");
    assert!(err_text(import_pixel_table(&blank, 5.0)).contains("no data rows"));
    assert!(err_text(import_pixel_table(&dir.path().join("missing.csv"), 5.0)).contains("missing.csv"));
    assert!(err_text(import_pixel_table(&p, 0.0)).contains("--pitch-um"));
}

#[test]
fn import_hits_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (sensor, _) = physics::preset("seed").unwrap();
    // 1 um SiO2, sensitive Si from z = 1 to 9 um.
    let text = "event,x_um,y_um,z_um,edep_kev\n\
                0,0,0,2,1.0\n\
                0,0.5,0,4,1.0\n\
                0,0,0,20,5.0\n\
                1,12,0,3,2.0\n";
    let p = write(dir.path(), "hits.csv", text);
    let lib = import_hits(&p, &sensor, 5).unwrap();
    assert_eq!(lib.len(), 2);
    assert_eq!(lib.meta.source, "hits-import");
    assert_eq!(lib.meta.seed, 5);
    assert!((lib.deposit_kev[0] - 2.0).abs() < 1e-6, "only the sensitive layer counts");
    assert!((lib.deposit_kev[1] - 2.0).abs() < 1e-6);
    // 2 keV -> ~556 e with Fano noise (sd ~8 e).
    let q0 = lib.total_charge_e(0);
    assert!((q0 - 2000.0 / 3.6).abs() < 60.0, "{q0}");
    // Event 1: 12 um to the right of the entry point = 2 or 3 pixels of 5 um.
    let r = lib.pixel_range(1);
    let (mut best, mut qbest) = (0, 0.0);
    for j in r {
        if lib.charge_e[j] > qbest {
            qbest = lib.charge_e[j];
            best = lib.dx_px[j];
        }
    }
    assert!(best == 2 || best == 3, "{best}");
    // Unknown track lengths are NaN (so compare the columns, not the libraries).
    assert!(lib.track_length_um.iter().all(|t| t.is_nan()));
    let again = import_hits(&p, &sensor, 5).unwrap();
    assert_eq!(
        (&again.charge_e, &again.dx_px, &again.incidence_x_px),
        (&lib.charge_e, &lib.dx_px, &lib.incidence_x_px)
    );
    let other = import_hits(&p, &sensor, 6).unwrap();
    assert_ne!(other.incidence_x_px, lib.incidence_x_px);

    let cases = [
        ("0,0,0,2,1\n0,0,0,2,-1\n", "line 2", "edep_kev"),
        ("event,x_um,y_um,z_um,edep_kev\n0,0,0,2,1\n0,0,zz,2,1\n", "line 3", "y_um"),
        ("event,x_um,y_um,z_um\n0,0,0,2\n", "line 1", "edep_kev"),
        ("0,0,0,2,1\n# c\n1.5,0,0,2,1\n", "line 3", "event"),
    ];
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("hbad{i}.csv"), text);
        let e = err_text(import_hits(&p, &sensor, 1));
        assert!(e.contains(line) && e.contains(what), "case {i}: {e}");
    }
    let empty = write(dir.path(), "hempty.csv", "# nothing\n");
    assert!(err_text(import_hits(&empty, &sensor, 1)).contains("no data rows"));
}
