//! Signing spec manifests: [`sign_all`] cleartext-signs many texts in parallel. Publishing
//! (verify the source, sign, upload, merge the index) is [`super::publish`].

use anyhow::{Context, Result};

use crate::pgp::SigningKey;

/// Cleartext-signs many texts, each named by the file it becomes (`(name, text)`), in parallel
/// over the available cores, preserving order. A refusal names the file.
pub fn sign_all(key: &SigningKey, texts: &[(&str, &[u8])]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(texts.len().max(1));
    if threads <= 1 {
        return texts.iter().map(|t| sign_one(key, t)).collect();
    }
    let chunk = texts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|t| sign_one(key, t))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
            );
        }
        Ok(out)
    })
}

fn sign_one(key: &SigningKey, (name, text): &(&str, &[u8])) -> Result<Vec<u8>> {
    key.clearsign(text)
        .with_context(|| format!("cannot sign {name}"))
}
