//! `sign-and-upload`: see [`slurm_factory::cli::sign_and_upload`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{main_with, sign_and_upload};

fn main() -> ExitCode {
    let args = sign_and_upload::Args::parse();
    main_with(|runner| sign_and_upload::run(args, runner))
}
