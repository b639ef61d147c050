//! `tarball-publish`: see [`slurm_factory::cli::tarball_publish`].

use std::process::ExitCode;

use clap::Parser;
use slurm_factory::cli::{main_with, tarball_publish};

fn main() -> ExitCode {
    let args = tarball_publish::Args::parse();
    main_with(|runner| tarball_publish::run(args, runner))
}
