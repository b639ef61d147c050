//! `test-install`: see [`slurm_factory::cli::test_install`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{main_with, test_install};

fn main() -> ExitCode {
    let args = test_install::Args::parse();
    main_with(|runner| test_install::run(args, runner))
}
