//! `emsim events`: single-electron event libraries.
//!
//! [`physics`]: condensed-history Monte Carlo of an electron in a layered silicon sensor and its
//! charge collection; [`build`]: a library from it; [`import`]: Geant4 pixel tables and hit
//! tables; [`info`] and [`show`]: inspection; [`parametric`]: a test model (not physics).

pub mod build;
pub mod import;
pub mod info;
pub mod parametric;
pub mod physics;
pub mod response;
pub mod show;
