//! GPU time from timestamp queries (issue 7). While a timer runs, every command encoder made by
//! [`GpuContext::encoder`] begins with a timestamp and [`GpuContext::submit_and_wait`] ends it with
//! another, resolves both and adds their difference (times the queue's timestamp period) to the
//! timer's total: the GPU time of all work submitted in between, without host overhead, queue
//! writes or idle time between submissions. Needs the adapter's `TIMESTAMP_QUERY` and
//! `TIMESTAMP_QUERY_INSIDE_ENCODERS` features ([`GpuContext::has_timestamps`]); without them the
//! timer reports `None` and callers fall back to wall-clock time.

use std::collections::VecDeque;

use super::{GpuContext, GpuError};

/// The running timer's state (inside the context's mutex).
#[derive(Default)]
pub(crate) struct Profiler {
    on: bool,
    /// Query sets of encoders begun and not yet submitted, oldest first.
    pending: VecDeque<wgpu::QuerySet>,
    total_ns: f64,
}

impl GpuContext {
    /// Starts (or restarts) the GPU timer; false when the adapter has no timestamp queries.
    pub fn gpu_timer_start(&self) -> bool {
        let ok = self.has_timestamps();
        let mut p = self.profiler.lock().unwrap();
        *p = Profiler { on: ok, ..Default::default() };
        ok
    }

    /// Stops the timer: the GPU seconds of the encoders submitted since the start, or `None`
    /// without timestamp support.
    pub fn gpu_timer_stop(&self) -> Option<f64> {
        let mut p = self.profiler.lock().unwrap();
        let was_on = p.on;
        let total = p.total_ns;
        *p = Profiler::default();
        was_on.then_some(total * 1e-9)
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
