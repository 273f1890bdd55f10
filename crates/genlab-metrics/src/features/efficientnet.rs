//! EfficientNet-Lite0 (to be written).
