//! `cargo xtask bench finetune`: does a pretrained start help? No ImageNet weights can be
//! downloaded on the development machines, so the pretraining is done here, with vct:
//!
//! 1. for each architecture of the chosen templates, train it from random weights on the
//!    pretraining set (`../shared/data/imagenette_224_subset`, 10 ImageNet classes) at a
//!    small resolution, with the architecture's own template;
//! 2. write that run's backbone (every backbone tensor, running statistics included, under
//!    the state-dict names the loaders read; no head) to `<arch>-pretrained.safetensors`;
//! 3. fine-tune each template on another set (`../shared/data/hymenoptera_data`, ants vs
//!    bees) twice per seed (`--seeds`) with the same hyperparameters: once from that file
//!    (`--weights FILE`) and once from random weights (`--random-init`), both with the
//!    backbone frozen under `--freeze-backbone`, and compare their validation top-1 per
//!    seed and on average.
//!
//! The architectures' pretrainings are shared: `Clarifai_InceptionBatchNorm` and
//! `Clarifai_InceptionTransferEmbedNorm` fine-tune the same BN-Inception file. Every run is
//! a normal `vct_train::session::train` run in `--work` (default `target/bench-finetune`),
//! so its `run.json`, `events.jsonl` and curves stay there to look at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use vct_arch::params::Group;
use vct_arch::Arch;
use vct_hparams::{HyperParams, Template};
use vct_train::config::{InitConfig, RunConfig};
use vct_train::recipe::{Init, Recipe};
use vct_train::run::{Progress, RunOptions, RunSummary};
use vct_train::session::{self, TrainedModel};

/// The templates that start from pretrained weights, in the order they are run.
const PRETRAINED_TEMPLATES: &str = "Clarifai_InceptionBatchNorm,Clarifai_InceptionTransferEmbedNorm,Clarifai_ResNext,MMClassification_ResNet_50_RSB_A1";

/// Per-image learning rate of the SGD pretraining (0.0256 at batch 32). Training from
/// scratch wants far more than the templates' fine-tuning default (7.8125e-5, 0.0025 at
/// batch 32); the usual ImageNet value is 0.1 per 256 images, and a run of a few epochs
/// gains from about twice that.
pub const PRETRAIN_SGD_PER_ITEM_LRATE: f64 = 8e-4;

/// Per-image learning rate of the LAMB pretraining of ResNet-50 (RSB-A1): 5e-3 at batch
/// 32, the paper's LAMB learning rate (LAMB's trust ratio makes it nearly independent of
/// the batch size).
pub const PRETRAIN_LAMB_PER_ITEM_LRATE: f64 = 1.5625e-4;

/// Arguments of `cargo xtask bench finetune`.
#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// Pretraining images: `train/` (and `val/`) folders of concept folders.
    /// Default: ../shared/data/imagenette_224_subset.
    #[arg(long, value_name = "DIR")]
    pub pretrain_data: Option<PathBuf>,
    /// Fine-tuning images: `train/` and `val/` folders of concept folders.
    /// Default: ../shared/data/hymenoptera_data.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Templates to fine-tune (comma separated); each must start from pretrained weights.
    #[arg(long, value_delimiter = ',', default_value = PRETRAINED_TEMPLATES)]
    pub templates: Vec<String>,
    /// Image side of the pretraining.
    #[arg(long, default_value_t = 64)]
    pub pretrain_size: usize,
    /// Epochs of the pretraining; the last two run at a tenth of the learning rate
    /// (SGD templates) or at the end of the cosine (RSB-A1).
    #[arg(long, default_value_t = 8)]
    pub pretrain_epochs: usize,
    /// Image side of the fine-tuning.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Epochs of each fine-tuning run.
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    /// Batch size of every run.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seeds of the fine-tuning pairs (weights, data order, augmentation), comma
    /// separated: one pair per template and seed, and the margin's mean over the seeds (a
    /// small validation set makes one pair noisy). The pretraining uses the first.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Fine-tune with the backbone frozen (linear probing, `--freeze-backbone` of `train`)
    /// instead of the templates' own schedule for it: what the pretrained features alone
    /// are worth.
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Folder of the runs and the weights files (emptied of the runs it names first).
    /// Default: target/bench-finetune.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Also write the results as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print every run's own log lines (epochs, validation).
    #[arg(long)]
    pub verbose: bool,
}

/// A template to fine-tune and what it needs.
#[derive(Debug, Clone, Copy)]
struct Job {
    template: Template,
    arch: Arch,
}

/// One pretraining: the architecture, the template it ran with, and its file.
#[derive(Debug, Clone)]
struct Pretrained {
    arch: Arch,
    template: Template,
    top1: Option<f64>,
    seconds: f64,
    weights: PathBuf,
    tensors: usize,
}

/// One template's pair of fine-tuning runs with one seed.
#[derive(Debug, Clone)]
struct Pair {
    job: Job,
    seed: u64,
    pretrained: Run,
    random: Run,
}

impl Pair {
    /// Percentage points the pretrained start is ahead.
    fn margin(&self) -> f64 {
        (self.pretrained.top1 - self.random.top1) * 100.0
    }
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// What one fine-tuning run reports.
#[derive(Debug, Clone, Copy)]
struct Run {
    top1: f64,
    best_epoch: usize,
    seconds: f64,
}

/// The folder under ../shared/data of the repository (what `.ci/run` checks for).
fn shared_data(name: &str) -> PathBuf {
    crate::repo_root().join("../shared/data").join(name)
}

/// The template's architecture, refused when the template starts from random weights
/// (its recipe loads no file, so there is nothing to compare).
fn job(name: &str) -> anyhow::Result<Job> {
    let template: Template = name.trim().parse()?;
    let recipe = Recipe::new(
        &HyperParams::defaults(template),
        2,
        0,
        &InitConfig::default(),
    )?;
    match recipe.init {
        Init::Pretrained(arch) => Ok(Job {
            template,
            arch: arch.0,
        }),
        Init::Random => bail!(
            "--templates {template}: the template starts from random weights and loads no \
             pretrained file, so there is nothing to compare; expected one of \
             {PRETRAINED_TEMPLATES}"
        ),
    }
}

/// The template that pretrains `job`'s backbone: the template itself, except the transfer
/// template, whose backbone learns at `base_gradient_multiplier` (0.001) times its rate and
/// so cannot train a random backbone; BN-Inception's own template trains it instead.
fn pretraining_template(job: Job) -> Template {
    match job.template {
        Template::TransferEmbedNorm => Template::InceptionBatchNorm,
        t => t,
    }
}

/// Images in the training part of `data` (for the warm-up length in steps).
fn train_images(data: &Path) -> anyhow::Result<usize> {
    let train = vct_data::find_splits(data)
        .map(|(t, _)| t)
        .unwrap_or_else(|| data.to_path_buf());
    let set = vct_data::Dataset::open(&train).with_context(|| format!("{}", train.display()))?;
    Ok(set.items.len())
}

fn layered(template: Template, sets: Vec<String>) -> anyhow::Result<HyperParams> {
    Ok(HyperParams::defaults(template).layered(None, &sets)?)
}

/// The pretraining hyperparameters: single-label, a learning rate for training from
/// scratch, and the learning rate lowered for the last epochs.
fn pretrain_hparams(
    template: Template,
    args: &FinetuneArgs,
    images: usize,
) -> anyhow::Result<HyperParams> {
    let (size, batch, epochs) = (args.pretrain_size, args.batch_size, args.pretrain_epochs);
    let mut sets = vec![
        format!("image_size={size}"),
        format!("batch_size={batch}"),
        format!("num_epochs={epochs}"),
    ];
    match template {
        Template::RsbA1 => sets.extend([
            "pretrained_weights=None".to_string(),
            "concepts_mutually_exclusive=true".to_string(),
            format!("per_item_lrate={PRETRAIN_LAMB_PER_ITEM_LRATE}"),
            // One epoch of warm-up; the template's 100 steps would be most of the run.
            format!("warmup_iters={}", images.div_ceil(batch)),
        ]),
        _ => sets.extend([
            "logreg=0".to_string(),
            format!("per_item_lrate={PRETRAIN_SGD_PER_ITEM_LRATE}"),
            format!("init_epochs={}", epochs.saturating_sub(2).max(1)),
            "step_epochs=1".to_string(),
        ]),
    }
    layered(template, sets)
}

/// The fine-tuning hyperparameters: the template's defaults, with the size, the length
/// and softmax outputs (the classes are exclusive); the same for both starts.
fn finetune_hparams(
    template: Template,
    args: &FinetuneArgs,
    images: usize,
) -> anyhow::Result<HyperParams> {
    let mut sets = vec![
        format!("image_size={}", args.size),
        format!("batch_size={}", args.batch_size),
        format!("num_epochs={}", args.epochs),
    ];
    match template {
        Template::RsbA1 => sets.extend([
            "concepts_mutually_exclusive=true".to_string(),
            // 100 warm-up steps would outlast a short fine-tuning run.
            format!("warmup_iters={}", images.div_ceil(args.batch_size)),
        ]),
        _ => sets.push("logreg=0".to_string()),
    }
    layered(template, sets)
}

/// Trains `config` into `out` (replacing what an earlier benchmark left there).
fn train(config: &RunConfig, out: &Path, verbose: bool) -> anyhow::Result<RunSummary> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut opts = RunOptions::new(out);
    opts.progress = if verbose {
        Progress::Lines
    } else {
        Progress::Quiet
    };
    // Every weights file is local: nothing may be downloaded.
    opts.offline = true;
    Ok(session::train(config, opts)?)
}

fn top1(s: &RunSummary) -> anyhow::Result<f64> {
    s.best_metrics
        .as_ref()
        .map(|m| m.top1)
        .with_context(|| format!("{}: the run has no validation metrics", s.out.display()))
}

/// Writes the backbone of the trained run in `run` to `file` (safetensors, the model's
/// state-dict names, no head), atomically; returns the number of tensors.
pub fn export_backbone(run: &Path, file: &Path) -> anyhow::Result<usize> {
    let trained = TrainedModel::load(run, &Device::Cpu)?;
    let tensors: HashMap<String, Tensor> = trained
        .model
        .entries()
        .into_iter()
        .filter(|e| e.group == Group::Backbone)
        .map(|e| (e.name, e.var.as_detached_tensor()))
        .collect();
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("backbone.safetensors");
    let tmp = file.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(tensors.len())
}

fn check_dir(dir: &Path, flag: &str) -> anyhow::Result<()> {
    if !dir.join("train").is_dir() {
        bail!(
            "{flag} {}: expected a folder with train/ (and val/) folders of concept folders",
            dir.display()
        );
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: FinetuneArgs) -> anyhow::Result<ExitCode> {
    if args.pretrain_epochs == 0 || args.epochs == 0 {
        bail!("--pretrain-epochs and --epochs must be at least 1");
    }
    let Some(&first_seed) = args.seeds.first() else {
        bail!("--seeds is empty; expected one or more seeds, e.g. 0,1,2");
    };
    let pretrain_data = args
        .pretrain_data
        .clone()
        .unwrap_or_else(|| shared_data("imagenette_224_subset"));
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| shared_data("hymenoptera_data"));
    check_dir(&pretrain_data, "--pretrain-data")?;
    check_dir(&data, "--data")?;
    if !data.join("val").is_dir() {
        bail!(
            "--data {}: expected a val/ folder to compare the runs on",
            data.display()
        );
    }
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| crate::repo_root().join("target").join("bench-finetune"));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let jobs: Vec<Job> = args
        .templates
        .iter()
        .map(|t| job(t))
        .collect::<anyhow::Result<_>>()?;
    if jobs.is_empty() {
        bail!("--templates is empty; expected some of {PRETRAINED_TEMPLATES}");
    }
    // Every hyperparameter set is checked before the first run starts.
    let pre_images = train_images(&pretrain_data)?;
    let ft_images = train_images(&data)?;
    for j in &jobs {
        pretrain_hparams(pretraining_template(*j), &args, pre_images)?;
        finetune_hparams(j.template, &args, ft_images)?;
    }
    println!(
        "pretraining on {} ({pre_images} training images) at {} px for {} epochs; \
         fine-tuning on {} ({ft_images} training images) at {} px for {} epochs{}; batch {}, \
         seeds {:?}",
        pretrain_data.display(),
        args.pretrain_size,
        args.pretrain_epochs,
        data.display(),
        args.size,
        args.epochs,
        if args.freeze_backbone {
            " with the backbone frozen"
        } else {
            ""
        },
        args.batch_size,
        args.seeds
    );

    let mut pretrained: Vec<Pretrained> = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for j in &jobs {
        let file = match pretrained.iter().find(|p| p.arch == j.arch) {
            Some(p) => p.weights.clone(),
            None => {
                let template = pretraining_template(*j);
                let mut config = RunConfig::new(
                    pretrain_hparams(template, &args, pre_images)?,
                    &pretrain_data,
                )
                .random_init();
                config.seed = first_seed;
                let out = work.join(format!("pretrain-{}", j.arch.name()));
                let s = train(&config, &out, args.verbose)
                    .with_context(|| format!("pretraining {} with {template}", j.arch))?;
                let weights = work.join(format!("{}-pretrained.safetensors", j.arch.name()));
                let tensors = export_backbone(&out, &weights)?;
                let p = Pretrained {
                    arch: j.arch,
                    template,
                    top1: s.best_metrics.as_ref().map(|m| m.top1),
                    seconds: s.seconds,
                    weights: weights.clone(),
                    tensors,
                };
                println!(
                    "pretrained {} with {template}: {} epochs in {:.0} s, validation top-1 {} \
                     -> {} ({tensors} backbone tensors)",
                    j.arch,
                    s.epochs,
                    p.seconds,
                    p.top1.map_or("-".into(), |t| format!("{:.1}%", t * 100.0)),
                    weights.display()
                );
                pretrained.push(p);
                weights
            }
        };
        let hp = finetune_hparams(j.template, &args, ft_images)?;
        for &seed in &args.seeds {
            let mut from_file = RunConfig::new(hp.clone(), &data);
            from_file.seed = seed;
            from_file.init.weights = Some(file.clone());
            from_file.init.freeze_backbone = args.freeze_backbone;
            let random = from_file.clone().random_init();
            let mut runs = Vec::new();
            for (config, tag) in [(&from_file, "pretrained"), (&random, "random")] {
                let out = work.join(format!("finetune-{}-{tag}-seed{seed}", j.template));
                let s = train(config, &out, args.verbose).with_context(|| {
                    format!("fine-tuning {} ({tag} start, seed {seed})", j.template)
                })?;
                runs.push(Run {
                    top1: top1(&s)?,
                    best_epoch: s.record.best.map_or(s.epochs, |b| b.1),
                    seconds: s.seconds,
                });
            }
            let pair = Pair {
                job: *j,
                seed,
                pretrained: runs[0],
                random: runs[1],
            };
            println!(
                "fine-tuned {} (seed {seed}): pretrained {:.1}% (epoch {}, {:.0} s), random init \
                 {:.1}% (epoch {}, {:.0} s)",
                j.template,
                pair.pretrained.top1 * 100.0,
                pair.pretrained.best_epoch,
                pair.pretrained.seconds,
                pair.random.top1 * 100.0,
                pair.random.best_epoch,
                pair.random.seconds
            );
            pairs.push(pair);
        }
    }

    println!();
    println!("validation top-1 of the best epoch, {}:", data.display());
    println!(
        "{:<36} {:<16} {:>5} {:>10} {:>10} {:>8} {:>12} {:>14}",
        "template", "arch", "seed", "pretrained", "random", "margin", "pretrain s", "fine-tune s"
    );
    for p in &pairs {
        let pre = pretrained.iter().find(|x| x.arch == p.job.arch);
        println!(
            "{:<36} {:<16} {:>5} {:>9.1}% {:>9.1}% {:>+7.1} {:>12.0} {:>14}",
            p.job.template.name(),
            p.job.arch.name(),
            p.seed,
            p.pretrained.top1 * 100.0,
            p.random.top1 * 100.0,
            p.margin(),
            pre.map_or(0.0, |x| x.seconds),
            format!("{:.0} / {:.0}", p.pretrained.seconds, p.random.seconds),
        );
    }
    println!("(margin in percentage points; fine-tune s: from the file / from random weights)");
    let summary: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let of: Vec<&Pair> = pairs
                .iter()
                .filter(|p| p.job.template == j.template)
                .collect();
            let col =
                |f: &dyn Fn(&Pair) -> f64| mean_sd(&of.iter().map(|p| f(p)).collect::<Vec<_>>());
            let (pre, pre_sd) = col(&|p| p.pretrained.top1 * 100.0);
            let (rnd, rnd_sd) = col(&|p| p.random.top1 * 100.0);
            let (margin, margin_sd) = col(&|p| p.margin());
            let ahead = of.iter().filter(|p| p.margin() > 0.0).count();
            if args.seeds.len() > 1 {
                println!(
                    "{:<36} over {} seeds: pretrained {pre:.1} ± {pre_sd:.1}%, random {rnd:.1} ± \
                     {rnd_sd:.1}%, margin {margin:+.1} ± {margin_sd:.1} points, pretrained ahead \
                     in {ahead} of {}",
                    j.template.name(),
                    of.len(),
                    of.len()
                );
            }
            serde_json::json!({
                "template": j.template.name(),
                "seeds": of.len(),
                "pretrained_top1_mean": pre / 100.0,
                "random_top1_mean": rnd / 100.0,
                "margin_mean": margin / 100.0,
                "margin_sd": margin_sd / 100.0,
                "pretrained_ahead": ahead,
            })
        })
        .collect();

    if let Some(path) = &args.json {
        let value = serde_json::json!({
            "pretrain_data": pretrain_data,
            "data": data,
            "pretrain_size": args.pretrain_size,
            "pretrain_epochs": args.pretrain_epochs,
            "size": args.size,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seeds": args.seeds,
            "freeze_backbone": args.freeze_backbone,
            "pretrain": pretrained.iter().map(|p| serde_json::json!({
                "arch": p.arch.name(),
                "template": p.template.name(),
                "top1": p.top1,
                "seconds": p.seconds,
                "weights": p.weights,
                "tensors": p.tensors,
            })).collect::<Vec<_>>(),
            "summary": summary,
            "finetune": pairs.iter().map(|p| serde_json::json!({
                "template": p.job.template.name(),
                "seed": p.seed,
                "arch": p.job.arch.name(),
                "pretrained_top1": p.pretrained.top1,
                "random_top1": p.random.top1,
                "margin": p.margin() / 100.0,
                "pretrained_best_epoch": p.pretrained.best_epoch,
                "random_best_epoch": p.random.best_epoch,
                "pretrained_seconds": p.pretrained.seconds,
                "random_seconds": p.random.seconds,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
