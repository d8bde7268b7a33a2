//! Time and peak memory of loading a ResNet-50 checkpoint two ways:
//!
//! - `new`: `Classifier::new` (seeded random init) + `load_weights` (reads the
//!   whole file, then copies each tensor into the model);
//! - `varbuilder`: `Classifier::load` over `VarBuilder::from_mmaped_safetensors`
//!   (or `from_pth` for a `.pth` file): each tensor read by name as its layer
//!   is built, no random init;
//! - `random`: `Classifier::new` alone, for reference.
//!
//! Each way runs in a process of its own, so its peak resident memory
//! (`VmHWM` of `/proc/self/status`) is its own; one untimed run first warms the
//! page cache. Usage:
//!
//! ```sh
//! cargo run -p vct-arch --example load_resnet50 [FILE] [--runs N]
//! ```
//!
//! Without FILE a seeded ResNet-50 (1000 classes) is written to a temporary
//! `.safetensors` file first.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use vct_arch::candle_core::{DType, Device};
use vct_arch::candle_nn::VarBuilder;
use vct_arch::{Arch, Classifier, LoadOptions, ModelConfig};

const WAYS: [&str; 3] = ["new", "varbuilder", "random"];

/// A `/proc/self/status` field in MiB (Linux).
fn status_mib(field: &str) -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| format!("no {field} line in /proc/self/status"))
}

/// One way, in this process: prints `way seconds base_mib peak_mib`.
fn child(way: &str, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = ModelConfig::new(Arch::ResNet50, 1000);
    let base = status_mib("VmHWM:")?;
    let mut keep: Option<VarBuilder<'static>> = None;
    let t0 = Instant::now();
    let model = match way {
        "new" => {
            let m = Classifier::new(&cfg, &Device::Cpu)?;
            m.load_weights(file, LoadOptions::exact())?;
            m
        }
        "varbuilder" => {
            let vb = if file.extension().is_some_and(|e| e == "safetensors") {
                // SAFETY: the file is not modified while it is mapped.
                unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu)? }
            } else {
                VarBuilder::from_pth(file, DType::F32, &Device::Cpu)?
            };
            // A clone keeps the mapping alive until RssFile is read below.
            keep = Some(vb.clone());
            Classifier::load(vb, &cfg)?
        }
        "random" => Classifier::new(&cfg, &Device::Cpu)?,
        other => return Err(format!("unknown way {other:?}, expected one of {WAYS:?}").into()),
    };
    let secs = t0.elapsed().as_secs_f64();
    let peak = status_mib("VmHWM:")?;
    // Private memory vs. pages of the mapped file (page cache, shared with the
    // OS and released when the VarBuilder drops).
    let (anon, file_pages) = (status_mib("RssAnon:")?, status_mib("RssFile:")?);
    drop(keep);
    assert_eq!(model.num_params(), 25_557_032);
    println!("{way} {secs:.4} {base:.1} {peak:.1} {anon:.1} {file_pages:.1}");
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1], Path::new(&args[2])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match parent(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = 3usize;
    let mut file: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().ok_or("--runs needs a number")?.parse()?,
            f => file = Some(PathBuf::from(f)),
        }
    }
    let tmp = std::env::temp_dir().join(format!("vct-load-resnet50-{}", std::process::id()));
    let file = match file {
        Some(f) => f,
        None => {
            std::fs::create_dir_all(&tmp)?;
            let f = tmp.join("resnet50.safetensors");
            let cfg = ModelConfig {
                seed: 1,
                ..ModelConfig::new(Arch::ResNet50, 1000)
            };
            Classifier::new(&cfg, &Device::Cpu)?.save(&f)?;
            f
        }
    };
    let size = std::fs::metadata(&file)?.len() as f64 / (1 << 20) as f64;
    println!(
        "{} ({size:.1} MiB), {runs} runs per way, median time, peak RSS (VmHWM):",
        file.display()
    );
    let exe = std::env::current_exe()?;
    let run = |way: &str| -> Result<[f64; 5], Box<dyn std::error::Error>> {
        let out = Command::new(&exe)
            .args(["--child", way])
            .arg(&file)
            .output()?;
        if !out.status.success() {
            return Err(format!("{way}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let line = String::from_utf8(out.stdout)?;
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok([f[0], f[1], f[2], f[3], f[4]])
    };
    run("varbuilder")?; // warms the page cache
    println!(
        "| way | time | peak RSS (VmHWM) | at the end: anonymous | file-backed | RSS at start |"
    );
    println!("|---|---|---|---|---|---|");
    for way in WAYS {
        let r: Vec<[f64; 5]> = (0..runs).map(|_| run(way)).collect::<Result<_, _>>()?;
        let m = |i: usize| median(r.iter().map(|x| x[i]).collect());
        println!(
            "| {way} | {:.0} ms | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            m(0) * 1000.0,
            m(2),
            m(3),
            m(4),
            m(1)
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
