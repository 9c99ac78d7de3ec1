//! Electron counting (in progress).
