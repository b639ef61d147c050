//! A small fault-injecting HTTP/1.1 proxy (tokio) between our S3 client and moto.
//!
//! It reads each request (head + `Content-Length` body), numbers it, and then, depending on
//! its [`Plan`], drops the connection without an answer, answers a raw `503 SlowDown`, refuses
//! every connection for a while (an outage: the server is down, then back), holds one
//! matching request until the test says go (to run a competing writer in between), or strips
//! the `If-Match`/`If-None-Match` headers (a server without conditional writes), or removes
//! the `<ETag>` elements from `ListObjectsV2` answers (a server that lists without ETags, as
//! s3s-fs does). Otherwise it forwards the request with `Connection: close` and pipes the
//! answer back. One request per connection keeps the framing trivial; the SDK reconnects as
//! needed.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A request the proxy holds until the test acknowledges it.
pub struct Hold {
    /// HTTP method to match.
    pub method: &'static str,
    /// Substring of the path to match.
    pub path_contains: &'static str,
    /// Told when the request arrives.
    pub arrived: mpsc::Sender<()>,
    /// Awaited before the request is forwarded.
    pub go: oneshot::Receiver<()>,
}

/// What to break.
#[derive(Default)]
pub struct Plan {
    /// Drop (close without answer) request numbers in this set.
    pub drop: BTreeSet<u64>,
    /// Drop every n-th request.
    pub drop_every: Option<u64>,
    /// Answer 503 SlowDown to request numbers in this set.
    pub fail_503: BTreeSet<u64>,
    /// Answer 503 to every n-th request.
    pub fail_503_every: Option<u64>,
    /// From request number N on, refuse all connections for the duration.
    pub outage: Option<(u64, Duration)>,
    /// Remove conditional-write headers.
    pub strip_conditions: bool,
    /// Remove the `<ETag>` elements of `ListObjectsV2` answers.
    pub strip_list_etags: bool,
    /// Hold the first request that matches.
    pub hold: Option<Hold>,
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub dropped: AtomicU64,
    pub injected_503: AtomicU64,
    pub refused: AtomicU64,
    pub stripped: AtomicU64,
    /// `ListObjectsV2` answers whose ETags were removed.
    pub listings_without_etags: AtomicU64,
    /// `HEAD` requests seen.
    pub heads: AtomicU64,
    /// `GET` requests of an object (listings not counted).
    pub object_gets: AtomicU64,
}

struct State {
    upstream: String,
    plan: Mutex<Plan>,
    outage_until: Mutex<Option<Instant>>,
    stats: Stats,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub async fn start(upstream_port: u16, plan: Plan) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: format!("127.0.0.1:{upstream_port}"),
            plan: Mutex::new(plan),
            outage_until: Mutex::new(None),
            stats: Stats::default(),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = handle(s, conn).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            state,
            task,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// Replaces the plan.
    pub fn set_plan(&self, plan: Plan) {
        *self.state.plan.lock().unwrap() = plan;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

enum Action {
    Forward {
        strip: bool,
        strip_etags: bool,
        hold: Option<Hold>,
    },
    Drop,
    Fail503,
    Refuse,
}

async fn handle(s: Arc<State>, mut conn: TcpStream) -> std::io::Result<()> {
    if s.outage_until
        .lock()
        .unwrap()
        .is_some_and(|t| Instant::now() < t)
    {
        s.stats.refused.fetch_add(1, Ordering::Relaxed);
        return Ok(()); // closed right away: the server is "down"
    }
    let mut buf = Vec::new();
    let Some(head_len) = read_head(&mut conn, &mut buf).await? else {
        return Ok(());
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_len..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(1 << 20)];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let n = s.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let (method, path) = {
        let mut p = request_line.split(' ');
        (
            p.next().unwrap_or_default().to_owned(),
            p.next().unwrap_or_default().to_owned(),
        )
    };
    if method == "HEAD" {
        s.stats.heads.fetch_add(1, Ordering::Relaxed);
    }
    if method == "GET" && !path.contains("list-type=") && path.trim_start_matches('/').contains('/')
    {
        s.stats.object_gets.fetch_add(1, Ordering::Relaxed);
    }
    let action = {
        let mut plan = s.plan.lock().unwrap();
        if let Some((at, dur)) = plan.outage
            && n >= at
        {
            plan.outage = None;
            *s.outage_until.lock().unwrap() = Some(Instant::now() + dur);
            Action::Refuse
        } else if plan.drop.contains(&n) || plan.drop_every.is_some_and(|e| n.is_multiple_of(e)) {
            Action::Drop
        } else if plan.fail_503.contains(&n)
            || plan.fail_503_every.is_some_and(|e| n.is_multiple_of(e))
        {
            Action::Fail503
        } else {
            let hold = match &plan.hold {
                Some(h) if h.method == method && path.contains(h.path_contains) => plan.hold.take(),
                _ => None,
            };
            Action::Forward {
                strip: plan.strip_conditions,
                strip_etags: plan.strip_list_etags
                    && method == "GET"
                    && path.contains("list-type=2"),
                hold,
            }
        }
    };
    match action {
        Action::Refuse => {
            s.stats.refused.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Action::Drop => {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            // Close after reading the whole request, without a byte of answer.
            Ok(())
        }
        Action::Fail503 => {
            s.stats.injected_503.fetch_add(1, Ordering::Relaxed);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>";
            let resp = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).await?;
            conn.shutdown().await
        }
        Action::Forward {
            strip,
            strip_etags,
            hold,
        } => {
            if let Some(h) = hold {
                let _ = h.arrived.send(()).await;
                let _ = h.go.await;
            }
            headers.retain(|(k, _)| {
                let k = k.to_ascii_lowercase();
                let cond = k == "if-match" || k == "if-none-match";
                if cond && strip {
                    s.stats.stripped.fetch_add(1, Ordering::Relaxed);
                }
                !(k == "connection" || k == "keep-alive" || (strip && cond))
            });
            let mut out = format!("{request_line}\r\n");
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("Connection: close\r\n\r\n");
            let mut up = TcpStream::connect(&s.upstream).await?;
            up.write_all(out.as_bytes()).await?;
            up.write_all(&body).await?;
            // Pass the answer's head with `Connection: close`, then the rest as is.
            let mut rbuf = Vec::new();
            let Some(rlen) = read_head(&mut up, &mut rbuf).await? else {
                return Ok(());
            };
            let rhead = String::from_utf8_lossy(&rbuf[..rlen]).into_owned();
            // The upstream closes after its answer (`Connection: close`), so a listing whose
            // ETags go is read whole, rewritten and sent with its new length.
            let rewritten = if strip_etags {
                let mut rest = rbuf[rlen..].to_vec();
                up.read_to_end(&mut rest).await?;
                s.stats
                    .listings_without_etags
                    .fetch_add(1, Ordering::Relaxed);
                Some(strip_etag_elements(&String::from_utf8_lossy(&rest)))
            } else {
                None
            };
            let mut new_head = String::new();
            for (i, line) in rhead.split("\r\n").enumerate() {
                if line.is_empty() {
                    continue;
                }
                if i > 0
                    && line.split_once(':').is_some_and(|(k, _)| {
                        let k = k.trim();
                        k.eq_ignore_ascii_case("connection")
                            || (rewritten.is_some() && k.eq_ignore_ascii_case("content-length"))
                    })
                {
                    continue;
                }
                new_head.push_str(line);
                new_head.push_str("\r\n");
            }
            if let Some(body) = &rewritten {
                new_head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            new_head.push_str("Connection: close\r\n\r\n");
            conn.write_all(new_head.as_bytes()).await?;
            match rewritten {
                Some(body) => conn.write_all(body.as_bytes()).await?,
                None => {
                    conn.write_all(&rbuf[rlen..]).await?;
                    tokio::io::copy(&mut up, &mut conn).await?;
                }
            }
            conn.shutdown().await
        }
    }
}

/// `xml` without its `<ETag>…</ETag>` elements.
fn strip_etag_elements(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<ETag>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</ETag>") {
            Some(end) => rest = &rest[start + end + "</ETag>".len()..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
