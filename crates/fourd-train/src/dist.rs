//! Data parallelism: one process per device, each on its own shard of the data, gradients summed
//! across processes before every optimiser step so all ranks apply the same update.
//!
//! Ranks find each other as torchrun's do: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`. Rank 0 listens on the master address; the others connect to it. That TCP
//! group is the collective of CPU runs (rank 0 sums in rank order and sends the sum back, so
//! every rank gets the same bits) and the bootstrap of NCCL on GPUs (rank 0 makes the NCCL id
//! and sends it to the others; gradients then go over NCCL, device to device).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::optim::Grads;

/// What every rank can do with the others.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Element-wise sum over ranks of a host buffer; every rank ends with the same values.
    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Element-wise sum over ranks of a float32 tensor (one flat buffer per step). The default
    /// goes through host memory; NCCL keeps it on the device.
    fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor>;

    /// The sum over ranks of a flat float32 tensor of `world_size * chunk` elements, of which
    /// this rank receives its `chunk` (rank r: elements `r*chunk..(r+1)*chunk`). ZeRO's gradient
    /// reduction. The default sums everything everywhere and keeps the chunk.
    fn reduce_scatter_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let chunk = t.elem_count() / self.world_size();
        Ok(self
            .all_reduce_tensor(t)?
            .narrow(0, self.rank() * chunk, chunk)?)
    }

    /// Every rank's flat float32 chunk (all of one length), concatenated in rank order, on every
    /// rank. ZeRO's parameter broadcast. The default sums zero-padded copies.
    fn all_gather_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let (n, world) = (t.elem_count(), self.world_size());
        let mut parts = Vec::with_capacity(world);
        for r in 0..world {
            parts.push(if r == self.rank() {
                t.to_dtype(DType::F32)?.flatten_all()?
            } else {
                Tensor::zeros(n, DType::F32, t.device())?
            });
        }
        self.all_reduce_tensor(&Tensor::cat(&parts, 0)?)
    }
}

/// The process group a trainer runs in (one process when alone).
#[derive(Clone)]
pub struct ProcessGroup(Option<Arc<dyn Collective>>);

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProcessGroup(rank {} of {})",
            self.rank(),
            self.world_size()
        )
    }
}

impl Default for ProcessGroup {
    fn default() -> Self {
        ProcessGroup::single()
    }
}

impl ProcessGroup {
    pub fn single() -> Self {
        ProcessGroup(None)
    }

    pub fn new(c: Arc<dyn Collective>) -> Self {
        if c.world_size() <= 1 {
            return ProcessGroup(None);
        }
        ProcessGroup(Some(c))
    }

    pub fn rank(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.rank())
    }

    pub fn world_size(&self) -> usize {
        self.0.as_ref().map_or(1, |c| c.world_size())
    }

    /// Rank 0 writes checkpoints, logs and progress; the others only compute.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Sums host scalars (counts, loss sums) over ranks.
    pub fn sum_f64(&self, data: &mut [f64]) -> Result<()> {
        match &self.0 {
            Some(c) => c.all_reduce_f64(data),
            None => Ok(()),
        }
    }

    /// Fails on every rank when `value` differs between ranks (`what` names it), so that
    /// ranks started on different data or models stop at once instead of training apart.
    pub fn check_same(&self, what: &str, value: u64) -> Result<()> {
        let Some(c) = &self.0 else { return Ok(()) };
        // Values are hashed into 24 bits so that sums of squares stay exact in f64.
        let v = (value % (1 << 24)) as f64;
        let mut s = [v, v * v];
        c.all_reduce_f64(&mut s)?;
        let n = c.world_size() as f64;
        if s[0] != n * v || s[1] != n * v * v {
            return Err(TrainError::Config(format!(
                "{what} differs between ranks (rank {} has {value}): every rank must get the same arguments and files",
                c.rank()
            )));
        }
        Ok(())
    }

    /// The collective itself, when there are other ranks.
    pub fn collective(&self) -> Option<&Arc<dyn Collective>> {
        self.0.as_ref()
    }

    /// Each rank's `count`, on every rank (rank order).
    pub fn counts(&self, count: usize) -> Result<Vec<usize>> {
        let mut v = vec![0f64; self.world_size()];
        v[self.rank()] = count as f64;
        self.sum_f64(&mut v)?;
        Ok(v.into_iter().map(|c| c as usize).collect())
    }

    /// Sums the gradients of `vars` over ranks. A rank that used no record passes `None`; a
    /// variable keeps "no gradient" (and so no optimiser update) only when no rank had one.
    /// Everything travels as one float32 buffer: the gradients, then one presence flag per
    /// variable.
    pub fn sum_grads(&self, grads: Option<Grads>, vars: &[(String, Var)]) -> Result<Option<Grads>> {
        let Some(c) = &self.0 else { return Ok(grads) };
        let device = vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let mut parts = Vec::with_capacity(vars.len() + 1);
        let mut flags = Vec::with_capacity(vars.len());
        for (k, (_, var)) in vars.iter().enumerate() {
            let g = grads.as_ref().and_then(|g| g.get(k).cloned().flatten());
            flags.push(if g.is_some() { 1f32 } else { 0.0 });
            parts.push(match g {
                Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
                None => Tensor::zeros(var.elem_count(), DType::F32, &device)?,
            });
        }
        parts.push(Tensor::new(flags.as_slice(), &device)?);
        let flat = Tensor::cat(&parts, 0)?;
        let summed = c.all_reduce_tensor(&flat)?;
        let total: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
        let present = summed.narrow(0, total, vars.len())?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(vars.len());
        let mut offset = 0;
        for ((_, var), p) in vars.iter().zip(present) {
            let n = var.elem_count();
            out.push(if p > 0.0 {
                Some(
                    summed
                        .narrow(0, offset, n)?
                        .reshape(var.shape())?
                        .to_dtype(var.dtype())?,
                )
            } else {
                None
            });
            offset += n;
        }
        Ok(out.iter().any(Option::is_some).then_some(out))
    }
}

/// Where ranks meet, as torchrun's environment gives it.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    pub rank: usize,
    pub world_size: usize,
    /// Index of this process's device on its machine.
    pub local_rank: usize,
    pub master: String,
    /// How long rank 0 waits for the others and the others retry connecting.
    pub timeout: Duration,
}

impl Rendezvous {
    /// From `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` (default 127.0.0.1) and
    /// `MASTER_PORT` (default 29500); `None` when `WORLD_SIZE` is unset or 1.
    pub fn from_env() -> Result<Option<Self>> {
        let num = |k: &str| -> Result<Option<usize>> {
            match std::env::var(k) {
                Ok(v) => v.trim().parse().map(Some).map_err(|_| {
                    TrainError::Config(format!("environment variable {k}={v:?} is not a number"))
                }),
                Err(_) => Ok(None),
            }
        };
        let world_size = num("WORLD_SIZE")?.unwrap_or(1);
        if world_size <= 1 {
            return Ok(None);
        }
        let rank = num("RANK")?.ok_or_else(|| {
            TrainError::Config(format!("WORLD_SIZE={world_size} but RANK is not set"))
        })?;
        if rank >= world_size {
            return Err(TrainError::Config(format!(
                "RANK {rank} is not below WORLD_SIZE {world_size}"
            )));
        }
        let local_rank = num("LOCAL_RANK")?.unwrap_or(rank);
        let addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
        let port = num("MASTER_PORT")?.unwrap_or(29500);
        let timeout = Duration::from_secs(num("FOURD_DIST_TIMEOUT")?.unwrap_or(600) as u64);
        Ok(Some(Rendezvous {
            rank,
            world_size,
            local_rank,
            master: format!("{addr}:{port}"),
            timeout,
        }))
    }
}

/// The TCP star: rank 0 holds one connection per other rank.
pub struct TcpGroup {
    rank: usize,
    world_size: usize,
    /// Rank 0: the connections to ranks 1.. in rank order; others: the one to rank 0.
    links: Mutex<Vec<TcpStream>>,
}

const HELLO: &[u8; 8] = b"fourd-dp";

impl TcpGroup {
    pub fn connect(rv: &Rendezvous) -> Result<Self> {
        let net = |e: std::io::Error, what: &str| {
            TrainError::Config(format!("rendezvous at {} ({what}): {e}", rv.master))
        };
        let deadline = Instant::now() + rv.timeout;
        let links = if rv.rank == 0 {
            let addr = resolve(&rv.master)?;
            let listener = TcpListener::bind(addr).map_err(|e| net(e, "rank 0 listening"))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| net(e, "listener"))?;
            let mut slots: Vec<Option<TcpStream>> = (1..rv.world_size).map(|_| None).collect();
            while slots.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false)
                            .map_err(|e| net(e, "accepted socket"))?;
                        s.set_nodelay(true).ok();
                        let (world, rank) = read_hello(&mut s).map_err(|e| net(e, "hello"))?;
                        if world != rv.world_size || rank == 0 || rank >= rv.world_size {
                            return Err(TrainError::Config(format!(
                                "rendezvous at {}: a process says it is rank {rank} of {world}, this run has {} ranks",
                                rv.master, rv.world_size
                            )));
                        }
                        if slots[rank - 1].replace(s).is_some() {
                            return Err(TrainError::Config(format!(
                                "rendezvous at {}: two processes claim rank {rank}",
                                rv.master
                            )));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> = slots
                                .iter()
                                .enumerate()
                                .filter(|(_, s)| s.is_none())
                                .map(|(i, _)| i + 1)
                                .collect();
                            return Err(TrainError::Config(format!(
                                "rendezvous at {}: ranks {missing:?} did not connect within {} s",
                                rv.master,
                                rv.timeout.as_secs()
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(net(e, "accept")),
                }
            }
            slots.into_iter().flatten().collect()
        } else {
            let addr = resolve(&rv.master)?;
            let mut stream = loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(net(e, "connecting to rank 0"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            stream.set_nodelay(true).ok();
            stream.write_all(HELLO).map_err(|e| net(e, "hello"))?;
            stream
                .write_all(&(rv.world_size as u64).to_le_bytes())
                .map_err(|e| net(e, "hello"))?;
            stream
                .write_all(&(rv.rank as u64).to_le_bytes())
                .map_err(|e| net(e, "hello"))?;
            vec![stream]
        };
        tracing::info!(
            "rank {} of {} joined the group at {}",
            rv.rank,
            rv.world_size,
            rv.master
        );
        Ok(TcpGroup {
            rank: rv.rank,
            world_size: rv.world_size,
            links: Mutex::new(links),
        })
    }

    fn lost(&self, peer: usize, e: std::io::Error) -> TrainError {
        TrainError::Config(format!(
            "rank {}: lost the connection to rank {peer} ({e}); did that process stop?",
            self.rank
        ))
    }

    /// Sums fixed-size records over ranks: rank 0 adds the others' in rank order and sends the
    /// result back. `add` folds a received buffer into the running sum.
    fn reduce_bytes(&self, mine: &mut [u8], add: impl Fn(&mut [u8], &[u8])) -> Result<()> {
        let mut links = self
            .links
            .lock()
            .map_err(|_| TrainError::Config("a collective panicked".into()))?;
        if self.rank == 0 {
            let mut buf = vec![0u8; mine.len()];
            for (k, s) in links.iter_mut().enumerate() {
                read_frame(s, &mut buf).map_err(|e| self.lost(k + 1, e))?;
                add(mine, &buf);
            }
            for (k, s) in links.iter_mut().enumerate() {
                write_frame(s, mine).map_err(|e| self.lost(k + 1, e))?;
            }
        } else {
            let s = &mut links[0];
            write_frame(s, mine).map_err(|e| self.lost(0, e))?;
            read_frame(s, mine).map_err(|e| self.lost(0, e))?;
        }
        Ok(())
    }

    /// Rank 0's bytes to every rank (the NCCL id).
    pub fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let mut links = self
            .links
            .lock()
            .map_err(|_| TrainError::Config("a collective panicked".into()))?;
        if self.rank == 0 {
            for (k, s) in links.iter_mut().enumerate() {
                write_frame(s, bytes).map_err(|e| self.lost(k + 1, e))?;
            }
        } else {
            let s = &mut links[0];
            let mut len = [0u8; 8];
            s.read_exact(&mut len).map_err(|e| self.lost(0, e))?;
            bytes.resize(u64::from_le_bytes(len) as usize, 0);
            s.read_exact(bytes).map_err(|e| self.lost(0, e))?;
        }
        Ok(())
    }
}

impl Collective for TcpGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()> {
        self.sum_floats(data)
    }

    fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let mut host = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        self.sum_floats(&mut host)?;
        Ok(Tensor::from_vec(host, t.shape(), t.device())?)
    }

    fn reduce_scatter_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let host = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mine = self.reduce_scatter_f32(&host)?;
        let n = mine.len();
        Ok(Tensor::from_vec(mine, n, t.device())?)
    }

    fn all_gather_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let host = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let all = self.all_gather_f32(&host)?;
        let n = all.len();
        Ok(Tensor::from_vec(all, n, t.device())?)
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl TcpGroup {
    /// Reduce-scatter through rank 0: it adds every rank's buffer in rank order (the same bits
    /// as [`TcpGroup::sum_floats`]) and sends each rank only its chunk.
    fn reduce_scatter_f32(&self, full: &[f32]) -> Result<Vec<f32>> {
        let chunk = full.len() / self.world_size;
        let mut links = self
            .links
            .lock()
            .map_err(|_| TrainError::Config("a collective panicked".into()))?;
        if self.rank == 0 {
            let mut sum = full.to_vec();
            let mut buf = vec![0u8; full.len() * 4];
            for (k, s) in links.iter_mut().enumerate() {
                read_frame(s, &mut buf).map_err(|e| self.lost(k + 1, e))?;
                for (a, b) in sum.iter_mut().zip(bytes_f32(&buf)) {
                    *a += b;
                }
            }
            for (k, s) in links.iter_mut().enumerate() {
                let part = &sum[(k + 1) * chunk..(k + 2) * chunk];
                write_frame(s, &f32_bytes(part)).map_err(|e| self.lost(k + 1, e))?;
            }
            sum.truncate(chunk);
            Ok(sum)
        } else {
            let s = &mut links[0];
            write_frame(s, &f32_bytes(full)).map_err(|e| self.lost(0, e))?;
            let mut buf = vec![0u8; chunk * 4];
            read_frame(s, &mut buf).map_err(|e| self.lost(0, e))?;
            Ok(bytes_f32(&buf))
        }
    }

    /// All-gather through rank 0: it collects the chunks in rank order and sends the whole.
    fn all_gather_f32(&self, mine: &[f32]) -> Result<Vec<f32>> {
        let total = mine.len() * self.world_size;
        let mut links = self
            .links
            .lock()
            .map_err(|_| TrainError::Config("a collective panicked".into()))?;
        if self.rank == 0 {
            let mut all = f32_bytes(mine);
            let mut buf = vec![0u8; mine.len() * 4];
            for (k, s) in links.iter_mut().enumerate() {
                read_frame(s, &mut buf).map_err(|e| self.lost(k + 1, e))?;
                all.extend_from_slice(&buf);
            }
            for (k, s) in links.iter_mut().enumerate() {
                write_frame(s, &all).map_err(|e| self.lost(k + 1, e))?;
            }
            Ok(bytes_f32(&all))
        } else {
            let s = &mut links[0];
            write_frame(s, &f32_bytes(mine)).map_err(|e| self.lost(0, e))?;
            let mut buf = vec![0u8; total * 4];
            read_frame(s, &mut buf).map_err(|e| self.lost(0, e))?;
            Ok(bytes_f32(&buf))
        }
    }
}

/// Floats as they travel: little-endian bytes.
trait WireFloat: Copy + std::ops::Add<Output = Self> {
    const SIZE: usize;
    fn put(self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! wire_float {
    ($t:ty, $n:expr) => {
        impl WireFloat for $t {
            const SIZE: usize = $n;
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().unwrap_or([0; $n]))
            }
        }
    };
}
wire_float!(f32, 4);
wire_float!(f64, 8);

impl TcpGroup {
    /// Element-wise sum over ranks, in place, the same bits on every rank.
    fn sum_floats<T: WireFloat>(&self, data: &mut [T]) -> Result<()> {
        let mut bytes = vec![0u8; data.len() * T::SIZE];
        for (x, c) in data.iter().zip(bytes.chunks_exact_mut(T::SIZE)) {
            x.put(c);
        }
        self.reduce_bytes(&mut bytes, |acc, other| {
            for (a, b) in acc
                .chunks_exact_mut(T::SIZE)
                .zip(other.chunks_exact(T::SIZE))
            {
                (T::get(a) + T::get(b)).put(a);
            }
        })?;
        for (x, c) in data.iter_mut().zip(bytes.chunks_exact(T::SIZE)) {
            *x = T::get(c);
        }
        Ok(())
    }
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            TrainError::Config(format!(
                "MASTER_ADDR:MASTER_PORT {addr:?} does not resolve to an address"
            ))
        })
}

fn read_hello(s: &mut TcpStream) -> std::io::Result<(usize, usize)> {
    let mut magic = [0u8; 8];
    s.read_exact(&mut magic)?;
    if &magic != HELLO {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a fourd process",
        ));
    }
    let mut w = [0u8; 8];
    let mut r = [0u8; 8];
    s.read_exact(&mut w)?;
    s.read_exact(&mut r)?;
    Ok((
        u64::from_le_bytes(w) as usize,
        u64::from_le_bytes(r) as usize,
    ))
}

fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(&(bytes.len() as u64).to_le_bytes())?;
    s.write_all(bytes)
}

/// Reads one frame into `buf`, whose length the sender must match (same model on every rank).
fn read_frame(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len) as usize;
    if n != buf.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a peer sent {n} bytes where {} were expected (different model or arguments?)",
                buf.len()
            ),
        ));
    }
    s.read_exact(buf)
}

/// NCCL on CUDA devices, bootstrapped over the TCP group (which also carries the scalars).
#[cfg(feature = "nccl")]
pub mod nccl {
    use std::sync::{Arc, Mutex};

    use candle_core::backend::BackendStorage;
    use candle_core::{CudaStorage, CustomOp1, Layout, Shape, Tensor};
    use cudarc::nccl::{Comm, Id, ReduceOp};

    use super::{Collective, Rendezvous, TcpGroup};
    use crate::error::{Result, TrainError};

    /// An NCCL communicator is a handle that may move between threads but must not be used by
    /// two at once; the mutex gives that.
    struct SharedComm(Mutex<Comm>);
    // SAFETY: see above; every use goes through the mutex.
    unsafe impl Send for SharedComm {}
    unsafe impl Sync for SharedComm {}

    pub struct NcclGroup {
        tcp: TcpGroup,
        comm: Arc<SharedComm>,
    }

    impl NcclGroup {
        pub fn connect(rv: &Rendezvous, device: &candle_core::Device) -> Result<Self> {
            let candle_core::Device::Cuda(dev) = device else {
                return Err(TrainError::Config(
                    "the NCCL backend needs a CUDA device (--device cuda)".into(),
                ));
            };
            let tcp = TcpGroup::connect(rv)?;
            let nccl =
                |e: cudarc::nccl::result::NcclError| TrainError::Config(format!("NCCL: {e:?}"));
            let mut bytes = if rv.rank == 0 {
                Id::new()
                    .map_err(nccl)?
                    .internal()
                    .iter()
                    .map(|&c| c as u8)
                    .collect()
            } else {
                vec![]
            };
            tcp.broadcast(&mut bytes)?;
            if bytes.len() != 128 {
                return Err(TrainError::Config(format!(
                    "NCCL id from rank 0 has {} bytes, expected 128",
                    bytes.len()
                )));
            }
            let mut internal = [0 as std::ffi::c_char; 128];
            for (d, s) in internal.iter_mut().zip(&bytes) {
                *d = *s as std::ffi::c_char;
            }
            let comm = Comm::from_rank(
                dev.cuda_stream(),
                rv.rank,
                rv.world_size,
                Id::uninit(internal),
            )
            .map_err(nccl)?;
            tracing::info!(
                "rank {} of {}: NCCL communicator on cuda:{}",
                rv.rank,
                rv.world_size,
                rv.local_rank
            );
            Ok(NcclGroup {
                tcp,
                comm: Arc::new(SharedComm(Mutex::new(comm))),
            })
        }
    }

    /// Which NCCL collective a [`NcclOp`] runs (the world size where the output's length
    /// depends on it).
    #[derive(Clone, Copy)]
    enum NcclKind {
        AllReduceSum,
        ReduceScatterSum(usize),
        AllGather(usize),
    }

    /// One NCCL collective on a contiguous float32 CUDA tensor, as a candle op.
    struct NcclOp<'a>(&'a SharedComm, NcclKind);

    impl CustomOp1 for NcclOp<'_> {
        fn name(&self) -> &'static str {
            match self.1 {
                NcclKind::AllReduceSum => "nccl-all-reduce-sum",
                NcclKind::ReduceScatterSum(_) => "nccl-reduce-scatter-sum",
                NcclKind::AllGather(_) => "nccl-all-gather",
            }
        }

        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("{} needs a CUDA tensor", self.name())
        }

        fn cuda_fwd(
            &self,
            s: &CudaStorage,
            l: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let (start, end) = l.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg(format!("{} of a strided tensor", self.name()))
            })?;
            let n = end - start;
            let out_len = match self.1 {
                NcclKind::AllReduceSum => n,
                NcclKind::ReduceScatterSum(world) => n / world,
                NcclKind::AllGather(world) => n * world,
            };
            let src = s.as_cuda_slice::<f32>()?.slice(start..end);
            let dev = s.device().clone();
            let mut dst = dev.alloc_zeros::<f32>(out_len)?;
            let comm = self
                .0
                 .0
                .lock()
                .map_err(|_| candle_core::Error::Msg("NCCL communicator poisoned".into()))?;
            let done = match self.1 {
                NcclKind::AllReduceSum => comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
                NcclKind::ReduceScatterSum(_) => {
                    comm.reduce_scatter(&src, &mut dst, &ReduceOp::Sum)
                }
                NcclKind::AllGather(_) => comm.all_gather(&src, &mut dst),
            };
            done.map_err(|e| candle_core::Error::Msg(format!("{}: {e:?}", self.name())))?;
            let shape = match self.1 {
                NcclKind::AllReduceSum => l.shape().clone(),
                _ => Shape::from(out_len),
            };
            Ok((CudaStorage::wrap_cuda_slice(dst, dev), shape))
        }
    }

    impl NcclGroup {
        fn run(&self, t: &Tensor, kind: NcclKind) -> Result<Tensor> {
            let t = t.to_dtype(candle_core::DType::F32)?.contiguous()?;
            Ok(t.apply_op1_no_bwd(&NcclOp(&self.comm, kind))?)
        }
    }

    impl Collective for NcclGroup {
        fn rank(&self) -> usize {
            self.tcp.rank()
        }

        fn world_size(&self) -> usize {
            self.tcp.world_size()
        }

        fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()> {
            self.tcp.all_reduce_f64(data)
        }

        fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor> {
            self.run(t, NcclKind::AllReduceSum)
        }

        fn reduce_scatter_tensor(&self, t: &Tensor) -> Result<Tensor> {
            self.run(
                &t.flatten_all()?,
                NcclKind::ReduceScatterSum(self.world_size()),
            )
        }

        fn all_gather_tensor(&self, t: &Tensor) -> Result<Tensor> {
            self.run(&t.flatten_all()?, NcclKind::AllGather(self.world_size()))
        }
    }
}

/// The group for a rendezvous: NCCL on CUDA devices when built with the `nccl` feature, the
/// TCP group otherwise.
pub fn join(rv: &Rendezvous, device: &candle_core::Device) -> Result<ProcessGroup> {
    Ok(ProcessGroup::new(connect(rv, device)?))
}

/// The collective itself, also for a world of one (which [`ProcessGroup`] skips): what
/// `fourd bench allreduce` times.
pub fn connect(rv: &Rendezvous, device: &candle_core::Device) -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "nccl")]
    if device.is_cuda() {
        return Ok(Arc::new(nccl::NcclGroup::connect(rv, device)?));
    }
    if device.is_cuda() {
        tracing::warn!(
            "this build has no NCCL (feature `nccl`): gradients go through host memory over TCP"
        );
    }
    Ok(Arc::new(TcpGroup::connect(rv)?))
}

/// `world` TCP groups on this machine, one per would-be rank (for tests).
#[cfg(test)]
pub(crate) fn test_groups(world: usize) -> Vec<TcpGroup> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(29512);
    let master = format!("127.0.0.1:{port}");
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let rv = Rendezvous {
                rank,
                world_size: world,
                local_rank: rank,
                master: master.clone(),
                timeout: Duration::from_secs(20),
            };
            std::thread::spawn(move || TcpGroup::connect(&rv))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("connect"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(29511)
    }

    fn groups(world: usize) -> Vec<TcpGroup> {
        test_groups(world)
    }

    #[test]
    fn tcp_sums_are_identical_on_every_rank() {
        let world = 3;
        let gs = groups(world);
        let handles: Vec<_> = gs
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let pg = ProcessGroup::new(Arc::new(g));
                    let r = pg.rank() as f64;
                    let mut s = [r, 1.0, 0.1 * r];
                    pg.sum_f64(&mut s).expect("sum");
                    let t =
                        Tensor::new(&[r as f32, 1.0, 1e-3 * r as f32], &candle_core::Device::Cpu)
                            .expect("tensor");
                    let c =
                        pg.0.as_ref()
                            .expect("group")
                            .all_reduce_tensor(&t)
                            .expect("reduce")
                            .to_vec1::<f32>()
                            .expect("vec");
                    let same = pg.check_same("the answer", 42).is_ok();
                    let differs = pg.check_same("the rank", pg.rank() as u64).is_err();
                    (s, c, same, differs)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect();
        for (s, c, same, differs) in &results {
            assert_eq!(s[0], 3.0);
            assert_eq!(s[1], 3.0);
            assert!((s[2] - 0.3).abs() < 1e-12);
            assert_eq!(c[..2], [3.0, 3.0]);
            assert_eq!(
                c[2].to_bits(),
                results[0].1[2].to_bits(),
                "every rank gets the same bits"
            );
            assert!(same, "equal values pass on every rank");
            assert!(differs, "different values fail on every rank");
        }
    }

    #[test]
    fn grads_keep_absence_only_when_no_rank_has_one() {
        let gs = groups(2);
        let dev = candle_core::Device::Cpu;
        let handles: Vec<_> = gs
            .into_iter()
            .map(|g| {
                let dev = dev.clone();
                std::thread::spawn(move || {
                    let pg = ProcessGroup::new(Arc::new(g));
                    let vars: Vec<(String, Var)> = (0..3)
                        .map(|k| {
                            (
                                format!("w{k}"),
                                Var::zeros((2, 2), DType::F32, &dev).expect("var"),
                            )
                        })
                        .collect();
                    let one = Tensor::ones((2, 2), DType::F32, &dev).expect("ones");
                    // Rank 0: gradient for w0 only; rank 1: for w0 and w1; nobody for w2.
                    let mine: Grads = if pg.rank() == 0 {
                        vec![Some(one.clone()), None, None]
                    } else {
                        vec![Some((&one * 2.0).expect("x")), Some(one), None]
                    };
                    pg.sum_grads(Some(mine), &vars).expect("sum")
                })
            })
            .collect();
        for h in handles {
            let g = h.join().expect("rank").expect("some gradient");
            assert_eq!(
                g[0].as_ref()
                    .expect("w0")
                    .flatten_all()
                    .expect("f")
                    .to_vec1::<f32>()
                    .expect("v"),
                vec![3.0; 4]
            );
            assert_eq!(
                g[1].as_ref()
                    .expect("w1")
                    .flatten_all()
                    .expect("f")
                    .to_vec1::<f32>()
                    .expect("v"),
                vec![1.0; 4]
            );
            assert!(g[2].is_none(), "no rank had a gradient for w2");
        }
    }

    /// Reduce-scatter and all-gather over 3 ranks: each rank's chunk of the sum, and every
    /// chunk on every rank.
    #[test]
    fn reduce_scatter_and_all_gather() {
        let handles: Vec<_> = groups(3)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let r = g.rank() as f32;
                    let dev = candle_core::Device::Cpu;
                    let full: Vec<f32> = (0..6).map(|i| i as f32 + 10.0 * r).collect();
                    let t = Tensor::new(full.as_slice(), &dev).expect("t");
                    let mine = g
                        .reduce_scatter_tensor(&t)
                        .expect("rs")
                        .to_vec1::<f32>()
                        .expect("v");
                    let chunk = Tensor::new(&[r, r + 0.5], &dev).expect("c");
                    let all = g
                        .all_gather_tensor(&chunk)
                        .expect("ag")
                        .to_vec1::<f32>()
                        .expect("v");
                    (g.rank(), mine, all)
                })
            })
            .collect();
        for h in handles {
            let (rank, mine, all) = h.join().expect("rank");
            // Sum over ranks of i + 10 r is 3 i + 30; rank r gets elements 2r, 2r + 1.
            let want: Vec<f32> = (2 * rank..2 * rank + 2)
                .map(|i| 3.0 * i as f32 + 30.0)
                .collect();
            assert_eq!(mine, want);
            assert_eq!(all, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        }
    }

    #[test]
    fn a_wrong_world_size_is_refused() {
        let master = format!("127.0.0.1:{}", free_port());
        let rv0 = Rendezvous {
            rank: 0,
            world_size: 2,
            local_rank: 0,
            master: master.clone(),
            timeout: Duration::from_secs(20),
        };
        let rv1 = Rendezvous {
            rank: 1,
            world_size: 3,
            local_rank: 1,
            master,
            timeout: Duration::from_secs(20),
        };
        let h0 = std::thread::spawn(move || TcpGroup::connect(&rv0).map(|_| ()));
        let _h1 = std::thread::spawn(move || TcpGroup::connect(&rv1).map(|_| ()));
        let err = h0.join().expect("rank 0").expect_err("mismatch must fail");
        assert!(err.to_string().contains("rank 1 of 3"), "{err}");
    }

    #[test]
    fn a_missing_rank_times_out_with_its_number() {
        let master = format!("127.0.0.1:{}", free_port());
        let rv = Rendezvous {
            rank: 0,
            world_size: 2,
            local_rank: 0,
            master,
            timeout: Duration::from_millis(300),
        };
        let err = TcpGroup::connect(&rv).err().expect("nobody else came");
        assert!(err.to_string().contains("[1]"), "{err}");
    }
}
