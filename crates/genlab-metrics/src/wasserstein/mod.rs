//! Wasserstein distances (to be written).
