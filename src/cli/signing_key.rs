//! The signing key at the edge: `--key-file` (input `key_file`) or `GPG_PRIVATE_KEY`, unlocked
//! with `GPG_PASSPHRASE` and selected by `GPG_KEY_ID`. This is the only place that reads those
//! variables. Every secret value is registered with the log masker before anything could
//! print it; the library receives a loaded [`SigningKey`] (whose `Debug` shows only public
//! fingerprints) and never sees the material.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::gha::Runner;
use crate::pgp::{KeyError, SigningKey};

/// The variable holding the ASCII-armored secret key (or base64 of it).
pub(crate) const PRIVATE_KEY_VAR: &str = "GPG_PRIVATE_KEY";
/// The variable holding the key's passphrase.
pub(crate) const PASSPHRASE_VAR: &str = "GPG_PASSPHRASE";
/// The variable selecting the key (long key id or fingerprint).
pub(crate) const KEY_ID_VAR: &str = "GPG_KEY_ID";

/// Where the OpenPGP signing key comes from, when not from `GPG_PRIVATE_KEY`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SigningKeyArgs {
    /// Read the armored secret key from this file instead of GPG_PRIVATE_KEY (unlocked with GPG_PASSPHRASE) [input: key_file]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl SigningKeyArgs {
    /// `--key-file`, else the action input `key_file`.
    pub fn resolve(&self, runner: &Runner) -> Option<PathBuf> {
        self.key_file
            .clone()
            .or_else(|| runner.input("key_file").map(PathBuf::from))
    }

    /// Whether a key is given at all: a key file, or a non-blank `GPG_PRIVATE_KEY`.
    pub fn is_given(&self, runner: &Runner) -> bool {
        self.resolve(runner).is_some()
            || runner
                .var(PRIVATE_KEY_VAR)
                .is_some_and(|k| !k.trim().is_empty())
    }

    /// Loads the key (masking the secrets first) and prints its public fingerprints only.
    pub fn load(&self, runner: &Runner) -> Result<SigningKey> {
        let key = load(self.resolve(runner).as_deref(), runner)?;
        runner.info(&format!(
            "signing key: {} (signing subkey {})",
            key.fingerprint(),
            key.signing_fingerprint()
        ));
        Ok(key)
    }
}

fn load(key_file: Option<&Path>, runner: &Runner) -> Result<SigningKey> {
    let passphrase = runner.var(PASSPHRASE_VAR).filter(|p| !p.is_empty());
    let key_id = runner.var(KEY_ID_VAR).filter(|k| !k.trim().is_empty());
    let material: Vec<u8> = match key_file {
        Some(path) => std::fs::read(path).with_context(|| {
            format!(
                "cannot read the signing key file {}; pass the path of an ASCII-armored secret key",
                path.display()
            )
        })?,
        None => runner
            .var(PRIVATE_KEY_VAR)
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    mask_secrets(runner, &String::from_utf8_lossy(&material), passphrase);
    SigningKey::load(&material, passphrase, key_id).map_err(|e| {
        let origin = match key_file {
            Some(p) => format!("the key file {}", p.display()),
            None => PRIVATE_KEY_VAR.to_owned(),
        };
        anyhow::anyhow!("{e} (the key from {origin}). {}", remedy(&e, key_file))
    })
}

/// What to change, in the terms of the variables and flags this edge reads.
fn remedy(e: &KeyError, key_file: Option<&Path>) -> String {
    let material = match key_file {
        Some(p) => format!("the key file {}", p.display()),
        None => PRIVATE_KEY_VAR.to_owned(),
    };
    match e {
        KeyError::Missing => format!(
            "Set {PRIVATE_KEY_VAR} to the ASCII-armored secret key (or base64 of it), or pass --key-file"
        ),
        KeyError::NotAKey(_) | KeyError::PublicOnly(_) | KeyError::Expired(..) => {
            format!("Fix {material}: it must hold an exported secret key")
        }
        KeyError::Ambiguous(..) => {
            format!("Set {KEY_ID_VAR} to the fingerprint of the key to sign with")
        }
        KeyError::KeyIdMismatch { .. } | KeyError::BadKeyId(_) => {
            format!("Fix {KEY_ID_VAR} or {material}")
        }
        KeyError::NeedPassphrase(_) => format!("Set {PASSPHRASE_VAR} to its passphrase"),
        KeyError::WrongPassphrase(_) => {
            format!("{PASSPHRASE_VAR} does not unlock it; check the secret's value")
        }
        _ => format!("Check {material}"),
    }
}

/// Registers the key material and passphrase with the runner's log masker: every line of
/// the value as given and of its decoded armor (the runner masks line by line).
fn mask_secrets(runner: &Runner, material: &str, passphrase: Option<&str>) {
    use base64::Engine as _;
    if let Some(p) = passphrase {
        runner.add_mask(p);
    }
    let mut lines: Vec<String> = material.lines().map(|l| l.trim().to_owned()).collect();
    let compact: String = material.split_whitespace().collect();
    if !material.trim_start().starts_with("-----BEGIN")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes())
        && let Ok(text) = String::from_utf8(decoded)
    {
        lines.push(compact);
        lines.extend(text.lines().map(|l| l.trim().to_owned()));
    }
    for line in lines {
        let public_armor = line.starts_with("-----")
            || line.starts_with("Comment:")
            || line.starts_with("Version:");
        if line.len() >= 4 && !public_armor {
            runner.add_mask(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(vars: &[(&str, &str)]) -> Runner {
        Runner::from_vars(vars.iter().copied()).with_sink(Box::new(std::io::sink()))
    }

    #[test]
    fn errors_name_the_variable_to_fix() {
        let e = SigningKeyArgs::default()
            .load(&runner(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no signing key was given") && e.contains("Set GPG_PRIVATE_KEY"),
            "{e}"
        );
        let e = SigningKeyArgs::default()
            .load(&runner(&[(PRIVATE_KEY_VAR, "hello world")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not an OpenPGP secret key") && e.contains("Fix GPG_PRIVATE_KEY"),
            "{e}"
        );
        let args = SigningKeyArgs {
            key_file: Some("/nonexistent/key.asc".into()),
        };
        let e = format!("{:#}", args.load(&runner(&[])).unwrap_err());
        assert!(e.contains("/nonexistent/key.asc"), "{e}");
        assert!(args.is_given(&runner(&[])));
        assert!(!SigningKeyArgs::default().is_given(&runner(&[(PRIVATE_KEY_VAR, "  ")])));
    }
}
