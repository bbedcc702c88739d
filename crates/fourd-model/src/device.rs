//! Where a model runs, as a user names it: `cpu`, `cuda` or `cuda:N`. Parsed once (a typed
//! command-line value), opened when the model loads.

use candle_core::Device;

use crate::error::{ModelError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A CUDA GPU; `None` (plain `cuda`) is GPU 0, or each rank's own GPU in data-parallel runs.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// Rank `local_rank`'s device of a data-parallel run: its own GPU, or the CPU.
    pub fn for_local_rank(self, local_rank: usize) -> Self {
        match self {
            DeviceSpec::Cpu => DeviceSpec::Cpu,
            DeviceSpec::Cuda(_) => DeviceSpec::Cuda(Some(local_rank)),
        }
    }

    /// The candle device.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(ordinal) => Device::new_cuda(ordinal.unwrap_or(0)).map_err(|e| {
                ModelError::input(format!(
                    "device {self}: {e} (was fourd built with --features cuda?)"
                ))
            }),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(None) => write!(f, "cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ModelError::input(format!(
                "unknown device `{s}` (expected cpu, cuda or cuda:N)"
            ))
        };
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse()
                    .map(|n| DeviceSpec::Cuda(Some(n)))
                    .map_err(|_| bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for s in ["cpu", "cuda", "cuda:3"] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap().to_string(), s);
        }
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(
            DeviceSpec::Cuda(None).for_local_rank(2),
            DeviceSpec::Cuda(Some(2))
        );
        assert_eq!(DeviceSpec::Cpu.for_local_rank(2), DeviceSpec::Cpu);
    }
}
