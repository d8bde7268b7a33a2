//! A small HTTP/1.1 server on 127.0.0.1 for tests without the internet
//! (feature `test-server`). It serves, from bytes held in memory:
//!
//! - Hub `resolve` URLs, `/{repo}/resolve/{revision}/{file}`, as the Hugging
//!   Face Hub does: an LFS file answers `302 Found` with `X-Repo-Commit`,
//!   `X-Linked-Etag` (its sha256) and `X-Linked-Size`, redirecting to
//!   `/cdn/{sha256}`; a small (non-LFS) file answers `200` with `ETag` = its git
//!   blob sha1. Unknown repositories answer 401 and unknown files 404, each
//!   with `X-Error-Code`, as the Hub does.
//! - Plain files at any other path ([`TestServer::url_file`]).
//!
//! Every body honours `Range: bytes=A-[B]` (206 + `Content-Range`, 416 past
//! the end). [`TestServer::drop_after`] makes the next responses send only part
//! of their body and close the connection. The server records every request
//! and counts connections, so tests can assert "no second GET" or "no socket
//! at all". It binds to loopback only, answers one request per connection and
//! stops when dropped.
//!
//! ```
//! use vct_hub::test_server::TestServer;
//! use vct_hub::{fetch, HubOptions, WeightsSource};
//!
//! let server = TestServer::start().unwrap();
//! server.hub_file("org/net", "model.safetensors", b"weights".to_vec());
//! let cache = tempfile::tempdir().unwrap();
//! let opts = HubOptions { progress: false, token: None, offline: false,
//!     endpoint: server.endpoint(), cache_dir: cache.path().to_path_buf() };
//! let path = fetch(&WeightsSource::hub("org/net", "model.safetensors"), &opts).unwrap();
//! assert_eq!(std::fs::read(path).unwrap(), b"weights");
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::hash::{git_blob_sha1_bytes, sha256_bytes};

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl Request {
    /// True for a request answered with the bytes of a file (not hf-hub's
    /// one-byte metadata probe `Range: bytes=0-0`, not a redirect or an error).
    pub fn is_body_get(&self) -> bool {
        self.method == "GET"
            && self.range.as_deref() != Some("bytes=0-0")
            && matches!(self.status, 200 | 206)
    }
}

#[derive(Debug, Clone)]
struct HubEntry {
    /// Bytes served for the file.
    bytes: Arc<Vec<u8>>,
    /// Etag announced (the sha256 for LFS files, a git sha1 otherwise).
    etag: String,
    lfs: bool,
}

#[derive(Debug, Default)]
struct State {
    /// (repo, file) → entry.
    hub: HashMap<(String, String), HubEntry>,
    /// `/cdn/<etag>` bodies of LFS files.
    cdn: HashMap<String, Arc<Vec<u8>>>,
    /// Plain files by path.
    urls: HashMap<String, Arc<Vec<u8>>>,
    requests: Vec<Request>,
    connections: usize,
    /// The next responses with a body longer than this send only this many bytes.
    drop_after: Option<(usize, usize)>,
}

/// The server; see the module documentation.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The commit every repository of the server is at: a fixed 40-hex id made
/// from the repository name.
pub fn commit_of(repo: &str) -> String {
    git_blob_sha1_bytes(format!("commit of {repo}").as_bytes())
}

impl TestServer {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start() -> std::io::Result<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                lock(&st).connections += 1;
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, addr, &st);
                });
            }
        });
        Ok(TestServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT` / [`crate::HubOptions::endpoint`].
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds an LFS file to `repo` (served by redirect, etag = its sha256); returns the sha256.
    pub fn hub_file(&self, repo: &str, file: &str, bytes: Vec<u8>) -> String {
        let sha = sha256_bytes(&bytes);
        self.hub_file_with_etag(repo, file, bytes, &sha);
        sha
    }

    /// Adds an LFS file whose announced sha256 is `etag` whatever its bytes
    /// (to test checksum mismatches).
    pub fn hub_file_with_etag(&self, repo: &str, file: &str, bytes: Vec<u8>, etag: &str) {
        let bytes = Arc::new(bytes);
        let mut s = lock(&self.state);
        s.cdn.insert(etag.to_string(), bytes.clone());
        s.hub.insert(
            (repo.to_string(), file.to_string()),
            HubEntry {
                bytes,
                etag: etag.to_string(),
                lfs: true,
            },
        );
    }

    /// Adds a small file stored in git (not LFS): served directly, etag = git blob sha1.
    pub fn hub_small_file(&self, repo: &str, file: &str, bytes: Vec<u8>) -> String {
        let etag = git_blob_sha1_bytes(&bytes);
        lock(&self.state).hub.insert(
            (repo.to_string(), file.to_string()),
            HubEntry {
                bytes: Arc::new(bytes),
                etag: etag.clone(),
                lfs: false,
            },
        );
        etag
    }

    /// Serves `bytes` at `path` (starting with `/`); returns the full URL.
    pub fn url_file(&self, path: &str, bytes: Vec<u8>) -> String {
        lock(&self.state)
            .urls
            .insert(path.to_string(), Arc::new(bytes));
        format!("{}{path}", self.endpoint())
    }

    /// The next `times` responses whose body is longer than `bytes` send only
    /// `bytes` of it (with the full `Content-Length`) and close the connection.
    pub fn drop_after(&self, bytes: usize, times: usize) {
        lock(&self.state).drop_after = (times > 0).then_some((bytes, times));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    /// Requests for file bytes so far (see [`Request::is_body_get`]).
    pub fn body_gets(&self) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.is_body_get())
            .count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Forgets the requests and connections seen so far.
    pub fn clear_log(&self) {
        let mut s = lock(&self.state);
        s.requests.clear();
        s.connections = 0;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What to answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Arc<Vec<u8>>>,
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    }
}

fn error_reply(status: u16, code: &str) -> Reply {
    Reply {
        status,
        headers: vec![("X-Error-Code".into(), code.into())],
        body: Some(Arc::new(code.as_bytes().to_vec())),
    }
}

fn route(s: &State, req: &Request, addr: SocketAddr) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    if let Some(etag) = path.strip_prefix("/cdn/") {
        return match s.cdn.get(etag) {
            Some(b) => Reply {
                status: 200,
                headers: Vec::new(),
                body: Some(b.clone()),
            },
            None => error_reply(404, "EntryNotFound"),
        };
    }
    if let Some((repo, rest)) = path.trim_start_matches('/').split_once("/resolve/") {
        let Some((rev, file)) = rest.split_once('/') else {
            return error_reply(404, "EntryNotFound");
        };
        let commit = commit_of(repo);
        if !s.hub.keys().any(|(r, _)| r == repo) {
            return error_reply(401, "RepositoryNotFound");
        }
        if rev != "main" && rev != commit {
            return error_reply(404, "RevisionNotFound");
        }
        return match s.hub.get(&(repo.to_string(), file.to_string())) {
            Some(e) if e.lfs => Reply {
                status: 302,
                headers: vec![
                    ("X-Repo-Commit".into(), commit),
                    ("X-Linked-Etag".into(), format!("\"{}\"", e.etag)),
                    ("X-Linked-Size".into(), e.bytes.len().to_string()),
                    (
                        "ETag".into(),
                        format!("\"{}\"", git_blob_sha1_bytes(b"pointer")),
                    ),
                    ("Location".into(), format!("http://{addr}/cdn/{}", e.etag)),
                ],
                body: None,
            },
            Some(e) => Reply {
                status: 200,
                headers: vec![
                    ("X-Repo-Commit".into(), commit),
                    ("ETag".into(), format!("\"{}\"", e.etag)),
                ],
                body: Some(e.bytes.clone()),
            },
            None => error_reply(404, "EntryNotFound"),
        };
    }
    match s.urls.get(path) {
        Some(b) => Reply {
            status: 200,
            headers: Vec::new(),
            body: Some(b.clone()),
        },
        None => error_reply(404, "NotFound"),
    }
}

/// `bytes=A-` or `bytes=A-B` against a body of `len` bytes → the inclusive range.
fn parse_range(range: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: usize = a.trim().parse().ok()?;
    if a >= len {
        return Some(Err(()));
    }
    let b = match b.trim() {
        "" => len - 1,
        b => b.parse::<usize>().ok()?.min(len - 1),
    };
    if b < a {
        return Some(Err(()));
    }
    Some(Ok((a, b)))
}

fn serve(stream: TcpStream, addr: SocketAddr, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Request {
        method,
        path,
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
        status: 0,
    };
    let (mut reply, drop_at) = {
        let s = lock(state);
        (route(&s, &req, addr), s.drop_after)
    };
    let mut body: &[u8] = &[];
    let full;
    if let Some(b) = &reply.body {
        full = b.clone();
        body = &full[..];
        reply.headers.push(("Accept-Ranges".into(), "bytes".into()));
        if reply.status == 200 {
            if let Some(r) = req
                .range
                .as_deref()
                .and_then(|r| parse_range(r, full.len()))
            {
                match r {
                    Ok((a, b)) => {
                        reply.status = 206;
                        reply.headers.push((
                            "Content-Range".into(),
                            format!("bytes {a}-{b}/{}", full.len()),
                        ));
                        body = &full[a..=b];
                    }
                    Err(()) => {
                        reply.status = 416;
                        reply
                            .headers
                            .push(("Content-Range".into(), format!("bytes */{}", full.len())));
                        body = &[];
                    }
                }
            }
        }
    }
    lock(state).requests.push(Request {
        status: reply.status,
        ..req.clone()
    });
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        reply.status,
        status_text(reply.status)
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut w = stream;
    w.write_all(out.as_bytes())?;
    if req.method == "HEAD" {
        return Ok(());
    }
    let cut = match drop_at {
        Some((n, times)) if body.len() > n => {
            let mut s = lock(state);
            s.drop_after = (times > 1).then_some((n, times - 1));
            Some(n)
        }
        _ => None,
    };
    match cut {
        Some(n) => {
            w.write_all(&body[..n])?;
            w.flush()?;
            // Close without sending the rest: the client sees a short body.
            w.shutdown(std::net::Shutdown::Both)
        }
        None => {
            w.write_all(body)?;
            w.flush()
        }
    }
}
