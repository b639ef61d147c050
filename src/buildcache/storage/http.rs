//! [`HttpStore`]: a read-only buildcache behind `https://` (a CDN, a web server), or plain
//! `http://` when explicitly allowed. HTTP cannot list, so readers walk from the index and the
//! key index; every signature and digest is checked the same way as on other stores, so the
//! transport is not trusted for integrity. Redirects to plain `http://` are refused unless
//! allowed, like the URL itself.

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use std::io::Write;

use super::{Capabilities, FileBody, Object, ObjectMeta, PutOptions, Storage};

/// A read-only buildcache served over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpStore {
    base: String,
    client: reqwest::Client,
}

/// Largest object read into memory (manifests, index and spec blobs are far smaller; tarballs
/// are hashed as they stream).
const MAX_GET: u64 = 4 << 30;

impl HttpStore {
    /// A store reading `base` (`https://host/path`); `http://` only to a loopback host or with
    /// `allow_insecure` ([`crate::net::plain_http_allowed`]).
    pub fn new(base: &str, allow_insecure: bool) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if base.starts_with("http://") && !crate::net::plain_http_allowed(&base, allow_insecure) {
            bail!(
                "{base}: plain http:// can be read or altered by anyone on the network path; use https://, or pass --allow-insecure-http for a loopback test or a private mirror (signatures are checked either way)"
            );
        }
        if !base.starts_with("https://") && !base.starts_with("http://") {
            bail!("{base} is not an http(s):// URL");
        }
        // A redirect may go to plain http:// only where the user allowed it, or from a loopback
        // base to a loopback host: a remote mirror never sends us to a local service.
        let base_loopback = reqwest::Url::parse(&base).is_ok_and(|u| crate::net::is_loopback(&u));
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if attempt.url().scheme() != "https"
                && !(allow_insecure || base_loopback && crate::net::is_loopback(attempt.url()))
            {
                attempt.error(
                    "redirect to plain http:// refused (pass --allow-insecure-http to allow it)",
                )
            } else {
                attempt.follow()
            }
        });
        let client = crate::net::http_client(None, Some(policy))?;
        Ok(HttpStore { base, client })
    }

    fn object_url(&self, key: &str) -> Result<String> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/+@".contains(&b))
        {
            bail!("invalid object key {key:?}");
        }
        Ok(format!("{}/{key}", self.base))
    }

    /// GETs `key`: the response when it is there, `None` on 404, an error otherwise.
    async fn fetch(&self, key: &str) -> Result<Option<(String, reqwest::Response)>> {
        let url = self.object_url(key)?;
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            bail!("GET {url}: HTTP {}", resp.status());
        }
        Ok(Some((url, resp)))
    }

    fn read_only(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{} is an HTTP(S) buildcache, which is read-only; publish to its s3:// or file:// location",
            self.base
        )
    }
}

impl Storage for HttpStore {
    fn url(&self) -> String {
        self.base.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: false,
            write: false,
        }
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>>> {
        Box::pin(async move {
            let Some((url, resp)) = self.fetch(key).await? else {
                return Ok(None);
            };
            if resp.content_length().is_some_and(|n| n > MAX_GET) {
                bail!("GET {url}: the object is larger than {MAX_GET} bytes");
            }
            let etag = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|e| e.trim_matches('"').to_owned());
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("GET {url}"))?
                .to_vec();
            Ok(Some(Object { bytes, etag }))
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        Box::pin(async move {
            let url = self.object_url(key)?;
            let resp = self
                .client
                .head(&url)
                .send()
                .await
                .with_context(|| format!("HEAD {url}"))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !resp.status().is_success() {
                bail!("HEAD {url}: HTTP {}", resp.status());
            }
            // `content_length()` of a HEAD response is the body's (0); read the header.
            let size = resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("HEAD {url}: no Content-Length"))?;
            Ok(Some(ObjectMeta::sized(key, size)))
        })
    }

    fn put<'a>(
        &'a self,
        _key: &'a str,
        _bytes: Vec<u8>,
        _opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move { Err(self.read_only()) })
    }

    fn put_file<'a>(
        &'a self,
        _key: &'a str,
        _file: &'a FileBody,
        _opts: PutOptions,
    ) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move { Err(self.read_only()) })
    }

    fn delete<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(self.read_only()) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            bail!(
                "{} is an HTTP(S) buildcache, which cannot be listed ({prefix}); read it from its index",
                self.base
            )
        })
    }

    fn copy_to<'a>(
        &'a self,
        key: &'a str,
        out: &'a mut std::fs::File,
        max: u64,
    ) -> BoxFuture<'a, Result<Option<(crate::buildcache::layout::Sha256Hex, u64)>>> {
        Box::pin(async move {
            use sha2::{Digest, Sha256};
            let Some((url, mut resp)) = self.fetch(key).await? else {
                return Ok(None);
            };
            let too_big = || anyhow::anyhow!("{url} is larger than {max} bytes; refusing it");
            if resp.content_length().is_some_and(|n| n > max) {
                return Err(too_big());
            }
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
                n += chunk.len() as u64;
                if n > max {
                    return Err(too_big());
                }
                h.update(&chunk);
                out.write_all(&chunk)
                    .with_context(|| format!("GET {url}: cannot write the download"))?;
            }
            let d = crate::buildcache::layout::Sha256Hex::parse(&hex::encode(h.finalize()))?;
            Ok(Some((d, n)))
        })
    }

    fn digest<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(crate::buildcache::layout::Sha256Hex, u64)>>> {
        Box::pin(async move {
            use sha2::{Digest, Sha256};
            let Some((url, mut resp)) = self.fetch(key).await? else {
                return Ok(None);
            };
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
                h.update(&chunk);
                n += chunk.len() as u64;
            }
            let d = crate::buildcache::layout::Sha256Hex::parse(&hex::encode(h.finalize()))?;
            Ok(Some((d, n)))
        })
    }
}
