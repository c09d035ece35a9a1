//! Choosing a Burn backend at run time.
//!
//! The model is generic over [`Backend`]; which backends exist depends on the cargo features the
//! binary was built with. LibTorch (`tch`) is the fast one on CPUs and NVIDIA GPUs (measured for
//! this project: it trained ~35× faster than burn-cuda on an H200 and ~180× faster than
//! burn-ndarray on a 2-core CPU) and the default whenever it is built.

use burn::tensor::backend::Backend;

pub use cli::BackendKind;

/// The backends compiled into this binary, fastest first.
pub fn built() -> Vec<BackendKind> {
    let mut v = Vec::new();
    if cfg!(feature = "tch") {
        v.extend([BackendKind::Tch, BackendKind::TchCuda]);
    }
    if cfg!(feature = "cuda") {
        v.push(BackendKind::Cuda);
    }
    if cfg!(feature = "wgpu") {
        v.push(BackendKind::Wgpu);
    }
    if cfg!(feature = "ndarray") {
        v.push(BackendKind::Ndarray);
    }
    v
}

/// The fastest CPU backend built (GPUs are chosen explicitly, since a machine may lack one).
pub fn default_kind() -> Option<BackendKind> {
    fastest_cpu(&built())
}

fn fastest_cpu(built: &[BackendKind]) -> Option<BackendKind> {
    built
        .iter()
        .copied()
        .find(|k| !matches!(k, BackendKind::TchCuda | BackendKind::Cuda))
}

/// Work that runs on whichever backend is chosen.
pub trait Job {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on `kind`, or explains that this binary was built without it.
pub fn run<J: Job>(kind: BackendKind, job: J) -> Result<J::Output, String> {
    match kind {
        #[cfg(feature = "tch")]
        BackendKind::Tch => {
            Ok(job.run::<burn::backend::LibTorch>(burn::backend::libtorch::LibTorchDevice::Cpu))
        }
        #[cfg(feature = "tch")]
        BackendKind::TchCuda => Ok(
            job.run::<burn::backend::LibTorch>(burn::backend::libtorch::LibTorchDevice::Cuda(0))
        ),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(job.run::<burn::backend::Cuda>(Default::default())),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Ok(job.run::<burn::backend::Wgpu>(Default::default())),
        #[cfg(feature = "ndarray")]
        BackendKind::Ndarray => Ok(job.run::<burn::backend::NdArray>(Default::default())),
        #[allow(unreachable_patterns)]
        _ => {
            drop(job);
            Err(missing(kind))
        }
    }
}

fn missing(kind: BackendKind) -> String {
    let built: Vec<&str> = built().into_iter().map(BackendKind::name).collect();
    format!(
        "backend {} is not built into this binary (built: {})",
        kind.name(),
        built.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::BackendKind::*;
    use super::*;

    #[test]
    fn the_default_is_the_fastest_cpu_backend_built() {
        // A plain `cargo build` has ndarray alone; the scripts build tch and ndarray.
        assert_eq!(fastest_cpu(&[Ndarray]), Some(Ndarray));
        assert_eq!(fastest_cpu(&[Tch, TchCuda, Ndarray]), Some(Tch));
        assert_eq!(fastest_cpu(&[Cuda, Wgpu, Ndarray]), Some(Wgpu));
        assert_eq!(fastest_cpu(&[Cuda]), None);
        assert_eq!(default_kind(), fastest_cpu(&built()));
    }
}
