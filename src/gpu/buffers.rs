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

    /// Copies `bytes` bytes from the start of `src` into a new mappable buffer (recorded in `encoder`).
    pub fn readback(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, bytes: u64) -> Readback {
        let size = bytes.max(4).next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        }
        Readback { staging, bytes }
    }

    /// Writes `data` over the start of `dst`.
    pub fn write<T: bytemuck::Pod>(&self, dst: &wgpu::Buffer, data: &[T]) {
        if !data.is_empty() {
            self.queue.write_buffer(dst, 0, bytemuck::cast_slice(data));
        }
    }
}

/// A pending copy of GPU data to the host; [`Readback::read`] after the submission.
pub struct Readback {
    staging: wgpu::Buffer,
    bytes: u64,
}

impl Readback {
    /// Maps the staging buffer (the submission that filled it must have been made) and returns its
    /// contents as `T`s.
    pub fn read<T: bytemuck::Pod>(self, ctx: &GpuContext) -> Result<Vec<T>, GpuError> {
        let n = self.bytes as usize / std::mem::size_of::<T>();
        if n == 0 {
            return Ok(Vec::new());
        }
        let slice = self.staging.slice(0..self.bytes.next_multiple_of(4));
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.device.poll(wgpu::PollType::wait_indefinitely())?;
        rx.recv().map_err(|_| GpuError::Validation {
            context: "readback".into(),
            message: "map callback was dropped".into(),
        })??;
        let mut out = vec![T::zeroed(); n];
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Validation { context: "readback".into(), message: e.to_string() })?;
            bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(&view[..n * std::mem::size_of::<T>()]);
        }
        self.staging.unmap();
        Ok(out)
    }
}
