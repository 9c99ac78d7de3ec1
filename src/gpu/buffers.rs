//! Buffer creation, upload and readback.

use wgpu::util::DeviceExt;

use super::{GpuContext, GpuError};

/// A storage buffer's usual usages: bound in shaders, written from the host, copied out, and
/// readable as indirect dispatch arguments.
pub const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::INDIRECT);

impl GpuContext {
    /// A zero-sized-safe storage buffer of `bytes` bytes (at least 4: wgpu refuses empty bindings).
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer, GpuError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_size(label, bytes.len() as u64)?;
        if bytes.is_empty() {
            return self.storage(label, 4);
        }
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        }))
    }

    /// A uniform buffer holding one `#[repr(C)]` parameter struct.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    fn check_size(&self, label: &str, bytes: u64) -> Result<(), GpuError> {
        // The adapter's real limit: the test override shapes chunking, not what can be bound.
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(GpuError::TooLarge { what: format!("buffer '{label}'"), bytes, limit });
        }
        Ok(())
    }

    /// Copies `bytes` bytes from the start of `src` into a mappable buffer (recorded in `encoder`):
    /// an idle one from the context's pool when one is large enough, else a new one (sized up to
    /// a power of two so that later readbacks of similar size can reuse it).
    pub fn readback(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, bytes: u64) -> Readback {
        let size = bytes.max(4).next_multiple_of(4);
        let pooled = {
            let mut pool = self.staging.lock().unwrap();
            // the smallest idle buffer that fits, unless it is wastefully large
            let best = (0..pool.len())
                .filter(|&i| pool[i].size() >= size && pool[i].size() <= size.max(1 << 16) * 4)
                .min_by_key(|&i| pool[i].size());
            best.map(|i| pool.swap_remove(i))
        };
        let staging = pooled.unwrap_or_else(|| {
            let rounded = size.next_power_of_two().max(1 << 12);
            let cap = self.limits.max_buffer_size;
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: if rounded <= cap { rounded } else { size },
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        }
        Readback { staging, bytes }
    }

    /// Maps `slice` (waiting for the GPU work that uses its buffer to finish).
    fn map_and_wait(&self, slice: &wgpu::BufferSlice, mode: wgpu::MapMode, context: &str) -> Result<(), GpuError> {
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(mode, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        rx.recv().map_err(|_| GpuError::Validation {
            context: context.into(),
            message: "map callback was dropped".into(),
        })??;
        Ok(())
    }

    /// Returns an unmapped staging buffer to the pool (at most `STAGING_POOL` buffers and
    /// `STAGING_POOL_BYTES` bytes are kept; the smallest go first).
    fn recycle_staging(&self, buffer: wgpu::Buffer) {
        let mut pool = self.staging.lock().unwrap();
        pool.push(buffer);
        pool.sort_by_key(|b| std::cmp::Reverse(b.size()));
        let mut total = 0;
        let keep = pool
            .iter()
            .take_while(|b| {
                total += b.size();
                total <= STAGING_POOL_BYTES
            })
            .count()
            .min(STAGING_POOL);
        pool.truncate(keep);
    }

    /// Writes `data` over the start of `dst` (ordered before the next submission). Small data
    /// goes through `Queue::write_buffer`; large data (frames) is copied into a reused mappable
    /// buffer, then copied on the GPU: `write_buffer` makes a new staging buffer per call.
    pub fn write<T: bytemuck::Pod>(&self, dst: &wgpu::Buffer, data: &[T]) {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() < LARGE_UPLOAD || !bytes.len().is_multiple_of(4) {
            if !bytes.is_empty() {
                self.queue.write_buffer(dst, 0, bytes);
            }
            return;
        }
        if let Err(e) = self.write_staged(dst, bytes) {
            // mapping failed (device lost, say): fall back to the queue's own staging
            eprintln!("emsim: warning: staged upload failed ({e}); using Queue::write_buffer");
            self.queue.write_buffer(dst, 0, bytes);
        }
    }

    fn write_staged(&self, dst: &wgpu::Buffer, bytes: &[u8]) -> Result<(), GpuError> {
        let size = bytes.len() as u64;
        let pooled = {
            let mut pool = self.upload_staging.lock().unwrap();
            let best = (0..pool.len())
                .filter(|&i| pool[i].size() >= size && pool[i].size() <= size * 4)
                .min_by_key(|&i| pool[i].size());
            best.map(|i| pool.swap_remove(i))
        };
        let staging = match pooled {
            Some(b) => {
                self.map_and_wait(&b.slice(0..size), wgpu::MapMode::Write, "upload")?;
                b
            }
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload"),
                size,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            }),
        };
        {
            let mut view = staging
                .slice(0..size)
                .get_mapped_range_mut()
                .map_err(|e| GpuError::Validation { context: "upload".into(), message: e.to_string() })?;
            let mut w = view.slice(..);
            assert_eq!(w.len(), bytes.len());
            // SAFETY: the mapped range is `bytes.len()` writable bytes, exclusively ours while
            // `w` lives; `par_copy` only writes it.
            unsafe { par_copy(w.as_raw_ptr().as_ptr() as *mut u8, bytes) };
        }
        staging.unmap();
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("upload") });
        enc.copy_buffer_to_buffer(&staging, 0, dst, 0, size);
        self.queue.submit([enc.finish()]);
        let mut pool = self.upload_staging.lock().unwrap();
        pool.push(staging);
        if pool.len() > 2 {
            pool.sort_by_key(|b| std::cmp::Reverse(b.size()));
            pool.truncate(2);
        }
        Ok(())
    }
}

/// Copies `src` to `dst` on all cores in 1 MiB pieces (one thread for small copies): frames
/// move through mapped memory at the speed of one core's memcpy otherwise.
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes and not overlap `src`.
unsafe fn par_copy(dst: *mut u8, src: &[u8]) {
    use rayon::prelude::*;
    const PIECE: usize = 1 << 20;
    if src.len() <= 2 * PIECE {
        // SAFETY: as the caller promised.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        return;
    }
    let dst = dst as usize; // a plain address, so the closure is Send
    src.par_chunks(PIECE).enumerate().for_each(|(k, piece)| {
        // SAFETY: the pieces are disjoint ranges of `dst`, within `src.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), (dst as *mut u8).add(k * PIECE), piece.len()) };
    });
}

/// Uploads of at least this many bytes go through a reused staging buffer.
const LARGE_UPLOAD: usize = 4 << 20;

/// Idle staging buffers kept for reuse, at most this many ...
const STAGING_POOL: usize = 8;
/// ... and this many bytes together.
const STAGING_POOL_BYTES: u64 = 1 << 30;

/// A pending copy of GPU data to the host; [`Readback::read`] after the submission.
pub struct Readback {
    staging: wgpu::Buffer,
    bytes: u64,
}

impl Readback {
    /// Maps the staging buffer (the submission that filled it must have been made) and returns its
    /// contents as `T`s.
    pub fn read<T: bytemuck::Pod>(self, ctx: &GpuContext) -> Result<Vec<T>, GpuError> {
        let mut out = Vec::new();
        self.read_into(ctx, &mut out)?;
        Ok(out)
    }

    /// As [`Readback::read`], into `out` (resized; its allocation is reused), then gives the
    /// staging buffer back to the context's pool.
    pub fn read_into<T: bytemuck::Pod>(self, ctx: &GpuContext, out: &mut Vec<T>) -> Result<(), GpuError> {
        let n = self.bytes as usize / std::mem::size_of::<T>();
        out.clear();
        if n == 0 {
            ctx.recycle_staging(self.staging);
            return Ok(());
        }
        let slice = self.staging.slice(0..self.bytes.next_multiple_of(4));
        ctx.map_and_wait(&slice, wgpu::MapMode::Read, "readback")?;
        out.reserve(n);
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Validation { context: "readback".into(), message: e.to_string() })?;
            let src = &view[..n * std::mem::size_of::<T>()];
            // SAFETY: `out` has room for n elements (reserved above); every byte of them is
            // written from `src` before the length is set, and any bit pattern is a valid `T: Pod`.
            unsafe {
                par_copy(out.as_mut_ptr() as *mut u8, src);
                out.set_len(n);
            }
        }
        self.staging.unmap();
        ctx.recycle_staging(self.staging);
        Ok(())
    }
}
