//! pytorch-fid Inception-v3 (to be written).
