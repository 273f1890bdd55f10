//! fid (to be written).
