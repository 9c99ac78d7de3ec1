//! Workgroup-count arithmetic, in one place. Kernels compute their flat index with
//! `flat_index(workgroup_id, num_workgroups, local_index, WG)` (`shaders/shared/rng.wgsl`).

/// The portable limit on workgroups per dispatch dimension.
pub const WORKGROUPS_PER_DIM: u32 = 65_535;

/// Workgroup grid `(x, y)` covering `n_threads` invocations of `wg_size` each, with at most
/// `per_dim` workgroups per dimension: a single row while it fits, else a 2-D grid (the kernel
/// bounds-checks the excess). None if even `per_dim^2` workgroups are too few.
pub fn workgroup_grid(n_threads: u64, wg_size: u32, per_dim: u32) -> Option<(u32, u32)> {
    let groups = n_threads.div_ceil(wg_size as u64);
    if groups <= per_dim as u64 {
        return Some((groups as u32, 1));
    }
    let y = groups.div_ceil(per_dim as u64);
    if y > per_dim as u64 {
        return None;
    }
    let x = groups.div_ceil(y);
    Some((x as u32, y as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_work() {
        for n in [1u64, 255, 256, 257, 65_535 * 256, 65_535 * 256 + 1, 40_000_000, 1 << 32] {
            let (x, y) = workgroup_grid(n, 256, WORKGROUPS_PER_DIM).unwrap();
            assert!(x <= WORKGROUPS_PER_DIM && y <= WORKGROUPS_PER_DIM);
            assert!(x as u64 * y as u64 * 256 >= n, "n={n} x={x} y={y}");
            assert!((x as u64 * y as u64 - 1) * 256 < n + 256 * y as u64, "too many groups for n={n}");
        }
        assert_eq!(workgroup_grid(0, 256, WORKGROUPS_PER_DIM), Some((0, 1)));
        assert!(workgroup_grid(u64::MAX / 2, 256, WORKGROUPS_PER_DIM).is_none());
    }
}
