//! `cargo xtask weights list | fetch [TEMPLATE...] | verify [TEMPLATE...]`:
//! the pretrained weights of the templates — where each comes from, whether it
//! is in the cache, downloading ahead of time (e.g. before going offline), and
//! re-hashing what is cached.

use std::process::ExitCode;

use vct_hparams::Template;
use vct_hub::{Expected, HubOptions, WeightsSource};
use vct_train::weights::{default_source, default_weights, DEFAULT_WEIGHTS};

/// Arguments of `cargo xtask weights`.
#[derive(Debug, clap::Args)]
pub struct WeightsArgs {
    /// Never open a socket: only the cache is used (as HF_HUB_OFFLINE=1 does).
    #[arg(long, global = true)]
    offline: bool,
    /// Hub server or mirror (default: $HF_ENDPOINT, else https://huggingface.co).
    // The doc line is the `--help` text, where `<...>` around the URL would show.
    #[allow(rustdoc::bare_urls)]
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: WeightsCommand,
}

/// What `cargo xtask weights` does.
#[derive(Debug, clap::Subcommand)]
enum WeightsCommand {
    /// Each template's default source, whether it is cached, its size and sha256.
    List,
    /// Download weights ahead of time (every pretrained template by default).
    Fetch {
        /// Templates whose default weights to fetch (default: all pretrained ones).
        templates: Vec<String>,
        /// Also fetch this source (`ORG/REPO[:FILE]` or a URL), as `--weights-source` names it.
        #[arg(long = "source", value_name = "SOURCE")]
        sources: Vec<String>,
    },
    /// Re-hash cached weights against their checksums; a mismatching file is deleted.
    Verify {
        /// Templates to check (default: all pretrained ones).
        templates: Vec<String>,
    },
}

/// Runs a `weights` subcommand.
pub fn run(args: WeightsArgs) -> anyhow::Result<ExitCode> {
    let mut opts = HubOptions::from_env().offline(args.offline);
    if let Some(e) = &args.endpoint {
        opts = opts.endpoint(e);
    }
    match args.command {
        WeightsCommand::List => list(&opts),
        WeightsCommand::Fetch { templates, sources } => fetch(&opts, &templates, &sources),
        WeightsCommand::Verify { templates } => verify(&opts, &templates),
    }
}

/// The named templates (default: every template with a source), each with its source.
fn pretrained(names: &[String]) -> anyhow::Result<Vec<(Template, WeightsSource)>> {
    let templates: Vec<Template> = if names.is_empty() {
        Template::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| n.parse::<Template>())
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for t in templates {
        match default_source(t) {
            Some(s) => out.push((t, s)),
            None if names.is_empty() => {}
            None => anyhow::bail!(
                "{t} has no pretrained weights to fetch: {}",
                default_weights(t).reason
            ),
        }
    }
    Ok(out)
}

fn size_text(bytes: u64) -> String {
    format!("{bytes} bytes ({:.1} MB)", bytes as f64 / 1e6)
}

fn header(opts: &HubOptions) {
    println!(
        "cache {}  endpoint {}{}",
        opts.cache_dir.display(),
        opts.endpoint,
        if opts.offline { "  (offline)" } else { "" }
    );
}

fn list(opts: &HubOptions) -> anyhow::Result<ExitCode> {
    header(opts);
    for row in DEFAULT_WEIGHTS {
        println!("\n{}", row.template);
        let Some(src) = default_source(row.template) else {
            println!("  source  none (random weights)");
            println!("  why     {}", row.reason);
            continue;
        };
        println!("  source  {src}");
        match vct_hub::cached_file(&src, opts) {
            Some(f) => {
                let (sha, _) = vct_hub::hash::sha256_file(&f.path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.path.display()))?;
                println!("  cached  yes, {}", size_text(f.size));
                let differs = match &f.expected {
                    Some(Expected::Sha256(x) | Expected::Sha256Prefix(x)) => !sha.starts_with(x),
                    _ => false,
                };
                let note = match (&f.expected, differs) {
                    (Some(x), true) => format!(
                        "  (expected {} {}: run `cargo xtask weights verify`)",
                        x.kind(),
                        x.value()
                    ),
                    _ => String::new(),
                };
                println!("  sha256  {sha}{note}");
                println!("  path    {}", f.path.display());
            }
            None => println!(
                "  cached  no (would be {})",
                vct_hub::cache_location(&src, opts).display()
            ),
        }
        println!("  why     {}", row.reason);
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch(opts: &HubOptions, names: &[String], sources: &[String]) -> anyhow::Result<ExitCode> {
    // `--source` alone fetches only those; templates (or none: all) add theirs.
    let mut jobs: Vec<(String, WeightsSource)> = Vec::new();
    let mut add = |who: String, src: WeightsSource| match jobs.iter_mut().find(|(_, s)| *s == src) {
        Some((w, _)) => *w = format!("{w}, {who}"),
        None => jobs.push((who, src)),
    };
    if !names.is_empty() || sources.is_empty() {
        for (t, src) in pretrained(names)? {
            add(t.to_string(), src);
        }
    }
    for s in sources {
        add("--source".into(), WeightsSource::parse_override(s)?);
    }
    header(opts);
    let mut failed = 0;
    for (who, src) in &jobs {
        let was_cached = vct_hub::cached(src, opts).is_some();
        match vct_hub::fetch(src, opts) {
            Ok(path) => {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                println!(
                    "{who}: {src}\n  {} {} ({})",
                    if was_cached { "cached" } else { "downloaded" },
                    path.display(),
                    size_text(size)
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("{who}: {e}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} fetches failed", jobs.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(opts: &HubOptions, names: &[String]) -> anyhow::Result<ExitCode> {
    header(opts);
    let mut bad = 0;
    let mut seen = Vec::new();
    for (t, src) in pretrained(names)? {
        // Two templates can share a file (the BN-Inception ones): hash it once.
        if seen.contains(&src) {
            println!("{t}: {src}\n  same file as above");
            continue;
        }
        seen.push(src.clone());
        match vct_hub::verify(&src, opts) {
            Ok(v) => {
                let against = v
                    .expected
                    .as_ref()
                    .map_or("no recorded hash to compare".to_string(), |x| {
                        format!("matches {} {}", x.kind(), x.value())
                    });
                println!(
                    "{t}: {src}\n  ok  sha256 {}, {}, {against}",
                    v.sha256,
                    size_text(v.size)
                );
            }
            Err(vct_hub::HubError::NotCached { looked, .. }) => {
                println!("{t}: {src}\n  not cached ({})", looked.display());
            }
            Err(e) => {
                bad += 1;
                eprintln!("{t}: {e}");
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} cached file(s) failed verification");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
