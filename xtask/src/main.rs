//! `cargo xtask`: every command of the `vct` binary (train, eval, predict, export,
//! weights, templates, ...: one implementation, in vct-cli), plus the developer
//! commands `schemas` and `bench`.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod bench_data;
mod bench_finetune;
mod bench_frozen;
mod bench_train;
mod schemas;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "vct: visual classification templates",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    User(vct_cli::Command),
    /// Write the JSON Schemas of every template into `schemas/` (or check them).
    Schemas(schemas::SchemasArgs),
    /// Measure speed and peak memory (`train`, `data`) and the gain of a pretrained start
    /// (`finetune`).
    Bench(BenchArgs),
}

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

/// What `cargo xtask bench` measures.
#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Training / inference images/s and peak memory: stock candle ops vs vct-kernels.
    Train(bench_train::TrainArgs),
    /// Data pipeline images/s (decode, resize, crop, flip, normalise) vs torchvision.
    Data(bench_data::DataArgs),
    /// Epoch time of a frozen backbone: head trained on cached embeddings vs on images.
    Frozen(bench_frozen::FrozenArgs),
    /// Pretrain each backbone briefly with vct, then fine-tune the pretrained templates
    /// from that file and from random weights: validation top-1 of both.
    Finetune(bench_finetune::FinetuneArgs),
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> std::process::ExitCode {
    vct_cli::init_process();
    let cli = Cli::parse();
    let root = repo_root();
    let ctx = vct_cli::Context {
        runs: root.join("runs"),
        demo_data: root.join("target").join("vct-demo-data-1000"),
        prog: "cargo xtask".into(),
    };
    vct_cli::exit_code(match cli.command {
        Command::User(c) => vct_cli::run(c, &ctx),
        Command::Schemas(args) => schemas::schemas(args),
        Command::Bench(args) => match args.target {
            BenchTarget::Train(a) => bench_train::run(a),
            BenchTarget::Data(a) => bench_data::run(a),
            BenchTarget::Frozen(a) => bench_frozen::run(a),
            BenchTarget::Finetune(a) => bench_finetune::run(a),
        },
    })
}
