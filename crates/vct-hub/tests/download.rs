//! Downloads against the crate's own 127.0.0.1 test server: first download,
//! cached reuse, offline mode, a connection dropped mid-file, wrong checksums,
//! 404s and a refused connection. No internet needed.

use std::path::{Path, PathBuf};

use vct_hub::hash::sha256_bytes;
use vct_hub::test_server::{commit_of, TestServer};
use vct_hub::{
    cached, fetch, verify, Expected, HubError, HubOptions, WeightsSource, URL_CACHE_DIR,
};

fn opts(server: &TestServer, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: server.endpoint(),
        cache_dir: cache.to_path_buf(),
        offline: false,
        progress: false,
        token: None,
    }
}

/// Bytes that differ at every position, so a misplaced range shows.
fn fixture(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn hub_first_download_writes_the_hf_layout_then_reuses_the_cache() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(200_000);
    let sha = server.hub_file("org/net", "model.safetensors", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let src = WeightsSource::hub("org/net", "model.safetensors");
    assert_eq!(cached(&src, &o), None);

    let path = fetch(&src, &o).unwrap();
    let repo = cache.path().join("models--org--net");
    let commit = commit_of("org/net");
    assert_eq!(
        path,
        repo.join("snapshots")
            .join(&commit)
            .join("model.safetensors")
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    // The snapshot entry links to the blob named by its sha256, as huggingface_hub writes it.
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    assert_eq!(server.body_gets(), 1);

    let conns = server.connections();
    assert_eq!(fetch(&src, &o).unwrap(), path);
    assert_eq!(cached(&src, &o), Some(path.clone()));
    assert_eq!(server.connections(), conns, "cached reuse opened a socket");
    assert_eq!(server.body_gets(), 1);

    let v = verify(&src, &o).unwrap();
    assert_eq!(v.sha256, sha);
    assert_eq!(v.size, bytes.len() as u64);
    assert_eq!(v.expected, Some(Expected::Sha256(sha)));
}

#[test]
fn offline_mode_never_opens_a_socket() {
    let server = TestServer::start().unwrap();
    server.hub_file("org/net", "model.safetensors", fixture(1000));
    let url = server.url_file("/w/net-0123456789.pth", fixture(10));
    let cache = tempfile::tempdir().unwrap();
    let online = opts(&server, cache.path());
    let offline = online.clone().offline(true);
    let hub = WeightsSource::hub("org/net", "model.safetensors");
    let plain = WeightsSource::url(&url).unwrap();

    for src in [&hub, &plain] {
        let e = fetch(src, &offline).unwrap_err();
        assert!(matches!(e, HubError::Offline { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("cargo xtask weights fetch") && msg.contains("--weights FILE"),
            "{msg}"
        );
    }
    assert_eq!(server.connections(), 0);
    assert!(files_under(cache.path()).is_empty());

    let path = fetch(&hub, &online).unwrap();
    server.clear_log();
    assert_eq!(fetch(&hub, &offline).unwrap(), path);
    assert_eq!(server.connections(), 0);
}

#[test]
fn url_download_checks_the_name_prefix_and_is_reused() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(50_000);
    let sha = sha256_bytes(&bytes);
    let name = format!("bn_inception-{}.pth", &sha[..9]);
    let url = server.url_file(&format!("/cadene/{name}"), bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(&server, cache.path());
    o.progress = true;
    let src = WeightsSource::url(&url).unwrap();

    let path = fetch(&src, &o).unwrap();
    assert_eq!(path, cache.path().join(URL_CACHE_DIR).join(&name));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(files_under(cache.path()), vec![path.clone()]);
    let conns = server.connections();
    assert_eq!(fetch(&src, &o).unwrap(), path);
    assert_eq!(server.connections(), conns);
    assert_eq!(server.body_gets(), 1);
    let v = verify(&src, &o).unwrap();
    assert_eq!(v.sha256, sha);
    assert_eq!(
        v.expected,
        Some(Expected::Sha256Prefix(sha[..9].to_string()))
    );

    // A full sha256 given explicitly works the same.
    let other = server.url_file("/plain/w.bin", bytes.clone());
    let src = WeightsSource::url_with_sha256(&other, &sha).unwrap();
    assert_eq!(std::fs::read(fetch(&src, &o).unwrap()).unwrap(), bytes);
}

#[test]
fn hub_connection_dropped_mid_file_leaves_no_usable_file_and_resumes() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(300_000);
    server.hub_file("org/net", "model.safetensors", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let src = WeightsSource::hub("org/net", "model.safetensors");

    // Every attempt (the first and hf-hub's retries) breaks after 40 kB.
    server.drop_after(40_000, 100);
    let e = fetch(&src, &o).unwrap_err();
    match &e {
        HubError::Interrupted {
            received,
            total,
            part,
            ..
        } => {
            assert!(*received >= 40_000 && *received < 300_000, "{e}");
            assert_eq!(*total, Some(300_000));
            assert!(part.is_file());
        }
        other => panic!("expected Interrupted, got {other}"),
    }
    assert!(e.to_string().contains("resumed by the next fetch"), "{e}");
    assert_eq!(cached(&src, &o), None);
    assert!(!cache.path().join("models--org--net/snapshots").exists());

    server.drop_after(0, 0);
    server.clear_log();
    let path = fetch(&src, &o).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // The second fetch asked only for the missing bytes.
    let resumed = server.requests().iter().any(|r| {
        r.range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok())
            .is_some_and(|start| start >= 40_000)
    });
    assert!(resumed, "{:?}", server.requests());
}

#[test]
fn one_dropped_connection_is_resumed_within_the_same_fetch() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(120_000);
    server.hub_file("org/net", "model.safetensors", bytes.clone());
    let sha = sha256_bytes(&bytes);
    let url = server.url_file(&format!("/u/w-{}.bin", &sha[..8]), bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    for src in [
        WeightsSource::hub("org/net", "model.safetensors"),
        WeightsSource::url(&url).unwrap(),
    ] {
        server.drop_after(10_000, 1);
        let path = fetch(&src, &o).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{src}");
    }
}

#[test]
fn url_connection_dropped_mid_file_leaves_no_usable_file_and_resumes() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(100_000);
    let sha = sha256_bytes(&bytes);
    let name = format!("net-{}.pth", &sha[..8]);
    let url = server.url_file(&format!("/{name}"), bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let src = WeightsSource::url(&url).unwrap();

    server.drop_after(30_000, 100);
    let e = fetch(&src, &o).unwrap_err();
    // The first attempt and each resumed retry got 30 kB more before the cut.
    let part = cache
        .path()
        .join(URL_CACHE_DIR)
        .join(format!("{name}.part"));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(
        matches!(e, HubError::Interrupted { received, total: Some(100_000), .. } if received == kept && (30_000..100_000).contains(&kept)),
        "{e}"
    );
    assert_eq!(cached(&src, &o), None);
    assert!(!cache.path().join(URL_CACHE_DIR).join(&name).exists());

    server.drop_after(0, 0);
    server.clear_log();
    assert_eq!(std::fs::read(fetch(&src, &o).unwrap()).unwrap(), bytes);
    let ranges: Vec<_> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![format!("bytes={kept}-")]);
}

#[test]
fn wrong_checksum_deletes_the_file_and_says_so() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(5_000);
    let claimed = sha256_bytes(b"something else");
    server.hub_file_with_etag("org/net", "model.safetensors", bytes.clone(), &claimed);
    let url = server.url_file("/w/net-deadbeef00.pth", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());

    let hub = WeightsSource::hub("org/net", "model.safetensors");
    let e = fetch(&hub, &o).unwrap_err();
    let actual = sha256_bytes(&bytes);
    match &e {
        HubError::ChecksumMismatch {
            expected,
            actual: got,
            path,
            ..
        } => {
            assert_eq!(expected, &claimed);
            assert_eq!(got, &actual);
            assert!(!path.exists());
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&claimed) && msg.contains(&actual) && msg.contains("deleted"),
        "{msg}"
    );
    assert_eq!(cached(&hub, &o), None);
    let blobs: Vec<_> = files_under(&cache.path().join("models--org--net/blobs"))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|x| x != "lock"))
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");

    let plain = WeightsSource::url(&url).unwrap();
    let e = fetch(&plain, &o).unwrap_err();
    assert!(
        matches!(&e, HubError::ChecksumMismatch { expected, actual: got, kind: "sha256 prefix", .. }
            if expected == "deadbeef00" && *got == actual),
        "{e}"
    );
    assert!(files_under(&cache.path().join(URL_CACHE_DIR)).is_empty());
}

#[test]
fn not_found_names_the_repo_and_file_and_writes_nothing() {
    let server = TestServer::start().unwrap();
    server.hub_file("org/net", "model.safetensors", fixture(10));
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());

    let e = fetch(&WeightsSource::hub("org/net", "missing.safetensors"), &o).unwrap_err();
    assert!(matches!(e, HubError::NotFound { status: 404, .. }), "{e}");
    assert!(e.to_string().contains("org/net:missing.safetensors"), "{e}");
    let e = fetch(&WeightsSource::hub("org/nope", "model.safetensors"), &o).unwrap_err();
    assert!(matches!(e, HubError::NotFound { status: 401, .. }), "{e}");
    assert!(e.to_string().contains("HF_TOKEN"), "{e}");
    let url = format!("{}/gone/w-0123456789.pth", server.endpoint());
    let e = fetch(&WeightsSource::url(&url).unwrap(), &o).unwrap_err();
    assert!(matches!(e, HubError::NotFound { status: 404, .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    let stray: Vec<_> = files_under(cache.path())
        .into_iter()
        .filter(|p| p.extension().is_none_or(|x| x != "lock"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn refused_connection_names_the_url_and_how_to_work_offline() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let o = HubOptions {
        endpoint: format!("http://127.0.0.1:{port}"),
        cache_dir: cache.path().to_path_buf(),
        offline: false,
        progress: false,
        token: None,
    };
    let hub = WeightsSource::hub("org/net", "model.safetensors");
    let plain = WeightsSource::url(&format!("http://127.0.0.1:{port}/w-0123456789.pth")).unwrap();
    for src in [hub, plain] {
        let e = fetch(&src, &o).unwrap_err();
        assert!(matches!(e, HubError::Unreachable { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("http://127.0.0.1:{port}/")), "{msg}");
        assert!(
            msg.contains("--offline") && msg.contains("cargo xtask weights fetch"),
            "{msg}"
        );
    }
}

#[test]
fn a_partial_file_larger_than_the_file_is_discarded() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(1_000);
    let sha = server.hub_file("org/net", "model.safetensors", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let blobs = cache.path().join("models--org--net/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.part")), fixture(5_000)).unwrap();
    let path = fetch(&WeightsSource::hub("org/net", "model.safetensors"), &o).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

#[test]
fn small_git_files_are_checked_by_their_git_blob_sha1() {
    let server = TestServer::start().unwrap();
    let etag = server.hub_small_file("org/net", "config.json", b"{\"a\": 1}\n".to_vec());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let src = WeightsSource::hub("org/net", "config.json");
    fetch(&src, &o).unwrap();
    let v = verify(&src, &o).unwrap();
    assert_eq!(v.expected, Some(Expected::GitBlobSha1(etag)));
}

#[test]
fn verify_finds_a_corrupted_cache_file_and_deletes_it() {
    let server = TestServer::start().unwrap();
    let sha = server.hub_file("org/net", "model.safetensors", fixture(2_000));
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let src = WeightsSource::hub("org/net", "model.safetensors");
    fetch(&src, &o).unwrap();
    let blob = cache.path().join("models--org--net/blobs").join(&sha);
    std::fs::write(&blob, b"bit rot").unwrap();
    let e = verify(&src, &o).unwrap_err();
    assert!(
        matches!(e, HubError::ChecksumMismatch { kind: "sha256", .. }),
        "{e}"
    );
    assert!(!blob.exists());
    assert_eq!(cached(&src, &o), None);
    let e = verify(&src, &o).unwrap_err();
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
    // And the next fetch downloads it again.
    fetch(&src, &o).unwrap();
    verify(&src, &o).unwrap();
}

#[test]
fn a_pinned_commit_revision_downloads_and_is_found_in_the_cache() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(3_000);
    server.hub_file("org/net", "model.safetensors", bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&server, cache.path());
    let commit = commit_of("org/net");
    let src = WeightsSource::parse_override(&format!("org/net@{commit}")).unwrap();
    let path = fetch(&src, &o).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let conns = server.connections();
    assert_eq!(cached(&src, &o), Some(path));
    assert_eq!(server.connections(), conns);
}

#[test]
fn a_token_is_sent_to_the_hub_but_not_to_plain_urls() {
    let server = TestServer::start().unwrap();
    let bytes = fixture(100);
    server.hub_file("org/net", "model.safetensors", bytes.clone());
    let sha = sha256_bytes(&bytes);
    let url = server.url_file(&format!("/x/w-{}.bin", &sha[..8]), bytes);
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(&server, cache.path());
    o.token = Some("hf_secret".into());
    fetch(&WeightsSource::hub("org/net", "model.safetensors"), &o).unwrap();
    fetch(&WeightsSource::url(&url).unwrap(), &o).unwrap();
    let reqs = server.requests();
    let hub_auth = reqs
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .all(|r| r.authorization.as_deref() == Some("Bearer hf_secret"));
    assert!(hub_auth, "{reqs:?}");
    assert!(reqs
        .iter()
        .filter(|r| r.path.starts_with("/x/"))
        .all(|r| r.authorization.is_none()));
}
