//! `--device cpu|cuda|cuda:N`: where training and sampling run.
//!
//! The CPU is the default and needs nothing. `cuda` needs a build with the `cuda` cargo
//! feature (docs/cuda.md) and, at run time, an NVIDIA GPU and its driver.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// The message of a build without the `cuda` feature asked for a GPU.
pub const NO_CUDA_BUILD: &str = "this genlab was built without CUDA support; rebuild with \
    `cargo build --release --features cuda`";

/// A parsed `--device` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// CUDA device by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device `{s}` (expected cpu, cuda or cuda:N)");
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse().map(Self::Cuda).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

impl DeviceSpec {
    pub fn is_cpu(self) -> bool {
        self == Self::Cpu
    }

    /// Errors at once when this build cannot run on the device (before any work starts).
    pub fn check_supported(self) -> anyhow::Result<()> {
        match self {
            Self::Cuda(_) if !cuda_built() => anyhow::bail!(NO_CUDA_BUILD),
            _ => Ok(()),
        }
    }

    /// Opens the device (for CUDA: loads the driver, creates a context and cuBLAS handle).
    pub fn open(self) -> anyhow::Result<Device> {
        self.check_supported()?;
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => open_cuda(n),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        // The driver's error is the message; a backtrace (RUST_BACKTRACE=1) would only
        // point at this call.
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        anyhow::anyhow!(
            "cannot open CUDA device {ordinal}: {e}\n(genlab was built with CUDA support, but \
             needs an NVIDIA GPU with that ordinal and its driver at run time; `nvidia-smi` \
             lists the GPUs. Use --device cpu to run on the CPU.)"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_ordinal: usize) -> anyhow::Result<Device> {
    anyhow::bail!(NO_CUDA_BUILD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_cuda_and_ordinals() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceSpec::Cuda(1)));
        for bad in [
            "gpu", "", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "metal", "cuda1",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("expected cpu, cuda or cuda:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_always_opens_and_cuda_needs_the_feature() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        let r = DeviceSpec::Cuda(0).check_supported();
        if cuda_built() {
            assert!(r.is_ok());
        } else {
            assert_eq!(r.unwrap_err().to_string(), NO_CUDA_BUILD);
        }
    }
}
