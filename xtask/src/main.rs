//! `cargo xtask`: the commands people run — schemas, templates, params, validate,
//! and (as the crates land) train, eval, predict, schedule and bench.

use clap::{Parser, Subcommand};

mod hparams_cmds;
mod schedule;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schemas(args) => hparams_cmds::schemas(args),
        Command::Templates(args) => hparams_cmds::templates(args),
        Command::Params(args) => hparams_cmds::params(args),
        Command::Validate(args) => hparams_cmds::validate(args),
        Command::Schedule(args) => schedule::schedule(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
