//! linalg (to be written).
