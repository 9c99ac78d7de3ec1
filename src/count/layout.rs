//! How the finding kernels split frames among invocations.

use crate::gpu::GpuContext;
use crate::shaders;
use crate::{Error, Result};

/// How `count/sum3` and `count/find` split frames among invocations (`shaders/count/runs.wgsl`):
/// runs of 8 pixels of a row (each invocation loads the window around its run once: the fast
/// layout on CPU adapters such as lavapipe), runs of 8 pixels down a column (neighbouring
/// invocations read neighbouring columns, so a GPU's loads coalesce), one pixel per invocation, or
/// tiles of 32 x 16 pixels in workgroup memory with both kernels fused into one
/// (`count/find_tile`). All give exactly the same output, the twins' (`tests/count.rs` checks
/// each). On the H100 (512 frames of 576x576, `bench --kernel-times`), columns of 8 ran
/// `count/sum3` in 1.68 ms against 2.24 (rows) and 2.54 (pixels), and `count/find` in 7.87 ms
/// against 7.7 and 8.5; on an H200, with the two-pass finder, the fused tiles took 5.57 ms against
/// 6.87 for columns of 8 (sum3 + find). Tiles are the GPU default; on lavapipe rows of 8 are the
/// fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountLayout {
    Rows8,
    Cols8,
    Pixels,
    Tiles,
}

impl CountLayout {
    pub const ALL: [CountLayout; 4] = [Self::Rows8, Self::Cols8, Self::Pixels, Self::Tiles];

    /// Rows of 8 on CPU adapters, tiles elsewhere; `EMSIM_COUNT_LAYOUT=rows8`, `cols8`, `pixels`
    /// or `tiles` overrides this (for benchmarks); any other value is an error that names it.
    pub fn for_adapter(ctx: &GpuContext) -> Result<Self> {
        if let Ok(v) = std::env::var("EMSIM_COUNT_LAYOUT") {
            return Self::ALL.into_iter().find(|l| l.name() == v).ok_or_else(|| {
                Error::invalid("EMSIM_COUNT_LAYOUT", format!("'{v}': expected rows8, cols8, pixels or tiles"))
            });
        }
        Ok(if ctx.adapter.device_type == "Cpu" { Self::Rows8 } else { Self::Tiles })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rows8 => "rows8",
            Self::Cols8 => "cols8",
            Self::Pixels => "pixels",
            Self::Tiles => "tiles",
        }
    }

    /// Rows and columns one invocation (a run) or, for tiles, one workgroup covers (keep in
    /// sync with shaders/count/run1.wgsl, run8.wgsl, col8.wgsl, find_tile.wgsl).
    fn span(self) -> (u32, u32) {
        match self {
            Self::Rows8 => (1, 8),
            Self::Cols8 => (8, 1),
            Self::Pixels => (1, 1),
            Self::Tiles => (16, 32),
        }
    }

    /// Invocations of `count/sum3` and `count/find` for `n_frames` frames of `height x width`.
    pub fn threads(self, n_frames: u32, height: u32, width: u32) -> u64 {
        let (sr, sc) = self.span();
        let units = n_frames as u64 * height.div_ceil(sr) as u64 * width.div_ceil(sc) as u64;
        match self {
            Self::Tiles => units * shaders::COUNT_FIND_TILE.workgroup_size as u64,
            _ => units,
        }
    }

    /// `count/sum3` in this layout; `None` where `find` computes the sums itself.
    pub fn sum3(self) -> Option<&'static shaders::Kernel> {
        match self {
            Self::Rows8 => Some(&shaders::COUNT_SUM3),
            Self::Cols8 => Some(&shaders::COUNT_SUM3_COL8),
            Self::Pixels => Some(&shaders::COUNT_SUM3_PX),
            Self::Tiles => None,
        }
    }

    /// The first finding pass on q and its sums (bindings: params, q, s, pre_counter, pre,
    /// marks); `None` for tiles, where `count/find_tile` calibrates and sums itself
    /// (`find::FindInput::Raw`).
    pub fn find(self) -> Option<&'static shaders::Kernel> {
        match self {
            Self::Rows8 => Some(&shaders::COUNT_FIND),
            Self::Cols8 => Some(&shaders::COUNT_FIND_COL8),
            Self::Pixels => Some(&shaders::COUNT_FIND_PX),
            Self::Tiles => None,
        }
    }

    /// The kernels of a counter in this layout.
    pub fn kernels(self) -> Vec<shaders::Kernel> {
        let mut k = match self.find() {
            Some(find) => vec![shaders::COUNT_CALIBRATE, shaders::COUNT_CALIBRATE_U16, *find],
            None => vec![shaders::COUNT_FIND_TILE, shaders::COUNT_FIND_TILE_U16],
        };
        k.extend(self.sum3().copied());
        k.extend([shaders::COUNT_SUPPRESS, shaders::COUNT_ARGS]);
        k
    }
}
