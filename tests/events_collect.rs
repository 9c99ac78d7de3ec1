//! The charge-collection kernel `events/collect` against its CPU twin, on fresh random pair clouds
//! (random depths, positions, pair counts, depleted clouds, clouds far outside the window), and
//! whole libraries made with the collection on the GPU against the CPU path.

use emsim::events::build::{SimulateRequest, simulate_library, simulate_library_on};
use emsim::events::physics::charge::PairCloud;
use emsim::events::physics::collect::{collect_window_cpu, collect_windows_gpu};
use emsim::events::physics::preset;
use emsim::gpu::Device;
use rand::RngExt;

mod common;
use common::{test_context, test_rng};

/// Per pixel `|gpu - cpu| <= 0.02 e- + 2e-5 x the event's pairs`: f32 against f64, 32 images.
#[test]
fn collect_kernel_matches_its_cpu_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("collect_kernel_matches_its_cpu_twin");
    for (name, depletion_um, window_px) in [("seed", 0.0, 10), ("4dcamera", 0.0, 10), ("seed", 1.5, 3)] {
        let (mut sensor, _) = preset(name).unwrap();
        sensor.depletion_um = depletion_um;
        let d = sensor.field_free_um() + depletion_um;
        let p = sensor.pitch_um;
        let events: Vec<Vec<PairCloud>> = (0..64)
            .map(|_| {
                let n: usize = rng.random_range(0..30);
                (0..n)
                    .map(|_| PairCloud {
                        x_um: rng.random_range(-3.0 * p..4.0 * p),
                        y_um: rng.random_range(-3.0 * p..4.0 * p),
                        h_um: rng.random_range(-depletion_um..d - depletion_um),
                        pairs: rng.random_range(1.0..2000.0),
                    })
                    .collect()
            })
            .collect();
        let gpu = collect_windows_gpu(&ctx, &sensor, &events, window_px).unwrap();
        let mut worst = 0.0f64;
        for (e, clouds) in events.iter().enumerate() {
            let cpu = collect_window_cpu(&sensor, clouds, window_px);
            let total: f64 = clouds.iter().map(|c| c.pairs).sum();
            assert_eq!(gpu[e].len(), cpu.len());
            for (k, (g, c)) in gpu[e].iter().zip(&cpu).enumerate() {
                let tol = 0.02 + 2e-5 * total;
                assert!((g - c).abs() <= tol, "{name}, event {e}, pixel {k}: gpu {g} vs cpu {c} e- (tolerance {tol})");
                worst = worst.max((g - c).abs());
            }
            if window_px >= 10 {
                // Clouds inside the window: nearly all their pairs are in it.
                let inside: f64 = cpu.iter().sum();
                assert!(inside <= total * (1.0 + 1e-9), "{inside} > {total}");
            }
        }
        eprintln!("{name} (depletion {depletion_um} um, window {window_px}): max |gpu - cpu| = {worst:.2e} e-");
    }
}

/// A library made with the collection on the GPU equals the CPU path's: the same events, flags,
/// incidence points and deposits; per event, the same pixels within the twin's tolerance (a
/// pixel may appear in one only when it is at the 0.5 e- threshold).
#[test]
fn gpu_collected_library_matches_the_cpu_one() {
    let Some(ctx) = test_context() else { return };
    let req = SimulateRequest { preset: "4dcamera".into(), count: 300, seed: 9, ..Default::default() };
    let cpu = simulate_library(&req, false).unwrap();
    let gpu = simulate_library_on(&req, &Device::Gpu(Box::new(ctx)), false).unwrap();
    assert_eq!(cpu.len(), gpu.len());
    assert_eq!(cpu.incidence_x_px, gpu.incidence_x_px);
    assert_eq!(cpu.deposit_kev, gpu.deposit_kev);
    let mut differing_sets = 0;
    for e in 0..cpu.len() {
        let px = |lib: &emsim::io::library::EventLibrary| {
            let (a, b) = (lib.offsets[e] as usize, lib.offsets[e + 1] as usize);
            (a..b)
                .map(|i| ((lib.dx_px[i], lib.dy_px[i]), lib.charge_e[i] as f64))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let (c, g) = (px(&cpu), px(&gpu));
        let total: f64 = c.values().sum();
        if c.len() != g.len() {
            differing_sets += 1;
        }
        for key in c.keys().chain(g.keys()) {
            let (a, b) = (c.get(key).copied().unwrap_or(0.0), g.get(key).copied().unwrap_or(0.0));
            assert!((a - b).abs() <= 0.5 + 1e-3 * total, "event {e}, pixel {key:?}: cpu {a} vs gpu {b} e-");
            if c.contains_key(key) && g.contains_key(key) {
                assert!((a - b).abs() <= 0.02 + 2e-5 * total, "event {e}, pixel {key:?}: cpu {a} vs gpu {b} e-");
            }
        }
        assert_eq!(
            cpu.flags[e] & !emsim::io::library::FLAG_TRUNCATED,
            gpu.flags[e] & !emsim::io::library::FLAG_TRUNCATED
        );
    }
    assert!(differing_sets * 10 < cpu.len(), "{differing_sets} events with different pixel sets");
}
