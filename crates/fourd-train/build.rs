//! With the `cuda` feature, compiles `kernels/optim.cu` (the optimiser's fused kernels) to PTX with
//! nvcc, as candle-kernels compiles candle's own kernels. `CUDA_COMPUTE_CAP` picks the target
//! (default 80: the PTX is JIT-compiled for newer GPUs); `NVCC` or `CUDA_HOME` locate the compiler.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels/optim.cu");
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("optim.ptx");
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let nvcc = env::var("NVCC").ok().or_else(|| {
        env::var("CUDA_HOME")
            .ok()
            .map(|h| format!("{h}/bin/nvcc"))
            .filter(|p| std::path::Path::new(p).exists())
    });
    let nvcc = nvcc.unwrap_or_else(|| "nvcc".into());
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg("kernels/optim.cu")
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{nvcc}` to compile kernels/optim.cu: {e} (set NVCC or CUDA_HOME, or source ../shared/tools/cuda-env.sh)"));
    assert!(
        status.success(),
        "`{nvcc}` failed to compile kernels/optim.cu ({status})"
    );
}
