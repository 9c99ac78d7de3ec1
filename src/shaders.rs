//! The registry of every WGSL kernel: name, source (shared pieces prepended), bindings in
//! `@binding` order, and workgroup size. Each binding carries the name of the WGSL variable it
//! binds (and a uniform the WGSL type of that variable), so that a dispatch names its buffers
//! ([`crate::gpu::GpuContext::dispatch`] checks them against this table). `tests/shaders.rs`
//! validates each source with naga and checks the bindings (kind, variable name, uniform type) and
//! workgroup size against this table.

/// How a kernel accesses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>`; `ty` is the WGSL type of the variable: a struct's name, or the type as
    /// written for any other type (e.g. `array<vec4<f32>, 4096>`).
    Uniform { ty: &'static str },
    /// `var<storage, read>`.
    StorageRead,
    /// `var<storage, read_write>`.
    StorageReadWrite,
}

/// One binding of a kernel: the WGSL variable at its `@binding` and how it is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub name: &'static str,
    pub access: Access,
}

/// A `var<uniform> name: ty` binding.
pub const fn uniform(name: &'static str, ty: &'static str) -> Binding {
    Binding { name, access: Access::Uniform { ty } }
}

/// A `var<storage, read> name` binding.
pub const fn read(name: &'static str) -> Binding {
    Binding { name, access: Access::StorageRead }
}

/// A `var<storage, read_write> name` binding.
pub const fn rw(name: &'static str) -> Binding {
    Binding { name, access: Access::StorageReadWrite }
}

/// Checks that `given` names a kernel's bindings in `@binding` order: the same count and, at each
/// position, the name of the WGSL variable there. The error names the kernel, the position, the
/// name expected and the name given.
pub fn check_binding_names(kernel: &Kernel, given: &[&str]) -> Result<(), String> {
    for (i, (b, g)) in kernel.bindings.iter().zip(given).enumerate() {
        if b.name != *g {
            return Err(format!("kernel {}: binding {i} is '{}', but the dispatch passed '{g}'", kernel.name, b.name));
        }
    }
    if given.len() != kernel.bindings.len() {
        let expected: Vec<&str> = kernel.bindings.iter().map(|b| b.name).collect();
        return Err(format!(
            "kernel {} takes {} buffers ({}), but the dispatch passed {} ({})",
            kernel.name,
            expected.len(),
            expected.join(", "),
            given.len(),
            given.join(", ")
        ));
    }
    Ok(())
}

/// One compute kernel. Entry point is always `main`, bind group 0.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
    pub bindings: &'static [Binding],
    pub workgroup_size: u32,
}

impl Kernel {
    /// Whether the kernel uses f16 (its source starts with `enable f16;`): it compiles only on
    /// adapters with `SHADER_F16`.
    pub fn needs_f16(&self) -> bool {
        self.source.starts_with("enable f16;")
    }

    /// Whether the kernel uses subgroup operations (it reads the `subgroup_*` builtins; naga
    /// takes them without an `enable` directive): it compiles only on adapters with `SUBGROUP`.
    pub fn needs_subgroups(&self) -> bool {
        self.source.contains("@builtin(subgroup_")
    }
}

macro_rules! wgsl {
    ($($path:literal),+) => {
        concat!($(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $path)), "\n"),+)
    };
}

/// An inference-forward kernel whose activations `x` / `y` are `xt` / `yt` (`shaders/shared/act_*.wgsl`):
/// `$plain` with f32 in and out (training and the default inference), and `$f16` the three
/// variants with f16 storage, in [`crate::net::precision::ActIo::f16_variant`] order: f32 in / f16
/// out, f16 / f16, f16 / f32. The f16 variants need the adapter's `SHADER_F16`.
macro_rules! act_kernels {
    ($plain:ident, $f16:ident, $name:literal, [$($piece:literal),+], $bindings:expr, $wg:literal) => {
        pub const $plain: Kernel = Kernel {
            name: $name,
            source: wgsl!("shared/act_x32_y32.wgsl", $($piece),+),
            bindings: $bindings,
            workgroup_size: $wg,
        };
        pub const $f16: [Kernel; 3] = [
            Kernel {
                name: concat!($name, "_x32y16"),
                source: wgsl!("shared/act_x32_y16.wgsl", $($piece),+),
                bindings: $bindings,
                workgroup_size: $wg,
            },
            Kernel {
                name: concat!($name, "_x16y16"),
                source: wgsl!("shared/act_x16_y16.wgsl", $($piece),+),
                bindings: $bindings,
                workgroup_size: $wg,
            },
            Kernel {
                name: concat!($name, "_x16y32"),
                source: wgsl!("shared/act_x16_y32.wgsl", $($piece),+),
                bindings: $bindings,
                workgroup_size: $wg,
            },
        ];
    };
}

pub const FRAMES_PLACE: Kernel = Kernel {
    name: "frames/place",
    source: wgsl!("shared/rng.wgsl", "frames/place.wgsl"),
    bindings: &[uniform("params", "PlaceParams"), read("frame_offsets"), rw("records")],
    workgroup_size: 256,
};

pub const FRAMES_ACCUMULATE: Kernel = Kernel {
    name: "frames/accumulate",
    source: wgsl!("shared/rng.wgsl", "frames/accumulate.wgsl"),
    bindings: &[
        uniform("params", "AccumulateParams"),
        read("records"),
        read("event_offsets"),
        read("event_pixels"),
        rw("acc"),
    ],
    workgroup_size: 256,
};

pub const FRAMES_NOISE: Kernel = Kernel {
    name: "frames/noise",
    source: wgsl!("shared/rng.wgsl", "frames/out_f32.wgsl", "frames/noise.wgsl"),
    bindings: &[uniform("params", "NoiseParams"), read("acc"), rw("out")],
    workgroup_size: 256,
};

/// `frames/noise` for quantized frames of even width: u16 values packed two per word.
pub const FRAMES_NOISE_U16: Kernel = Kernel {
    name: "frames/noise_u16",
    source: wgsl!("shared/rng.wgsl", "frames/out_u16.wgsl", "frames/noise.wgsl"),
    bindings: &[uniform("params", "NoiseParams"), read("acc"), rw("out")],
    workgroup_size: 256,
};

pub const COUNT_CALIBRATE: Kernel = Kernel {
    name: "count/calibrate",
    source: wgsl!("shared/rng.wgsl", "count/adu_f32.wgsl", "count/calibrate_common.wgsl", "count/calibrate.wgsl"),
    bindings: &[uniform("cparams", "CalibrateParams"), read("adu"), read("dark"), read("gain_map"), rw("q")],
    workgroup_size: 256,
};

/// `count/calibrate` reading u16 frames packed two per u32 word.
pub const COUNT_CALIBRATE_U16: Kernel = Kernel {
    name: "count/calibrate_u16",
    source: wgsl!("shared/rng.wgsl", "count/adu_u16.wgsl", "count/calibrate_common.wgsl", "count/calibrate.wgsl"),
    bindings: &[uniform("cparams", "CalibrateParams"), read("adu"), read("dark"), read("gain_map"), rw("q")],
    workgroup_size: 256,
};

/// A `count/sum3` or `count/find` kernel in the three run layouts of [`crate::count::CountLayout`]
/// (`count/run8.wgsl`, `run1.wgsl` or `col8.wgsl` prepended to `count/runs.wgsl` and `$piece`s):
/// `$rows` runs of 8 pixels of a row per invocation (CPU adapters), `$px` one pixel per
/// invocation, `$cols` runs of 8 pixels down a column.
macro_rules! run_kernels {
    ($rows:ident, $px:ident, $cols:ident, $name:literal, [$($piece:literal),+], $bindings:expr) => {
        pub const $rows: Kernel = Kernel {
            name: $name,
            source: wgsl!("shared/rng.wgsl", "count/run8.wgsl", "count/runs.wgsl", $($piece),+),
            bindings: $bindings,
            workgroup_size: 256,
        };
        pub const $px: Kernel = Kernel {
            name: concat!($name, "_px"),
            source: wgsl!("shared/rng.wgsl", "count/run1.wgsl", "count/runs.wgsl", $($piece),+),
            bindings: $bindings,
            workgroup_size: 256,
        };
        pub const $cols: Kernel = Kernel {
            name: concat!($name, "_col8"),
            source: wgsl!("shared/rng.wgsl", "count/col8.wgsl", "count/runs.wgsl", $($piece),+),
            bindings: $bindings,
            workgroup_size: 256,
        };
    };
}

run_kernels!(
    COUNT_SUM3,
    COUNT_SUM3_PX,
    COUNT_SUM3_COL8,
    "count/sum3",
    ["count/sum3.wgsl"],
    &[uniform("params", "Sum3Params"), read("q"), rw("s")]
);

/// The first pass of finding (bindings: params, q, s, pre_counter, pre, marks).
const FIND_BINDINGS: &[Binding] =
    &[uniform("params", "FindParams"), read("q"), read("s"), rw("pre_counter"), rw("pre"), rw("marks")];

run_kernels!(
    COUNT_FIND,
    COUNT_FIND_PX,
    COUNT_FIND_COL8,
    "count/find",
    ["count/find_common.wgsl", "count/find_list.wgsl", "count/find.wgsl"],
    FIND_BINDINGS
);

/// `count/find_tile` reading its raw frames through `$adu` (`count/adu_f32.wgsl` or
/// `count/adu_u16.wgsl`).
macro_rules! find_tile_kernel {
    ($(#[$doc:meta])* $name:ident, $label:literal, $adu:literal) => {
        $(#[$doc])*
        pub const $name: Kernel = Kernel {
            name: $label,
            source: wgsl!(
                "shared/rng.wgsl",
                $adu,
                "count/calibrate_common.wgsl",
                "count/find_common.wgsl",
                "count/find_list.wgsl",
                "count/find_tile.wgsl"
            ),
            bindings: FIND_TILE_BINDINGS,
            workgroup_size: 256,
        };
    };
}

find_tile_kernel!(
    /// `count/calibrate`, `count/sum3` and the first pass of `count/find` in one kernel, on tiles of
    /// 32 x 16 pixels in workgroup memory, reading f32 frames (bindings: find params, adu, dark,
    /// gain map, q, pre_counter, pre, marks, calibrate params).
    COUNT_FIND_TILE,
    "count/find_tile",
    "count/adu_f32.wgsl"
);
find_tile_kernel!(
    /// `count/find_tile` reading u16 frames packed two per u32 word.
    COUNT_FIND_TILE_U16,
    "count/find_tile_u16",
    "count/adu_u16.wgsl"
);

const FIND_TILE_BINDINGS: &[Binding] = &[
    uniform("params", "FindParams"),
    read("adu"),
    read("dark"),
    read("gain_map"),
    rw("q"),
    rw("pre_counter"),
    rw("pre"),
    rw("marks"),
    uniform("cparams", "CalibrateParams"),
];

/// The second pass of finding: suppression over the candidates `count/find` listed, and every
/// classical localization of the centres it keeps (bindings: find params, q, marks,
/// pre_counter, pre, counter, cands, localize params, out).
pub const COUNT_SUPPRESS: Kernel = Kernel {
    name: "count/suppress",
    source: wgsl!("shared/rng.wgsl", "count/find_common.wgsl", "count/localize_common.wgsl", "count/suppress.wgsl"),
    bindings: &[
        uniform("params", "FindParams"),
        read("q"),
        read("marks"),
        read("pre_counter"),
        read("pre"),
        rw("counter"),
        rw("cands"),
        uniform("lparams", "LocalizeParams"),
        rw("out"),
    ],
    workgroup_size: 256,
};

pub const COUNT_ARGS: Kernel = Kernel {
    name: "count/args",
    source: wgsl!("count/args.wgsl"),
    bindings: &[uniform("params", "ArgsParams"), read("counter"), rw("args")],
    workgroup_size: 1,
};

pub const COUNT_LOCALIZE: Kernel = Kernel {
    name: "count/localize",
    source: wgsl!("shared/rng.wgsl", "count/localize_common.wgsl", "count/localize.wgsl"),
    bindings: &[uniform("lparams", "LocalizeParams"), read("q"), read("counter"), read("cands"), rw("out")],
    workgroup_size: 256,
};

pub const NET_SOFTMAX_XENT: Kernel = Kernel {
    name: "net/softmax_xent",
    source: wgsl!("shared/rng.wgsl", "net/softmax_xent.wgsl"),
    bindings: &[
        uniform("params", "SoftmaxXentParams"),
        read("logits"),
        read("labels"),
        rw("loss"),
        rw("correct"),
        rw("dlogits"),
    ],
    workgroup_size: 256,
};

pub const NET_MSE: Kernel = Kernel {
    name: "net/mse",
    source: wgsl!("shared/rng.wgsl", "net/mse.wgsl"),
    bindings: &[uniform("params", "MseParams"), read("pred"), read("target_"), rw("loss"), rw("dpred")],
    workgroup_size: 256,
};

pub const NET_ADAM: Kernel = Kernel {
    name: "net/adam",
    source: wgsl!("shared/rng.wgsl", "net/adam.wgsl"),
    bindings: &[uniform("params", "AdamParams"), rw("param"), read("grad"), rw("m"), rw("v"), rw("vmax")],
    workgroup_size: 256,
};

pub const NET_MAKE_BATCH: Kernel = Kernel {
    name: "net/make_batch",
    source: wgsl!("shared/rng.wgsl", "net/make_batch.wgsl"),
    bindings: &[
        uniform("params", "MakeBatchParams"),
        read("offsets"),
        read("dxdy"),
        read("charge"),
        read("incidence"),
        rw("x"),
        rw("labels"),
        rw("target_"),
    ],
    workgroup_size: 256,
};

/// The weights of `conv2d_w_uniform.wgsl`, a uniform array rather than a struct.
const CONV2D_WTS_UNIFORM: Binding = uniform("wts", "array<vec4<f32>, 4096>");

// conv2d_fwd and conv2d_bwd_input read their weights from a uniform buffer (conv2d_w_uniform.wgsl)
// or, the `_wstorage` variants, from a storage buffer (conv2d_w_storage.wgsl); see src/net/conv2d.rs.
act_kernels!(
    NET_CONV2D_FWD,
    NET_CONV2D_FWD_F16,
    "net/conv2d_fwd",
    ["shared/rng.wgsl", "net/conv2d_common.wgsl", "net/conv2d_w_uniform.wgsl", "net/conv2d_fwd.wgsl"],
    &[uniform("params", "Conv2dParams"), read("x"), CONV2D_WTS_UNIFORM, rw("y")],
    64
);

act_kernels!(
    NET_CONV2D_FWD_WSTORAGE,
    NET_CONV2D_FWD_WSTORAGE_F16,
    "net/conv2d_fwd_wstorage",
    ["shared/rng.wgsl", "net/conv2d_common.wgsl", "net/conv2d_w_storage.wgsl", "net/conv2d_fwd.wgsl"],
    &[uniform("params", "Conv2dParams"), read("x"), read("wts"), rw("y")],
    64
);

pub const NET_CONV2D_BWD_INPUT: Kernel = Kernel {
    name: "net/conv2d_bwd_input",
    source: wgsl!(
        "shared/rng.wgsl",
        "net/conv2d_common.wgsl",
        "net/conv2d_w_uniform.wgsl",
        "net/conv2d_ib16.wgsl",
        "net/conv2d_bwd_input.wgsl"
    ),
    bindings: &[uniform("params", "Conv2dParams"), read("dy"), CONV2D_WTS_UNIFORM, rw("dx")],
    workgroup_size: 64,
};

pub const NET_CONV2D_BWD_INPUT_IB4: Kernel = Kernel {
    name: "net/conv2d_bwd_input_ib4",
    source: wgsl!(
        "shared/rng.wgsl",
        "net/conv2d_common.wgsl",
        "net/conv2d_w_uniform.wgsl",
        "net/conv2d_ib4.wgsl",
        "net/conv2d_bwd_input.wgsl"
    ),
    bindings: &[uniform("params", "Conv2dParams"), read("dy"), CONV2D_WTS_UNIFORM, rw("dx")],
    workgroup_size: 64,
};

pub const NET_CONV2D_BWD_INPUT_WSTORAGE: Kernel = Kernel {
    name: "net/conv2d_bwd_input_wstorage",
    source: wgsl!(
        "shared/rng.wgsl",
        "net/conv2d_common.wgsl",
        "net/conv2d_w_storage.wgsl",
        "net/conv2d_ib16.wgsl",
        "net/conv2d_bwd_input.wgsl"
    ),
    bindings: &[uniform("params", "Conv2dParams"), read("dy"), read("wts"), rw("dx")],
    workgroup_size: 64,
};

pub const NET_CONV2D_BWD_WEIGHT: Kernel = Kernel {
    name: "net/conv2d_bwd_weight",
    source: wgsl!("shared/rng.wgsl", "net/conv2d_common.wgsl", "net/conv2d_bwd_weight.wgsl"),
    bindings: &[uniform("params", "Conv2dParams"), read("x"), read("dy"), rw("partials")],
    workgroup_size: 64,
};

pub const NET_REDUCE_CHUNKS: Kernel = Kernel {
    name: "net/reduce_chunks",
    source: wgsl!("shared/rng.wgsl", "net/reduce_chunks.wgsl"),
    bindings: &[uniform("params", "ReduceChunksParams"), read("partials"), rw("out_a"), rw("out_b")],
    workgroup_size: 256,
};

act_kernels!(
    NET_LINEAR_FWD,
    NET_LINEAR_FWD_F16,
    "net/linear_fwd",
    ["shared/rng.wgsl", "net/linear_fwd.wgsl"],
    &[uniform("params", "LinearParams"), read("x"), read("w"), read("b"), rw("y")],
    256
);

pub const NET_LINEAR_BWD_INPUT: Kernel = Kernel {
    name: "net/linear_bwd_input",
    source: wgsl!("shared/rng.wgsl", "net/linear_bwd_input.wgsl"),
    bindings: &[uniform("params", "LinearParams"), read("w"), read("dy"), rw("dx")],
    workgroup_size: 256,
};

pub const NET_LINEAR_BWD_WEIGHT: Kernel = Kernel {
    name: "net/linear_bwd_weight",
    source: wgsl!("shared/rng.wgsl", "net/linear_bwd_weight.wgsl"),
    bindings: &[uniform("params", "LinearParams"), read("x"), read("dy"), rw("partials")],
    workgroup_size: 256,
};

act_kernels!(
    NET_RELU_FWD,
    NET_RELU_FWD_F16,
    "net/relu_fwd",
    ["shared/rng.wgsl", "net/relu_fwd.wgsl"],
    &[uniform("params", "ReluParams"), read("x"), rw("y")],
    256
);

pub const NET_RELU_BWD: Kernel = Kernel {
    name: "net/relu_bwd",
    source: wgsl!("shared/rng.wgsl", "net/relu_bwd.wgsl"),
    bindings: &[uniform("params", "ReluParams"), read("y"), read("dy"), rw("dx")],
    workgroup_size: 256,
};

act_kernels!(
    NET_MAXPOOL2D_FWD,
    NET_MAXPOOL2D_FWD_F16,
    "net/maxpool2d_fwd",
    ["shared/rng.wgsl", "net/maxpool2d_fwd.wgsl"],
    &[uniform("params", "MaxPool2dParams"), read("x"), rw("y"), rw("idx")],
    256
);

pub const NET_MAXPOOL2D_BWD: Kernel = Kernel {
    name: "net/maxpool2d_bwd",
    source: wgsl!("shared/rng.wgsl", "net/maxpool2d_bwd.wgsl"),
    bindings: &[uniform("params", "MaxPool2dParams"), read("idx"), read("dy"), rw("dx")],
    workgroup_size: 256,
};

pub const NET_BATCHNORM2D_STATS_PARTIAL: Kernel = Kernel {
    name: "net/batchnorm2d_stats_partial",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_stats_partial.wgsl"),
    bindings: &[uniform("params", "BatchNorm2dParams"), read("x"), rw("scratch")],
    workgroup_size: 256,
};

pub const NET_BATCHNORM2D_STATS: Kernel = Kernel {
    name: "net/batchnorm2d_stats",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_stats.wgsl"),
    bindings: &[uniform("params", "BatchNorm2dParams"), read("scratch"), rw("mean"), rw("variance")],
    workgroup_size: 256,
};

act_kernels!(
    NET_BATCHNORM2D_FWD,
    NET_BATCHNORM2D_FWD_F16,
    "net/batchnorm2d_fwd",
    ["shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_fwd.wgsl"],
    &[
        uniform("params", "BatchNorm2dParams"),
        read("x"),
        read("mean"),
        read("variance"),
        read("gamma"),
        read("beta"),
        rw("y")
    ],
    256
);

pub const NET_BATCHNORM2D_RUNNING: Kernel = Kernel {
    name: "net/batchnorm2d_running",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_running.wgsl"),
    bindings: &[
        uniform("params", "BatchNorm2dParams"),
        read("mean"),
        read("variance"),
        rw("running_mean"),
        rw("running_var"),
    ],
    workgroup_size: 256,
};

pub const NET_BATCHNORM2D_BWD_REDUCE_PARTIAL: Kernel = Kernel {
    name: "net/batchnorm2d_bwd_reduce_partial",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_bwd_reduce_partial.wgsl"),
    bindings: &[
        uniform("params", "BatchNorm2dParams"),
        read("x"),
        read("mean"),
        read("variance"),
        read("dy"),
        rw("scratch"),
    ],
    workgroup_size: 256,
};

pub const NET_BATCHNORM2D_BWD_REDUCE: Kernel = Kernel {
    name: "net/batchnorm2d_bwd_reduce",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_bwd_reduce.wgsl"),
    bindings: &[uniform("params", "BatchNorm2dParams"), read("scratch"), rw("dgamma"), rw("dbeta")],
    workgroup_size: 256,
};

pub const NET_BATCHNORM2D_BWD_INPUT: Kernel = Kernel {
    name: "net/batchnorm2d_bwd_input",
    source: wgsl!("shared/rng.wgsl", "net/batchnorm2d_common.wgsl", "net/batchnorm2d_bwd_input.wgsl"),
    bindings: &[
        uniform("params", "BatchNorm2dParams"),
        read("x"),
        read("mean"),
        read("variance"),
        read("gamma"),
        read("dgamma"),
        read("dbeta"),
        read("dy"),
        rw("dx"),
    ],
    workgroup_size: 256,
};

/// Dropout forward and backward (the same mask applied to x or to dy).
pub const NET_DROPOUT: Kernel = Kernel {
    name: "net/dropout",
    source: wgsl!("shared/rng.wgsl", "net/dropout.wgsl"),
    bindings: &[uniform("params", "DropoutParams"), read("inp"), rw("out")],
    workgroup_size: 256,
};

pub const NET_GRID_LABEL: Kernel = Kernel {
    name: "net/grid_label",
    source: wgsl!("shared/rng.wgsl", "net/grid_label.wgsl"),
    bindings: &[uniform("params", "GridLabelParams"), read("points"), rw("labels")],
    workgroup_size: 256,
};

pub const NET_CROP: Kernel = Kernel {
    name: "net/crop",
    source: wgsl!("shared/rng.wgsl", "net/crop.wgsl", "net/crop_common.wgsl"),
    bindings: &[uniform("params", "CropParams"), read("q"), read("cands"), rw("crops")],
    workgroup_size: 256,
};

pub const NET_DECODE_GRID: Kernel = Kernel {
    name: "net/decode_grid",
    source: wgsl!("shared/rng.wgsl", "net/decode_grid.wgsl", "net/decode_common.wgsl"),
    bindings: &[uniform("params", "DecodeGridParams"), read("logits"), rw("out")],
    workgroup_size: 64,
};

/// `net/mlp_count` in its four forms: f32 or f16 weights (unpacked to f32 in the kernel: no
/// `SHADER_F16`), each without and with subgroup operations (the adapter's `SUBGROUP`).
macro_rules! mlp_count_kernel {
    ($name:literal, $weights:literal, $dense:literal) => {
        Kernel {
            name: $name,
            source: wgsl!(
                "shared/rng.wgsl",
                $weights,
                "net/mlp_count.wgsl",
                $dense,
                "net/crop_common.wgsl",
                "net/decode_common.wgsl"
            ),
            bindings: &[
                uniform("params", "MlpCountParams"),
                read("q"),
                read("cands"),
                read("weights"),
                rw("out"),
                read("found"),
            ],
            workgroup_size: 64,
        }
    };
}

pub const NET_MLP_COUNT: Kernel = mlp_count_kernel!("net/mlp_count", "net/mlp_w_f32.wgsl", "net/mlp_dense.wgsl");
pub const NET_MLP_COUNT_WF16: Kernel =
    mlp_count_kernel!("net/mlp_count_wf16", "net/mlp_w_f16.wgsl", "net/mlp_dense.wgsl");
pub const NET_MLP_COUNT_SG: Kernel =
    mlp_count_kernel!("net/mlp_count_sg", "net/mlp_w_f32.wgsl", "net/mlp_dense_sg.wgsl");
pub const NET_MLP_COUNT_WF16_SG: Kernel =
    mlp_count_kernel!("net/mlp_count_wf16_sg", "net/mlp_w_f16.wgsl", "net/mlp_dense_sg.wgsl");

pub const NET_MAKE_PAIRS: Kernel = Kernel {
    name: "net/make_pairs",
    source: wgsl!("shared/rng.wgsl", "net/make_pairs.wgsl"),
    bindings: &[
        uniform("params", "MakePairsParams"),
        read("offsets"),
        read("dxdy"),
        read("charge"),
        read("incidence"),
        rw("x"),
        rw("class_"),
        rw("points"),
        rw("sep"),
    ],
    workgroup_size: 256,
};

pub const NET_PAIR_MSE: Kernel = Kernel {
    name: "net/pair_mse",
    source: wgsl!("shared/rng.wgsl", "net/pair_mse.wgsl"),
    bindings: &[uniform("params", "PairMseParams"), read("pred"), read("target_"), rw("loss"), rw("dpred")],
    workgroup_size: 256,
};

pub const EVENTS_COLLECT: Kernel = Kernel {
    name: "events/collect",
    source: wgsl!("events/collect.wgsl"),
    bindings: &[uniform("params", "CollectParams"), read("offsets"), read("clouds"), rw("windows")],
    workgroup_size: 64,
};

/// Every kernel, for validation and for `emsim devices --check`.
pub const ALL: &[Kernel] = &[
    EVENTS_COLLECT,
    FRAMES_PLACE,
    FRAMES_ACCUMULATE,
    FRAMES_NOISE,
    FRAMES_NOISE_U16,
    COUNT_CALIBRATE,
    COUNT_CALIBRATE_U16,
    COUNT_SUM3,
    COUNT_SUM3_PX,
    COUNT_SUM3_COL8,
    COUNT_FIND,
    COUNT_FIND_PX,
    COUNT_FIND_COL8,
    COUNT_FIND_TILE,
    COUNT_FIND_TILE_U16,
    COUNT_SUPPRESS,
    COUNT_ARGS,
    COUNT_LOCALIZE,
    NET_SOFTMAX_XENT,
    NET_MSE,
    NET_ADAM,
    NET_MAKE_BATCH,
    NET_CONV2D_FWD,
    NET_CONV2D_FWD_F16[0],
    NET_CONV2D_FWD_F16[1],
    NET_CONV2D_FWD_F16[2],
    NET_CONV2D_FWD_WSTORAGE,
    NET_CONV2D_FWD_WSTORAGE_F16[0],
    NET_CONV2D_FWD_WSTORAGE_F16[1],
    NET_CONV2D_FWD_WSTORAGE_F16[2],
    NET_CONV2D_BWD_INPUT,
    NET_CONV2D_BWD_INPUT_IB4,
    NET_CONV2D_BWD_INPUT_WSTORAGE,
    NET_CONV2D_BWD_WEIGHT,
    NET_REDUCE_CHUNKS,
    NET_LINEAR_FWD,
    NET_LINEAR_FWD_F16[0],
    NET_LINEAR_FWD_F16[1],
    NET_LINEAR_FWD_F16[2],
    NET_LINEAR_BWD_INPUT,
    NET_LINEAR_BWD_WEIGHT,
    NET_RELU_FWD,
    NET_RELU_FWD_F16[0],
    NET_RELU_FWD_F16[1],
    NET_RELU_FWD_F16[2],
    NET_RELU_BWD,
    NET_MAXPOOL2D_FWD,
    NET_MAXPOOL2D_FWD_F16[0],
    NET_MAXPOOL2D_FWD_F16[1],
    NET_MAXPOOL2D_FWD_F16[2],
    NET_MAXPOOL2D_BWD,
    NET_BATCHNORM2D_STATS_PARTIAL,
    NET_BATCHNORM2D_STATS,
    NET_BATCHNORM2D_FWD,
    NET_BATCHNORM2D_FWD_F16[0],
    NET_BATCHNORM2D_FWD_F16[1],
    NET_BATCHNORM2D_FWD_F16[2],
    NET_BATCHNORM2D_RUNNING,
    NET_BATCHNORM2D_BWD_REDUCE_PARTIAL,
    NET_BATCHNORM2D_BWD_REDUCE,
    NET_BATCHNORM2D_BWD_INPUT,
    NET_DROPOUT,
    NET_CROP,
    NET_DECODE_GRID,
    NET_MLP_COUNT,
    NET_MLP_COUNT_WF16,
    NET_MLP_COUNT_SG,
    NET_MLP_COUNT_WF16_SG,
    NET_GRID_LABEL,
    NET_MAKE_PAIRS,
    NET_PAIR_MSE,
];
