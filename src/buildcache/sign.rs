//! Signing spec manifests: [`sign_all`] cleartext-signs many texts in parallel. Publishing
//! (verify the source, sign, upload, merge the index) is [`super::publish`].

use anyhow::Result;

use crate::pgp::SigningKey;

/// Cleartext-signs many texts, in parallel over the available cores, preserving order.
pub fn sign_all(key: &SigningKey, texts: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(texts.len().max(1));
    if threads <= 1 {
        return texts.iter().map(|t| key.clearsign(t)).collect();
    }
    let chunk = texts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|t| key.clearsign(t))
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
