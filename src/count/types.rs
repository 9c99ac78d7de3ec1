//! The values every counting kernel shares: the fixed-point charge scale and the found centre.
//! The kernels' files depend on this one, never the other way.

/// Fixed-point scale of the counting stage: 1/16 electron.
pub const Q_SCALE: f32 = 16.0;
/// Clamp of the fixed-point values (65,536 electrons in one pixel), so window sums cannot overflow.
pub const Q_MAX: f32 = 1_048_576.0;

/// A found centre: `[frame in batch, flat pixel index, 3x3 sum (i32 bits), 0]`.
pub type Candidate = [u32; 4];

/// Frames in host memory, as the file holds them.
#[derive(Clone, Copy)]
pub enum HostAdu<'b> {
    F32(&'b [f32]),
    U16(&'b [u16]),
}

impl HostAdu<'_> {
    /// Values held.
    pub fn len(self) -> usize {
        match self {
            Self::F32(a) => a.len(),
            Self::U16(a) => a.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}
