//! `build-compiler`: see [`slurm_factory::cli::builder`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{builder, main_with};

fn main() -> ExitCode {
    let args = builder::CompilerArgs::parse();
    main_with(|runner| builder::run_compiler(args, runner))
}
