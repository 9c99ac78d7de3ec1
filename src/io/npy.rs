//! Streamed `.npy` writing (NumPy format 1.0): the header states the final shape, then data is
//! appended batch by batch, so datasets larger than memory can be written and `np.load(p,
//! mmap_mode="r")` opens them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// An element type that `.npy` can describe.
pub trait NpyElem: bytemuck::Pod {
    const DESCR: &'static str;
}
impl NpyElem for f32 {
    const DESCR: &'static str = "<f4";
}
impl NpyElem for u16 {
    const DESCR: &'static str = "<u2";
}
impl NpyElem for u32 {
    const DESCR: &'static str = "<u4";
}
impl NpyElem for u64 {
    const DESCR: &'static str = "<u8";
}
impl NpyElem for i32 {
    const DESCR: &'static str = "<i4";
}

/// The header of a C-ordered array of `shape`.
pub fn header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// A `.npy` file being filled in order.
pub struct NpyWriter<T: NpyElem> {
    w: BufWriter<File>,
    remaining: u64,
    path: std::path::PathBuf,
    _t: std::marker::PhantomData<T>,
}

impl<T: NpyElem> NpyWriter<T> {
    pub fn create(path: &Path, shape: &[u64]) -> Result<Self> {
        let f = File::create(path).map_err(|e| Error::file(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&header(T::DESCR, shape)).map_err(|e| Error::file(path, e))?;
        Ok(Self { w, remaining: shape.iter().product(), path: path.to_path_buf(), _t: Default::default() })
    }

    pub fn append(&mut self, data: &[T]) -> Result<()> {
        if data.len() as u64 > self.remaining {
            return Err(Error::file(&self.path, "more data than the declared shape"));
        }
        self.remaining -= data.len() as u64;
        self.w.write_all(bytemuck::cast_slice(data)).map_err(|e| Error::file(&self.path, e))
    }

    pub fn finish(mut self) -> Result<()> {
        if self.remaining != 0 {
            return Err(Error::file(&self.path, format!("{} elements missing", self.remaining)));
        }
        self.w.flush().map_err(|e| Error::file(&self.path, e))
    }
}

/// Writes a whole 1-D array.
pub fn write_1d<T: NpyElem>(path: &Path, data: &[T]) -> Result<()> {
    let mut w = NpyWriter::<T>::create(path, &[data.len() as u64])?;
    w.append(data)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_aligned() {
        let h = super::header("<f4", &[8, 576, 576]);
        assert_eq!(h.len() % 64, 0);
        assert!(String::from_utf8_lossy(&h).contains("'shape': (8, 576, 576)"));
        assert!(String::from_utf8_lossy(&super::header("<u4", &[3])).contains("(3,)"));
    }
}
