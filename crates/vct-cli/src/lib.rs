//! The vct command line, one implementation for the `vct` binary and `cargo xtask`:
//! `train`, `eval`, `predict`, `export`, `weights`, `templates`, `params`, `validate`,
//! `schedule`, `arch`, `data check`, and `completions` / `man` generated from the same definitions.

#![warn(missing_docs)]

pub mod arch;
pub mod data;
pub mod export;
pub mod hparams;
pub mod plot;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod tensorboard;
pub mod train;
pub mod weights;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Where a command keeps its files, and how it names itself in messages.
#[derive(Debug, Clone)]
pub struct Context {
    /// Parent of new run folders (`runs/`).
    pub runs: PathBuf,
    /// Where the built-in demo dataset is generated.
    pub demo_data: PathBuf,
    /// The command as a user types it (`vct` or `cargo xtask`).
    pub prog: String,
}

impl Context {
    /// The `vct` binary's: `./runs`, the demo data in the user's cache folder.
    pub fn for_binary() -> Context {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache = env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        Context {
            runs: PathBuf::from("runs"),
            demo_data: cache.join("vct").join("demo-data-1000"),
            prog: "vct".into(),
        }
    }
}

/// The commands people run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a template on a folder of images (no arguments: the built-in demo).
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained model on a folder or manifest; prints and writes metrics, and
    /// with --report an HTML report.
    Eval(train::EvalArgs),
    /// Predict concepts (and embeddings) for images with a trained model.
    Predict(train::PredictArgs),
    /// Export a trained model to ONNX or a safetensors bundle, preprocessing included.
    Export(export::ExportArgs),
    /// Pretrained weights: list sources and cache state, fetch ahead of time, verify.
    Weights(weights::WeightsArgs),
    /// List the templates, or describe one template's hyperparameters.
    Templates(hparams::TemplatesArgs),
    /// Print a complete default hyperparameter file for a template.
    Params(hparams::ParamsArgs),
    /// Validate a hyperparameter file and report every mistake.
    Validate(hparams::ValidateArgs),
    /// Print a template's learning-rate schedule (key points) and plot it as SVG.
    Schedule(schedule::ScheduleArgs),
    /// Print an architecture's layer table: output shapes and parameter counts.
    Arch(arch::ArchArgs),
    /// Datasets: `data check DIR` finds problems before training.
    Data(data::DataArgs),
}

/// Runs one command.
pub fn run(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Train(args) => train::train(*args, ctx),
        Command::Eval(args) => train::eval(args),
        Command::Predict(args) => train::predict(args),
        Command::Export(args) => export::run(args),
        Command::Weights(args) => weights::run(args),
        Command::Templates(args) => hparams::templates(args),
        Command::Params(args) => hparams::params(args),
        Command::Validate(args) => hparams::validate(args),
        Command::Schedule(args) => schedule::schedule(args),
        Command::Arch(args) => arch::run(args),
        Command::Data(args) => data::run(args),
    }
}

/// The `vct` binary's command line.
#[derive(Debug, Parser)]
#[command(name = "vct", about = "vct: visual classification templates", version)]
pub struct Cli {
    #[command(subcommand)]
    command: BinCommand,
}

/// The binary's commands: the shared ones plus completions and the man page.
#[derive(Debug, Subcommand)]
enum BinCommand {
    #[command(flatten)]
    Shared(Command),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// Settings every vct process wants before it computes anything.
pub fn init_process() {
    // Candle's elementwise thread pool spins between ops by default, stealing the
    // cores the conv kernels need (ResNet-50 training 9 -> 14 img/s on 2 cores).
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    // Freed activations stay in the process for the next step (no page faults).
    vct_kernels::alloc::keep_freed_memory();
}

/// Prints an error (with its causes) and turns a result into an exit code.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `vct` binary: parses the command line and runs it.
pub fn main() -> ExitCode {
    init_process();
    let cli = Cli::parse();
    exit_code(match cli.command {
        BinCommand::Shared(c) => run(c, &Context::for_binary()),
        BinCommand::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "vct", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        BinCommand::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut std::io::stdout())
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
    })
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
