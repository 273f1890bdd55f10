//! nn1 (to be written).
