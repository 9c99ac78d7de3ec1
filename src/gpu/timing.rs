//! GPU time from timestamp queries. While a timer runs, every command encoder made by
//! [`GpuContext::encoder`] begins with a timestamp and [`GpuContext::submit_and_wait`] ends it with
//! another, resolves both and adds their difference (times the queue's timestamp period) to the
//! timer's total: the GPU time of all work submitted in between, without host overhead, queue
//! writes or idle time between submissions. Needs the adapter's `TIMESTAMP_QUERY` and
//! `TIMESTAMP_QUERY_INSIDE_ENCODERS` features ([`GpuContext::has_timestamps`]); without them the
//! timer reports `None` and callers fall back to wall-clock time.
//!
//! Per-kernel times (`bench --kernel-times`): while [`GpuContext::kernel_times_start`] is on, every
//! compute pass that [`GpuContext::dispatch`] records writes a timestamp at its beginning and end
//! (needs only `TIMESTAMP_QUERY`), resolved in the same encoder; [`GpuContext::kernel_times_stop`]
//! reads them all (after the work was submitted and waited for) and adds them up per kernel.

use std::collections::VecDeque;

use super::{GpuContext, GpuError};

/// The running timer's state (inside the context's mutex).
#[derive(Default)]
pub(crate) struct Profiler {
    on: bool,
    /// Query sets of encoders begun and not yet submitted, oldest first.
    pending: VecDeque<wgpu::QuerySet>,
    total_ns: f64,
    /// Per-kernel pass timestamps: on, and the passes recorded since the start (kernel name and
    /// the readback of its two resolved timestamps).
    kernels_on: bool,
    kernel_passes: Vec<(&'static str, super::buffers::Readback)>,
    /// Set by `bench --kernel-times`: its timed repeats also take per-kernel times.
    kernels_wanted: bool,
}

/// GPU time of one kernel over the passes recorded while per-kernel timing was on.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: &'static str,
    pub dispatches: u64,
    pub gpu_s: f64,
}

impl GpuContext {
    /// Starts (or restarts) the GPU timer; false when the adapter has no timestamp queries.
    pub fn gpu_timer_start(&self) -> bool {
        let ok = self.has_timestamps();
        let mut p = self.profiler.lock().unwrap();
        p.on = ok;
        p.pending.clear();
        p.total_ns = 0.0;
        ok
    }

    /// Stops the timer: the GPU seconds of the encoders submitted since the start, or `None`
    /// without timestamp support.
    pub fn gpu_timer_stop(&self) -> Option<f64> {
        let mut p = self.profiler.lock().unwrap();
        let was_on = p.on;
        let total = p.total_ns;
        p.on = false;
        p.pending.clear();
        p.total_ns = 0.0;
        was_on.then_some(total * 1e-9)
    }

    /// Asks the benchmarks that run on this context for per-kernel times (`bench --kernel-times`).
    pub fn set_kernel_times_wanted(&self, on: bool) {
        self.profiler.lock().unwrap().kernels_wanted = on;
    }

    pub fn kernel_times_wanted(&self) -> bool {
        self.profiler.lock().unwrap().kernels_wanted
    }

    /// Starts (or restarts) per-kernel timing; false when the adapter has no timestamp queries.
    pub fn kernel_times_start(&self) -> bool {
        let ok = self.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut p = self.profiler.lock().unwrap();
        p.kernels_on = ok;
        p.kernel_passes.clear();
        ok
    }

    /// Stops per-kernel timing and returns the GPU time of each kernel dispatched since the
    /// start (in order of first dispatch), or `None` when it was not on. Call it after the work
    /// was submitted and waited for; a pass whose encoder was never submitted reads as 0 s.
    pub fn kernel_times_stop(&self) -> Result<Option<Vec<KernelTime>>, GpuError> {
        let (on, passes) = {
            let mut p = self.profiler.lock().unwrap();
            let on = p.kernels_on;
            p.kernels_on = false;
            (on, std::mem::take(&mut p.kernel_passes))
        };
        if !on {
            return Ok(None);
        }
        let period = self.queue.get_timestamp_period() as f64;
        let mut out: Vec<KernelTime> = Vec::new();
        for (kernel, rb) in passes {
            let t: Vec<u64> = rb.read(self)?;
            let s = t[1].saturating_sub(t[0]) as f64 * period * 1e-9;
            match out.iter_mut().find(|k| k.kernel == kernel) {
                Some(k) => {
                    k.dispatches += 1;
                    k.gpu_s += s;
                }
                None => out.push(KernelTime { kernel, dispatches: 1, gpu_s: s }),
            }
        }
        Ok(Some(out))
    }

    /// Called by `dispatch` before it begins a pass: a query set for the pass's two timestamps
    /// while per-kernel timing is on.
    pub(crate) fn kernel_pass_queries(&self) -> Option<wgpu::QuerySet> {
        if !self.profiler.lock().unwrap().kernels_on {
            return None;
        }
        Some(self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel_times"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        }))
    }

    /// Called by `dispatch` after the pass: resolves its timestamps and keeps their readback.
    pub(crate) fn kernel_pass_end(&self, enc: &mut wgpu::CommandEncoder, qs: &wgpu::QuerySet, kernel: &'static str) {
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel_times_resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        enc.resolve_query_set(qs, 0..2, &resolve, 0);
        let rb = self.readback(enc, &resolve, 16);
        self.profiler.lock().unwrap().kernel_passes.push((kernel, rb));
    }

    /// Called by `encoder`: the begin timestamp.
    pub(crate) fn timer_begin(&self, enc: &mut wgpu::CommandEncoder) {
        let mut p = self.profiler.lock().unwrap();
        if !p.on {
            return;
        }
        let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("gpu_timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        enc.write_timestamp(&qs, 0);
        p.pending.push_back(qs);
    }

    /// Called by `submit_and_wait`: the end timestamp and its resolve; returns the readback to
    /// read after the submission.
    pub(crate) fn timer_end(&self, enc: &mut wgpu::CommandEncoder) -> Option<super::buffers::Readback> {
        let qs = {
            let mut p = self.profiler.lock().unwrap();
            if !p.on {
                return None;
            }
            p.pending.pop_front()?
        };
        enc.write_timestamp(&qs, 1);
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpu_timer_resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        enc.resolve_query_set(&qs, 0..2, &resolve, 0);
        Some(self.readback(enc, &resolve, 16))
    }

    /// Called after the submission completed: adds the encoder's GPU time.
    pub(crate) fn timer_add(&self, rb: super::buffers::Readback) -> Result<(), GpuError> {
        let t: Vec<u64> = rb.read(self)?;
        let ns = t[1].saturating_sub(t[0]) as f64 * self.queue.get_timestamp_period() as f64;
        let mut p = self.profiler.lock().unwrap();
        if p.on {
            p.total_ns += ns;
        }
        Ok(())
    }
}
