//! Shared test helpers: the GPU test context, tolerance checks, running the binary (`cli`).
#![allow(dead_code)]

use emsim::gpu::{BackendChoice, GpuContext};

pub mod cli;

/// The GPU for twin tests. With no adapter the test FAILS with a message saying how to get one,
/// unless `EMSIM_ALLOW_NO_GPU=1`, where it prints a loud SKIP and returns None. Under CI
/// (`CI` set) the adapter must not be GL: lavapipe's Vulkan driver is what CI installs.
pub fn test_context() -> Option<GpuContext> {
    match GpuContext::new(BackendChoice::Auto) {
        Ok(ctx) => {
            if std::env::var_os("CI").is_some() {
                assert!(
                    !ctx.adapter.is_gl(),
                    "CI must run GPU tests on Vulkan (lavapipe), not the GL fallback; got {:?}",
                    ctx.adapter
                );
            }
            Some(ctx)
        }
        Err(e) => {
            if std::env::var("EMSIM_ALLOW_NO_GPU").as_deref() == Ok("1") {
                eprintln!("!!! SKIP: no GPU adapter ({e}); EMSIM_ALLOW_NO_GPU=1 so this GPU test is skipped !!!");
                None
            } else {
                panic!(
                    "no GPU adapter: {e}\nInstall Mesa's Vulkan driver (apt-get install mesa-vulkan-drivers libvulkan1) \
                     or run `bash .ci/run`, which installs it; set EMSIM_ALLOW_NO_GPU=1 to skip GPU tests explicitly."
                )
            }
        }
    }
}

/// `|gpu - cpu| <= atol + rtol * |cpu|` for every element; reports the worst element.
#[track_caller]
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
pub fn assert_close(gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "length differs");
    let mut worst = (0usize, 0f32);
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let err = (g - c).abs();
        let tol = atol + rtol * c.abs();
        if !(err <= tol) {
            panic!("element {i}: gpu {g} vs cpu {c}, |diff| {err} > tolerance {tol}");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!("max |gpu-cpu| = {} at {}", worst.1, worst.0);
}

/// `|got - want| <= tol(i)` for every element `i` (a NaN fails); reports the worst element,
/// relative to its tolerance, on success and the first failing element otherwise.
#[track_caller]
pub fn assert_within(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (err, t) = ((g as f64 - w as f64).abs(), tol(i));
        assert!(err <= t, "{what}: element {i}: {g} vs {w}, |diff| {err:e} > tolerance {t:e}");
        if err / t > worst.1 {
            worst = (i, err / t);
        }
    }
    eprintln!("{what}: worst |diff| = {:.3} of the tolerance at element {}", worst.1, worst.0);
}

/// Bitwise equality of two f32 slices (NaN included), naming the first element that differs.
#[track_caller]
pub fn assert_bits_equal(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits()) {
        panic!("{what}: element {i}: {:e} vs {:e} (bitwise equality expected)", got[i], want[i]);
    }
}

/// A seeded RNG for fresh random test inputs (the seed printed, so a failure can be replayed).
pub fn test_rng(name: &str) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let seed = std::env::var("EMSIM_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{name}: EMSIM_TEST_SEED={seed}");
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
