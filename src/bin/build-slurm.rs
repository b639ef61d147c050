//! `build-slurm`: see [`slurm_factory::cli::builder`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{builder, main_with};

fn main() -> ExitCode {
    let args = builder::SlurmArgs::parse();
    main_with(|runner| builder::run_slurm(args, runner))
}
