//! Simulated file system (to be written).
