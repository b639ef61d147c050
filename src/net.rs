//! What plain `http://` may reach. One rule for every reader and sender of URLs: `https://`
//! always; `http://` to a loopback host (`localhost`, 127.0.0.0/8, `::1`) always, because
//! nothing leaves the machine (as browsers treat `http://localhost` as a secure origin); any
//! other `http://` only when the user asked for it (`--allow-insecure-http`).

/// The one way this crate builds an HTTP client (rustls, `slurm-factory/<version>` as the
/// User-Agent, 30 s to connect): `timeout` bounds a whole request (for small API calls);
/// without it only a read that stalls for 120 s fails, so a large download may take as long
/// as it needs. `redirect` is reqwest's default (10 hops) unless given.
pub(crate) fn http_client(
    timeout: Option<std::time::Duration>,
    redirect: Option<reqwest::redirect::Policy>,
) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(120))
        .user_agent(concat!("slurm-factory/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(r) = redirect {
        b = b.redirect(r);
    }
    b.build().context("cannot build the HTTP client")
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a read from `url` over plain `http://` is allowed: to a loopback host, or anywhere
/// with `allow_insecure`. `https://` URLs are always allowed; anything unparsable is not.
pub(crate) fn plain_http_allowed(url: &str, allow_insecure: bool) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => true,
        Ok(u) if u.scheme() == "http" => allow_insecure || is_loopback(&u),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_the_only_plain_http_allowed_by_default() {
        for ok in [
            "https://example.org/x",
            "http://127.0.0.1:9000/bucket",
            "http://127.1.2.3/x",
            "http://localhost:8080/",
            "http://[::1]:5000/cache",
        ] {
            assert!(plain_http_allowed(ok, false), "{ok}");
        }
        for refused in [
            "http://example.org/x",
            "http://10.0.0.1/x",
            "http://localhost.example.org/x",
            "http://127.0.0.1.nip.io/x",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(!plain_http_allowed(refused, false), "{refused}");
        }
        assert!(plain_http_allowed("http://10.0.0.1/x", true));
        assert!(!plain_http_allowed("ftp://10.0.0.1/x", true));
    }
}
