//! `prepare-matrix`: see [`slurm_factory::cli::prepare_matrix`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{main_with, prepare_matrix};

fn main() -> ExitCode {
    let args = prepare_matrix::Args::parse();
    main_with(|runner| prepare_matrix::run(args, runner))
}
