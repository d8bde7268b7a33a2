//! `cargo xtask bench train`: training and inference images/s and peak memory of the
//! architectures, stock candle ops vs the vct-kernels backends (Rust kernels, and oneDNN
//! where oneDNN 2.x is installed: it is loaded at run time).
//!
//! Each configuration (architecture × batch×size × backend × mode) runs in its own child
//! process, so its peak resident memory (`VmHWM` in `/proc/self/status`) is its own.
//! A training step is forward + cross-entropy + backward + SGD-momentum update, as
//! `bench/torch_train_step.py` does in PyTorch; inference is `forward(x, train=false)`
//! on detached weights. Times are medians of the timed steps after warm-up.
//!
//! With `--torch bench/torch_train_step.py` the PyTorch side of each configuration runs
//! as well, alternating with the vct backends round by round in the same sitting (the
//! machine's load drifts; ratios of neighbouring runs hold up, absolute times do not),
//! and a table of per-round ratios vct ÷ PyTorch ends the output.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use candle_core::{Device, Tensor, Var};
use vct_arch::{Arch, Classifier, ModelConfig};
use vct_kernels::{with_backend, KernelBackend};

/// Arguments of `cargo xtask bench train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Architectures (comma separated): resnet50, resnext50_32x4d, bninception, inception_v2, ...
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resnet50,resnext50_32x4d"
    )]
    pub arch: Vec<String>,
    /// Batch×size pairs (comma separated), e.g. `16x64,8x224`.
    #[arg(long, value_delimiter = ',', default_value = "16x64,8x224")]
    pub shape: Vec<String>,
    /// Backends (comma separated): `candle` (stock ops), `rust` (vct-kernels), `onednn`
    /// (oneDNN through vct-kernels; needs oneDNN 2.x installed, e.g. Debian's `libdnnl2`).
    #[arg(long, value_delimiter = ',', default_value = "candle,rust")]
    pub backend: Vec<String>,
    /// What to time (comma separated): `train`, `infer`.
    #[arg(long, value_delimiter = ',', default_value = "train,infer")]
    pub mode: Vec<String>,
    /// Timed steps per configuration (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Number of classes of the head.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Also time each kernel (conv, batch norm, pooling, elementwise) and print where a
    /// training step's time goes.
    #[arg(long)]
    pub profile: bool,
    /// Write the results as JSON lines to this file as well.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// The PyTorch side (`bench/torch_train_step.py`): run it alternately with the vct
    /// backends of each configuration and print the ratios.
    #[arg(long, value_name = "PY")]
    pub torch: Option<std::path::PathBuf>,
    /// Python interpreter for `--torch` (one with torch and torchvision installed).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Rounds of each configuration (default: 2 with `--torch`, else 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Internal: run one configuration in this process and print one JSON line.
    #[arg(long, hide = true)]
    pub child: bool,
}

/// One configuration to measure.
#[derive(Debug, Clone)]
struct Config {
    arch: Arch,
    batch: usize,
    size: usize,
    backend: KernelBackend,
    train: bool,
}

/// Runs the benchmark (or, with `--child`, one configuration of it).
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    if args.steps == 0 {
        bail!("--steps is 0, expected at least 1 timed step");
    }
    let configs = configs(&args)?;
    if args.child {
        let cfg = configs
            .first()
            .ok_or_else(|| anyhow!("--child needs exactly one configuration"))?;
        vct_kernels::profile::enable(args.profile);
        let m = measure(cfg, args.steps, args.classes)?;
        let peak = peak_rss_mib()?;
        let fallbacks = vct_kernels::fallback_counts();
        if fallbacks.total() > 0 {
            eprintln!("{fallbacks}");
        }
        println!(
            "{}",
            serde_json::json!({
                "arch": cfg.arch.name(), "batch": cfg.batch, "size": cfg.size,
                "backend": cfg.backend.name(), "mode": mode_name(cfg.train),
                "images_per_s": m.images_per_s, "median_step_ms": m.step_ms, "peak_rss_mib": peak,
                "phases_ms": m.phases_ms,
                "kernels_ms": m.kernels_ms,
                "onednn_fallbacks": fallbacks.total(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    // Candle's elementwise thread pool spins 25 000 times after each op by default; on
    // few cores that steals the CPU from the rayon threads the kernels and GEMMs run on
    // (measured: ResNet-50 training 9.1 -> 14.4 images/s on 2 cores). Both backends get
    // the same setting; an explicit one in the environment wins.
    let spin = std::env::var("CANDLE_BARRIER_POOL_SPIN_LIMIT").unwrap_or_else(|_| "0".into());
    // oneDNN's OpenMP threads spin after each primitive by default and take the cores
    // from candle's and rayon's threads between calls (vct-onednn README: ResNet-50
    // layers 780 -> 66 ms on 2 cores). It must be set before the child starts.
    let omp_wait = std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "PASSIVE".into());
    println!(
        "CANDLE_BARRIER_POOL_SPIN_LIMIT={spin}, OMP_WAIT_POLICY={omp_wait}, rayon threads: {}",
        rayon_threads()
    );
    let mut lines = Vec::new();
    println!(
        "{:<16} {:>9} {:<7} {:<6} {:>9} {:>11} {:>10}  fwd/bwd/opt ms",
        "arch", "batch×px", "backend", "mode", "img/s", "step ms", "peak MiB"
    );
    let rounds = args
        .rounds
        .unwrap_or(if args.torch.is_some() { 2 } else { 1 });
    if rounds == 0 {
        bail!("--rounds is 0, expected at least 1");
    }
    let threads = rayon_threads();
    let mut failed = 0;
    let mut ratios = Vec::new();
    // Configurations that differ only in backend run side by side, round by round.
    for group in configs
        .chunk_by(|a, b| (a.arch, a.batch, a.size, a.train) == (b.arch, b.batch, b.size, b.train))
    {
        let first = &group[0];
        let mut torch_rows = Vec::new();
        let mut vct_rows: Vec<Vec<Option<Row>>> = vec![Vec::new(); group.len()];
        for _ in 0..rounds {
            if let Some(script) = &args.torch {
                let mut cmd = Command::new(&args.python);
                cmd.arg(script)
                    .args(["--arch", first.arch.name()])
                    .args(["--shape", &format!("{}x{}", first.batch, first.size)])
                    .args(["--mode", mode_name(first.train)])
                    .args(["--steps", &args.steps.to_string()])
                    .args(["--classes", &args.classes.to_string()])
                    .args(["--threads", &threads.to_string()])
                    .args(args.profile.then_some("--profile"));
                let row = run_row(cmd, first, "pytorch");
                failed += usize::from(row.is_none());
                if let Some(r) = &row {
                    lines.push(r.line.clone());
                }
                torch_rows.push(row);
            }
            for (cfg, rows) in group.iter().zip(&mut vct_rows) {
                let mut cmd = Command::new(&exe);
                cmd.env("CANDLE_BARRIER_POOL_SPIN_LIMIT", &spin)
                    .env("OMP_WAIT_POLICY", &omp_wait)
                    .args(["bench", "train", "--child"])
                    .args(["--arch", cfg.arch.name()])
                    .args(["--shape", &format!("{}x{}", cfg.batch, cfg.size)])
                    .args(["--backend", cfg.backend.name()])
                    .args(["--mode", mode_name(cfg.train)])
                    .args(["--steps", &args.steps.to_string()])
                    .args(["--classes", &args.classes.to_string()])
                    .args(args.profile.then_some("--profile"));
                let row = run_row(cmd, cfg, cfg.backend.name());
                failed += usize::from(row.is_none());
                if let Some(r) = &row {
                    lines.push(r.line.clone());
                }
                rows.push(row);
            }
        }
        if args.torch.is_some() {
            for (cfg, rows) in group.iter().zip(&vct_rows) {
                let per_round: Vec<(f64, f64)> = rows
                    .iter()
                    .zip(&torch_rows)
                    .filter_map(|(v, t)| Some((v.as_ref()?, t.as_ref()?)))
                    .map(|(v, t)| (v.images_per_s / t.images_per_s, v.peak_mib / t.peak_mib))
                    .collect();
                ratios.push((cfg.clone(), per_round));
            }
        }
    }
    if !ratios.is_empty() {
        println!();
        println!(
            "vct ÷ PyTorch ({threads} threads each; one ratio per round of neighbouring runs)"
        );
        println!(
            "{:<16} {:>9} {:<6} {:<7} {:>15} {:>15}",
            "arch", "batch×px", "mode", "backend", "images/s", "peak memory"
        );
        for (cfg, per_round) in &ratios {
            let range = |f: fn(&(f64, f64)) -> f64| {
                let v: Vec<f64> = per_round.iter().map(f).collect();
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    });
                match v.len() {
                    0 => "failed".to_string(),
                    1 => format!("{lo:.2}×"),
                    _ => format!("{lo:.2}–{hi:.2}×"),
                }
            };
            println!(
                "{:<16} {:>9} {:<6} {:<7} {:>15} {:>15}",
                cfg.arch.name(),
                format!("{}x{}", cfg.batch, cfg.size),
                mode_name(cfg.train),
                cfg.backend.name(),
                range(|r| r.0),
                range(|r| r.1),
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, lines.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One measured run (a vct child or the PyTorch script).
#[derive(Debug, Clone)]
struct Row {
    images_per_s: f64,
    peak_mib: f64,
    /// The JSON line as printed by the child.
    line: String,
}

/// Runs one measuring process, prints its row, and returns it (`None`, with the child's
/// error printed, when it failed).
fn run_row(mut cmd: Command, cfg: &Config, backend: &str) -> Option<Row> {
    let what = format!(
        "{} {}x{} {} {}",
        cfg.arch.name(),
        cfg.batch,
        cfg.size,
        backend,
        mode_name(cfg.train)
    );
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{what}: cannot run {:?}: {e}", cmd.get_program());
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default().to_string();
    let row: serde_json::Value = match (out.status.success(), serde_json::from_str(&line)) {
        (true, Ok(v)) => v,
        _ => {
            eprintln!(
                "{what}: failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
    };
    let fallbacks = row["onednn_fallbacks"].as_u64().unwrap_or(0);
    let phases = match row["phases_ms"].as_array() {
        Some(p) => p
            .iter()
            .map(|v| format!("{:.0}", v.as_f64().unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join("/"),
        None => "-".into(),
    };
    let images_per_s = row["images_per_s"].as_f64().unwrap_or(f64::NAN);
    let peak_mib = row["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<16} {:>9} {:<7} {:<6} {:>9.2} {:>11.1} {:>10.0}  {phases}{}",
        cfg.arch.name(),
        format!("{}x{}", cfg.batch, cfg.size),
        backend,
        mode_name(cfg.train),
        images_per_s,
        row["median_step_ms"].as_f64().unwrap_or(f64::NAN),
        peak_mib,
        if fallbacks > 0 {
            format!("  ({fallbacks} op calls fell back from oneDNN to the Rust kernels)")
        } else {
            String::new()
        }
    );
    if let Some(k) = row["kernels_ms"].as_object() {
        let parts: Vec<String> = k
            .iter()
            .map(|(name, ms)| format!("{name} {:.0}", ms.as_f64().unwrap_or(f64::NAN)))
            .collect();
        println!("    per step, ms: {}", parts.join(", "));
    }
    Some(Row {
        images_per_s,
        peak_mib,
        line,
    })
}

/// Threads the kernels' rayon pool uses (RAYON_NUM_THREADS or the core count).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

fn mode_name(train: bool) -> &'static str {
    if train {
        "train"
    } else {
        "infer"
    }
}

fn configs(args: &TrainArgs) -> anyhow::Result<Vec<Config>> {
    let mut shapes = Vec::new();
    for s in &args.shape {
        let (b, px) = s
            .split_once('x')
            .ok_or_else(|| anyhow!("--shape {s:?}: expected BATCHxSIZE, e.g. 16x64"))?;
        let batch: usize = b.parse().with_context(|| format!("--shape {s:?}: batch"))?;
        let size: usize = px.parse().with_context(|| format!("--shape {s:?}: size"))?;
        if batch == 0 || size < 32 {
            bail!("--shape {s:?}: expected batch ≥ 1 and size ≥ 32");
        }
        shapes.push((batch, size));
    }
    let mut backends = Vec::new();
    for b in &args.backend {
        let backend = KernelBackend::parse(b)
            .ok_or_else(|| anyhow!("--backend {b:?}: expected `candle`, `rust` or `onednn`"))?;
        // Refused up front: a build without oneDNN must not time the Rust kernels under
        // the name `onednn`.
        backend
            .check()
            .with_context(|| format!("--backend {b:?}"))?;
        backends.push(backend);
    }
    let mut modes = Vec::new();
    for m in &args.mode {
        modes.push(match m.as_str() {
            "train" => true,
            "infer" => false,
            _ => bail!("--mode {m:?}: expected `train` or `infer`"),
        });
    }
    let mut out = Vec::new();
    for a in &args.arch {
        let arch = Arch::from_name(a)?;
        for &(batch, size) in &shapes {
            for &train in &modes {
                for &backend in &backends {
                    out.push(Config {
                        arch,
                        batch,
                        size,
                        backend,
                        train,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What one configuration measured.
struct Measured {
    images_per_s: f64,
    step_ms: f64,
    /// Training: median forward, backward and optimizer ms.
    phases_ms: Option<[f64; 3]>,
    /// With `--profile`: mean ms per step of each kernel, and of everything else.
    kernels_ms: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Times `steps` steps after one warm-up.
fn measure(cfg: &Config, steps: usize, classes: usize) -> anyhow::Result<Measured> {
    let dev = Device::Cpu;
    let model = Classifier::new(&ModelConfig::new(cfg.arch, classes), &dev)?;
    let x = Tensor::randn(0f32, 1., (cfg.batch, 3, cfg.size, cfg.size), &dev)?;
    let labels: Vec<u32> = (0..cfg.batch as u32).map(|i| i % classes as u32).collect();
    let labels = Tensor::new(labels.as_slice(), &dev)?;
    // SGD with momentum 0.9, no weight decay, lr 0.01: torch.optim.SGD as the PyTorch side
    // runs it, through vct-optim (the trainer's optimizer, in-place kernels on CPU).
    let params: Vec<(String, Var)> = model
        .backbone_params()
        .into_iter()
        .chain(model.head_params())
        .collect();
    let sgd = vct_optim::SgdConfig {
        momentum: 0.9,
        weight_decay: 0.0,
        ..vct_optim::SgdConfig::default()
    };
    let mut optimizer = vct_optim::Optimizer::new(
        vct_optim::OptimizerConfig::Sgd(sgd),
        vec![vct_optim::ParamGroup {
            name: "all".into(),
            params,
            lr_mult: 1.0,
            weight_decay: false,
        }],
    )?;
    let mut times = Vec::with_capacity(steps);
    let mut phases: Vec<[f64; 3]> = Vec::new();
    let mut timed_total = 0f64;
    with_backend(cfg.backend, || -> anyhow::Result<()> {
        for i in 0..=steps {
            let t = Instant::now();
            if cfg.train {
                let logits = model.forward(&x, true)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                let t_fwd = t.elapsed().as_secs_f64();
                let grads = loss.backward()?;
                let t_bwd = t.elapsed().as_secs_f64();
                optimizer.step_with_lr(&grads, 0.01)?;
                loss.to_scalar::<f32>()?;
                if i > 0 {
                    let t_opt = t.elapsed().as_secs_f64();
                    phases.push([t_fwd, t_bwd - t_fwd, t_opt - t_bwd]);
                }
            } else {
                let logits = model.forward(&x, false)?;
                logits.sum_all()?.to_scalar::<f32>()?;
            }
            if i == 0 {
                vct_kernels::profile::reset();
            } else {
                times.push(t.elapsed().as_secs_f64());
                timed_total += t.elapsed().as_secs_f64();
            }
        }
        Ok(())
    })?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    // Median of each phase of a training step (forward, backward, optimizer), in ms.
    let phase = |k: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[k] * 1e3).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let kernels_ms = vct_kernels::profile::totals()
        .iter()
        .any(|(_, _, calls)| *calls > 0)
        .then(|| {
            let mut m = serde_json::Map::new();
            let mut kernels = 0.0;
            for (k, secs, _) in vct_kernels::profile::totals() {
                let ms = secs * 1e3 / steps as f64;
                kernels += ms;
                m.insert(k.name().into(), ms.into());
            }
            m.insert(
                "everything else".into(),
                (timed_total * 1e3 / steps as f64 - kernels).into(),
            );
            m
        });
    Ok(Measured {
        kernels_ms,
        images_per_s: cfg.batch as f64 / median,
        step_ms: median * 1e3,
        phases_ms: phase(0)
            .zip(phase(1))
            .zip(phase(2))
            .map(|((f, b), o)| [f, b, o]),
    })
}

/// Peak resident memory of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM line in /proc/self/status"))?;
    Ok(kib / 1024.0)
}
