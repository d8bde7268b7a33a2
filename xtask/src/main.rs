//! `cargo xtask`: the commands people run — schemas, templates, params, validate,
//! and (as the crates land) train, eval, predict, export, schedule and bench.

use clap::{Parser, Subcommand};

mod arch;
mod bench_data;
mod bench_train;
mod export_cmd;
mod hparams_cmds;
mod schedule;
mod train_cmds;
mod weights_cmds;

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
    /// Train a template on a folder of images (no arguments: the built-in demo).
    Train(Box<train_cmds::TrainArgs>),
    /// Evaluate a trained model on a folder or manifest; prints and writes metrics.
    Eval(train_cmds::EvalArgs),
    /// Predict concepts (and embeddings) for images with a trained model.
    Predict(train_cmds::PredictArgs),
    /// Export a trained model to ONNX or a safetensors bundle, preprocessing included.
    Export(export_cmd::ExportArgs),
    /// Write the JSON Schemas of every template into `schemas/` (or check them).
    Schemas(hparams_cmds::SchemasArgs),
    /// List the templates, or describe one template's hyperparameters.
    Templates(hparams_cmds::TemplatesArgs),
    /// Print a complete default hyperparameter file for a template.
    Params(hparams_cmds::ParamsArgs),
    /// Validate a hyperparameter file and report every mistake.
    Validate(hparams_cmds::ValidateArgs),
    /// Print a template's learning-rate schedule (key points) and plot it as SVG.
    Schedule(schedule::ScheduleArgs),
    /// Print an architecture's layer table: output shapes and parameter counts.
    Arch(arch::ArchArgs),
    /// Measure speed and peak memory (`train`: training and inference steps).
    Bench(BenchArgs),
    /// Pretrained weights: list sources and cache state, fetch ahead of time, verify.
    Weights(weights_cmds::WeightsArgs),
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
}

fn main() -> std::process::ExitCode {
    // Candle's elementwise thread pool spins between ops by default, stealing the
    // cores the conv kernels need (ResNet-50 training 9 -> 14 img/s on 2 cores).
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    // Freed activations stay in the process for the next step (no page faults).
    vct_kernels::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train_cmds::train(*args),
        Command::Eval(args) => train_cmds::eval(args),
        Command::Predict(args) => train_cmds::predict(args),
        Command::Export(args) => export_cmd::run(args),
        Command::Schemas(args) => hparams_cmds::schemas(args),
        Command::Templates(args) => hparams_cmds::templates(args),
        Command::Params(args) => hparams_cmds::params(args),
        Command::Validate(args) => hparams_cmds::validate(args),
        Command::Schedule(args) => schedule::schedule(args),
        Command::Arch(args) => arch::run(args),
        Command::Weights(args) => weights_cmds::run(args),
        Command::Bench(args) => match args.target {
            BenchTarget::Train(a) => bench_train::run(a),
            BenchTarget::Data(a) => bench_data::run(a),
        },
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
