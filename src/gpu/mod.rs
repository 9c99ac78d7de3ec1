//! The GPU harness: adapter choice, device, pipeline cache, buffers, dispatch and readback.
//!
//! Stage code names a kernel from [`crate::shaders`] and its buffers; it never builds bind groups
//! or pipelines by hand.

mod buffers;
pub mod dispatch;
pub mod timing;

pub use buffers::Readback;
pub use dispatch::{WORKGROUPS_PER_DIM, workgroup_grid};

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::shaders::{Access, Kernel};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found for backend '{backend}'. On Linux without a GPU install Mesa's Vulkan \
         driver (apt-get install mesa-vulkan-drivers libvulkan1; `bash .ci/run` does this), or run \
         with --device cpu"
    )]
    NoAdapter { backend: String },
    #[error("unknown backend '{0}': expected one of auto, vulkan, metal, dx12, gl")]
    UnknownBackend(String),
    #[error("backend '{wanted}' is not available on this machine; available adapters: {available}")]
    BackendUnavailable { wanted: String, available: String },
    #[error("could not create the GPU device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    #[error("GPU buffer mapping failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),
    #[error("GPU validation error in {context}: {message}")]
    Validation { context: String, message: String },
    #[error("GPU poll failed: {0}")]
    Poll(#[from] wgpu::PollError),
    #[error("a {what} of {bytes} bytes exceeds this adapter's limit of {limit} bytes")]
    TooLarge { what: String, bytes: u64, limit: u64 },
    #[error("EMSIM_SHADER_CHECKS: '{0}': expected full or trusted")]
    ShaderChecks(String),
}

/// Submissions in flight, at most `max` of them: streaming work (the resident benchmark stages)
/// submits batch after batch and waits only for the oldest once `max` are queued, so the GPU
/// stays busy while the host's per-batch resources (uniforms, bind groups) are reclaimed as it
/// goes instead of piling up until the end.
pub struct InFlight {
    queue: std::collections::VecDeque<wgpu::SubmissionIndex>,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self { queue: std::collections::VecDeque::new(), max: max.max(1) }
    }

    /// Submits `enc`; then, with more than `max` submissions queued, waits for the oldest.
    pub fn submit(&mut self, ctx: &GpuContext, enc: wgpu::CommandEncoder) -> Result<(), GpuError> {
        self.queue.push_back(ctx.queue.submit([enc.finish()]));
        if self.queue.len() > self.max {
            let oldest = self.queue.pop_front();
            ctx.device.poll(wgpu::PollType::Wait { submission_index: oldest, timeout: None })?;
        }
        Ok(())
    }

    /// Waits for everything submitted.
    pub fn finish(self, ctx: &GpuContext) -> Result<(), GpuError> {
        ctx.device.poll(wgpu::PollType::wait_indefinitely())?;
        Ok(())
    }
}

/// How much of wgpu's run-time instrumentation our kernels get (`EMSIM_SHADER_CHECKS`).
///
/// `Full` is wgpu's default for untrusted shaders: every loop carries an extra iteration
/// counter (`force_loop_bounding`), every integer `/` and `%` a guard against a zero divisor
/// (`int_div_checks`), and workgroup memory is zero-filled before each workgroup starts.
/// `Trusted` (the default) drops those three and keeps the bounds checks, so a kernel still
/// cannot touch memory outside its bindings. That is sound for our kernels because:
/// - every loop is counted, over bounds from uniforms or constants (`place.wgsl`'s binary
///   search halves a non-empty interval);
/// - divisors are frame sizes, batch and layer shapes that the host validates as positive,
///   constants, or guarded in the kernel (`count/localize`'s `ratio` divides by a positive sum);
/// - every kernel that declares workgroup memory writes each element before it reads it
///   (a barrier between), so no read sees the fill. `tests/count.rs` checks that the counter's
///   results are identical under both settings; every kernel's twin test runs with the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShaderChecks {
    Full,
    Trusted,
}

impl ShaderChecks {
    /// `EMSIM_SHADER_CHECKS=full|trusted`; unset: trusted.
    pub fn from_env() -> Result<Self, GpuError> {
        match std::env::var("EMSIM_SHADER_CHECKS") {
            Err(_) => Ok(Self::Trusted),
            Ok(v) => Self::parse(&v).ok_or(GpuError::ShaderChecks(v)),
        }
    }

    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "full" => Some(Self::Full),
            "trusted" => Some(Self::Trusted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Trusted => "trusted",
        }
    }
}

/// `--backend`: which wgpu backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Vulkan, Metal or DX12 (whichever the platform has); GL only if none of those exists.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    /// The names `--backend` takes (and `gles`, `opengl` for `gl`).
    pub const NAMES: [&'static str; 5] = ["auto", "vulkan", "metal", "dx12", "gl"];
}

impl std::str::FromStr for BackendChoice {
    type Err = GpuError;
    fn from_str(s: &str) -> Result<Self, GpuError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "vulkan" => Self::Vulkan,
            "metal" => Self::Metal,
            "dx12" => Self::Dx12,
            "gl" | "gles" | "opengl" => Self::Gl,
            _ => return Err(GpuError::UnknownBackend(s.to_string())),
        })
    }
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            Self::Auto => wgpu::Backends::PRIMARY,
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Vulkan => "vulkan",
            Self::Metal => "metal",
            Self::Dx12 => "dx12",
            Self::Gl => "gl",
        }
    }
}

/// What `emsim devices` and every `--json` summary report about an adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size_bytes: u64,
    pub max_buffer_size_bytes: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    pub subgroup: bool,
    pub shader_float32_atomic: bool,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        Self {
            name: info.name,
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_size_bytes: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            shader_float32_atomic: features.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
        }
    }

    /// True for the GL backend (which lavapipe-less Linux silently falls back to).
    pub fn is_gl(&self) -> bool {
        self.backend == "gl"
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // WGPU_BACKEND in the environment still wins, as in wgpu's own tools.
    if wgpu::Backends::from_env().is_none() {
        desc.backends = backends;
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see on any backend.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let _guard = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
    list_adapters_locked()
}

fn list_adapters_locked() -> Vec<AdapterSummary> {
    let inst = instance(wgpu::Backends::all());
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all())).iter().map(AdapterSummary::of).collect()
}

/// Creating and destroying Vulkan instances and devices is serialized process-wide. With several
/// contexts alive in one process (the test harness runs tests on parallel threads, each with its
/// own context), NVIDIA's driver 580 under the Khronos loader deadlocked when two threads
/// destroyed their instances and devices at once (`vkDestroyInstance` waiting on the loader's
/// lock while another thread sat in `vkDestroyDevice` / `Queue::wait_for_idle`; seen on an H100
/// and an H200, backtraces in `docs/benchmarks.md`).
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Features we use when the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP);

struct CachedPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A device with its queue and compiled kernels.
pub struct GpuContext {
    /// Dropped by hand in `Drop`, under the process-wide lifecycle lock (`LIFECYCLE`).
    pub device: std::mem::ManuallyDrop<wgpu::Device>,
    pub queue: std::mem::ManuallyDrop<wgpu::Queue>,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pipelines: Mutex<HashMap<&'static str, std::sync::Arc<CachedPipeline>>>,
    /// Test hooks: pretend the adapter has smaller limits, so that chunking and 2-D dispatch
    /// grids are exercised with small inputs.
    binding_limit_override: Option<u64>,
    workgroups_per_dim_override: Option<u32>,
    profiler: Mutex<timing::Profiler>,
    /// Which run-time checks the kernels are compiled with ([`ShaderChecks`]).
    shader_checks: ShaderChecks,
    /// Idle mappable buffers that readbacks reuse (`buffers.rs`): creating a large host-visible
    /// buffer per readback costs more than the copy on a real GPU.
    staging: Mutex<Vec<wgpu::Buffer>>,
    /// Idle host-writable buffers that large uploads reuse (`buffers.rs`).
    upload_staging: Mutex<Vec<wgpu::Buffer>>,
}

impl GpuContext {
    /// Picks an adapter for `choice` (honouring `WGPU_ADAPTER_NAME`, `WGPU_BACKEND`,
    /// `WGPU_POWER_PREF`) and creates a device with all of the adapter's limits.
    pub fn new(choice: BackendChoice) -> Result<Self, GpuError> {
        let _guard = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        let mut adapter = Self::find_adapter(choice.backends());
        if adapter.is_none() && choice == BackendChoice::Auto {
            adapter = Self::find_adapter(wgpu::Backends::GL);
        }
        let adapter = match adapter {
            Some(a) => a,
            None if choice == BackendChoice::Auto => {
                return Err(GpuError::NoAdapter { backend: choice.name().to_string() });
            }
            None => {
                let available = list_adapters_locked();
                if available.is_empty() {
                    return Err(GpuError::NoAdapter { backend: choice.name().to_string() });
                }
                let list: Vec<String> = available.iter().map(|a| format!("{} ({})", a.name, a.backend)).collect();
                return Err(GpuError::BackendUnavailable {
                    wanted: choice.name().to_string(),
                    available: list.join(", "),
                });
            }
        };
        Self::from_adapter(adapter)
    }

    /// A context on a hardware GPU for `choice` (never GL's fallback), or the reason there is none
    /// (no adapter, or only a software rasterizer: llvmpipe/lavapipe, SwiftShader, WARP): what
    /// `--device auto` runs on.
    pub fn new_hardware(choice: BackendChoice) -> Result<std::result::Result<Self, String>, GpuError> {
        let _guard = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        let backends = if choice == BackendChoice::Auto { wgpu::Backends::PRIMARY } else { choice.backends() };
        match Self::find_adapter(backends) {
            None => Ok(Err(format!("no {} GPU adapter", choice.name()))),
            Some(a) if a.get_info().device_type == wgpu::DeviceType::Cpu => Ok(Err(format!(
                "the only adapter is a software rasterizer ({}); --device gpu runs on it",
                a.get_info().name
            ))),
            Some(a) => Self::from_adapter(a).map(Ok),
        }
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Self, GpuError> {
        let shader_checks = ShaderChecks::from_env()?;
        let summary = AdapterSummary::of(&adapter);
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("emsim"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))?;
        Ok(Self {
            device: std::mem::ManuallyDrop::new(device),
            queue: std::mem::ManuallyDrop::new(queue),
            adapter: summary,
            limits,
            features,
            pipelines: Mutex::new(HashMap::new()),
            binding_limit_override: None,
            workgroups_per_dim_override: None,
            profiler: Mutex::new(timing::Profiler::default()),
            shader_checks,
            staging: Mutex::new(Vec::new()),
            upload_staging: Mutex::new(Vec::new()),
        })
    }

    fn find_adapter(backends: wgpu::Backends) -> Option<wgpu::Adapter> {
        let inst = instance(backends);
        pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(&inst, None)).ok()
    }

    /// Largest buffer that one storage binding can cover.
    pub fn max_binding_bytes(&self) -> u64 {
        let adapter = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        self.binding_limit_override.map_or(adapter, |o| o.min(adapter))
    }

    /// The run-time checks the kernels are compiled with.
    pub fn shader_checks(&self) -> ShaderChecks {
        self.shader_checks
    }

    /// Compiles kernels from now on with `checks` (pipelines already built are dropped).
    pub fn set_shader_checks(&mut self, checks: ShaderChecks) {
        self.shader_checks = checks;
        self.pipelines.lock().unwrap().clear();
    }

    /// Test hook: behave as if one storage binding could hold at most `bytes`.
    pub fn set_binding_limit(&mut self, bytes: u64) {
        self.binding_limit_override = Some(bytes);
    }

    /// Test hook: behave as if a dispatch dimension allowed at most `n` workgroups.
    pub fn set_workgroups_per_dim(&mut self, n: u32) {
        self.workgroups_per_dim_override = Some(n);
    }

    /// Workgroups allowed per dispatch dimension (the adapter's limit, or the test override).
    pub fn workgroups_per_dim(&self) -> u32 {
        let adapter = self.limits.max_compute_workgroups_per_dimension.min(WORKGROUPS_PER_DIM);
        self.workgroups_per_dim_override.map_or(adapter, |o| o.min(adapter))
    }

    /// Whether kernels may use f16 (`Kernel::needs_f16`).
    pub fn has_shader_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Whether kernels may use subgroup operations (`Kernel::needs_subgroups`).
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    }

    fn pipeline(&self, kernel: &Kernel) -> Result<std::sync::Arc<CachedPipeline>, GpuError> {
        if let Some(p) = self.pipelines.lock().unwrap().get(kernel.name) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        };
        let module = match self.shader_checks {
            ShaderChecks::Full => self.device.create_shader_module(desc),
            ShaderChecks::Trusted => {
                let mut checks = wgpu::ShaderRuntimeChecks::checked();
                checks.force_loop_bounding = false;
                checks.int_div_checks = false;
                // SAFETY: bounds checks stay on; the loops, divisors and workgroup memory of
                // our kernels meet the conditions listed at `ShaderChecks`.
                unsafe { self.device.create_shader_module_trusted(desc, checks) }
            }
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform { .. } => wgpu::BufferBindingType::Uniform,
                        Access::StorageRead => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::StorageReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(kernel.name), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: self.shader_checks == ShaderChecks::Full,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation { context: kernel.name.to_string(), message: err.to_string() });
        }
        let cached = std::sync::Arc::new(CachedPipeline { pipeline, layout });
        self.pipelines.lock().unwrap().insert(kernel.name, cached.clone());
        Ok(cached)
    }

    /// Compiles every kernel now (so that timings exclude compilation).
    pub fn warm_up(&self, kernels: &[Kernel]) -> Result<(), GpuError> {
        for k in kernels {
            self.pipeline(k)?;
        }
        Ok(())
    }

    /// Records one dispatch of `kernel` over `n_threads` invocations, with `buffers` bound in
    /// `@binding` order, each named by the WGSL variable it binds (as in the kernel's registry
    /// entry, [`crate::shaders`]). Empty dispatches are skipped.
    ///
    /// # Panics
    /// When the count or a name of `buffers` differs from the kernel's bindings: a programming
    /// error, reported with the kernel, the position, the name expected and the name given.
    pub fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        buffers: &[(&str, &wgpu::Buffer)],
        n_threads: u64,
    ) -> Result<(), GpuError> {
        if n_threads == 0 {
            return Ok(());
        }
        let per_dim = self.workgroups_per_dim();
        let (x, y) = workgroup_grid(n_threads, kernel.workgroup_size, per_dim).ok_or_else(|| GpuError::TooLarge {
            what: format!("dispatch of {} ({n_threads} invocations)", kernel.name),
            bytes: n_threads,
            limit: per_dim as u64 * per_dim as u64 * kernel.workgroup_size as u64,
        })?;
        let (pipeline, bind_group) = self.bind(kernel, buffers)?;
        let qs = self.kernel_pass_queries();
        {
            let mut pass = encoder.begin_compute_pass(&pass_descriptor(kernel, qs.as_ref()));
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        if let Some(qs) = qs {
            self.kernel_pass_end(encoder, &qs, kernel.name);
        }
        Ok(())
    }

    /// Records an indirect dispatch: the workgroup counts (x, y, z as u32) are read from `args`
    /// (written by an earlier kernel), so the host need not read a count back in between.
    /// `buffers` are named and checked as for [`GpuContext::dispatch`].
    pub fn dispatch_indirect(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        buffers: &[(&str, &wgpu::Buffer)],
        args: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let (pipeline, bind_group) = self.bind(kernel, buffers)?;
        let qs = self.kernel_pass_queries();
        {
            let mut pass = encoder.begin_compute_pass(&pass_descriptor(kernel, qs.as_ref()));
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups_indirect(args, 0);
        }
        if let Some(qs) = qs {
            self.kernel_pass_end(encoder, &qs, kernel.name);
        }
        Ok(())
    }

    fn bind(
        &self,
        kernel: &Kernel,
        buffers: &[(&str, &wgpu::Buffer)],
    ) -> Result<(std::sync::Arc<CachedPipeline>, wgpu::BindGroup), GpuError> {
        let names: Vec<&str> = buffers.iter().map(|(name, _)| *name).collect();
        if let Err(e) = crate::shaders::check_binding_names(kernel, &names) {
            panic!("{e}");
        }
        let cached = self.pipeline(kernel)?;
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, (_, b))| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &cached.layout,
            entries: &entries,
        });
        Ok((cached, bind_group))
    }

    /// Submits `encoder` and waits for the GPU to finish.
    pub fn submit_and_wait(&self, mut encoder: wgpu::CommandEncoder) -> Result<(), GpuError> {
        let timer = self.timer_end(&mut encoder);
        self.queue.submit([encoder.finish()]);
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        if let Some(rb) = timer {
            self.timer_add(rb)?;
        }
        Ok(())
    }

    /// A command encoder (with a begin timestamp while the GPU timer runs, see [`timing`]).
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        self.timer_begin(&mut enc);
        enc
    }
}

/// A kernel's compute pass, with timestamps at its beginning and end into `qs` (per-kernel
/// timing, [`timing`]).
fn pass_descriptor<'a>(kernel: &'a Kernel, qs: Option<&'a wgpu::QuerySet>) -> wgpu::ComputePassDescriptor<'a> {
    wgpu::ComputePassDescriptor {
        label: Some(kernel.name),
        timestamp_writes: qs.map(|q| wgpu::ComputePassTimestampWrites {
            query_set: q,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }),
    }
}

impl Drop for GpuContext {
    /// Everything that holds the device goes first, then the queue and the device (and with its
    /// last reference the instance), all under the lifecycle lock.
    fn drop(&mut self) {
        let _guard = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        let unpoison = |e: std::sync::PoisonError<_>| e.into_inner();
        std::mem::take(&mut *self.pipelines.lock().unwrap_or_else(unpoison));
        std::mem::take(&mut *self.staging.lock().unwrap_or_else(|e| e.into_inner()));
        std::mem::take(&mut *self.upload_staging.lock().unwrap_or_else(|e| e.into_inner()));
        std::mem::take(&mut *self.profiler.lock().unwrap_or_else(|e| e.into_inner()));
        // SAFETY: dropped once, here; the fields are not used after this.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.queue);
            std::mem::ManuallyDrop::drop(&mut self.device);
        }
    }
}

/// Where the heavy work runs: `--device gpu` (a wgpu adapter) or `--device cpu` (the CPU twins).
pub enum Device {
    Gpu(Box<GpuContext>),
    Cpu,
}

impl Device {
    /// Starts the GPU timer (timestamp queries) on a GPU device; nothing on the CPU path.
    pub fn gpu_timer_start(&self) {
        if let Device::Gpu(c) = self {
            c.gpu_timer_start();
        }
    }

    /// GPU seconds since [`Device::gpu_timer_start`], where timestamp queries are supported.
    pub fn gpu_timer_stop(&self) -> Option<f64> {
        match self {
            Device::Gpu(c) => c.gpu_timer_stop(),
            Device::Cpu => None,
        }
    }

    /// The names `--device` takes.
    pub const NAMES: [&'static str; 3] = ["auto", "gpu", "cpu"];

    /// `--device auto|gpu|cpu` with `--backend`. `auto` is a hardware GPU when there is one, else
    /// the CPU twins ([`Device::auto`]).
    pub fn open(device: &str, backend: &str) -> crate::Result<Self> {
        match device {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu(Box::new(GpuContext::new(backend.parse()?)?))),
            "auto" => Ok(Self::auto(backend)?.0),
            other => Err(crate::Error::invalid("--device", format!("'{other}': expected auto, gpu or cpu"))),
        }
    }

    /// What `--device auto` picks, and why: a hardware GPU on `backend` (Vulkan, Metal or DX12
    /// for `auto`; GL only when asked for by name), else the CPU twins. A software rasterizer
    /// runs the kernels slower than the twins beside it, so it is used only with `--device gpu`.
    pub fn auto(backend: &str) -> crate::Result<(Self, String)> {
        let choice: BackendChoice = backend.parse()?;
        Ok(match GpuContext::new_hardware(choice)? {
            Ok(ctx) => {
                let why = format!("hardware GPU {} ({})", ctx.adapter.name, ctx.adapter.backend);
                (Device::Gpu(Box::new(ctx)), why)
            }
            Err(why) => (Device::Cpu, format!("CPU twins: {why}")),
        })
    }

    /// "gpu" or "cpu", as used for the `path` key of `--json` records.
    pub fn path_name(&self) -> &'static str {
        match self {
            Device::Gpu(_) => "gpu",
            Device::Cpu => "cpu",
        }
    }

    pub fn adapter(&self) -> Option<&AdapterSummary> {
        match self {
            Device::Gpu(ctx) => Some(&ctx.adapter),
            Device::Cpu => None,
        }
    }
}
