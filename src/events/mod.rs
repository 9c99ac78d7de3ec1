//! `emsim events`: single-electron event libraries.
//!
//! Today: the parametric test library ([`parametric`]). The Monte Carlo transport in a layered
//! silicon sensor (issue 3) lands in `physics`.

pub mod parametric;
pub mod physics;
