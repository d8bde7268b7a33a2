//! Commands about templates and hyperparameters: templates, params, validate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::Value;
use vct_hparams::{schema, specs, Format, HyperParams, Template};

/// Arguments of `templates`.
#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// A template name (any case) to describe key by key.
    name: Option<String>,
}

/// Lists the templates or describes one.
pub fn templates(args: TemplatesArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = args.name else {
        let rows: Vec<Vec<String>> = Template::ALL
            .iter()
            .map(|t| {
                let i = t.info();
                vec![i.name.into(), i.architecture.into(), i.purpose.into()]
            })
            .collect();
        print_table(&["template", "architecture", "what it is for"], &rows);
        println!("\n`templates <NAME>` describes a template's hyperparameters.");
        return Ok(ExitCode::SUCCESS);
    };
    let template: Template = name.parse()?;
    let info = template.info();
    println!("{}", info.name);
    println!("  architecture: {}", info.architecture);
    println!("  init:         {}", info.init);
    println!("  schedule:     {}", info.schedule);
    println!("  for:          {}\n", info.purpose);
    let schema = schema::template_schema(template);
    let props = schema.get("properties").cloned().unwrap_or(Value::Null);
    let rows: Vec<Vec<String>> = specs(template)
        .iter()
        .map(|spec| {
            let prop = props.get(spec.key).cloned().unwrap_or(Value::Null);
            vec![
                spec.key.to_string(),
                prop.get("default")
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                spec.rule.describe(),
                spec.rule.step_text(),
                prop.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ]
        })
        .collect();
    print_table(&["key", "default", "allowed", "step", "description"], &rows);
    for rule in vct_hparams::cross_rules(template) {
        println!("\nrule between keys: {}", rule.describe());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Arguments of `params`.
#[derive(Debug, Args)]
pub struct ParamsArgs {
    /// The template (any case).
    name: String,
    /// Output format: json, yaml or toml.
    #[arg(long, default_value = "json")]
    format: String,
}

/// Prints a complete default hyperparameter file.
pub fn params(args: ParamsArgs) -> anyhow::Result<ExitCode> {
    let template: Template = args.name.parse()?;
    let Some(format) = Format::from_name(&args.format) else {
        bail!("--format {}: expected json, yaml or toml", args.format);
    };
    print!(
        "{}",
        HyperParams::defaults(template).to_string_format(format)
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A .json, .yaml/.yml or .toml hyperparameter file.
    file: PathBuf,
    /// The template, when the file holds bare params without a `template` key.
    #[arg(long)]
    template: Option<String>,
}

/// Validates a file, printing every violation; exit code 1 on any.
pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let template = args
        .template
        .as_deref()
        .map(str::parse::<Template>)
        .transpose()?;
    match HyperParams::load(&args.file, template) {
        Ok(hp) => {
            println!(
                "{}: valid {} hyperparameters",
                args.file.display(),
                hp.template()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
