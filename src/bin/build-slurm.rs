//! `build-slurm`: see [`slurm_factory::cli::build`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{build, main_with};

fn main() -> ExitCode {
    let args = build::SlurmArgs::parse();
    main_with(|runner| build::run_slurm(args, runner))
}
