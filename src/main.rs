//! The `vct` command: `vct train`, `vct eval`, `vct predict`, `vct export`, ...
//! (the same commands as `cargo xtask`, from vct-cli).

fn main() -> std::process::ExitCode {
    vct_cli::main()
}
