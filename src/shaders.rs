//! The registry of every WGSL kernel: name, source (shared pieces prepended), bindings in
//! `@binding` order, and workgroup size. `tests/shaders.rs` validates each source with naga and
//! checks the bindings and workgroup size against this table.

/// How a kernel binds a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

/// One compute kernel. Entry point is always `main`, bind group 0.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
    pub bindings: &'static [Binding],
    pub workgroup_size: u32,
}

macro_rules! wgsl {
    ($($path:literal),+) => {
        concat!($(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $path)), "\n"),+)
    };
}

use Binding::*;

pub const FRAMES_PLACE: Kernel = Kernel {
    name: "frames/place",
    source: wgsl!("shared/rng.wgsl", "frames/place.wgsl"),
    bindings: &[Uniform, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

pub const FRAMES_ACCUMULATE: Kernel = Kernel {
    name: "frames/accumulate",
    source: wgsl!("shared/rng.wgsl", "frames/accumulate.wgsl"),
    bindings: &[Uniform, StorageRead, StorageRead, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

pub const FRAMES_NOISE: Kernel = Kernel {
    name: "frames/noise",
    source: wgsl!("shared/rng.wgsl", "frames/noise.wgsl"),
    bindings: &[Uniform, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

pub const COUNT_CALIBRATE: Kernel = Kernel {
    name: "count/calibrate",
    source: wgsl!("shared/rng.wgsl", "count/calibrate.wgsl"),
    bindings: &[Uniform, StorageRead, StorageRead, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

pub const COUNT_SUM3: Kernel = Kernel {
    name: "count/sum3",
    source: wgsl!("shared/rng.wgsl", "count/sum3.wgsl"),
    bindings: &[Uniform, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

pub const COUNT_FIND: Kernel = Kernel {
    name: "count/find",
    source: wgsl!("shared/rng.wgsl", "count/find.wgsl"),
    bindings: &[Uniform, StorageRead, StorageRead, StorageReadWrite, StorageReadWrite],
    workgroup_size: 256,
};

pub const COUNT_ARGS: Kernel = Kernel {
    name: "count/args",
    source: wgsl!("count/args.wgsl"),
    bindings: &[Uniform, StorageRead, StorageReadWrite],
    workgroup_size: 1,
};

pub const COUNT_LOCALIZE: Kernel = Kernel {
    name: "count/localize",
    source: wgsl!("shared/rng.wgsl", "count/localize.wgsl"),
    bindings: &[Uniform, StorageRead, StorageRead, StorageRead, StorageReadWrite],
    workgroup_size: 256,
};

/// Every kernel, for validation and for `emsim devices --check`.
pub const ALL: &[Kernel] = &[
    FRAMES_PLACE,
    FRAMES_ACCUMULATE,
    FRAMES_NOISE,
    COUNT_CALIBRATE,
    COUNT_SUM3,
    COUNT_FIND,
    COUNT_ARGS,
    COUNT_LOCALIZE,
];
